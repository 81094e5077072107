//! The cache handle and its operations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::bus::Bus;
use crate::clock::now_ms;
use crate::config::{CacheBuilder, Config};
use crate::envelope::{Codec, Entry, Format, Meta};
use crate::error::{Error, Result};
use crate::flight::{self, FlightMap, FlightState, Joined, StaleKind};
use crate::key::{
    RedisKeys, generation_key, namespace_pattern, redis_keys, tag_key, validate_key, validate_tag,
};
use crate::l1::{L1, L1Incr};
use crate::l2::{Acquire, IncrOutcome, L2, Publish};
use crate::lease::{self, FleetLease, Lease, Terms};
use crate::memo::MemoBudget;
use crate::metrics::{Metrics, Stats};
use crate::options::{LookupPolicy, OnWaitTimeout, Ttl, WriteOptions};
use crate::versions::{GENERATION_TAG, LOCAL_TAG, Validity, Versions, new_version};

/// What a read-through lookup tells the caller to do.
#[derive(Debug)]
pub enum Lookup {
    /// Serve this value.
    Fresh(Arc<Entry>),
    /// Serve this stale value. With a lease, refresh it in the background
    /// (run the loader, then [`Lease::complete`]); without one, someone
    /// else already is.
    Stale(Arc<Entry>, Option<Lease>),
    /// You are the one loader for this key: run the loader, then
    /// [`Lease::complete`] or [`Lease::abandon`].
    Lead(Lease),
}

/// State shared by every handle on the same (Redis location, namespace):
/// one L1, one set of flights, one metrics set, one L2 client.
pub(crate) struct Shared {
    pub(crate) namespace: String,
    pub(crate) l1: Option<L1>,
    memo: MemoBudget,
    pub(crate) l2: Option<L2>,
    pub(crate) bus: Option<Bus>,
    pub(crate) versions: Versions,
    /// False while the bus subscription is interrupted: L1 copies may have
    /// missed invalidations, so L1 is not served until it is back.
    pub(crate) l1_trusted: AtomicBool,
    pub(crate) lease_ttl: Duration,
    fleet_lease: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) flights: FlightMap,
    pub(crate) codec: Codec,
    default_ttl: Option<Duration>,
    max_value_bytes: usize,
    tombstone_ttl: Duration,
    ttl_jitter: f64,
}

/// The formats a handle reads (see `Config::accepted_formats`): bit `f`
/// set for format `f`; `None`: every format. A property of the handle, not
/// of the L1 it shares: handles with different serializers share entries.
type Accepted = Option<[u64; 4]>;

fn accepted_of(formats: Option<&Vec<u8>>) -> Accepted {
    formats.map(|fs| {
        let mut bits = [0u64; 4];
        for &f in fs {
            bits[usize::from(f / 64)] |= 1 << (f % 64);
        }
        bits
    })
}

/// Whether a handle accepting `acc` can read `e`'s format.
fn readable(acc: Accepted, e: &Entry) -> bool {
    let f = e.meta.format.0;
    acc.is_none_or(|bits| bits[usize::from(f / 64)] & (1 << (f % 64)) != 0)
}

type Registry = Mutex<HashMap<String, Weak<Shared>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Shared {
    fn new(cfg: &Config) -> Self {
        let metrics = Arc::new(Metrics::default());
        let versions = Versions::default();
        Shared {
            namespace: cfg.namespace.clone(),
            l1: cfg.l1_enabled.then(|| {
                L1::new(
                    cfg.l1_max_bytes.saturating_sub(cfg.l1_memo_bytes),
                    metrics.clone(),
                )
            }),
            memo: MemoBudget::new(if cfg.l1_enabled { cfg.l1_memo_bytes } else { 0 }),
            l2: cfg.redis.clone().map(|loc| {
                let breaker = crate::l2::Breaker::new(
                    cfg.breaker_threshold,
                    cfg.breaker_cooldown,
                    versions.recoveries(),
                    metrics.clone(),
                );
                L2::new(loc, cfg.connect_timeout, cfg.op_timeout, breaker)
            }),
            bus: cfg
                .redis
                .clone()
                .map(|loc| Bus::new(&cfg.namespace, loc, cfg.connect_timeout)),
            versions,
            l1_trusted: AtomicBool::new(true),
            lease_ttl: cfg.lease_ttl,
            fleet_lease: cfg.fleet_lease,
            metrics,
            flights: Default::default(),
            codec: Codec::new(
                cfg.compress_threshold,
                cfg.zstd_level,
                cfg.max_value_bytes,
                cfg.signing_key.as_deref(),
            ),
            default_ttl: cfg.default_ttl,
            max_value_bytes: cfg.max_value_bytes,
            tombstone_ttl: cfg.tombstone_ttl,
            ttl_jitter: cfg.ttl_jitter,
        }
    }

    fn rkeys(&self, key: &str) -> RedisKeys {
        redis_keys(&self.namespace, key)
    }

    /// Build a trusted entry for `payload` written now, recording `tags`
    /// (from [`Shared::stamp`]).
    pub(crate) fn build_entry(
        &self,
        payload: Bytes,
        opts: &WriteOptions,
        tags: Vec<(String, u64)>,
    ) -> Result<Entry> {
        if payload.len() > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: payload.len(),
                max: self.max_value_bytes,
            });
        }
        if opts.format == Format::INT {
            let digits = std::str::from_utf8(&payload)
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            if digits.is_none_or(|n| n.to_string().as_bytes() != &payload[..]) {
                return Err(Error::InvalidValue(
                    "an INT payload must be a canonical signed 64-bit decimal".into(),
                ));
            }
        }
        let now = now_ms();
        let ttl = match opts.ttl {
            Ttl::Default => self.default_ttl,
            Ttl::Never => None,
            Ttl::After(d) => Some(d),
        };
        let (fresh_until_ms, stale_until_ms) = match ttl {
            None => (0, 0),
            Some(d) if d.is_zero() => (now, now),
            Some(d) => {
                let mut ttl_ms = d.as_millis().clamp(1, u64::MAX as u128) as u64;
                if self.ttl_jitter > 0.0 {
                    let cut = (ttl_ms as f64 * self.ttl_jitter * rand::random::<f64>()) as u64;
                    ttl_ms = ttl_ms.saturating_sub(cut).max(1);
                }
                let fresh = now.saturating_add(ttl_ms);
                (fresh, fresh.saturating_add(opts.grace.as_millis() as u64))
            }
        };
        Ok(Entry {
            meta: Meta {
                format: opts.format,
                created_at_ms: now,
                fresh_until_ms,
                stale_until_ms,
                load_us: opts
                    .load_duration
                    .map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX)),
                tags,
            },
            payload,
            memo: Default::default(),
        })
    }

    /// Redis `PX` for an entry: time until `stale_until`, `None` = forever.
    pub(crate) fn px_for(&self, e: &Entry) -> Option<u64> {
        match e.meta.stale_until_ms {
            0 => None,
            t => Some(t.saturating_sub(now_ms()).max(1)),
        }
    }

    /// Whether an entry read from or written to L2 may live in L1: counters
    /// are changed in place by other processes, so with L2 they stay out.
    fn l1_may_hold(&self, e: &Entry) -> bool {
        self.l2.is_none() || e.meta.format != Format::INT
    }

    fn decode(&self, bytes: &[u8]) -> Option<Entry> {
        self.decode_counted(bytes, true)
    }

    /// `decode`; `count` false for bytes whose decoding was counted already.
    fn decode_counted(&self, bytes: &[u8], count: bool) -> Option<Entry> {
        match self.codec.decode(bytes) {
            Ok(e) => Some(e),
            Err(err) => {
                if count {
                    Metrics::inc(&self.metrics.decode_errors);
                }
                tracing::debug!(namespace = %self.namespace, error = %err, "undecodable entry in Redis treated as a miss");
                None
            }
        }
    }

    /// Decode an L2 value and keep it only if fresh and current.
    async fn fresh(&self, bytes: Option<Vec<u8>>, acc: Accepted) -> Option<Arc<Entry>> {
        let e = Arc::new(bytes.and_then(|b| self.decode(&b))?);
        match self.judge(e, acc).await {
            Judged::Fresh(e) => Some(e),
            _ => None,
        }
    }

    /// Decode an L2 value and keep it if servable as a stale value.
    async fn stale(&self, bytes: Option<Vec<u8>>, acc: Accepted) -> Option<Arc<Entry>> {
        let e = Arc::new(bytes.and_then(|b| self.decode(&b))?);
        match self.judge(e, acc).await {
            Judged::Stale(e) => Some(e),
            _ => None,
        }
    }

    /// The namespace generation, read from (or created in) Redis when not
    /// known here; 0 when Redis cannot tell (entries recorded with 0 are
    /// never current).
    pub(crate) async fn generation(&self) -> u64 {
        let known = self.versions.generation();
        if let Some(g) = known
            && self.l1_trusted.load(Ordering::Acquire)
        {
            return g;
        }
        let (Some(l2), Some(bus)) = (&self.l2, &self.bus) else {
            return known.unwrap_or(0);
        };
        // While the bus is interrupted the known generation is not trusted
        // as it is: Redis may have come back without it (a restart without
        // persistence), and a write recording it before the bus reconnects
        // would be a miss for every process that created another meanwhile.
        // So it is made sure of (created if absent) like an unknown one.
        let candidate = known.unwrap_or_else(|| self.versions.generation_candidate());
        let msg = bus.generation_created_message(candidate);
        let publish = Publish {
            channel: &bus.channel,
            msg: &msg,
        };
        match l2
            .ensure_version(&generation_key(&self.namespace), candidate, &publish)
            .await
        {
            Ok(g) if g != 0 && known.is_some() => {
                // Redis's own (another process cleared meanwhile) wins.
                self.versions.set_generation(g);
                g
            }
            Ok(g) if g != 0 => {
                self.versions.set_generation_if_absent(g);
                self.versions.generation().unwrap_or(g)
            }
            Ok(_) => known.unwrap_or(0),
            Err(_) => {
                Metrics::inc(&self.metrics.l2_errors);
                known.unwrap_or(0)
            }
        }
    }

    /// A tag's current version, read from (or created in) Redis when not
    /// known here; 0 when Redis cannot tell.
    pub(crate) async fn tag_version(&self, t: &str) -> u64 {
        if let Some(v) = self.versions.tag(t) {
            return v;
        }
        let (Some(l2), Some(bus)) = (&self.l2, &self.bus) else {
            let v = new_version();
            self.versions.set_tag(t, v);
            return v;
        };
        let candidate = new_version();
        let msg = bus.tag_created_message(t, candidate);
        let publish = Publish {
            channel: &bus.channel,
            msg: &msg,
        };
        match l2
            .ensure_version(&tag_key(&self.namespace, t), candidate, &publish)
            .await
        {
            Ok(v) if v != 0 => {
                // A bump that arrived meanwhile is newer than what we read.
                self.versions.set_tag_if_absent(t, v);
                self.versions.tag(t).unwrap_or(v)
            }
            Ok(_) => 0,
            Err(_) => {
                Metrics::inc(&self.metrics.l2_errors);
                0
            }
        }
    }

    /// The versions an entry with `tags` records: each tag's (from
    /// `snapshot`, taken when a load started, else current) and, with
    /// Redis, the namespace generation.
    pub(crate) async fn stamp(
        &self,
        tags: &[String],
        snapshot: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::with_capacity(tags.len() + 1);
        for t in tags {
            validate_tag(t)?;
            if out.iter().any(|(n, _)| n == t) {
                continue;
            }
            let v = match snapshot.iter().find(|(n, _)| n == t) {
                Some((_, v)) => *v,
                None => self.tag_version(t).await,
            };
            out.push((t.clone(), v));
        }
        if self.l2.is_some() {
            let g = match snapshot.iter().find(|(n, _)| n == GENERATION_TAG) {
                Some((_, v)) => *v,
                None => self.generation().await,
            };
            out.push((GENERATION_TAG.to_owned(), g));
        }
        Ok(out)
    }

    /// Judge `e` by the current versions, resolving any not known here.
    pub(crate) async fn validity(&self, e: &Entry) -> Validity {
        let v = self.versions.check(e);
        if v != Validity::Unknown {
            return v;
        }
        for (name, _) in &e.meta.tags {
            if name == LOCAL_TAG {
                continue;
            }
            if name == GENERATION_TAG {
                self.generation().await;
            } else if self.versions.tag(name).is_none() {
                self.tag_version(name).await;
            }
        }
        match self.versions.check(e) {
            // Versions Redis cannot tell right now: do not serve it.
            Validity::Unknown => Validity::Gone,
            v => v,
        }
    }

    /// Whether `e` is fresh, stale (past its TTL or tag-invalidated, within
    /// its grace) or unusable.
    pub(crate) async fn judge(&self, e: Arc<Entry>, acc: Accepted) -> Judged {
        self.judge_counted(e, true, acc).await
    }

    /// `judge`; `count` false for an entry whose judging was counted already.
    async fn judge_counted(&self, e: Arc<Entry>, count: bool, acc: Accepted) -> Judged {
        let now = now_ms();
        if !e.meta.is_live(now) {
            return Judged::Miss;
        }
        if !readable(acc, &e) {
            // Another serializer's entry: a miss, so read-throughs load
            // and overwrite it.
            if count {
                Metrics::inc(&self.metrics.format_refusals);
            }
            return Judged::Miss;
        }
        match self.validity(&e).await {
            Validity::Current if e.meta.is_fresh(now) => Judged::Fresh(e),
            Validity::Current => Judged::Stale(e),
            Validity::TagStale => {
                if count {
                    Metrics::inc(&self.metrics.stale_by_tag);
                }
                Judged::Stale(e)
            }
            Validity::Gone | Validity::Unknown => {
                if count {
                    Metrics::inc(&self.metrics.stale_by_generation);
                }
                Judged::Miss
            }
        }
    }

    /// L1's copy of `key`, judged; `Miss` without L1 or while L1 is not
    /// trusted.
    async fn l1_judged(&self, key: &str, acc: Accepted) -> Judged {
        let Some(l1) = &self.l1 else {
            return Judged::Miss;
        };
        if !self.l1_trusted.load(Ordering::Acquire) {
            Metrics::inc(&self.metrics.l1_distrusted);
            return Judged::Miss;
        }
        match l1.get(key).await {
            Some(e) => self.judge(e, acc).await,
            None => Judged::Miss,
        }
    }

    /// L1's copy of `key`, judged, read when Redis could not be reached
    /// after L1 was skipped because the bus is interrupted: with neither,
    /// L1 is all that is left, and whatever it holds is dropped when the bus
    /// is back. `Miss` when L1 was trusted (it was consulted already).
    pub(crate) async fn l1_fallback(&self, key: &str, acc: Accepted) -> Judged {
        let Some(l1) = &self.l1 else {
            return Judged::Miss;
        };
        if self.l1_trusted.load(Ordering::Acquire) {
            return Judged::Miss;
        }
        let judged = match l1.get(key).await {
            Some(e) => self.judge(e, acc).await,
            None => Judged::Miss,
        };
        if let Judged::Fresh(_) = judged {
            Metrics::inc(&self.metrics.l1_outage_hits);
        }
        judged
    }

    /// `e` as an L1-only copy of a write Redis could not take, marked with
    /// `mark` (from [`Versions::local_mark`], read before the write was
    /// tried): served from L1 until Redis answers again. The generation is
    /// left out (it may not be readable now; the mark bounds the copy).
    pub(crate) fn local_copy(&self, e: &Entry, mark: u64) -> Arc<Entry> {
        Metrics::inc(&self.metrics.local_writes);
        let mut tags: Vec<(String, u64)> = e
            .meta
            .tags
            .iter()
            .filter(|(n, _)| n != GENERATION_TAG)
            .cloned()
            .collect();
        tags.push((LOCAL_TAG.to_owned(), mark));
        Arc::new(Entry {
            meta: Meta {
                tags,
                ..e.meta.clone()
            },
            payload: e.payload.clone(),
            memo: Default::default(),
        })
    }

    fn l2_err(&self, e: Error) -> Error {
        Metrics::inc(&self.metrics.l2_errors);
        e
    }
}

/// What the caller of [`Cache::lookup_after`] did before it: a binding
/// that reads Redis over a connection of its own (see
/// [`Cache::start_read`]) tries a read-through lookup's Redis read itself
/// first, and calls the lookup only when that read found nothing fresh.
#[derive(Debug)]
pub enum Prior {
    /// It began with [`Cache::start_read`] (its L1 miss is counted) and
    /// another caller's read of the key, which it joined, found nothing
    /// fresh. The lookup goes as usual, without counting the L1 miss again.
    Joined,
    /// It began with [`Cache::start_read`], sent the `GET` itself and
    /// [`Cache::finish_read`] (which counted it) found nothing fresh in
    /// `bytes`. If this caller leads the key's flight, these bytes stand for
    /// the flight's Redis read: not read again, not counted again.
    Read {
        /// Redis's reply to the `GET`.
        bytes: Option<Vec<u8>>,
        /// The epoch `start_read` gave.
        epoch: u64,
    },
}

/// Where a read stands before Redis is asked ([`Cache::start_read`]).
#[derive(Debug)]
pub enum ReadStart {
    /// Answered without Redis: L1's fresh value, or a miss when no Redis
    /// is configured.
    Done(Option<Arc<Entry>>),
    /// `GET redis_key`, then [`Cache::finish_read`] with the reply and `epoch`.
    Fetch {
        /// The Redis key holding the entry.
        redis_key: String,
        /// L1's epoch for the key, fencing the fill.
        epoch: u64,
    },
}

/// An entry judged for serving.
pub(crate) enum Judged {
    Fresh(Arc<Entry>),
    Stale(Arc<Entry>),
    Miss,
}

/// A handle on a tiered cache. Cheap to clone; handles built with the same
/// Redis location, namespace and settings in one process share one L1, one set of
/// in-flight loads and one metrics set.
///
/// ```no_run
/// # async fn demo() -> stratacache::Result<()> {
/// use stratacache::{Cache, Lookup, LookupPolicy, WriteOptions};
/// let cache = Cache::builder().namespace("shop").build()?;
/// match cache.lookup("user:1", &LookupPolicy::default()).await? {
///     Lookup::Fresh(e) | Lookup::Stale(e, _) => println!("{:?}", e.payload),
///     Lookup::Lead(lease) => {
///         let loaded = bytes::Bytes::from_static(b"{\"name\":\"Ada\"}");
///         lease.complete(loaded, &WriteOptions::default()).await?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    shared: Arc<Shared>,
    closed: Arc<AtomicBool>,
    wait_timeout: Duration,
    accepted: Accepted,
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
        })
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
    fn l2(&self) -> Option<&L2> {
        let sh = &self.shared;
        if let Some(bus) = &sh.bus {
            bus.ensure_started(sh);
        }
        sh.l2.as_ref()
    }

    #[inline]
    fn check(&self, key: &str) -> Result<()> {
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

    /// The fresh value of `key`, or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        match self.l1_first(key).await? {
            Ok(r) => Ok(r),
            Err(epoch) => self.read_l2(key, epoch).await,
        }
    }

    /// L1's answer to a read (`Ok`), or the epoch to fence the L2 read's
    /// fill with (`Err`).
    async fn l1_first(&self, key: &str) -> Result<std::result::Result<Option<Arc<Entry>>, u64>> {
        self.check(key)?;
        let sh = &self.shared;
        if sh.l1.is_some() {
            if let Judged::Fresh(e) = sh.l1_judged(key, self.accepted).await {
                Metrics::inc(&sh.metrics.l1_hits);
                return Ok(Ok(Some(e)));
            }
            Metrics::inc(&sh.metrics.l1_misses);
        }
        if self.l2().is_none() {
            return Ok(Ok(None));
        }
        Ok(Err(sh.l1.as_ref().map_or(0, |l1| l1.epoch(key))))
    }

    /// The Redis half of [`Cache::get`], after [`Cache::start_read`]
    /// answered `Fetch` with `epoch`: what a binding whose own connection
    /// failed falls back to (with the breaker, outage fallback and errors
    /// of `get`, and without counting the L1 miss again).
    pub async fn fetch(&self, key: &str, epoch: u64) -> Result<Option<Arc<Entry>>> {
        self.check(key)?;
        if self.l2().is_none() {
            return Ok(None);
        }
        self.read_l2(key, epoch).await
    }

    /// `fetch` once the key is checked and the bus started (by
    /// `l1_first`, or by `fetch` itself).
    async fn read_l2(&self, key: &str, epoch: u64) -> Result<Option<Arc<Entry>>> {
        let sh = &self.shared;
        let Some(l2) = sh.l2.as_ref() else {
            return Ok(None);
        };
        let bytes = match l2.get(&sh.rkeys(key)).await {
            Ok(b) => b,
            Err(e) => {
                if crate::l2::unreachable(&e)
                    && let Judged::Fresh(local) = sh.l1_fallback(key, self.accepted).await
                {
                    Metrics::inc(&sh.metrics.l2_errors);
                    return Ok(Some(local));
                }
                return Err(sh.l2_err(e));
            }
        };
        Ok(self.accept_l2(key, bytes, epoch).await)
    }

    /// The first half of [`Cache::get`], for a binding that reads Redis
    /// over a connection of its own (the Node package does, to receive the
    /// reply on the JS thread): L1 is consulted and counted as `get` does,
    /// and on a miss the caller is told which Redis key to `GET` and the L1
    /// epoch to hand to [`Cache::finish_read`] with the reply, which fences
    /// the L1 fill against a write or invalidation that lands meanwhile.
    /// Errors, timeouts and an open breaker are not the caller's to judge:
    /// when its own GET fails it calls [`Cache::fetch`] with the epoch, and
    /// while [`Cache::l2_ready`] is false it leaves reads to [`Cache::get`].
    pub async fn start_read(&self, key: &str) -> Result<ReadStart> {
        Ok(match self.l1_first(key).await? {
            Ok(r) => ReadStart::Done(r),
            Err(epoch) => ReadStart::Fetch {
                redis_key: self.shared.rkeys(key).value,
                epoch,
            },
        })
    }

    /// [`Cache::start_read`] for several keys (the first half of
    /// [`Cache::get_many`]): every key is checked before anything is
    /// counted; the caller sends one `MGET` of the `Fetch` keys and
    /// finishes each with [`Cache::finish_read`] (or [`Cache::fetch`]).
    pub async fn start_read_many(&self, keys: &[&str]) -> Result<Vec<ReadStart>> {
        for k in keys {
            self.check(k)?;
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.start_read(k).await?);
        }
        Ok(out)
    }

    /// The second half of a read begun with [`Cache::start_read`]: `bytes`
    /// is Redis's reply to the `GET`. Decoded, verified and judged exactly
    /// as [`Cache::get`] does (garbage is a counted miss), and kept in L1
    /// unless the key was written or invalidated since `epoch`.
    pub async fn finish_read(
        &self,
        key: &str,
        bytes: Option<Vec<u8>>,
        epoch: u64,
    ) -> Option<Arc<Entry>> {
        self.accept_l2(key, bytes, epoch).await
    }

    /// Count `n` callers that shared another caller's `start_read` /
    /// `finish_read` of a key instead of reading it themselves (a
    /// binding's own coalescing of read-throughs): they are coalesced
    /// waits, as callers waiting on a lookup's flight are.
    pub fn count_joined_reads(&self, n: u64) {
        Metrics::add(&self.shared.metrics.coalesced_waits, n);
    }

    /// Whether Redis is configured and the circuit breaker lets calls
    /// through: when false, a binding with its own read connection should
    /// leave reads to [`Cache::get`], which knows how to fail fast and
    /// when to serve L1 through an outage.
    pub fn l2_ready(&self) -> bool {
        self.shared.l2.as_ref().is_some_and(|l2| !l2.breaker_open())
    }

    /// A binding's own Redis read connection stalled (no reply for
    /// `op_timeout` with reads pending): counted as an L2 error and the
    /// circuit breaker opens, so falling back to the core's reads does not
    /// wait a second timeout.
    pub fn read_stalled(&self) {
        if let Some(l2) = &self.shared.l2 {
            Metrics::inc(&self.shared.metrics.l2_errors);
            l2.stalled();
        }
    }

    /// L1 only: the fresh L1 value of `key`, or `None` (which does not
    /// mean a miss when Redis is configured: call [`Cache::get`] then).
    /// Never waits on anything, so a binding can call it synchronously for
    /// the hit path and go asynchronous only when it returns `None`.
    pub async fn get_local(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        self.check(key)?;
        let sh = &self.shared;
        if let Some(l1) = &sh.l1
            && sh.l1_trusted.load(Ordering::Acquire)
            && let Some(e) = l1.get(key).await
            && e.meta.is_fresh(now_ms())
            && readable(self.accepted, &e)
            && sh.versions.check(&e) == Validity::Current
        {
            Metrics::inc(&sh.metrics.l1_hits);
            return Ok(Some(e));
        }
        Ok(None)
    }

    /// Decode an L2 read, fill L1, and return it if fresh.
    async fn accept_l2(&self, key: &str, bytes: Option<Vec<u8>>, epoch: u64) -> Option<Arc<Entry>> {
        let sh = &self.shared;
        match sh.fresh(bytes, self.accepted).await {
            Some(e) => {
                Metrics::inc(&sh.metrics.l2_hits);
                if let Some(l1) = &sh.l1
                    && sh.l1_may_hold(&e)
                {
                    l1.fill(&Arc::from(key), e.clone(), epoch).await;
                }
                Some(e)
            }
            None => {
                Metrics::inc(&sh.metrics.l2_misses);
                None
            }
        }
    }

    /// Fresh values of several keys, in the order given (`None` for misses).
    /// L1 first, then one `MGET` for the rest.
    pub async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Arc<Entry>>>> {
        for k in keys {
            self.check(k)?;
        }
        let sh = &self.shared;
        let mut out: Vec<Option<Arc<Entry>>> = vec![None; keys.len()];
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if sh.l1.is_some() {
                if let Judged::Fresh(e) = sh.l1_judged(k, self.accepted).await {
                    Metrics::inc(&sh.metrics.l1_hits);
                    out[i] = Some(e);
                    continue;
                }
                Metrics::inc(&sh.metrics.l1_misses);
            }
            missing.push(i);
        }
        let Some(l2) = self.l2() else { return Ok(out) };
        if missing.is_empty() {
            return Ok(out);
        }
        let epochs: Vec<u64> = missing
            .iter()
            .map(|&i| sh.l1.as_ref().map_or(0, |l1| l1.epoch(keys[i])))
            .collect();
        let rks: Vec<RedisKeys> = missing.iter().map(|&i| sh.rkeys(keys[i])).collect();
        let found = match l2.mget(&rks).await {
            Ok(f) => f,
            Err(e) => {
                // Redis away and L1 skipped (bus down): L1 is what is left;
                // the call succeeds only if it answers every key.
                let e = sh.l2_err(e);
                if !crate::l2::unreachable(&e) || sh.l1_trusted.load(Ordering::Acquire) {
                    return Err(e);
                }
                for &i in &missing {
                    match sh.l1_fallback(keys[i], self.accepted).await {
                        Judged::Fresh(local) => out[i] = Some(local),
                        _ => return Err(e),
                    }
                }
                return Ok(out);
            }
        };
        for ((&i, bytes), epoch) in missing.iter().zip(found).zip(epochs) {
            out[i] = self.accept_l2(keys[i], bytes, epoch).await;
        }
        Ok(out)
    }

    /// Whether `key` has a fresh value.
    pub async fn has_key(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Store `payload` under `key` (L2, then L1). A zero TTL removes the key.
    pub async fn set(&self, key: &str, payload: Bytes, opts: &WriteOptions) -> Result<()> {
        self.check(key)?;
        if opts.ttl == Ttl::After(Duration::ZERO) {
            self.delete(key).await?;
            return Ok(());
        }
        let sh = &self.shared;
        let l2 = self.l2();
        let tags = sh.stamp(&opts.tags, &[]).await?;
        let entry = Arc::new(sh.build_entry(payload, opts, tags)?);
        let k: Arc<str> = Arc::from(key);
        if let (Some(l2), Some(bus)) = (l2, &sh.bus) {
            let bytes = sh.codec.encode(&entry);
            let msg = bus.keys_message(&[key]);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let tomb_px = sh.tombstone_ttl.as_millis() as u64;
            let mark = sh.versions.local_mark();
            if let Err(e) = l2
                .set(&sh.rkeys(key), &bytes, sh.px_for(&entry), tomb_px, &publish)
                .await
            {
                if let Some(l1) = &sh.l1 {
                    if crate::l2::unreachable(&e) && sh.l1_may_hold(&entry) {
                        // Redis is away: this process keeps the write until
                        // Redis answers again (it is not replayed).
                        l1.put(&k, sh.local_copy(&entry, mark)).await;
                    } else {
                        // L1 must not keep what the fleet does not agree on.
                        l1.remove(key).await;
                    }
                }
                return Err(sh.l2_err(e));
            }
        }
        Metrics::inc(&sh.metrics.writes);
        if let Some(l1) = &sh.l1 {
            if sh.l1_may_hold(&entry) {
                l1.put(&k, entry).await;
            } else {
                l1.remove(key).await;
            }
        }
        Ok(())
    }

    /// Store several entries with the same options; L2 writes are issued
    /// concurrently on the multiplexed connection. Returns the keys that
    /// failed with their errors (empty when all succeeded). Input errors
    /// (bad key, oversized value) fail the whole call before any write.
    pub async fn set_many(
        &self,
        items: &[(&str, Bytes)],
        opts: &WriteOptions,
    ) -> Result<Vec<(String, Error)>> {
        for (k, _) in items {
            self.check(k)?;
        }
        if opts.ttl == Ttl::After(Duration::ZERO) {
            let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
            self.delete_many(&keys).await?;
            return Ok(Vec::new());
        }
        let sh = &self.shared;
        let l2 = self.l2();
        let tags = sh.stamp(&opts.tags, &[]).await?;
        let entries: Vec<Arc<Entry>> = items
            .iter()
            .map(|(_, p)| sh.build_entry(p.clone(), opts, tags.clone()).map(Arc::new))
            .collect::<Result<_>>()?;
        let mut failed = Vec::new();
        let mut ok = vec![true; items.len()];
        // Per item: Redis could not be reached (keep an L1-only copy).
        let mut local = vec![false; items.len()];
        let mark = sh.versions.local_mark();
        if let (Some(l2), Some(bus)) = (l2, &sh.bus) {
            let batch: Vec<_> = items
                .iter()
                .zip(&entries)
                .map(|((k, _), e)| {
                    (
                        sh.rkeys(k),
                        sh.codec.encode(e),
                        sh.px_for(e),
                        bus.keys_message(&[k]),
                    )
                })
                .collect();
            let tomb_px = sh.tombstone_ttl.as_millis() as u64;
            for (i, r) in l2
                .set_many(&batch, tomb_px, &bus.channel)
                .await
                .into_iter()
                .enumerate()
            {
                if let Err(e) = r {
                    ok[i] = false;
                    local[i] = crate::l2::unreachable(&e);
                    failed.push((items[i].0.to_owned(), sh.l2_err(e)));
                }
            }
        }
        for (i, ((k, _), e)) in items.iter().zip(entries).enumerate() {
            if ok[i] {
                Metrics::inc(&sh.metrics.writes);
            }
            let Some(l1) = &sh.l1 else { continue };
            if ok[i] && sh.l1_may_hold(&e) {
                l1.put(&Arc::from(*k), e).await;
            } else if local[i] && sh.l1_may_hold(&e) {
                l1.put(&Arc::from(*k), sh.local_copy(&e, mark)).await;
            } else {
                l1.remove(k).await;
            }
        }
        Ok(failed)
    }

    /// Store only if `key` holds no live value; true when stored.
    pub async fn add(&self, key: &str, payload: Bytes, opts: &WriteOptions) -> Result<bool> {
        self.check(key)?;
        let sh = &self.shared;
        let l2 = self.l2();
        let tags = sh.stamp(&opts.tags, &[]).await?;
        let entry = Arc::new(sh.build_entry(payload, opts, tags)?);
        if entry.meta.stale_until_ms != 0 && !entry.meta.is_live(now_ms()) {
            return Ok(false);
        }
        let k: Arc<str> = Arc::from(key);
        let stored = if let Some(l2) = l2 {
            let bytes = sh.codec.encode(&entry);
            let stored = l2
                .set_nx(&sh.rkeys(key), &bytes, sh.px_for(&entry))
                .await
                .map_err(|e| sh.l2_err(e))?;
            if stored && let Some(l1) = &sh.l1 {
                if sh.l1_may_hold(&entry) {
                    l1.put(&k, entry).await;
                } else {
                    l1.remove(key).await;
                }
            }
            stored
        } else {
            match &sh.l1 {
                Some(l1) => l1.add(&k, entry).await,
                None => false,
            }
        };
        if stored {
            Metrics::inc(&sh.metrics.writes);
        }
        Ok(stored)
    }

    /// Remove `key` everywhere; true when it existed. In Redis a short-lived
    /// tombstone fences loads that began before the delete.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.check(key)?;
        let sh = &self.shared;
        Metrics::inc(&sh.metrics.deletes);
        let l2_result = match (self.l2(), &sh.bus) {
            (Some(l2), Some(bus)) => {
                let msg = bus.keys_message(&[key]);
                let publish = Publish {
                    channel: &bus.channel,
                    msg: &msg,
                };
                Some(
                    l2.delete(
                        &sh.rkeys(key),
                        sh.tombstone_ttl.as_millis() as u64,
                        &publish,
                    )
                    .await
                    .map_err(|e| sh.l2_err(e)),
                )
            }
            _ => None,
        };
        let in_l1 = match &sh.l1 {
            Some(l1) => l1.remove(key).await,
            None => false,
        };
        match l2_result {
            Some(r) => r,
            None => Ok(in_l1),
        }
    }

    /// Remove several keys; returns how many existed.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        for k in keys {
            self.check(k)?;
        }
        let results = futures_util::future::join_all(keys.iter().map(|k| self.delete(k))).await;
        let mut n = 0;
        for r in results {
            n += u64::from(r?);
        }
        Ok(n)
    }

    /// Give a live `key` a new TTL from now (keeping its grace length);
    /// false when there is no live value.
    pub async fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        self.check(key)?;
        let sh = &self.shared;
        let retime = |e: &Entry| -> Entry {
            let grace = if e.meta.fresh_until_ms != 0 && e.meta.stale_until_ms != 0 {
                Duration::from_millis(e.meta.stale_until_ms.saturating_sub(e.meta.fresh_until_ms))
            } else {
                Duration::ZERO
            };
            let opts = WriteOptions {
                ttl,
                grace,
                format: e.meta.format,
                load_duration: Some(Duration::from_micros(u64::from(e.meta.load_us))),
                ..Default::default()
            };
            // build_entry only fails on size/format, which `e` already passed.
            let mut fresh = sh
                .build_entry(e.payload.clone(), &opts, e.meta.tags.clone())
                .unwrap_or_else(|_| e.clone());
            fresh.meta.created_at_ms = e.meta.created_at_ms;
            fresh
        };
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            return Ok(match &sh.l1 {
                Some(l1) => l1.update(key, retime).await,
                None => false,
            });
        };
        let rk = sh.rkeys(key);
        // Compare-and-set so a concurrent write is never overwritten with
        // the older value; a few rounds settle any realistic contention.
        for _ in 0..4 {
            let Some(old) = l2.get(&rk).await.map_err(|e| sh.l2_err(e))? else {
                return Ok(false);
            };
            let Some(entry) = sh.decode(&old) else {
                return Ok(false);
            };
            if entry.meta.format == Format::INT {
                let px = match ttl {
                    Ttl::Never => None,
                    Ttl::Default => sh.default_ttl.map(|d| d.as_millis() as u64),
                    Ttl::After(d) => Some(d.as_millis() as u64),
                };
                return l2.expire(&rk, px).await.map_err(|e| sh.l2_err(e));
            }
            let new = Arc::new(retime(&entry));
            let bytes = sh.codec.encode(&new);
            if l2
                .compare_and_set(
                    &rk,
                    &old,
                    &bytes,
                    sh.px_for(&new),
                    &Publish {
                        channel: &bus.channel,
                        msg: &bus.keys_message(&[key]),
                    },
                )
                .await
                .map_err(|e| sh.l2_err(e))?
            {
                if let Some(l1) = &sh.l1 {
                    l1.put(&Arc::from(key), new).await;
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Add `delta` to the integer at `key` atomically (across processes
    /// with Redis) and return the new value. The TTL is kept.
    ///
    /// Errors: [`Error::NotFound`] when the key is missing,
    /// [`Error::NotAnInteger`] when it holds something else or the result
    /// overflows `i64`.
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.check(key)?;
        let sh = &self.shared;
        if let Some(l2) = &sh.l2 {
            let r = l2
                .incr(&sh.rkeys(key), delta)
                .await
                .map_err(|e| sh.l2_err(e))?;
            if let Some(l1) = &sh.l1 {
                l1.remove(key).await;
            }
            return match r {
                IncrOutcome::Value(n) => Ok(n),
                IncrOutcome::Missing => Err(Error::NotFound),
                IncrOutcome::NotInteger => Err(Error::NotAnInteger),
            };
        }
        match &sh.l1 {
            Some(l1) => match l1.incr(key, delta).await {
                L1Incr::Value(n) => Ok(n),
                L1Incr::Missing => Err(Error::NotFound),
                L1Incr::NotInteger => Err(Error::NotAnInteger),
            },
            None => Err(Error::NotFound),
        }
    }

    /// Subtract `delta`; see [`Cache::incr`].
    pub async fn decr(&self, key: &str, delta: i64) -> Result<i64> {
        let neg = delta.checked_neg().ok_or(Error::NotAnInteger)?;
        self.incr(key, neg).await
    }

    /// Remove every entry of this namespace (L1, and in Redis by `SCAN` of
    /// this namespace's keys only: never `FLUSHDB`).
    pub async fn clear(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let sh = &self.shared;
        let r = match (self.l2(), &sh.bus) {
            (Some(l2), Some(bus)) => {
                // A new generation first: from this moment every entry of
                // the namespace is gone for every instance (the bus tells
                // them; an instance that missed it re-reads the generation
                // after its reconnect). Then the scan frees the memory.
                let g = new_version();
                let msg = bus.generation_message(g);
                let publish = Publish {
                    channel: &bus.channel,
                    msg: &msg,
                };
                match l2
                    .bump_version(&generation_key(&sh.namespace), g, &publish)
                    .await
                {
                    Ok(()) => {
                        sh.versions.set_generation(g);
                        l2.clear(&sh.namespace, &namespace_pattern(&sh.namespace))
                            .await
                            .map(|_| ())
                            .map_err(|e| sh.l2_err(e))
                    }
                    Err(e) => Err(sh.l2_err(e)),
                }
            }
            _ => Ok(()),
        };
        if let Some(l1) = &sh.l1 {
            l1.clear();
        }
        r
    }

    /// Invalidate every entry carrying any of `tags`, in every instance:
    /// one `SET` per tag in Redis (a new random version, announced on the
    /// bus), no matter how many entries carry it. Those entries become
    /// stale: servable as stale values within their grace (by callers that
    /// accept stale values, or as a fail-safe fallback), otherwise reloaded.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        for t in tags {
            validate_tag(t)?;
        }
        let sh = &self.shared;
        Metrics::add(&sh.metrics.tag_invalidations, tags.len() as u64);
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            for t in tags {
                sh.versions.set_tag(t, new_version());
            }
            return Ok(());
        };
        let bumps = tags.iter().map(|t| async move {
            let v = new_version();
            let msg = bus.tags_message(&[(t, v)]);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let r = l2
                .bump_version(&tag_key(&sh.namespace, t), v, &publish)
                .await;
            // Locally at once, whatever Redis said: never serve what the
            // caller just invalidated.
            sh.versions.set_tag(t, v);
            r
        });
        for r in futures_util::future::join_all(bumps).await {
            r.map_err(|e| sh.l2_err(e))?;
        }
        Ok(())
    }

    /// Read-through lookup: the core of `get_or_set`.
    ///
    /// Concurrent lookups of one key in one process yield exactly one
    /// [`Lookup::Lead`] (or one `Stale` with a lease); the others wait inside
    /// this call, without polling, and receive the completed value, or the
    /// error the leader abandoned with. With Redis, the leader of this
    /// process takes the key's fleet lease first: if another process holds
    /// it, the leader waits for that process's fill (woken by the bus) and
    /// takes over if the holder goes away. A leader that goes away before it
    /// holds a lease hands leadership to a waiter; a dropped lease releases
    /// the waiters with [`Error::LeaseDropped`].
    ///
    /// Waiting on another process's lease and waiting on this process's load
    /// are each bounded by the wait timeout (then [`OnWaitTimeout`]
    /// applies); the policy's hard timeout bounds the whole call.
    ///
    /// Redis trouble during a lookup is counted and treated as a miss: the
    /// caller loads, which is what a read-through cache is for.
    pub async fn lookup(&self, key: &str, policy: &LookupPolicy) -> Result<Lookup> {
        self.lookup_inner(key, policy, None).await
    }

    /// [`Cache::lookup`] for a caller that tried the Redis read itself
    /// first ([`Prior`]): same answers, the same single flight, and each
    /// read and miss counted once. (A binding takes this path only for
    /// policies without early refresh: `start_read` serves an L1 hit
    /// without asking whether it is due.)
    pub async fn lookup_after(
        &self,
        key: &str,
        policy: &LookupPolicy,
        prior: Prior,
    ) -> Result<Lookup> {
        self.lookup_inner(key, policy, Some(prior)).await
    }

    async fn lookup_inner(
        &self,
        key: &str,
        policy: &LookupPolicy,
        mut prior: Option<Prior>,
    ) -> Result<Lookup> {
        self.check(key)?;
        for t in &policy.tags {
            validate_tag(t)?;
        }
        let sh = &self.shared;
        let start = tokio::time::Instant::now();
        'outer: loop {
            let mut stale = None;
            // The caller's L1 miss was counted by `start_read` (first pass
            // only: a retried pass is a lookup of its own).
            let counted = prior.is_some();
            if sh.l1.is_some() {
                match sh.l1_judged(key, self.accepted).await {
                    Judged::Fresh(e) => {
                        if !counted {
                            Metrics::inc(&sh.metrics.l1_hits);
                        }
                        // Due for an early refresh: one caller (whoever
                        // finds no load in progress) tries to refresh in the
                        // background; everyone is served the value.
                        if policy.due(&e.meta, now_ms())
                            && let Some(guard) = flight::try_lead(sh, key)
                        {
                            return Ok(self.refresh_early(guard, e, policy).await);
                        }
                        return Ok(Lookup::Fresh(e));
                    }
                    Judged::Stale(e) if policy.keeps_stale() => stale = Some(e),
                    _ => {}
                }
                if !counted {
                    Metrics::inc(&sh.metrics.l1_misses);
                }
            }
            let read = match prior.take() {
                Some(Prior::Read { bytes, epoch }) => Some((bytes, epoch)),
                _ => None,
            };
            let mut rx = match flight::join(sh, key) {
                Joined::Leader(guard) => return self.lead(guard, stale, policy, start, read).await,
                Joined::Waiter(rx) => rx,
            };
            if policy.allow_stale
                && let Some(s) = stale
            {
                Metrics::inc(&sh.metrics.stale_served);
                return Ok(Lookup::Stale(s, None));
            }
            Metrics::inc(&sh.metrics.coalesced_waits);
            let wait = policy.wait_timeout.unwrap_or(self.wait_timeout);
            let hard = policy.hard_timeout.map(|h| start + h);
            let mut deadline = start + wait;
            let mut loading_seen = false;
            let mut redis_read = false;
            let mut closed = false;
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    FlightState::Pending => {}
                    FlightState::Refreshing if !redis_read => {
                        redis_read = true;
                        if let Some(e) = self.read_beside_refresh(key).await {
                            return Ok(Lookup::Fresh(e));
                        }
                        continue;
                    }
                    FlightState::Loading | FlightState::Refreshing => {
                        if !loading_seen {
                            // The wait for the fleet is over; the load
                            // itself gets a wait budget of its own.
                            loading_seen = true;
                            Metrics::inc(&sh.metrics.load_waits);
                            deadline = tokio::time::Instant::now() + wait;
                        }
                    }
                    FlightState::Stale(e, kind) => {
                        if policy.allow_stale || (kind == StaleKind::FailSafe && policy.fail_safe) {
                            Metrics::inc(&sh.metrics.stale_served);
                            if kind == StaleKind::FailSafe {
                                Metrics::inc(&sh.metrics.fail_safe_served);
                            }
                            return Ok(Lookup::Stale(e, None));
                        }
                    }
                    FlightState::Value(e) => return Ok(Lookup::Fresh(e)),
                    FlightState::Failed(e) => return Err(e),
                    FlightState::Retry => continue 'outer,
                }
                if closed {
                    // The flight is gone without an answer for us.
                    continue 'outer;
                }
                let until = hard.map_or(deadline, |h| h.min(deadline));
                tokio::select! {
                    r = rx.changed() => closed = r.is_err(),
                    _ = tokio::time::sleep_until(until) => {
                        return self.waited_too_long(key, stale, policy, hard).await;
                    }
                }
            }
        }
    }

    /// Redis's fresh value of `key`, for a caller that found the key's
    /// flight refreshing early: the entry that was being refreshed left L1
    /// meanwhile, and waiting for the refresh would make every such caller
    /// wait for a load while a newer value is in Redis. `None`: nothing
    /// fresh there (or Redis failed): wait for the refresh.
    async fn read_beside_refresh(&self, key: &str) -> Option<Arc<Entry>> {
        let sh = &self.shared;
        let l2 = self.l2()?;
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
        match l2.get(&sh.rkeys(key)).await {
            Ok(bytes) => self.accept_l2(key, bytes, epoch).await,
            Err(e) => {
                sh.l2_err(e);
                None
            }
        }
    }

    /// A wait for someone else's load ran out of time: the hard timeout
    /// (fail-safe stale value or [`Error::LoaderTimeout`]) or the wait
    /// timeout ([`OnWaitTimeout`]).
    async fn waited_too_long(
        &self,
        key: &str,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        hard: Option<tokio::time::Instant>,
    ) -> Result<Lookup> {
        let sh = &self.shared;
        if hard.is_some_and(|h| tokio::time::Instant::now() >= h) {
            Metrics::inc(&sh.metrics.hard_timeouts);
            return self.hard_timeout_answer(stale, policy);
        }
        Metrics::inc(&sh.metrics.wait_timeouts);
        match policy.on_wait_timeout {
            OnWaitTimeout::Fail => Err(Error::WaitTimeout(
                policy.wait_timeout.unwrap_or(self.wait_timeout),
            )),
            OnWaitTimeout::Load => {
                let guard = flight::detached(sh, key);
                let (rk, fence) = match &sh.l2 {
                    Some(_) => {
                        let rk = sh.rkeys(key);
                        let fence = self.fence(&rk).await;
                        (Some(rk), fence)
                    }
                    None => (None, None),
                };
                let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
                let snapshot = sh.stamp(&policy.tags, &[]).await?;
                Ok(Lookup::Lead(Lease::new(
                    guard,
                    rk,
                    fence,
                    epoch,
                    None,
                    Terms::of(policy, stale, snapshot),
                )))
            }
        }
    }

    fn hard_timeout_answer(
        &self,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
    ) -> Result<Lookup> {
        match stale {
            Some(s) if policy.fail_safe && s.meta.is_live(now_ms()) => {
                Metrics::inc(&self.shared.metrics.fail_safe_served);
                Metrics::inc(&self.shared.metrics.stale_served);
                Ok(Lookup::Stale(s, None))
            }
            _ => Err(Error::LoaderTimeout(
                policy.hard_timeout.unwrap_or_default(),
            )),
        }
    }

    /// Hand out a lease for a flight this caller leads: `Stale` with the
    /// lease when stale values are allowed and one exists, else `Lead`.
    // The arguments are the lease's parts, passed straight to `Lease::new`.
    #[allow(clippy::too_many_arguments)]
    fn leased(
        &self,
        guard: flight::FlightGuard,
        rk: Option<RedisKeys>,
        fence: Option<Vec<u8>>,
        epoch: u64,
        fleet: Option<FleetLease>,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        snapshot: Vec<(String, u64)>,
    ) -> Lookup {
        let sh = &self.shared;
        match stale {
            Some(s) if policy.allow_stale => {
                guard.offer_stale(s.clone(), StaleKind::Swr);
                Metrics::inc(&sh.metrics.stale_served);
                let fallback = Terms::of(policy, Some(s.clone()), snapshot);
                Lookup::Stale(
                    s,
                    Some(Lease::new(guard, rk, fence, epoch, fleet, fallback)),
                )
            }
            stale => Lookup::Lead(Lease::new(
                guard,
                rk,
                fence,
                epoch,
                fleet,
                Terms::of(policy, stale, snapshot),
            )),
        }
    }

    fn new_token() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Lead `key`'s flight: read Redis (unless `read`, the caller's own
    /// `GET` reply and `start_read` epoch, stands for that read), then
    /// take the fleet's lease or hand out a local one.
    async fn lead(
        &self,
        mut guard: flight::FlightGuard,
        mut stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        start: tokio::time::Instant,
        read: Option<(Option<Vec<u8>>, u64)>,
    ) -> Result<Lookup> {
        let sh = &self.shared;
        let key = guard.key.clone();
        // With the caller's read: its epoch, taken before that read (an
        // older epoch only makes the fill more cautious).
        let given = read.is_some();
        let mut epoch = match &read {
            Some((_, e)) => *e,
            None => sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key)),
        };
        // A flight that finished between our L1 miss and joining left its
        // value in L1: take it rather than loading again.
        if let Judged::Fresh(e) = sh.l1_judged(&key, self.accepted).await {
            if !given {
                Metrics::inc(&sh.metrics.l1_hits);
            }
            guard.resolve(FlightState::Value(e.clone()));
            return Ok(Lookup::Fresh(e));
        }
        // The versions the loaded value will record, taken before the load
        // starts: an invalidation during the load makes its result stale.
        let snapshot = sh.stamp(&policy.tags, &[]).await?;
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            return Ok(self.leased(guard, None, None, epoch, None, stale, policy, snapshot));
        };
        let rk = sh.rkeys(&key);
        let keep_stale = policy.keeps_stale();
        // The bytes last judged not fresh: the lease script returns the
        // value again, and the same bytes need no second decode (nor a
        // second count as garbage).
        let mut seen: Option<Vec<u8>>;
        let got = match read {
            Some((bytes, _)) => Ok(bytes),
            None => l2.get(&rk).await,
        };
        match got {
            Ok(bytes) => {
                seen = bytes.clone();
                // The caller's read was decoded, judged and counted by
                // `finish_read`: judged again here (time and versions only
                // move one way), counted once.
                let judged = match bytes.and_then(|b| sh.decode_counted(&b, !given)) {
                    Some(e) => sh.judge_counted(Arc::new(e), !given, self.accepted).await,
                    None => Judged::Miss,
                };
                match judged {
                    Judged::Fresh(e) => {
                        if !given {
                            Metrics::inc(&sh.metrics.l2_hits);
                        }
                        if let Some(l1) = &sh.l1
                            && sh.l1_may_hold(&e)
                        {
                            l1.fill(&key, e.clone(), epoch).await;
                        }
                        guard.resolve(FlightState::Value(e.clone()));
                        return Ok(Lookup::Fresh(e));
                    }
                    Judged::Stale(e) if keep_stale => {
                        if !given {
                            Metrics::inc(&sh.metrics.l2_misses);
                        }
                        stale = Some(e);
                    }
                    _ if given => {}
                    _ => Metrics::inc(&sh.metrics.l2_misses),
                }
            }
            Err(e) => {
                // Redis trouble: L1's copy if the bus outage made us skip it,
                // else load without touching L2 (no fence).
                Metrics::inc(&sh.metrics.l2_errors);
                if crate::l2::unreachable(&e) {
                    match sh.l1_fallback(&key, self.accepted).await {
                        Judged::Fresh(local) => {
                            guard.resolve(FlightState::Value(local.clone()));
                            return Ok(Lookup::Fresh(local));
                        }
                        Judged::Stale(local) if keep_stale => stale = Some(local),
                        _ => {}
                    }
                }
                return Ok(self.leased(
                    guard,
                    None,
                    None,
                    epoch,
                    None,
                    stale,
                    policy,
                    snapshot.clone(),
                ));
            }
        }
        if !sh.fleet_lease {
            let fence = self.fence(&rk).await;
            return Ok(self.leased(
                guard,
                Some(rk),
                fence,
                epoch,
                None,
                stale,
                policy,
                snapshot.clone(),
            ));
        }

        let wait = policy.wait_timeout.unwrap_or(self.wait_timeout);
        let deadline = start + wait;
        let hard = policy.hard_timeout.map(|h| start + h);
        let lease_px = sh.lease_ttl.as_millis() as u64;
        let mut waited = false;
        loop {
            // Register for the wake-up before looking, so a fill published
            // between the look and the wait is not missed.
            let handle = bus.register(&key);
            let notified = handle.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key));
            let token = Self::new_token();
            let acquired = l2.acquire(&rk, &token, lease_px).await;
            let (pttl_ms, value) = match acquired {
                Ok(Acquire::Taken { value, fence }) => {
                    let value = if value == seen { None } else { value };
                    if let Some(e) = sh.fresh(value.clone(), self.accepted).await {
                        // Filled between our miss and the lease.
                        lease::spawn_release(sh, &rk, &key, token);
                        if waited {
                            Metrics::inc(&sh.metrics.lease_fills_received);
                        }
                        return Ok(self.filled(guard, &key, e, epoch).await);
                    }
                    if waited {
                        Metrics::inc(&sh.metrics.lease_takeovers);
                    }
                    if keep_stale && let Some(e) = sh.stale(value, self.accepted).await {
                        stale = Some(e);
                    }
                    let fleet = FleetLease::hold(sh, &rk, token);
                    return Ok(self.leased(
                        guard,
                        Some(rk),
                        Some(fence),
                        epoch,
                        Some(fleet),
                        stale,
                        policy,
                        snapshot.clone(),
                    ));
                }
                Ok(Acquire::Held { pttl_ms, value }) => {
                    if value == seen {
                        (pttl_ms, None)
                    } else {
                        seen = value.clone();
                        (pttl_ms, value)
                    }
                }
                Err(_) => {
                    Metrics::inc(&sh.metrics.l2_errors);
                    let fence = self.fence(&rk).await;
                    return Ok(self.leased(
                        guard,
                        Some(rk),
                        fence,
                        epoch,
                        None,
                        stale,
                        policy,
                        snapshot.clone(),
                    ));
                }
            };
            // Another process is loading.
            if let Some(e) = sh.fresh(value.clone(), self.accepted).await {
                if waited {
                    Metrics::inc(&sh.metrics.lease_fills_received);
                }
                return Ok(self.filled(guard, &key, e, epoch).await);
            }
            if keep_stale && let Some(e) = sh.stale(value, self.accepted).await {
                stale = Some(e);
            }
            if policy.allow_stale
                && let Some(s) = stale
            {
                // Stale-while-revalidate: the holder is refreshing it.
                Metrics::inc(&sh.metrics.stale_served);
                guard.resolve(FlightState::Stale(s.clone(), StaleKind::Swr));
                return Ok(Lookup::Stale(s, None));
            }
            if !waited {
                waited = true;
                Metrics::inc(&sh.metrics.lease_waits);
            }
            let now = tokio::time::Instant::now();
            let soft = policy
                .soft_timeout
                .filter(|_| policy.fail_safe && stale.is_some())
                .map(|d| start + d);
            if hard.is_some_and(|h| now >= h) {
                Metrics::inc(&sh.metrics.hard_timeouts);
                let r = self.hard_timeout_answer(stale, policy);
                match &r {
                    Ok(Lookup::Stale(s, _)) => {
                        guard.resolve(FlightState::Stale(s.clone(), StaleKind::FailSafe))
                    }
                    Err(e) => guard.resolve(FlightState::Failed(e.clone())),
                    _ => {}
                }
                return r;
            }
            if let (Some(s), Some(at)) = (&stale, soft)
                && now >= at
            {
                Metrics::inc(&sh.metrics.soft_timeouts);
                Metrics::inc(&sh.metrics.fail_safe_served);
                Metrics::inc(&sh.metrics.stale_served);
                guard.resolve(FlightState::Stale(s.clone(), StaleKind::FailSafe));
                return Ok(Lookup::Stale(s.clone(), None));
            }
            if now >= deadline {
                Metrics::inc(&sh.metrics.wait_timeouts);
                return match policy.on_wait_timeout {
                    OnWaitTimeout::Fail => {
                        let e = Error::WaitTimeout(wait);
                        guard.resolve(FlightState::Failed(e.clone()));
                        Err(e)
                    }
                    OnWaitTimeout::Load => {
                        let fence = self.fence(&rk).await;
                        Ok(self.leased(
                            guard,
                            Some(rk),
                            fence,
                            epoch,
                            None,
                            stale,
                            policy,
                            snapshot.clone(),
                        ))
                    }
                };
            }
            // Sleep until the fill's notification, or the holder's lease
            // expires (it crashed: take over), or a deadline. Only while
            // the bus is down is there a short re-check interval.
            let mut next = now + Duration::from_millis(pttl_ms.saturating_add(2));
            for d in [Some(deadline), hard, soft].into_iter().flatten() {
                next = next.min(d);
            }
            if !bus.is_connected() {
                next = next.min(now + Duration::from_millis(50));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Another process filled `key`: keep its value in L1 and answer.
    async fn filled(
        &self,
        mut guard: flight::FlightGuard,
        key: &Arc<str>,
        e: Arc<Entry>,
        epoch: u64,
    ) -> Lookup {
        let sh = &self.shared;
        Metrics::inc(&sh.metrics.l2_hits);
        if let Some(l1) = &sh.l1
            && sh.l1_may_hold(&e)
        {
            l1.fill(key, e.clone(), epoch).await;
        }
        guard.resolve(FlightState::Value(e.clone()));
        Lookup::Fresh(e)
    }

    /// A fresh L1 hit `e` is due for an early refresh and this caller leads
    /// the key's flight: take the fleet lease without waiting. If another
    /// process refreshed it already, take that value; if one is refreshing
    /// it, serve `e`.
    async fn refresh_early(
        &self,
        mut guard: flight::FlightGuard,
        e: Arc<Entry>,
        policy: &LookupPolicy,
    ) -> Lookup {
        let sh = &self.shared;
        guard.refreshing();
        let key = guard.key.clone();
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key));
        let snapshot = match sh.stamp(&policy.tags, &[]).await {
            Ok(s) => s,
            Err(_) => {
                // Tag names were checked by `lookup`; nothing to refresh.
                guard.resolve(FlightState::Value(e.clone()));
                return Lookup::Fresh(e);
            }
        };
        let fallback = Terms::of(policy, Some(e.clone()), snapshot);
        let (Some(l2), true) = (self.l2(), sh.fleet_lease) else {
            let rk = sh.l2.as_ref().map(|_| sh.rkeys(&key));
            let fence = match &rk {
                Some(rk) => self.fence(rk).await,
                None => None,
            };
            Metrics::inc(&sh.metrics.early_refreshes);
            return Lookup::Stale(e, Some(Lease::new(guard, rk, fence, epoch, None, fallback)));
        };
        let rk = sh.rkeys(&key);
        let token = Self::new_token();
        let newer = async |v: Option<Vec<u8>>| {
            sh.fresh(v, self.accepted)
                .await
                .filter(|n| n.meta.created_at_ms > e.meta.created_at_ms)
        };
        match l2
            .acquire(&rk, &token, sh.lease_ttl.as_millis() as u64)
            .await
        {
            Ok(Acquire::Taken { value, fence }) => {
                if let Some(n) = newer(value).await {
                    lease::spawn_release(sh, &rk, &key, token);
                    return self.filled(guard, &key, n, epoch).await;
                }
                Metrics::inc(&sh.metrics.early_refreshes);
                let fleet = FleetLease::hold(sh, &rk, token);
                Lookup::Stale(
                    e,
                    Some(Lease::new(
                        guard,
                        Some(rk),
                        Some(fence),
                        epoch,
                        Some(fleet),
                        fallback,
                    )),
                )
            }
            Ok(Acquire::Held { value, .. }) => match newer(value).await {
                Some(n) => self.filled(guard, &key, n, epoch).await,
                None => {
                    guard.resolve(FlightState::Value(e.clone()));
                    Lookup::Fresh(e)
                }
            },
            Err(_) => {
                Metrics::inc(&sh.metrics.l2_errors);
                guard.resolve(FlightState::Value(e.clone()));
                Lookup::Fresh(e)
            }
        }
    }

    /// A lease to load `key` ahead of traffic, without waiting: `None` when
    /// it has a fresh value (unless `force`) or is being loaded already, in
    /// this process or (through the fleet lease) in another one. Used by
    /// `warm`: complete the leases with the loaded values.
    pub async fn try_lease(&self, key: &str, force: bool) -> Result<Option<Lease>> {
        Ok(self.try_lease_inner(key, force).await?.map(Lease::warming))
    }

    async fn try_lease_inner(&self, key: &str, force: bool) -> Result<Option<Lease>> {
        self.check(key)?;
        let sh = &self.shared;
        if !force && let Judged::Fresh(_) = sh.l1_judged(key, self.accepted).await {
            return Ok(None);
        }
        let Some(mut guard) = flight::try_lead(sh, key) else {
            return Ok(None);
        };
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
        let policy = LookupPolicy::default();
        let snapshot = sh.stamp(&[], &[]).await?;
        let Some(l2) = self.l2() else {
            return Ok(Some(Lease::new(
                guard,
                None,
                None,
                epoch,
                None,
                Terms::of(&policy, None, snapshot.clone()),
            )));
        };
        let rk = sh.rkeys(key);
        let k = guard.key.clone();
        if !sh.fleet_lease {
            if !force
                && let Ok(v) = l2.get(&rk).await
                && let Some(e) = sh.fresh(v, self.accepted).await
            {
                self.filled(guard, &k, e, epoch).await;
                return Ok(None);
            }
            let fence = self.fence(&rk).await;
            return Ok(Some(Lease::new(
                guard,
                Some(rk),
                fence,
                epoch,
                None,
                Terms::of(&policy, None, snapshot.clone()),
            )));
        }
        let token = Self::new_token();
        match l2
            .acquire(&rk, &token, sh.lease_ttl.as_millis() as u64)
            .await
        {
            Ok(Acquire::Taken { value, fence }) => {
                if !force && let Some(e) = sh.fresh(value, self.accepted).await {
                    lease::spawn_release(sh, &rk, &k, token);
                    self.filled(guard, &k, e, epoch).await;
                    return Ok(None);
                }
                let fleet = FleetLease::hold(sh, &rk, token);
                Ok(Some(Lease::new(
                    guard,
                    Some(rk),
                    Some(fence),
                    epoch,
                    Some(fleet),
                    Terms::of(&policy, None, snapshot.clone()),
                )))
            }
            Ok(Acquire::Held { .. }) => {
                guard.resolve(FlightState::Retry);
                Ok(None)
            }
            Err(e) => {
                guard.resolve(FlightState::Retry);
                Err(sh.l2_err(e))
            }
        }
    }

    /// [`Cache::try_lease`] for several keys at once (concurrently, so the
    /// Redis round trips are pipelined): the leases of the keys to load.
    pub async fn try_leases(&self, keys: &[&str], force: bool) -> Result<Vec<Lease>> {
        let found =
            futures_util::future::join_all(keys.iter().map(|k| self.try_lease(k, force))).await;
        let mut out = Vec::new();
        for r in found {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Complete several leases (from [`Cache::try_lease`]) concurrently, the
    /// L2 writes pipelined on the multiplexed connection. Returns how many
    /// were completed.
    pub async fn complete_many(
        &self,
        items: Vec<(Lease, Bytes)>,
        opts: &WriteOptions,
    ) -> Result<usize> {
        let results = futures_util::future::join_all(
            items
                .into_iter()
                .map(|(lease, payload)| lease.complete(payload, opts)),
        )
        .await;
        let mut n = 0;
        for r in results {
            r?;
            n += 1;
        }
        Ok(n)
    }

    /// The tombstone token a load must present when it completes; `None`
    /// (counted) when Redis cannot be read: the load then skips L2.
    async fn fence(&self, rk: &RedisKeys) -> Option<Vec<u8>> {
        let l2 = self.shared.l2.as_ref()?;
        match l2.fence(rk).await {
            Ok(f) => Some(f),
            Err(_) => {
                Metrics::inc(&self.shared.metrics.l2_errors);
                None
            }
        }
    }

    /// Bytes [`Cache::memoize`] can still take now (0 without L1 or a memo
    /// budget): a binding skips preparing a memo that cannot fit.
    #[inline]
    pub fn memo_room(&self) -> u64 {
        self.shared.memo.room()
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

    /// Counters and L1 size.
    pub async fn stats(&self) -> Stats {
        let sh = &self.shared;
        let (l1_entries, l1_bytes) = match &sh.l1 {
            Some(l1) => l1.size().await,
            None => (0, 0),
        };
        sh.metrics.snapshot(crate::metrics::Gauges {
            l1_entries,
            l1_bytes,
            l1_memo_bytes: sh.memo.used(),
            breaker_open: sh.l2.as_ref().is_some_and(L2::breaker_open),
            bus_connected: sh.bus.as_ref().is_some_and(Bus::is_connected),
        })
    }

    /// Prometheus text exposition of [`Cache::stats`].
    pub async fn metrics_text(&self) -> String {
        self.stats().await.to_prometheus(&self.shared.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
