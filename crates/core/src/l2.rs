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

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, RedisFuture, Script, Value};

use crate::config::RedisLocation;
use crate::error::{Error, Result};
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::runtime::{fork_generation, runtime};

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub(crate) struct L2 {
    location: RedisLocation,
    connect_timeout: Duration,
    op_timeout: Duration,
    conn: RwLock<Option<(u64, Conn)>>,
    breaker: Breaker,
    /// A `rediss://` location: a failure before Redis ever answered may be
    /// a TLS client talking to a plaintext port, and the error says so.
    tls: bool,
    answered: AtomicBool,
}

/// Circuit breaker: after `threshold` consecutive failures to reach Redis
/// (unavailable or timed out; not command errors), L2 is skipped for
/// `cooldown`: calls fail at once with `E_L2_UNAVAILABLE` instead of each
/// waiting for a timeout. Then one call is let through as a probe: success
/// closes the breaker, failure opens it again.
pub(crate) struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    /// Unix ms until which calls are refused; 0 when closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    /// Bumped each time a call reaches Redis after one that could not.
    recoveries: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// Whether `e` means Redis could not be reached (down, or too slow), as
/// opposed to Redis answering with an error.
pub(crate) fn unreachable(e: &Error) -> bool {
    matches!(e, Error::L2Unavailable(_) | Error::L2Timeout(_))
}

impl Breaker {
    pub(crate) fn new(
        threshold: u32,
        cooldown: Duration,
        recoveries: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Breaker {
            recoveries,
            threshold: threshold.max(1),
            cooldown_ms: cooldown.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            metrics,
        }
    }

    /// May a call go to Redis now? `Ok(true)`: yes, as the probe.
    fn admit(&self) -> Result<bool> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(false);
        }
        if crate::clock::now_ms() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(true);
        }
        Metrics::inc(&self.metrics.breaker_short_circuits);
        Err(Error::L2Unavailable(
            "circuit breaker open: Redis failed repeatedly; retrying shortly".into(),
        ))
    }

    fn record(&self, outcome: &Result<impl Sized>, probe: bool) {
        let reached = !matches!(outcome, Err(e) if unreachable(e));
        if reached {
            // Loads first: the common case (healthy) writes nothing shared.
            let failed_before = self.failures.load(Ordering::Acquire) != 0
                && self.failures.swap(0, Ordering::AcqRel) != 0;
            let was_open = self.open_until.load(Ordering::Acquire) != 0
                && self.open_until.swap(0, Ordering::AcqRel) != 0;
            if failed_before || was_open {
                // Local-only copies written meanwhile stop being served.
                self.recoveries.fetch_add(1, Ordering::AcqRel);
            }
            if was_open {
                tracing::info!("stratacache: Redis answers again; circuit breaker closed");
            }
        } else {
            let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
            if probe || n >= self.threshold {
                let was = self
                    .open_until
                    .swap(crate::clock::now_ms() + self.cooldown_ms, Ordering::AcqRel);
                if was == 0 {
                    Metrics::inc(&self.metrics.breaker_opens);
                    tracing::warn!(
                        failures = n,
                        "stratacache: Redis failing; circuit breaker open, L2 skipped"
                    );
                }
            }
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }
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

/// Outcome of `incr`.
pub(crate) enum IncrOutcome {
    Missing,
    NotInteger,
    Value(i64),
}

macro_rules! script {
    ($name:ident, $src:expr) => {
        fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new($src))
        }
    };
}

// KEYS[1]=value KEYS[2]=tomb; ARGV[1]=token ARGV[2]=tomb px ARGV[3]=channel
// ARGV[4]=bus message. The tombstone fences loads that started before
// this delete; the message evicts every other instance's L1 copy.
script!(
    delete_script,
    r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return n"
);

// KEYS[1]=value KEYS[2]=lease KEYS[3]=tomb; ARGV[1]=envelope ARGV[2]=px or
// '0' ARGV[3]=token ARGV[4]=tomb px ARGV[5]=channel ARGV[6]=bus message.
// A write; if a load of the key is in flight somewhere (its fleet lease
// exists), a new fence token makes that load's late result lose to this
// write. Then every other instance evicts its L1 copy.
script!(
    set_script,
    r"if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1"
);

// KEYS[1]=version key; ARGV[1]=candidate ARGV[2]=channel ARGV[3]=bus
// message announcing the candidate. The current version of a tag or of
// the namespace generation; created (and announced) if missing, so a
// version evicted from Redis is replaced by a new one, never by an old one.
script!(
    ensure_script,
    r"local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return ARGV[1]"
);

// KEYS[1]=version key; ARGV[1]=new version ARGV[2]=channel ARGV[3]=bus
// message. Invalidate: a new random version, announced.
script!(
    bump_script,
    r"redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1"
);

// KEYS[1]=value KEYS[2]=tomb KEYS[3]=lease; ARGV[1]=envelope ARGV[2]=px
// or '0' ARGV[3]=fence ARGV[4]=lease token or '' ARGV[5]=channel
// ARGV[6]=bus message if stored ARGV[7]=bus message if refused (wakes the
// waiters without evicting anything). Stores only if no delete happened since the load
// began (the tombstone still holds the token seen at the start, or is
// still absent); releases the fleet lease if this load holds it; then
// tells the fleet (after the write, in the same atomic step, so a woken
// waiter always finds the value).
script!(
    complete_script,
    r"local stored = 0
local t = redis.call('GET', KEYS[2])
if (t or '') == ARGV[3] then
  if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
  else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
  stored = 1
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
if stored == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6])
else redis.call('PUBLISH', ARGV[5], ARGV[7]) end
return stored"
);

// KEYS[1]=value KEYS[2]=lease KEYS[3]=tomb; ARGV[1]=token ARGV[2]=px.
// Take the fleet lease and read the value in one atomic step, so a fill
// that lands between a caller's miss and its lease is never missed:
// {1, value, tombstone} when taken (the tombstone is the load's fence),
// {0, pttl, value} when someone holds it.
script!(
    acquire_script,
    r"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3])}
end
return {0, redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[1])}"
);

// KEYS[1]=lease; ARGV[1]=token ARGV[2]=px. Extend only our own lease.
script!(
    extend_script,
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0"
);

// KEYS[1]=lease; ARGV[1]=token ARGV[2]=channel ARGV[3]=bus message.
// Release only our own lease, and wake the fleet's waiters.
script!(
    release_script,
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0"
);

// KEYS[1]=value; ARGV[1]=delta. {0} missing, {2} not an integer/overflow,
// {1, n} new value. INCRBY keeps the key's TTL.
script!(
    incr_script,
    r"local v = redis.call('GET', KEYS[1])
if not v then return {0} end
if not string.match(v, '^%-?%d+$') then return {2} end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return {2} end
return {1, r}"
);

// KEYS[1]=value; ARGV[1]=expected ARGV[2]=new ARGV[3]=px or '0'
// ARGV[4]=channel ARGV[5]=bus message (published when replaced).
script!(
    cas_script,
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1"
);

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
            RedisLocation::Standalone(u) => u.starts_with("rediss://"),
            RedisLocation::Cluster(s) => s.iter().any(|u| u.starts_with("rediss://")),
        };
        L2 {
            location,
            connect_timeout,
            op_timeout,
            conn: RwLock::new(None),
            breaker,
            tls,
            answered: AtomicBool::new(false),
        }
    }

    /// A read connection of the binding's own (Node's) made no progress for
    /// `op_timeout` with commands pending: Redis is frozen or gone. Opens
    /// the breaker at once, so the native fallback of those reads fails
    /// fast instead of waiting out its own timeout.
    pub(crate) fn stalled(&self) {
        let r: Result<()> = Err(Error::L2Timeout(self.op_timeout));
        self.breaker.record(&r, true);
    }

    /// Whether the circuit breaker currently keeps calls away from Redis.
    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.open_until.load(Ordering::Acquire) != 0
    }

    pub(crate) fn location(&self) -> &RedisLocation {
        &self.location
    }

    fn build(&self) -> Result<Conn> {
        if self.tls {
            // Pick the crypto provider explicitly: harmless if one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // Connection drivers are spawned on the core runtime (module docs).
        let _enter = runtime().enter();
        let conn = match &self.location {
            RedisLocation::Standalone(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| Error::Config(e.to_string()))?;
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.op_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(100));
                Conn::Single(ConnectionManager::new_lazy_with_config(client, cfg)?)
            }
            RedisLocation::Cluster(seeds) => {
                let client =
                    redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(self.op_timeout)
                        .retries(2)
                        .build()
                        .map_err(|e| Error::Config(e.to_string()))?;
                Conn::Cluster(client.get_pending_async_connection_with_config(Default::default()))
            }
        };
        Ok(conn)
    }

    fn conn(&self) -> Result<Conn> {
        let generation = fork_generation();
        if let Ok(g) = self.conn.read()
            && let Some((cg, c)) = &*g
            && *cg == generation
        {
            return Ok(c.clone());
        }
        let mut g = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if let Some((cg, c)) = &*g
            && *cg == generation
        {
            return Ok(c.clone());
        }
        let c = self.build()?;
        if let Some(old) = g.replace((generation, c.clone())) {
            // The parent's connection, in a forked child: dropping it would
            // wake the parent's driver task through the parent's scheduler,
            // whose locks a thread that no longer exists may have held at
            // the fork. Leak it, as the parent's runtime is leaked.
            std::mem::forget(old);
        }
        Ok(c)
    }

    async fn timed<T, F>(&self, f: F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let probe = self.breaker.admit()?;
        let r = match tokio::time::timeout(self.op_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(match Error::from(e) {
                Error::L2Timeout(_) => Error::L2Timeout(self.op_timeout),
                other => other,
            }),
            Err(_) => Err(Error::L2Timeout(self.op_timeout)),
        };
        self.breaker.record(&r, probe);
        match r {
            Ok(v) => {
                if !self.answered.load(Ordering::Relaxed) {
                    self.answered.store(true, Ordering::Relaxed);
                }
                Ok(v)
            }
            Err(e) if self.tls && unreachable(&e) && !self.answered.load(Ordering::Relaxed) => {
                Err(Error::L2Unavailable(format!(
                    "no answer over TLS ({e}): is the server at this rediss:// URL speaking TLS? \
                     A plaintext Redis never completes the TLS handshake; use redis:// for it"
                )))
            }
            Err(e) => Err(e),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut c = self.conn()?;
        self.timed(cmd.query_async(&mut c)).await
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T> {
        let mut c = self.conn()?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        self.timed(inv.invoke_async(&mut c)).await
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

    /// A write, fencing in-flight loads of the key and published.
    pub(crate) async fn set(
        &self,
        k: &RedisKeys,
        bytes: &[u8],
        px: Option<u64>,
        tomb_px: u64,
        publish: &Publish<'_>,
    ) -> Result<()> {
        let lease = k.lease();
        let tomb = k.tomb();
        let px = px_arg(px);
        let token = format!("{:032x}", rand::random::<u128>());
        let tomb_px = tomb_px.max(1).to_string();
        let _: i64 = self
            .invoke(
                set_script(),
                &[&k.value, &lease, &tomb],
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
        Ok(())
    }

    pub(crate) async fn set_many(
        &self,
        items: &[(RedisKeys, bytes::Bytes, Option<u64>, Vec<u8>)],
        tomb_px: u64,
        channel: &str,
    ) -> Vec<Result<()>> {
        join_all(items.iter().map(|(k, b, px, msg)| async move {
            self.set(k, b, *px, tomb_px, &Publish { channel, msg })
                .await
        }))
        .await
    }

    /// A tag's or the generation's current version (created if missing).
    pub(crate) async fn ensure_version(
        &self,
        key: &str,
        candidate: u64,
        publish: &Publish<'_>,
    ) -> Result<u64> {
        let c = candidate.to_string();
        let v: Vec<u8> = self
            .invoke(
                ensure_script(),
                &[key],
                &[c.as_bytes(), publish.channel.as_bytes(), publish.msg],
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

    /// `SET NX`; true when stored.
    pub(crate) async fn set_nx(
        &self,
        k: &RedisKeys,
        bytes: &[u8],
        px: Option<u64>,
    ) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&k.value).arg(bytes).arg("NX");
        if let Some(px) = px {
            cmd.arg("PX").arg(px.max(1));
        }
        let r: Option<String> = self.query(&cmd).await?;
        Ok(r.is_some())
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

    /// Delete and leave a tombstone, published; true when the key existed.
    pub(crate) async fn delete(
        &self,
        k: &RedisKeys,
        tomb_px: u64,
        publish: &Publish<'_>,
    ) -> Result<bool> {
        let tomb = k.tomb();
        let token = format!("{:032x}", rand::random::<u128>());
        let px = tomb_px.max(1).to_string();
        let n: i64 = self
            .invoke(
                delete_script(),
                &[&k.value, &tomb],
                &[
                    token.as_bytes(),
                    px.as_bytes(),
                    publish.channel.as_bytes(),
                    publish.msg,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn incr(&self, k: &RedisKeys, delta: i64) -> Result<IncrOutcome> {
        let d = delta.to_string();
        let r: Vec<i64> = self
            .invoke(incr_script(), &[&k.value], &[d.as_bytes()])
            .await?;
        Ok(match r.as_slice() {
            [1, v] => IncrOutcome::Value(*v),
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
        let mut conn = self.conn()?;
        let nodes: Vec<Option<(String, u16)>> = match &conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self
                .masters(&mut conn)
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut removed = 0u64;
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<Vec<u8>>) = match (&node, &mut conn) {
                    (Some((host, port)), Conn::Cluster(cc)) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        let v = self.timed(cc.route_command(scan, routing)).await?;
                        redis::from_redis_value(v).map_err(|e| Error::L2(e.to_string()))?
                    }
                    _ => self.query(&scan).await?,
                };
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
