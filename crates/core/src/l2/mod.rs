//! L2: Redis standalone or Cluster, on the `redis` crate.
//!
//! Connections are multiplexed (one socket per node carries every
//! concurrent command, so concurrent commands are pipelined on the wire),
//! created lazily on the core runtime (see [`crate::runtime`]) and rebuilt
//! after `fork`. Every command is bounded by `op_timeout`.
//!
//! Multi-key operations are issued as concurrent single-key commands on the
//! multiplexed connection (`MGET` aside, which the cluster client splits per
//! slot itself): every entry has its own hash tag, so on Cluster nearly
//! every key is in a different slot and a single-slot pipeline would not
//! apply anyway.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::runtime::join_all;
use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

mod blocking;
mod breaker;
mod conn;
mod looped;
mod scripts;
pub(crate) mod sentinel;

pub(crate) use breaker::{Breaker, unreachable};
use conn::Conn;
pub(crate) use looped::{batch as batch_looped, close_all as close_looped};
use scripts::*;

use crate::config::RedisLocation;
use crate::error::{Error, Result};
use crate::key::RedisKeys;

pub(crate) struct L2 {
    location: RedisLocation,
    connect_timeout: Duration,
    op_timeout: Duration,
    conn: RwLock<Option<(u64, Conn)>>,
    /// Blocking connections for a sync caller's single commands, on one
    /// server (see `blocking`).
    pool: Option<std::sync::Arc<blocking::Pool>>,
    /// Connections of event-loop threads, for their single commands to
    /// one server reached without TLS (see `looped`).
    looped: Option<looped::Spec>,
    breaker: Breaker,
    /// A `rediss://` location: a failure before Redis ever answered may be
    /// a TLS client talking to a plaintext port, and the error says so.
    tls: bool,
    answered: AtomicBool,
    /// A simulated outage ([`crate::Cache::simulate_outage`]): every
    /// command fails as unreachable without being sent.
    outage: AtomicBool,
}

/// A bus message to publish from inside a script.
pub(crate) struct Publish<'a> {
    pub(crate) channel: &'a str,
    pub(crate) msg: &'a [u8],
}

/// What a completing load tells Redis besides the value: the fleet lease
/// to release (`""`: none) and the bus message to publish.
pub(crate) struct Notice<'a> {
    pub(crate) token: &'a str,
    pub(crate) channel: &'a str,
    pub(crate) msg: &'a [u8],
    pub(crate) refused_msg: &'a [u8],
}

/// Outcome of a fleet lease attempt.
pub(crate) enum Acquire {
    /// The lease is ours; the value and the tombstone token (the load's
    /// fence) as they were at that moment.
    Taken {
        value: Option<Vec<u8>>,
        fence: Vec<u8>,
    },
    /// Someone else holds it for `pttl_ms` more; the value meanwhile.
    Held {
        pttl_ms: u64,
        value: Option<Vec<u8>>,
    },
}

/// A node to send a command to: `None` is the standalone server (or
/// whichever node the Cluster client picks), else a Cluster master's
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node(pub(crate) Option<(String, u16)>);

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some((h, p)) => write!(f, "{h}:{p}"),
            None => f.write_str("server"),
        }
    }
}

/// Outcome of `incr`.
pub(crate) enum IncrOutcome {
    Missing,
    NotInteger,
    /// The new value, and whether an entry depended on the key.
    Value(i64, bool),
}

fn px_arg(px: Option<u64>) -> String {
    px.map_or_else(|| "0".to_owned(), |p| p.max(1).to_string())
}

impl L2 {
    pub(crate) fn new(
        location: RedisLocation,
        connect_timeout: Duration,
        op_timeout: Duration,
        breaker: Breaker,
    ) -> Self {
        let tls = match &location {
            RedisLocation::Standalone(u) => {
                u.starts_with("rediss://") || u.starts_with("rediss+sentinel://")
            }
            RedisLocation::Cluster(s) => s.iter().any(|u| u.starts_with("rediss://")),
        };
        let pool = match &location {
            RedisLocation::Standalone(u) if !sentinel::is_sentinel_url(u) => {
                blocking::Pool::new(u, connect_timeout, op_timeout, tls)
            }
            _ => None,
        };
        let looped = match &location {
            RedisLocation::Standalone(u) if !sentinel::is_sentinel_url(u) => {
                looped::Spec::new(u, connect_timeout)
            }
            _ => None,
        };
        L2 {
            location,
            connect_timeout,
            op_timeout,
            conn: RwLock::new(None),
            pool,
            looped,
            breaker,
            tls,
            answered: AtomicBool::new(false),
            outage: AtomicBool::new(false),
        }
    }

    /// Whether the circuit breaker currently keeps calls away from Redis.
    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.open_until.load(Ordering::Acquire) != 0
    }

    /// With Sentinel, the master's address the sentinels give now; `None`
    /// for other locations.
    pub(crate) async fn sentinel_master(&self) -> Option<Result<String>> {
        let Conn::Sentinel(h) = self.conn().ok()? else {
            return None;
        };
        Some(self.timed(h.0.master_addr()).await)
    }

    /// Start or end a simulated outage.
    pub(crate) fn set_outage(&self, on: bool) {
        let was = self.outage.swap(on, Ordering::AcqRel);
        if was && !on {
            // As when a real outage ends: local-only copies of writes
            // Redis never took stop being served.
            self.breaker.recovered();
        }
    }

    /// Whether a simulated outage is on.
    #[inline]
    pub(crate) fn in_outage(&self) -> bool {
        self.outage.load(Ordering::Relaxed)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn location(&self) -> &RedisLocation {
        &self.location
    }

    pub(crate) async fn get(&self, k: &RedisKeys) -> Result<Option<Vec<u8>>> {
        self.query(redis::cmd("GET").arg(&k.value)).await
    }

    pub(crate) async fn mget(&self, ks: &[RedisKeys]) -> Result<Vec<Option<Vec<u8>>>> {
        if ks.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in ks {
            cmd.arg(&k.value);
        }
        self.query(&cmd).await
    }

    /// A write, fencing in-flight loads of the key and published; true
    /// when an entry depended on the key (its dependency record existed).
    pub(crate) async fn set(
        &self,
        k: &RedisKeys,
        bytes: &[u8],
        px: Option<u64>,
        tomb_px: u64,
        publish: &Publish<'_>,
    ) -> Result<bool> {
        let lease = k.lease();
        let tomb = k.tomb();
        let ver = k.dep_version();
        let px = px_arg(px);
        let token = format!("{:032x}", rand::random::<u128>());
        let tomb_px = tomb_px.max(1).to_string();
        let n: i64 = self
            .invoke(
                set_script(),
                &[&k.value, &lease, &tomb, &ver],
                &[
                    bytes,
                    px.as_bytes(),
                    token.as_bytes(),
                    tomb_px.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                ],
            )
            .await?;
        Ok(n & 2 != 0)
    }

    pub(crate) async fn set_many(
        &self,
        items: &[(RedisKeys, bytes::Bytes, Option<u64>, Vec<u8>)],
        tomb_px: u64,
        channel: &str,
    ) -> Vec<Result<bool>> {
        join_all(items.iter().map(|(k, b, px, msg)| async move {
            self.set(k, b, *px, tomb_px, &Publish { channel, msg })
                .await
        }))
        .await
    }

    /// A tag's, a key dependency's or the generation's current version
    /// (created if missing, to live `px` when given).
    pub(crate) async fn ensure_version(
        &self,
        key: &str,
        candidate: u64,
        px: Option<u64>,
        publish: &Publish<'_>,
    ) -> Result<u64> {
        let c = candidate.to_string();
        let px = px_arg(px);
        let v: Vec<u8> = self
            .invoke(
                ensure_script(),
                &[key],
                &[
                    c.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                    px.as_bytes(),
                ],
            )
            .await?;
        Ok(std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|v| *v != 0)
            .unwrap_or(0))
    }

    /// Set a tag's or the generation's version to `new`, announced.
    pub(crate) async fn bump_version(
        &self,
        key: &str,
        new: u64,
        publish: &Publish<'_>,
    ) -> Result<()> {
        let n = new.to_string();
        let _: i64 = self
            .invoke(
                bump_script(),
                &[key],
                &[n.as_bytes(), publish.channel.as_bytes(), publish.msg],
            )
            .await?;
        Ok(())
    }

    /// `SET NX` (see the `add` script): (stored, an entry depended on
    /// the key's absence).
    pub(crate) async fn set_nx(
        &self,
        k: &RedisKeys,
        bytes: &[u8],
        px: Option<u64>,
        publish: &Publish<'_>,
    ) -> Result<(bool, bool)> {
        let ver = k.dep_version();
        let px = px_arg(px);
        let n: i64 = self
            .invoke(
                add_script(),
                &[&k.value, &ver],
                &[
                    bytes,
                    px.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                ],
            )
            .await?;
        Ok((n & 1 != 0, n & 2 != 0))
    }

    /// The fence a load must present at completion: the key's current
    /// tombstone token, empty when there is none.
    pub(crate) async fn fence(&self, k: &RedisKeys) -> Result<Vec<u8>> {
        let t: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(k.tomb())).await?;
        Ok(t.unwrap_or_default())
    }

    /// Store a loader's result unless a delete happened since `fence` was
    /// read, release the fleet lease `token` (if held), and publish `msg`
    /// on `channel`.
    pub(crate) async fn complete(
        &self,
        k: &RedisKeys,
        bytes: &[u8],
        px: Option<u64>,
        fence: &[u8],
        notice: &Notice<'_>,
    ) -> Result<bool> {
        let tomb = k.tomb();
        let lease = k.lease();
        let px = px_arg(px);
        let stored: i64 = self
            .invoke(
                complete_script(),
                &[&k.value, &tomb, &lease],
                &[
                    bytes,
                    px.as_bytes(),
                    fence,
                    notice.token.as_bytes(),
                    notice.channel.as_bytes(),
                    notice.msg,
                    notice.refused_msg,
                ],
            )
            .await?;
        Ok(stored == 1)
    }

    /// Try to take the fleet lease for `k` with `token`; reads the value in
    /// the same atomic step.
    pub(crate) async fn acquire(&self, k: &RedisKeys, token: &str, px: u64) -> Result<Acquire> {
        let lease = k.lease();
        let tomb = k.tomb();
        let px = px.max(1).to_string();
        let v: Vec<Value> = self
            .invoke(
                acquire_script(),
                &[&k.value, &lease, &tomb],
                &[token.as_bytes(), px.as_bytes()],
            )
            .await?;
        let bytes = |v: Option<&Value>| -> Option<Vec<u8>> {
            v.and_then(|v| redis::from_redis_value::<Option<Vec<u8>>>(v.clone()).ok())
                .flatten()
        };
        match v.first() {
            Some(Value::Int(1)) => Ok(Acquire::Taken {
                value: bytes(v.get(1)),
                fence: bytes(v.get(2)).unwrap_or_default(),
            }),
            Some(Value::Int(0)) => {
                let pttl = match v.get(1) {
                    Some(Value::Int(n)) => *n,
                    _ => -2,
                };
                Ok(Acquire::Held {
                    // -1 (no TTL) cannot happen for our leases; -2: it just
                    // went away. Either way: look again soon.
                    pttl_ms: u64::try_from(pttl).unwrap_or(0),
                    value: bytes(v.get(2)),
                })
            }
            _ => Err(Error::L2("unexpected reply from the lease script".into())),
        }
    }

    /// Extend our fleet lease; false when it is no longer ours.
    pub(crate) async fn extend(&self, k: &RedisKeys, token: &str, px: u64) -> Result<bool> {
        let lease = k.lease();
        let px = px.max(1).to_string();
        let n: i64 = self
            .invoke(
                extend_script(),
                &[&lease],
                &[token.as_bytes(), px.as_bytes()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Take a named lease when free or renew it when `token` holds it; true
    /// when `token` holds it now.
    pub(crate) async fn hold(&self, key: &str, token: &str, px: u64) -> Result<bool> {
        let px = px.max(1).to_string();
        let n: i64 = self
            .invoke(hold_script(), &[key], &[token.as_bytes(), px.as_bytes()])
            .await?;
        Ok(n == 1)
    }

    /// Give up a named lease if `token` still holds it.
    pub(crate) async fn let_go(&self, key: &str, token: &str) -> Result<bool> {
        let n: i64 = self
            .invoke(let_go_script(), &[key], &[token.as_bytes()])
            .await?;
        Ok(n == 1)
    }

    /// Release our fleet lease (if still ours) and publish `msg`.
    pub(crate) async fn release(
        &self,
        k: &RedisKeys,
        token: &str,
        channel: &str,
        msg: &[u8],
    ) -> Result<bool> {
        let lease = k.lease();
        let n: i64 = self
            .invoke(
                release_script(),
                &[&lease],
                &[token.as_bytes(), channel.as_bytes(), msg],
            )
            .await?;
        Ok(n == 1)
    }

    /// Delete and leave a tombstone, published: (the key existed, an
    /// entry depended on it).
    pub(crate) async fn delete(
        &self,
        k: &RedisKeys,
        tomb_px: u64,
        publish: &Publish<'_>,
    ) -> Result<(bool, bool)> {
        let tomb = k.tomb();
        let ver = k.dep_version();
        let token = format!("{:032x}", rand::random::<u128>());
        let px = tomb_px.max(1).to_string();
        let n: i64 = self
            .invoke(
                delete_script(),
                &[&k.value, &tomb, &ver],
                &[
                    token.as_bytes(),
                    px.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                ],
            )
            .await?;
        Ok((n & 1 != 0, n & 2 != 0))
    }

    pub(crate) async fn incr(
        &self,
        k: &RedisKeys,
        delta: i64,
        publish: &Publish<'_>,
    ) -> Result<IncrOutcome> {
        let d = delta.to_string();
        let ver = k.dep_version();
        let r: Vec<i64> = self
            .invoke(
                incr_script(),
                &[&k.value, &ver],
                &[d.as_bytes(), publish.channel.as_bytes(), publish.msg],
            )
            .await?;
        Ok(match r.as_slice() {
            [1, v, d] => IncrOutcome::Value(*v, *d == 1),
            [0] => IncrOutcome::Missing,
            _ => IncrOutcome::NotInteger,
        })
    }

    /// Replace `old` with `new` atomically; false when the value changed.
    pub(crate) async fn compare_and_set(
        &self,
        k: &RedisKeys,
        old: &[u8],
        new: &[u8],
        px: Option<u64>,
        publish: &Publish<'_>,
    ) -> Result<bool> {
        let px = px_arg(px);
        let n: i64 = self
            .invoke(
                cas_script(),
                &[&k.value],
                &[
                    old,
                    new,
                    px.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Set or remove the TTL of a key in place; false when it is missing.
    pub(crate) async fn expire(&self, k: &RedisKeys, px: Option<u64>) -> Result<bool> {
        match px {
            Some(px) => {
                let n: i64 = self
                    .query(redis::cmd("PEXPIRE").arg(&k.value).arg(px.max(1)))
                    .await?;
                Ok(n == 1)
            }
            None => {
                let _: i64 = self.query(redis::cmd("PERSIST").arg(&k.value)).await?;
                let n: i64 = self.query(redis::cmd("EXISTS").arg(&k.value)).await?;
                Ok(n == 1)
            }
        }
    }

    /// Remove every key matching `pattern` (this namespace's records only).
    /// Returns how many were removed.
    pub(crate) async fn clear(&self, namespace: &str, pattern: &str) -> Result<u64> {
        let mut removed = 0u64;
        for node in self.scan_nodes().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = self.scan_page(&node, cursor, pattern).await?;
                let keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| !crate::key::is_version_key(namespace, k))
                    .collect();
                if !keys.is_empty() {
                    // UNLINK per key: on Cluster the keys span many slots.
                    let results = join_all(keys.iter().map(|k| self.unlink(k))).await;
                    for r in results {
                        removed += r? as u64;
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// The nodes a `SCAN` must visit: the one server, or every Cluster
    /// master.
    pub(crate) async fn scan_nodes(&self) -> Result<Vec<Node>> {
        let mut conn = self.conn()?;
        Ok(match &conn {
            Conn::Single(_) | Conn::Sentinel(_) => vec![Node(None)],
            Conn::Cluster(_) => self
                .masters(&mut conn)
                .await?
                .into_iter()
                .map(|a| Node(Some(a)))
                .collect(),
        })
    }

    /// One `SCAN` step on `node`: the next cursor (0: done) and the keys.
    pub(crate) async fn scan_page(
        &self,
        node: &Node,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        self.on_node(node, &scan).await
    }

    /// Run an administrative command (INFO, TIME, CLUSTER INFO, PUBSUB) on
    /// `node`: the server itself, or one Cluster master.
    pub(crate) async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &Node,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        match (&node.0, &mut conn) {
            (Some((host, port)), Conn::Cluster(cc)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let v = self.timed(cc.route_command(cmd.clone(), routing)).await?;
                redis::from_redis_value(v).map_err(|e| Error::L2(e.to_string()))
            }
            _ => self.query(cmd).await,
        }
    }

    async fn unlink(&self, key: &[u8]) -> Result<i64> {
        self.query(redis::cmd("UNLINK").arg(key)).await
    }

    async fn masters(&self, conn: &mut Conn) -> Result<Vec<(String, u16)>> {
        // CLUSTER SLOTS: [[start, end, [host, port, id, ...], replicas...], ...]
        let v: Value = self
            .timed(redis::cmd("CLUSTER").arg("SLOTS").query_async(conn))
            .await?;
        let mut out = Vec::new();
        if let Value::Array(ranges) = v {
            for r in ranges {
                if let Value::Array(parts) = r
                    && let Some(Value::Array(master)) = parts.get(2)
                {
                    let host: Option<String> = master
                        .first()
                        .and_then(|h| redis::from_redis_value(h.clone()).ok());
                    let port: Option<u16> = master
                        .get(1)
                        .and_then(|p| redis::from_redis_value(p.clone()).ok());
                    if let (Some(h), Some(p)) = (host, port)
                        && !out.contains(&(h.clone(), p))
                    {
                        out.push((h, p));
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::L2("CLUSTER SLOTS returned no masters".into()));
        }
        Ok(out)
    }
}
