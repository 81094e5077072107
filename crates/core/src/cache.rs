//! [`Cache`], the documented façade: building a handle, and the handle's
//! own small operations (namespace, close, stats, memo). The operations
//! live beside it, one module per kind: `read`, `write`, `lookup`
//! (read-through); the shared state and its rules in `engine`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::bus::Bus;
use crate::config::{CacheBuilder, Config};
use crate::engine::{Accepted, Shared, accepted_of, registry};
use crate::envelope::Entry;
use crate::error::{Error, Result};
use crate::key::validate_key;
use crate::l2::L2;
use crate::metrics::Stats;

/// A handle on a tiered cache. Cheap to clone; handles built with the same
/// Redis location, namespace and settings in one process share one L1, one set of
/// in-flight loads and one metrics set.
///
/// ```no_run
/// # async fn demo() -> stratacache::Result<()> {
/// use stratacache::{Cache, Lookup, LookupPolicy, WriteOptions};
/// let cache = Cache::builder().namespace("shop").build()?;
/// match cache.lookup("user:1", &LookupPolicy::default()).await? {
///     Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => println!("{:?}", e.payload),
///     Lookup::Lead(lease) => {
///         let loaded = bytes::Bytes::from_static(b"{\"name\":\"Ada\"}");
///         lease.complete(loaded, &WriteOptions::default()).await?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
    pub(crate) closed: Arc<AtomicBool>,
    pub(crate) wait_timeout: Duration,
    pub(crate) accepted: Accepted,
    /// Caching is off for this handle ([`Cache::bypassing`]).
    pub(crate) bypass: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.shared.namespace)
            .field("l1", &self.shared.l1.is_some())
            .field("l2", &self.shared.l2.as_ref().map(|l| l.location().clone()))
            .finish()
    }
}

impl Cache {
    /// A builder with the defaults (L1-only, namespace `default`).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// Build a cache from a full configuration.
    ///
    /// Within a process, a handle whose Redis location, namespace and
    /// settings match a live handle's shares its L1, flights and metrics;
    /// a handle with other settings (another signing key, L1 size, ...)
    /// gets state of its own, kept coherent with the other by the bus.
    pub fn new(config: Config) -> Result<Cache> {
        config.validate()?;
        crate::runtime::install_fork_hook();
        let shared = if config.l1_enabled && !config.isolated {
            let id = config.sharing_identity();
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            reg.retain(|_, w| w.strong_count() > 0);
            match reg.get(&id).and_then(Weak::upgrade) {
                Some(s) => s,
                None => {
                    let s = Arc::new(Shared::new(&config));
                    reg.insert(id, Arc::downgrade(&s));
                    s
                }
            }
        } else {
            Arc::new(Shared::new(&config))
        };
        Ok(Cache {
            shared,
            closed: Arc::new(AtomicBool::new(false)),
            wait_timeout: config.wait_timeout,
            accepted: accepted_of(config.accepted_formats.as_ref()),
            bypass: false,
        })
    }

    /// A handle on the same cache with caching turned off, for a block of
    /// code that must see its sources, not the cache (the bindings'
    /// `disabled()` scopes hand their calls to it). The one table of what
    /// each operation does then:
    ///
    /// - reads (`get`, `get_many`, `get_local`, `has_key`,
    ///   the tracked reads, `scan_page`) find nothing, without touching
    ///   L1 or Redis;
    /// - read-throughs (`lookup`, `lookup_many`, `try_lease`) lead every
    ///   call with a lease of its own: each caller runs its loader (no
    ///   single flight, no fleet lease, no stale value to fall back on),
    ///   and settling it hands the value back without storing it;
    /// - value writes (`set`, `set_many`, `add`, `touch`) store nothing:
    ///   `set` succeeds, `add` answers `true` (as Django's dummy cache
    ///   does), `touch` answers `false` (nothing is there);
    /// - invalidations (`delete`, `delete_many`, `invalidate_tags`,
    ///   `clear`) and counters (`incr`, `decr`) work as usual: a change
    ///   made inside the block still reaches every cache that is not
    ///   turned off, and a counter is state, not a copy of something;
    /// - HTTP exchanges started on it pass their reads through uncached
    ///   (`Cache-Status` detail `disabled`).
    pub fn bypassing(&self) -> Cache {
        Cache {
            bypass: true,
            ..self.clone()
        }
    }

    /// Which cache this handle is on: a digest of its Redis location and
    /// namespace (without Redis, of the L1 it shares), so no credential in
    /// the URL shows. Every handle on the same data has the same identity;
    /// a binding's `disabled()` scope names caches by it.
    pub fn identity(&self) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(self.shared.scope.as_bytes());
        d[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether caching is off for this handle ([`Cache::bypassing`]).
    pub fn is_bypassing(&self) -> bool {
        self.bypass
    }

    /// Whether this cache's loaders collect their dependencies (the
    /// bindings open a scope around each loader only then).
    pub fn tracks_dependencies(&self) -> bool {
        self.shared.track_dependencies
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// Whether an L2 (Redis) is configured.
    pub fn has_l2(&self) -> bool {
        self.shared.l2.is_some()
    }

    /// L2, with the bus subscription started on first use (building a
    /// cache never touches Redis; after `fork` the child resubscribes).
    #[inline]
    pub(crate) fn l2(&self) -> Option<&L2> {
        let sh = &self.shared;
        if let Some(bus) = &sh.bus {
            bus.ensure_started(sh);
        }
        sh.l2.as_ref()
    }

    #[inline]
    pub(crate) fn check(&self, key: &str) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        validate_key(key)
    }

    /// Close this handle: later calls fail with [`Error::Closed`]. Other
    /// handles sharing the L1 are unaffected.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Bytes [`Cache::memoize`] can still take now (0 without L1 or a memo
    /// budget): a binding skips preparing a memo that cannot fit.
    #[inline]
    pub fn memo_room(&self) -> u64 {
        self.shared.memo.room()
    }

    /// The memo budget in bytes (`Config::l1_memo_bytes`; 0 for none).
    pub fn memo_budget(&self) -> u64 {
        self.shared.memo.limit()
    }

    /// Keep `value`, a binding's decoded form of `entry`'s payload, on the
    /// entry, charged `charge` bytes against the memo budget. `false` (and
    /// `value` dropped) when memos are off, the entry already has one, or
    /// the budget is spent. The memo goes when the entry goes; the core's
    /// freshness and version checks still decide whether `entry` is served.
    pub fn memoize<T: std::any::Any + Send + Sync>(
        &self,
        entry: &Entry,
        value: T,
        charge: u64,
    ) -> bool {
        self.shared.memo.attach(&entry.memo, value, charge)
    }

    /// Charge `more` bytes to `entry`'s memo, set before with
    /// [`Cache::memoize`], if the budget has room (`false`, nothing
    /// charged, when it has not or there is no memo): for a binding that
    /// keeps more for an entry once it is read again. The memo returns its
    /// whole charge when it goes.
    pub fn memo_grow(&self, entry: &Entry, more: u64) -> bool {
        self.shared.memo.grow(&entry.memo, more)
    }

    /// For tests of fail-open paths: while `on`, every Redis command of
    /// this cache (and of the handles sharing its state) fails as if
    /// Redis were unreachable, without being sent, and L1 is not trusted,
    /// as during a real outage; the breaker is left alone, so calls work
    /// again as soon as it is turned off. No effect without Redis.
    pub fn simulate_outage(&self, on: bool) {
        if let Some(l2) = &self.shared.l2 {
            l2.set_outage(on);
            self.shared.versions.watchers().all_changed();
        }
    }

    /// Counters and L1 size.
    pub async fn stats(&self) -> Stats {
        let sh = &self.shared;
        let (l1_entries, l1_bytes) = match &sh.l1 {
            Some(l1) => l1.size(),
            None => (0, 0),
        };
        sh.metrics.snapshot(crate::metrics::Gauges {
            l1_entries,
            l1_bytes,
            l1_memo_bytes: sh.memo.used(),
            breaker_open: sh.l2.as_ref().is_some_and(L2::breaker_open),
            bus_connected: sh.bus.as_ref().is_some_and(Bus::is_connected),
            edge_purge_pending: sh.purger.as_ref().map_or(0, crate::purge::Purger::pending),
        })
    }

    /// Wait until the purges queued for the edges (`Config::edge_purge`)
    /// are sent or given up, at most `timeout`: `true` when nothing is
    /// left. For a short-lived process (a script, a CLI) before it exits;
    /// a server never needs it. `true` at once without edges.
    pub async fn flush_edge_purges(&self, timeout: Duration) -> bool {
        match &self.shared.purger {
            Some(p) => p.flush(timeout).await,
            None => true,
        }
    }

    /// Prometheus text exposition of [`Cache::stats`].
    pub async fn metrics_text(&self) -> String {
        self.stats().await.to_prometheus(&self.shared.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::envelope::Format;
    use crate::options::{Ttl, WriteOptions};

    fn l1_only(ns: &str) -> Cache {
        Cache::builder().namespace(ns).build().expect("cache")
    }

    #[tokio::test]
    async fn handles_with_same_location_share_l1() {
        let a = l1_only("share-a");
        let b = l1_only("share-a");
        let c = l1_only("share-c");
        a.set("k", Bytes::from_static(b"v"), &WriteOptions::default())
            .await
            .expect("set");
        assert!(b.get("k").await.expect("get").is_some());
        assert!(c.get("k").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn handles_with_other_settings_do_not_share() {
        let signed = |key: &str| {
            Cache::builder()
                .namespace("share-settings")
                .signing_key(key)
                .build()
                .expect("cache")
        };
        let (a, b, c) = (signed("k1"), signed("k1"), signed("k2"));
        a.set("k", Bytes::from_static(b"v"), &WriteOptions::default())
            .await
            .expect("set");
        assert!(
            b.get("k").await.expect("get").is_some(),
            "same settings share"
        );
        assert!(
            c.get("k").await.expect("get").is_none(),
            "another signing key is another state, not the first one's codec"
        );
        assert!(c.shared.codec.is_signing());
    }

    #[tokio::test]
    async fn closed_handle_refuses() {
        let a = l1_only("closed");
        a.close();
        assert!(matches!(a.get("k").await, Err(Error::Closed)));
        let b = l1_only("closed");
        assert!(b.get("k").await.is_ok(), "other handles keep working");
    }

    #[tokio::test]
    async fn int_payload_must_be_canonical() {
        let a = l1_only("ints");
        let o = WriteOptions::new(Ttl::Default, Format::INT);
        for bad in ["01", "+1", "x", "", "1 "] {
            let r = a.set("n", Bytes::from(bad.as_bytes().to_vec()), &o).await;
            assert!(matches!(r, Err(Error::InvalidValue(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_write_redis_never_took_is_served_locally_until_redis_answers_again() {
        // A port nothing listens on: every Redis call is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let cache = Cache::builder()
            .redis_url(format!("redis://127.0.0.1:{port}"))
            .namespace("local-writes")
            .connect_timeout(Duration::from_millis(200))
            .op_timeout(Duration::from_millis(200))
            .isolated(true)
            .build()
            .expect("cache");
        let r = cache
            .set("k", Bytes::from_static(b"v"), &WriteOptions::default())
            .await;
        assert!(matches!(r, Err(ref e) if e.is_l2()), "{r:?}");
        // The bus never connected, so L1 is trusted: the copy is served.
        let got = cache.get("k").await.expect("from L1");
        assert_eq!(
            got.map(|e| e.payload.clone()),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(cache.stats().await.local_writes, 1);
        // Redis answering again (the breaker counts a recovery) ends it.
        cache
            .shared
            .versions
            .recoveries()
            .fetch_add(1, Ordering::AcqRel);
        let r = cache.get("k").await;
        assert!(
            matches!(r, Err(ref e) if e.is_l2()),
            "no longer served: {r:?}"
        );
    }
}
