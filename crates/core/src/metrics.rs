//! Counters, snapshots and Prometheus text.
//!
//! Counters are relaxed atomics: exact under any interleaving, no ordering
//! with respect to other memory. One set per shared L1 (so two handles on
//! the same namespace report together).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters.
        #[derive(Debug, Default)]
        pub struct Metrics { $( $(#[$doc])* pub $name: AtomicU64, )* }

        /// A point-in-time copy of the counters plus L1 size.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$doc])* pub $name: u64, )*
            /// Entries currently in L1 (expired ones swept first).
            pub l1_entries: u64,
            /// Weighted bytes currently in L1.
            pub l1_bytes: u64,
            /// Bytes charged by the decoded values kept beside L1 entries.
            pub l1_memo_bytes: u64,
            /// 1 while the circuit breaker keeps calls away from Redis.
            pub breaker_open: u64,
            /// 1 while the bus subscription is up (0 without Redis).
            pub bus_connected: u64,
            /// Tags queued for the edges and not yet sent.
            pub edge_purge_pending: u64,
        }

        impl Metrics {
            pub(crate) fn snapshot(&self, gauges: Gauges) -> Stats {
                Stats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    l1_entries: gauges.l1_entries,
                    l1_bytes: gauges.l1_bytes,
                    l1_memo_bytes: gauges.l1_memo_bytes,
                    breaker_open: u64::from(gauges.breaker_open),
                    bus_connected: u64::from(gauges.bus_connected),
                    edge_purge_pending: gauges.edge_purge_pending,
                }
            }
        }

        impl Stats {
            /// Set the counter or gauge `name` (as `counters` and `gauges`
            /// name them); `false` for a name it does not have. For a
            /// binding handing back a snapshot it read as a map.
            pub fn set_named(&mut self, name: &str, v: u64) -> bool {
                match name {
                    $( stringify!($name) => self.$name = v, )*
                    "l1_entries" => self.l1_entries = v,
                    "l1_bytes" => self.l1_bytes = v,
                    "l1_memo_bytes" => self.l1_memo_bytes = v,
                    "breaker_open" => self.breaker_open = v,
                    "bus_connected" => self.bus_connected = v,
                    "edge_purge_pending" => self.edge_purge_pending = v,
                    _ => return false,
                }
                true
            }

            /// `(name, help, value)` for every counter.
            pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![ $( (stringify!($name), counter_help(stringify!($name)), self.$name), )* ]
            }
        }
    };
}

counters! {
    /// L1 lookups answered with a fresh value.
    l1_hits,
    /// L1 lookups that found nothing fresh.
    l1_misses,
    /// L2 reads that found a usable value.
    l2_hits,
    /// L2 reads that found nothing (or garbage).
    l2_misses,
    /// Stale values served (grace period).
    stale_served,
    /// Leases handed out: one loader call each.
    leads,
    /// Callers that waited for another caller's L2 read or load instead of
    /// doing it themselves.
    coalesced_waits,
    /// Of those, the ones that waited while a loader ran (a load, not just
    /// an L2 read, was on their path).
    load_waits,
    /// Fresh hits handed a lease to refresh early (XFetch / refresh-ahead).
    early_refreshes,
    /// Loads completed with a value.
    loads_completed,
    /// Loads abandoned with an error (loader failures).
    loader_errors,
    /// Leases dropped without completion.
    leases_dropped,
    /// Waits that hit the wait timeout.
    wait_timeouts,
    /// Loader results not stored because a delete happened during the load.
    late_writes_refused,
    /// Loader results not stored because something they were built from
    /// changed during the load (or they depend on too much).
    deps_refused,
    /// Redis errors and timeouts.
    l2_errors,
    /// Entries in Redis that failed to decode (garbage, forged, truncated).
    decode_errors,
    /// Entries in a format this handle's serializer cannot read (another
    /// serializer wrote them): misses, loaded again and overwritten.
    format_refusals,
    /// L1 entries evicted for size.
    l1_evictions,
    /// Writes (set, set_many, add, complete).
    writes,
    /// Deletes (delete, delete_many).
    deletes,
    /// Flight leaders that found another process holding the fleet lease
    /// and waited for its fill.
    lease_waits,
    /// Fleet waits ended by another process's fill.
    lease_fills_received,
    /// Fleet leases taken over from a holder that went away (expired or
    /// released without a value).
    lease_takeovers,
    /// Stale values served because the loader failed or was too slow
    /// (fail-safe).
    fail_safe_served,
    /// Loads that exceeded their soft timeout.
    soft_timeouts,
    /// Callers answered with a timeout error (hard timeout, no stale value).
    hard_timeouts,
    /// Loader results handed out but not cached (negative caching policy).
    not_cached,
    /// Keys loaded ahead of traffic by `warm`.
    warmed,
    /// Bus subscriptions established (1 + reconnections).
    bus_connects,
    /// Bus messages from other instances applied.
    bus_received,
    /// Bus messages ignored as malformed or from a newer format.
    bus_bad_messages,
    /// Bus subscriptions lost (L1 is not served until it is back).
    bus_outages,
    /// L1 reads skipped because the bus was interrupted.
    l1_distrusted,
    /// L1 values served because Redis could not be reached while the bus
    /// was interrupted (L1 is the only copy left to serve).
    l1_outage_hits,
    /// Writes kept in L1 only because Redis could not be reached; dropped
    /// once it answers again.
    local_writes,
    /// Tags invalidated (`invalidate_tags`).
    tag_invalidations,
    /// Entries found stale because one of their tags was invalidated.
    stale_by_tag,
    /// Entries found gone because the namespace was cleared since (or
    /// whose versions could not be checked).
    stale_by_generation,
    /// Times the circuit breaker opened (Redis failing repeatedly).
    breaker_opens,
    /// Redis calls refused at once because the breaker was open.
    breaker_short_circuits,
    /// Purge requests an edge (CDN, reverse proxy, webhook) accepted.
    edge_purges,
    /// Tags in those requests.
    edge_purge_tags,
    /// Purge requests sent again after a failure.
    edge_purge_retries,
    /// Purge requests given up (an error the edge will not take back, or
    /// every attempt failed).
    edge_purge_failures,
    /// Tags not queued for an edge because its queue was full.
    edge_purge_dropped,
}

/// The state-now half of a [`Stats`] snapshot.
pub(crate) struct Gauges {
    pub(crate) l1_entries: u64,
    pub(crate) l1_bytes: u64,
    pub(crate) l1_memo_bytes: u64,
    pub(crate) breaker_open: bool,
    pub(crate) bus_connected: bool,
    pub(crate) edge_purge_pending: u64,
}

fn counter_help(name: &str) -> &'static str {
    match name {
        "l1_hits" => "L1 lookups answered with a fresh value",
        "l1_misses" => "L1 lookups that found nothing fresh",
        "l2_hits" => "L2 reads that found a usable value",
        "l2_misses" => "L2 reads that found nothing usable",
        "stale_served" => "stale values served within grace",
        "leads" => "leases handed out (loader calls)",
        "coalesced_waits" => "callers that waited for another caller's L2 read or load",
        "load_waits" => "callers that waited while a loader ran",
        "early_refreshes" => "fresh hits refreshed early (XFetch or refresh-ahead)",
        "loads_completed" => "loads completed with a value",
        "loader_errors" => "loads abandoned with an error",
        "leases_dropped" => "leases dropped without completion",
        "wait_timeouts" => "waits that hit the wait timeout",
        "late_writes_refused" => "loader results refused because of a newer delete",
        "deps_refused" => "loader results not stored because an input changed during the load",
        "l2_errors" => "Redis errors and timeouts",
        "decode_errors" => "undecodable entries read from Redis",
        "format_refusals" => "entries in a format this serializer cannot read (treated as misses)",
        "l1_evictions" => "L1 entries evicted for size",
        "writes" => "writes",
        "deletes" => "deletes",
        "lease_waits" => "flight leaders that waited on another process's fleet lease",
        "lease_fills_received" => "fleet waits ended by another process's fill",
        "lease_takeovers" => "fleet leases taken over after the holder went away",
        "fail_safe_served" => "stale values served because the loader failed or was too slow",
        "soft_timeouts" => "loads that exceeded their soft timeout",
        "hard_timeouts" => "callers answered with a hard-timeout error",
        "not_cached" => "loader results handed out without caching them",
        "warmed" => "keys loaded ahead of traffic by warm",
        "bus_connects" => "bus subscriptions established",
        "bus_received" => "bus messages from other instances applied",
        "bus_bad_messages" => "malformed or unknown bus messages ignored",
        "bus_outages" => "bus subscriptions lost",
        "l1_distrusted" => "L1 reads skipped while the bus was interrupted",
        "l1_outage_hits" => "L1 values served while neither Redis nor the bus could be reached",
        "local_writes" => "writes kept in L1 only because Redis could not be reached",
        "tag_invalidations" => "tags invalidated",
        "stale_by_tag" => "entries found stale by a tag invalidation",
        "stale_by_generation" => "entries found gone by a namespace clear",
        "breaker_opens" => "times the Redis circuit breaker opened",
        "breaker_short_circuits" => "Redis calls refused while the breaker was open",
        "edge_purges" => "purge requests accepted by an edge",
        "edge_purge_tags" => "tags in purge requests accepted by an edge",
        "edge_purge_retries" => "purge requests sent again after a failure",
        "edge_purge_failures" => "purge requests given up",
        "edge_purge_dropped" => "tags not queued for an edge because its queue was full",
        _ => "",
    }
}

/// `(name, help, value)` of every counter or every gauge of one snapshot.
type Samples = Vec<(&'static str, &'static str, u64)>;

/// A label value escaped as the text format asks (namespaces are
/// `[A-Za-z0-9_.-]`, so this is a guard).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Stats {
    /// `(name, help, value)` for every gauge (state now, not a count).
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            ("l1_entries", "entries in L1", self.l1_entries),
            ("l1_bytes", "weighted bytes in L1", self.l1_bytes),
            (
                "l1_memo_bytes",
                "bytes of decoded values kept beside L1 entries",
                self.l1_memo_bytes,
            ),
            (
                "breaker_open",
                "1 while the circuit breaker keeps calls away from Redis",
                self.breaker_open,
            ),
            (
                "bus_connected",
                "1 while the invalidation bus subscription is up",
                self.bus_connected,
            ),
            (
                "edge_purge_pending",
                "tags queued for the edges and not yet sent",
                self.edge_purge_pending,
            ),
        ]
    }

    /// Prometheus text exposition (format 0.0.4), labelled by namespace.
    pub fn to_prometheus(&self, namespace: &str) -> String {
        Stats::prometheus(&[(namespace, self.clone())])
    }

    /// One exposition for several caches: each metric family once, one
    /// sample per namespace (caches given twice, or two states of one
    /// namespace, are summed), namespaces in the order first given. What
    /// every binding's metrics endpoint serves.
    pub fn prometheus(caches: &[(&str, Stats)]) -> String {
        let mut merged: Vec<(&str, Samples, Samples)> = Vec::new();
        for (ns, s) in caches {
            let (c, g) = (s.counters(), s.gauges());
            match merged.iter_mut().find(|(n, _, _)| n == ns) {
                Some((_, mc, mg)) => {
                    for (m, x) in mc.iter_mut().zip(c) {
                        m.2 += x.2;
                    }
                    for (m, x) in mg.iter_mut().zip(g) {
                        m.2 += x.2;
                    }
                }
                None => merged.push((ns, c, g)),
            }
        }
        let mut out = String::new();
        let Some((_, first_c, first_g)) = merged.first() else {
            return out;
        };
        for (i, (name, help, _)) in first_c.iter().enumerate() {
            let _ = writeln!(out, "# HELP stratacache_{name}_total {help}");
            let _ = writeln!(out, "# TYPE stratacache_{name}_total counter");
            for (ns, c, _) in &merged {
                let _ = writeln!(
                    out,
                    "stratacache_{name}_total{{namespace=\"{}\"}} {}",
                    label(ns),
                    c[i].2
                );
            }
        }
        for (i, (name, help, _)) in first_g.iter().enumerate() {
            let _ = writeln!(out, "# HELP stratacache_{name} {help}");
            let _ = writeln!(out, "# TYPE stratacache_{name} gauge");
            for (ns, _, g) in &merged {
                let _ = writeln!(
                    out,
                    "stratacache_{name}{{namespace=\"{}\"}} {}",
                    label(ns),
                    g[i].2
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn several_caches_one_family_each() {
        let mut a = Stats::default();
        assert!(a.set_named("l1_hits", 3));
        assert!(a.set_named("l1_bytes", 10));
        assert!(!a.set_named("nope", 1));
        let mut b = Stats::default();
        b.set_named("l1_hits", 4);
        let text = Stats::prometheus(&[("a", a.clone()), ("b", b), ("a", a)]);
        assert_eq!(
            text.matches("# TYPE stratacache_l1_hits_total counter")
                .count(),
            1
        );
        assert!(text.contains("stratacache_l1_hits_total{namespace=\"a\"} 6\n"));
        assert!(text.contains("stratacache_l1_hits_total{namespace=\"b\"} 4\n"));
        assert!(text.contains("stratacache_l1_bytes{namespace=\"a\"} 20\n"));
        assert_eq!(Stats::prometheus(&[]), "");
    }
}
