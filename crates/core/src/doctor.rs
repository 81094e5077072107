//! What the command-line tools of both bindings print: [`Cache::doctor`]
//! (is this process set up to share a fleet's cache safely?) and
//! [`Cache::census`] (what a namespace holds in Redis). The checks and
//! their wording live here once; `python manage.py stratacache doctor`,
//! `python -m stratacache doctor` and `npx stratacache doctor` print
//! [`Report::text`] or [`Report::json`] and exit with [`Report::exit_code`].

use std::time::{Duration, Instant};

use redis::Value;

use crate::cache::Cache;
use crate::config::RedisLocation;
use crate::envelope::DecodeError;
use crate::error::Result;
use crate::key::RedisKeys;
use crate::l2::{L2, Node};

/// Entries the signing and clock checks read at most.
const SAMPLE: usize = 200;
/// Skew between this host's clock and Redis's that is reported.
const SKEW_WARN_MS: u64 = 1_000;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but something deserves a look.
    Warn,
    /// Broken: the cache will not behave as documented.
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name: `redis`, `sentinel`, `server`, `tls`, `cluster`, `clock`,
    /// `signing`, `bus`, `breaker`.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was seen, and what to do about it when it is not `Ok`.
    pub detail: String,
}

/// [`Cache::doctor`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }

    /// The worst verdict.
    pub fn status(&self) -> Status {
        let worst = |s: Status| self.checks.iter().any(|c| c.status == s);
        if worst(Status::Fail) {
            Status::Fail
        } else if worst(Status::Warn) {
            Status::Warn
        } else {
            Status::Ok
        }
    }

    /// The process exit status a command-line tool uses: 0 for nothing
    /// failed (warnings included), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.status() == Status::Fail)
    }

    /// One line per check: `ok    redis    answered PING in 0.2 ms`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<5} {:<8} {}\n",
                c.status.word(),
                c.name,
                c.detail
            ));
        }
        out
    }

    /// `{"status": "ok", "checks": [{"name", "status", "detail"}, ...]}`.
    pub fn json(&self) -> String {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "status": c.status.word().to_ascii_lowercase(),
                    "detail": c.detail,
                })
            })
            .collect();
        serde_json::json!({
            "status": self.status().word().to_ascii_lowercase(),
            "checks": checks,
        })
        .to_string()
    }
}

/// [`Cache::census`]'s answer: a namespace's records in Redis, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Cached entries (values, counters, HTTP responses).
    pub entries: u64,
    /// Tags with a current version.
    pub tags: u64,
    /// Delete tombstones (fences against late loads).
    pub tombstones: u64,
    /// Fleet leases: loads in progress.
    pub leases: u64,
    /// Keys some entry was built from (dependency records).
    pub dependencies: u64,
    /// Change-feed leases.
    pub feeds: u64,
    /// Processes subscribed to the namespace's bus, this one excluded
    /// (summed over every Cluster master).
    pub subscribers: u64,
}

impl Census {
    /// JSON object of the fields.
    pub fn json(&self) -> String {
        serde_json::json!({
            "entries": self.entries,
            "tags": self.tags,
            "tombstones": self.tombstones,
            "leases": self.leases,
            "dependencies": self.dependencies,
            "feeds": self.feeds,
            "subscribers": self.subscribers,
        })
        .to_string()
    }

    /// One `name value` line per field.
    pub fn text(&self) -> String {
        format!(
            "entries      {}\ntags         {}\ntombstones   {}\nleases       {}\n\
             dependencies {}\nfeeds        {}\nsubscribers  {}\n",
            self.entries,
            self.tags,
            self.tombstones,
            self.leases,
            self.dependencies,
            self.feeds,
            self.subscribers,
        )
    }

    fn count(&mut self, namespace: &str, key: &[u8]) {
        let Some(rest) = key.strip_prefix(format!("sc:{namespace}:").as_bytes()) else {
            return;
        };
        // A caller's key sits between `{` and the last `}` and never
        // contains braces itself (`key` module), so what follows the last
        // `}` names the record.
        let tail = rest.rsplit(|&b| b == b'}').next().unwrap_or(rest);
        match (rest, tail) {
            (b"gen", _) => {}
            (r, _) if r.starts_with(b"t:{") => self.tags += 1,
            (r, _) if r.starts_with(b"feed:{") => self.feeds += 1,
            (_, b"") => self.entries += 1,
            (_, b":tomb") => self.tombstones += 1,
            (_, b":lease") => self.leases += 1,
            (_, b":ver") => self.dependencies += 1,
            _ => {}
        }
    }
}

/// Whether an entry's record name (not a tombstone, lease, tag, ...).
fn is_entry(namespace: &str, key: &[u8]) -> bool {
    let mut c = Census::default();
    c.count(namespace, key);
    c.entries == 1
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn urls(location: &RedisLocation) -> Vec<&str> {
    match location {
        RedisLocation::Standalone(u) => vec![u.as_str()],
        RedisLocation::Cluster(s) => s.iter().map(String::as_str).collect(),
    }
}

/// The host of a `scheme://[user@]host[:port]/...` URL, or `None` for a
/// unix socket.
fn host_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.ends_with("unix") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    Some(match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => hostport.split(':').next().unwrap_or(hostport),
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

impl Cache {
    /// Check this process's set-up against the server and the fleet:
    /// Redis answers, its version, TLS, the Cluster's layout, clock skew,
    /// whether the entries in Redis were signed with this process's key,
    /// the bus, the breaker. Never fails: what goes wrong is a `Fail` line.
    pub async fn doctor(&self) -> Report {
        let mut r = Report { checks: Vec::new() };
        let Some(l2) = self.l2() else {
            r.push(
                "redis",
                Status::Ok,
                "none configured: L1 only (this process's memory; nothing is shared, no other process is kept coherent)",
            );
            return r;
        };
        let started = Instant::now();
        let pong: Result<String> = l2.on_node(&Node(None), &redis::cmd("PING")).await;
        match pong {
            Ok(_) => r.push(
                "redis",
                Status::Ok,
                format!("answered PING in {}", ms(started.elapsed())),
            ),
            Err(e) => {
                r.push("redis", Status::Fail, format!("no answer: {e}"));
                return r;
            }
        }
        match l2.sentinel_master().await {
            None => {}
            Some(Ok(addr)) => r.push(
                "sentinel",
                Status::Ok,
                format!("the sentinels name {addr} as master"),
            ),
            Some(Err(e)) => r.push(
                "sentinel",
                Status::Fail,
                format!("no master from the sentinels: {e}"),
            ),
        }
        self.check_server(l2, &mut r).await;
        check_tls(l2.location(), &mut r);
        self.check_cluster(l2, &mut r).await;
        self.check_entries(l2, &mut r).await;
        self.check_bus(&mut r).await;
        if l2.breaker_open() {
            r.push(
                "breaker",
                Status::Warn,
                "open: recent Redis calls failed, so calls skip Redis for now",
            );
        } else {
            r.push("breaker", Status::Ok, "closed");
        }
        r
    }

    async fn check_server(&self, l2: &L2, r: &mut Report) {
        // On a Cluster, one master's (INFO to no node in particular is
        // sent to every master and answered as a map).
        let node = match l2.scan_nodes().await {
            Ok(mut n) if !n.is_empty() => n.swap_remove(0),
            _ => Node(None),
        };
        let info: Result<String> = l2.on_node(&node, redis::cmd("INFO").arg("server")).await;
        let info = match info {
            Ok(i) => i,
            Err(e) => return r.push("server", Status::Warn, format!("INFO refused: {e}")),
        };
        let (product, version) = match info_field(&info, "valkey_version") {
            Some(v) => ("Valkey", v),
            None => ("Redis", info_field(&info, "redis_version").unwrap_or("?")),
        };
        let mode = info_field(&info, "redis_mode").unwrap_or("standalone");
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let clustered = matches!(l2.location(), RedisLocation::Cluster(_));
        if mode == "cluster" && !clustered {
            r.push(
                "server",
                Status::Fail,
                format!(
                    "{product} {version} is a Cluster node, configured as one server: \
                     configure the Cluster's nodes instead (most keys live on other masters)"
                ),
            );
        } else if major < 6 && product == "Redis" {
            r.push(
                "server",
                Status::Warn,
                format!("{product} {version} ({mode}): tested on 7.x; 6.0 or later expected"),
            );
        } else {
            r.push(
                "server",
                Status::Ok,
                format!("{product} {version} ({mode})"),
            );
        }
    }

    async fn check_cluster(&self, l2: &L2, r: &mut Report) {
        if !matches!(l2.location(), RedisLocation::Cluster(_)) {
            return;
        }
        let info: Result<String> = l2
            .on_node(&Node(None), redis::cmd("CLUSTER").arg("INFO"))
            .await;
        let masters = l2.scan_nodes().await.map(|n| n.len());
        match (info, masters) {
            (Ok(info), Ok(masters)) => {
                let state = info_field(&info, "cluster_state").unwrap_or("?");
                let ok_slots = info_field(&info, "cluster_slots_ok").unwrap_or("?");
                let nodes = info_field(&info, "cluster_known_nodes").unwrap_or("?");
                let detail = format!(
                    "state {state}, {ok_slots} of 16384 slots served, {masters} masters, {nodes} nodes"
                );
                let healthy = state == "ok" && ok_slots == "16384";
                r.push(
                    "cluster",
                    if healthy { Status::Ok } else { Status::Fail },
                    detail,
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                r.push("cluster", Status::Fail, format!("layout unreadable: {e}"));
            }
        }
    }

    /// Clock skew (this host against Redis, and every sampled entry's
    /// writer against Redis) and signing-key agreement, from a sample of
    /// the namespace's entries.
    async fn check_entries(&self, l2: &L2, r: &mut Report) {
        let sh = &self.shared;
        let before = crate::clock::now_ms();
        let time: Result<(u64, u64)> = l2.on_node(&Node(None), &redis::cmd("TIME")).await;
        let after = crate::clock::now_ms();
        let redis_ms = match time {
            Ok((s, us)) => s * 1000 + us / 1000,
            Err(e) => return r.push("clock", Status::Warn, format!("TIME refused: {e}")),
        };
        let here_ms = before / 2 + after / 2;
        let skew = here_ms.abs_diff(redis_ms);
        let ahead = if here_ms > redis_ms {
            "ahead of"
        } else {
            "behind"
        };
        let sample = match self.sample_entries(l2).await {
            Ok(s) => s,
            Err(e) => return r.push("signing", Status::Warn, format!("SCAN refused: {e}")),
        };
        // Writers stamp entries with their own clock: one far in Redis's
        // future was written by a host whose clock is ahead.
        let future = sample
            .iter()
            .filter_map(|b| sh.codec.decode(b).ok())
            .map(|e| e.meta.created_at_ms.saturating_sub(redis_ms))
            .max()
            .unwrap_or(0);
        if skew >= SKEW_WARN_MS {
            r.push(
                "clock",
                Status::Warn,
                format!(
                    "this host is {skew} ms {ahead} Redis: TTLs and stale windows are judged by each host's clock; run NTP"
                ),
            );
        } else if future >= SKEW_WARN_MS {
            r.push(
                "clock",
                Status::Warn,
                format!(
                    "an entry in Redis was written {future} ms in Redis's future: a writer's clock is ahead; run NTP on every host"
                ),
            );
        } else {
            r.push(
                "clock",
                Status::Ok,
                format!("this host is {skew} ms {ahead} Redis; no entry written in the future"),
            );
        }
        let (mut agree, mut forged, mut unsigned, mut signed, mut other) = (0, 0, 0, 0, 0);
        for b in &sample {
            if crate::envelope::is_signed(b) {
                signed += 1;
            }
            match sh.codec.decode(b) {
                Ok(_) => agree += 1,
                Err(DecodeError::BadSignature) => forged += 1,
                Err(DecodeError::Unsigned) => unsigned += 1,
                Err(_) => other += 1,
            }
        }
        let n = sample.len();
        let keyed = sh.codec.signs();
        let (status, detail) = if n == 0 {
            (
                Status::Ok,
                "no entries in Redis to compare keys with".to_owned(),
            )
        } else if forged > 0 {
            (
                Status::Fail,
                format!(
                    "{forged} of {n} sampled entries were signed with another key: the processes of this namespace \
                     disagree on the signing key, and each treats the others' entries as misses"
                ),
            )
        } else if unsigned > 0 {
            (
                Status::Fail,
                format!(
                    "{unsigned} of {n} sampled entries are unsigned: a process without a signing key writes here, \
                     and this one (which has a key) treats them as misses"
                ),
            )
        } else if !keyed && signed > 0 {
            (
                Status::Warn,
                format!(
                    "{signed} of {n} sampled entries are signed, and this process has no signing key: \
                     it reads them unchecked; give it the fleet's key"
                ),
            )
        } else if other > 0 {
            (
                Status::Warn,
                format!(
                    "{other} of {n} sampled entries are not stratacache entries (another writer in this namespace?)"
                ),
            )
        } else if keyed {
            (
                Status::Ok,
                format!("{agree} of {n} sampled entries verify with this process's key"),
            )
        } else {
            (
                Status::Warn,
                format!(
                    "{agree} of {n} sampled entries are unsigned, as this process writes them: \
                     anyone who can write to Redis can make every process deserialize their bytes; set a signing key"
                ),
            )
        };
        r.push("signing", status, detail);
    }

    /// Up to [`SAMPLE`] entries' bytes (tombstones, leases, tags left out).
    async fn sample_entries(&self, l2: &L2) -> Result<Vec<Vec<u8>>> {
        let ns = &self.shared.namespace;
        let pattern = crate::key::namespace_pattern(ns);
        let mut names = Vec::new();
        'nodes: for node in l2.scan_nodes().await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = l2.scan_page(&node, cursor, &pattern).await?;
                names.extend(keys.into_iter().filter(|k| is_entry(ns, k)));
                if names.len() >= SAMPLE {
                    names.truncate(SAMPLE);
                    break 'nodes;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(names.len());
        let names: Vec<RedisKeys> = names
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .map(|value| RedisKeys { value })
            .collect();
        for chunk in names.chunks(50) {
            out.extend(l2.mget(chunk).await?.into_iter().flatten());
        }
        Ok(out)
    }

    async fn check_bus(&self, r: &mut Report) {
        let Some(bus) = &self.shared.bus else { return };
        if !self.bus_up().await {
            return r.push(
                "bus",
                Status::Fail,
                format!(
                    "could not subscribe to {}: L1 is not served while the bus is down",
                    bus.channel
                ),
            );
        }
        match self.subscribers().await {
            Ok(n) => r.push(
                "bus",
                Status::Ok,
                format!(
                    "subscribed to {}; {} other process(es) subscribed",
                    bus.channel,
                    n.saturating_sub(1)
                ),
            ),
            Err(e) => r.push(
                "bus",
                Status::Warn,
                format!("subscribed, but PUBSUB NUMSUB was refused: {e}"),
            ),
        }
    }

    /// Whether this process's bus subscription is up, waiting for it (it
    /// starts with the first use of Redis) at most the connect timeout.
    async fn bus_up(&self) -> bool {
        let (Some(l2), Some(bus)) = (self.l2(), &self.shared.bus) else {
            return false;
        };
        let deadline = Instant::now() + l2.connect_timeout() + Duration::from_millis(500);
        while !bus.is_connected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bus.is_connected()
    }

    /// Subscribers of the bus channel, this process included, summed over
    /// every Cluster master.
    async fn subscribers(&self) -> Result<u64> {
        let (Some(l2), Some(bus)) = (self.l2(), &self.shared.bus) else {
            return Ok(0);
        };
        let mut n = 0;
        for node in l2.scan_nodes().await? {
            let v: Value = l2
                .on_node(&node, redis::cmd("PUBSUB").arg("NUMSUB").arg(&bus.channel))
                .await?;
            let pairs: Vec<(String, u64)> = redis::from_redis_value(v).unwrap_or_default();
            n += pairs.iter().map(|(_, c)| c).sum::<u64>();
        }
        Ok(n)
    }

    /// Count the namespace's records in Redis by kind (one `SCAN` over
    /// every master: O(keys in Redis), for operators, not for a request
    /// path). All zero without Redis.
    pub async fn census(&self) -> Result<Census> {
        let mut c = Census::default();
        let Some(l2) = self.l2() else { return Ok(c) };
        let ns = &self.shared.namespace;
        let pattern = crate::key::namespace_pattern(ns);
        for node in l2.scan_nodes().await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = l2.scan_page(&node, cursor, &pattern).await?;
                for k in &keys {
                    c.count(ns, k);
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let own = u64::from(self.bus_up().await);
        c.subscribers = self.subscribers().await?.saturating_sub(own);
        Ok(c)
    }
}

fn check_tls(location: &RedisLocation, r: &mut Report) {
    let mut plain_remote = Vec::new();
    let mut unverified = false;
    let mut tls = 0;
    for u in urls(location) {
        let is_tls = u.starts_with("rediss://")
            || u.starts_with("valkeys://")
            || u.starts_with("rediss+sentinel://");
        if is_tls {
            tls += 1;
            unverified |= u.contains("#insecure");
        } else if let Some(h) = host_of(u)
            && !is_loopback(h)
        {
            plain_remote.push(h.to_owned());
        }
    }
    if unverified {
        r.push(
            "tls",
            Status::Warn,
            "TLS without certificate verification (#insecure): anyone on the path can read and change entries",
        );
    } else if !plain_remote.is_empty() {
        r.push(
            "tls",
            Status::Warn,
            format!(
                "plaintext to {}: use rediss:// across a network",
                plain_remote.join(", ")
            ),
        );
    } else if tls > 0 {
        r.push("tls", Status::Ok, "TLS, certificate verified");
    } else {
        r.push(
            "tls",
            Status::Ok,
            "plaintext on this host (loopback or unix socket)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_names_every_record() {
        let mut c = Census::default();
        for k in [
            "sc:ns:{a}",
            "sc:ns:{a}:tomb",
            "sc:ns:{a}:lease",
            "sc:ns:{a}:ver",
            "sc:ns:t:{x}",
            "sc:ns:gen",
            "sc:ns:feed:{s}",
            "sc:ns:{#ab12}",
            "sc:other:{a}",
        ] {
            c.count("ns", k.as_bytes());
        }
        let want = Census {
            entries: 2,
            tags: 1,
            tombstones: 1,
            leases: 1,
            dependencies: 1,
            feeds: 1,
            subscribers: 0,
        };
        assert_eq!(c, want);
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("redis://10.0.0.5:6379/0"), Some("10.0.0.5"));
        assert_eq!(
            host_of("rediss://u:p@cache.example:6380"),
            Some("cache.example")
        );
        assert_eq!(host_of("redis://[::1]:6379"), Some("::1"));
        assert_eq!(host_of("unix:///run/redis.sock"), None);
        assert_eq!(host_of("valkey+unix:///run/v.sock"), None);
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.5"));
    }

    #[test]
    fn tls_verdicts() {
        let verdict = |u: &str| {
            let mut r = Report { checks: Vec::new() };
            check_tls(&RedisLocation::Standalone(u.into()), &mut r);
            r.checks[0].status
        };
        assert_eq!(verdict("redis://127.0.0.1:6379"), Status::Ok);
        assert_eq!(verdict("redis://10.1.2.3:6379"), Status::Warn);
        assert_eq!(verdict("rediss://cache.example:6380"), Status::Ok);
        assert_eq!(
            verdict("rediss://cache.example:6380/#insecure"),
            Status::Warn
        );
    }

    #[test]
    fn report_exit_code_and_json() {
        let mut r = Report { checks: Vec::new() };
        r.push("redis", Status::Ok, "fine");
        r.push("clock", Status::Warn, "late");
        assert_eq!(r.exit_code(), 0);
        assert!(
            r.text()
                .starts_with("ok    redis    fine\nwarn  clock    late\n")
        );
        r.push("bus", Status::Fail, "down");
        assert_eq!(r.exit_code(), 1);
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("JSON");
        assert_eq!(v["status"], "fail");
        assert_eq!(v["checks"][2]["name"], "bus");
    }
}
