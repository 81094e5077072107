//! The engine: the state every handle on one (Redis location, namespace)
//! shares ([`Shared`]: L1, L2, bus, versions, flights, metrics, codec),
//! and the rules every operation applies through it: how an entry is built
//! and stamped with versions, whether an entry may be served (judged
//! against the current tag and generation versions and the handle's
//! formats), and what L1 keeps after an L2 write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::bus::{Bus, BusEvent, Listener};
use crate::clock::now_ms;
use crate::config::Config;
use crate::envelope::{Codec, Entry, Format, Meta};
use crate::envelope::{GENERATION_TAG, LOCAL_TAG};
use crate::error::{Error, Result};
use crate::flight::FlightMap;
use crate::key::{
    KEY_DEP_PREFIX, RedisKeys, generation_key, key_dep_name, redis_keys, validate_tag, version_key,
};
use crate::l1::L1;
use crate::l2::{L2, Publish};
use crate::memo::MemoBudget;
use crate::metrics::Metrics;
use crate::options::{Ttl, WriteOptions};
use crate::versions::{Validity, Versions, new_version};

/// State shared by every handle on the same (Redis location, namespace):
/// one L1, one set of flights, one metrics set, one L2 client.
pub(crate) struct Shared {
    pub(crate) namespace: String,
    /// Which versions this state's entries record: the Redis location and
    /// namespace (every handle on them shares versions through Redis), or
    /// this state alone without Redis. Dependencies collected from another
    /// scope are not this one's (see `deps`).
    pub(crate) scope: Arc<str>,
    pub(crate) l1: Option<L1>,
    pub(crate) memo: MemoBudget,
    pub(crate) l2: Option<L2>,
    pub(crate) bus: Option<Bus>,
    pub(crate) versions: Versions,
    /// False while the bus subscription is interrupted: L1 copies may have
    /// missed invalidations, so L1 is not served until it is back (and
    /// cleared). See [`Shared::l1_trusted`].
    pub(crate) l1_unbroken: AtomicBool,
    /// False until the known generation has been made sure of in Redis
    /// since the bus's first subscription (see `Listener::connected`).
    pub(crate) generation_confirmed: AtomicBool,
    pub(crate) lease_ttl: Duration,
    pub(crate) fleet_lease: bool,
    pub(crate) track_dependencies: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) flights: Arc<FlightMap>,
    pub(crate) codec: Codec,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_value_bytes: usize,
    pub(crate) tombstone_ttl: Duration,
    pub(crate) ttl_jitter: f64,
    /// Where invalidated tags are purged (`Config::edge_purge`).
    pub(crate) purger: Option<crate::purge::Purger>,
}

/// What an L2 write did, for the L1 write after it
/// ([`Shared::after_l2_write`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wrote {
    /// Redis took it, or there is no Redis.
    Stored,
    /// Redis refused it (a delete since the load began).
    Refused,
    /// Redis could not be reached (or did not answer in time).
    Unreachable,
    /// Redis answered with an error.
    Failed,
}

impl Wrote {
    /// The outcome of an L2 write that returned `r`.
    pub(crate) fn of<T>(r: &Result<T>) -> Wrote {
        match r {
            Ok(_) => Wrote::Stored,
            Err(e) if crate::l2::unreachable(e) => Wrote::Unreachable,
            Err(_) => Wrote::Failed,
        }
    }
}

/// The formats a handle reads (see `Config::accepted_formats`): bit `f`
/// set for format `f`; `None`: every format. A property of the handle, not
/// of the L1 it shares: handles with different serializers share entries.
pub(crate) type Accepted = Option<[u64; 4]>;

pub(crate) fn accepted_of(formats: Option<&Vec<u8>>) -> Accepted {
    formats.map(|fs| {
        let mut bits = [0u64; 4];
        for &f in fs {
            bits[usize::from(f / 64)] |= 1 << (f % 64);
        }
        bits
    })
}

/// Whether a handle accepting `acc` can read `e`'s format.
#[inline]
pub(crate) fn readable(acc: Accepted, e: &Entry) -> bool {
    let f = e.meta.format.0;
    acc.is_none_or(|bits| bits[usize::from(f / 64)] & (1 << (f % 64)) != 0)
}

/// How long a key dependency's version record lives in Redis after it was
/// last read (a write of the key deletes it sooner). Processes keep a
/// version at most `KEY_DEP_LOCAL_MS`, so the record outlives every copy;
/// one nobody reads for a day goes away (the next load depending on the
/// key creates a new one, which every instance adopts). Without it, every
/// key ever read by a loader and never written again would keep a record
/// forever.
pub(crate) const KEY_DEP_VERSION_TTL_MS: u64 = 24 * 60 * 60 * 1000;
const _: () = assert!(crate::versions::KEY_DEP_LOCAL_MS * 2 < KEY_DEP_VERSION_TTL_MS);

pub(crate) type Registry = Mutex<HashMap<String, Weak<Shared>>>;

pub(crate) fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Shared {
    pub(crate) fn new(cfg: &Config) -> Self {
        let metrics = Arc::new(Metrics::default());
        let versions = Versions::default();
        static LOCAL_SCOPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let scope: Arc<str> = match &cfg.redis {
            // Seeds in any order name the same Cluster.
            Some(loc) => format!("{}\0{}", loc.identity(), cfg.namespace).into(),
            None => format!(
                "local:{}\0{}",
                LOCAL_SCOPES.fetch_add(1, Ordering::Relaxed),
                cfg.namespace
            )
            .into(),
        };
        let purger = (!cfg.edge_purge.is_empty())
            .then(|| crate::purge::Purger::new(&cfg.namespace, &cfg.edge_purge, metrics.clone()));
        Shared {
            purger,
            namespace: cfg.namespace.clone(),
            scope,
            l1: cfg.l1_enabled.then(|| {
                L1::new(
                    cfg.l1_max_bytes.saturating_sub(cfg.l1_memo_bytes),
                    metrics.clone(),
                    versions.watchers().clone(),
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
                .map(|loc| Bus::new(&cfg.namespace, loc, cfg.connect_timeout, metrics.clone())),
            versions,
            l1_unbroken: AtomicBool::new(true),
            generation_confirmed: AtomicBool::new(false),
            lease_ttl: cfg.lease_ttl,
            fleet_lease: cfg.fleet_lease,
            track_dependencies: cfg.track_dependencies,
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

    pub(crate) fn rkeys(&self, key: &str) -> RedisKeys {
        redis_keys(&self.namespace, key)
    }

    /// Without Redis: whether an entry of this process depended on `key`
    /// (it holds the key's dependency version). With Redis the write
    /// scripts say it, for the whole fleet.
    pub(crate) fn depended_here(&self, key: &str) -> bool {
        self.purger.is_some()
            && self.versions.uses_key_deps()
            && self.versions.tag(&key_dep_name(key)).is_some()
    }

    /// `key` was changed by this process and an entry depended on it:
    /// the edges purge what was built from it (its key dependency is an
    /// edge tag of every response built from it).
    pub(crate) fn purge_key(&self, key: &str) {
        if let Some(p) = &self.purger {
            p.enqueue(&[&key_dep_name(key)]);
        }
    }

    /// `key` was written: entries built from it are no longer current
    /// here (with Redis, its write deleted the version record and the next
    /// use reads or creates a new one; without, the next use makes one).
    #[inline]
    pub(crate) fn forget_key_dep(&self, key: &str) {
        if self.versions.uses_key_deps() {
            self.versions.forget(&key_dep_name(key));
        }
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
                tags: tags.into(),
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

    /// What L1 holds after an L2 write of `entry` under `key`: the one
    /// rule of every write path (`set`, `set_many`, `add`, a lease's
    /// fill, fail-safe's kept value). `epoch` is a load's (its fill loses
    /// to any authoritative write since the load began); `None` for an
    /// authoritative write, which also removes what it does not keep and
    /// makes entries built from the key's previous value stale here.
    pub(crate) async fn after_l2_write(
        &self,
        key: &str,
        entry: &Arc<Entry>,
        wrote: Wrote,
        mark: u64,
        epoch: Option<u64>,
    ) {
        self.l1_after_l2_write(key, entry, wrote, mark, epoch);
        // After L1 changed: a load resolving the key's dependency version
        // from now on reads the new value (without Redis, a version made
        // before the forget would go with the old value).
        if epoch.is_none() {
            self.forget_key_dep(key);
        }
    }

    fn l1_after_l2_write(
        &self,
        key: &str,
        entry: &Arc<Entry>,
        wrote: Wrote,
        mark: u64,
        epoch: Option<u64>,
    ) {
        let Some(l1) = &self.l1 else { return };
        let keep = match wrote {
            // A delete fenced the load: its value is not the key's.
            Wrote::Refused => return,
            _ if !self.l1_may_hold(entry) => None,
            Wrote::Stored => Some(entry.clone()),
            // Redis is away: this process keeps the write until Redis
            // answers again (it is not replayed).
            Wrote::Unreachable => Some(self.local_copy(entry, mark)),
            // A load's value: its callers have it anyway, and a fail-safe
            // value kept in L1 is what spares a failing origin.
            Wrote::Failed if epoch.is_some() => Some(entry.clone()),
            // A write: L1 must not keep what the fleet does not agree on.
            Wrote::Failed => None,
        };
        match (keep, epoch) {
            (Some(e), Some(epoch)) => l1.fill(key, e, epoch),
            (Some(e), None) => l1.put(key, e),
            (None, Some(_)) => {}
            (None, None) => {
                l1.remove(key);
            }
        }
    }

    /// Whether an entry read from or written to L2 may live in L1: counters
    /// are changed in place by other processes, so with L2 they stay out.
    #[inline]
    pub(crate) fn l1_may_hold(&self, e: &Entry) -> bool {
        self.l2.is_none() || e.meta.format != Format::INT
    }

    /// Decode bytes read from Redis; garbage is a counted miss.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Option<Entry> {
        match self.codec.decode(bytes) {
            Ok(e) => Some(e),
            Err(err) => {
                Metrics::inc(&self.metrics.decode_errors);
                tracing::debug!(namespace = %self.namespace, error = %err, "undecodable entry in Redis treated as a miss");
                None
            }
        }
    }

    /// Decode an L2 value and keep it only if fresh and current.
    pub(crate) async fn fresh(&self, bytes: Option<Vec<u8>>, acc: Accepted) -> Option<Arc<Entry>> {
        let e = Arc::new(bytes.and_then(|b| self.decode(&b))?);
        match self.judge(e, acc).await {
            Judged::Fresh(e) => Some(e),
            _ => None,
        }
    }

    /// Decode an L2 value and keep it if servable as a stale value.
    pub(crate) async fn stale(&self, bytes: Option<Vec<u8>>, acc: Accepted) -> Option<Arc<Entry>> {
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
        match self.sure_generation().await {
            Ok(g) => g,
            Err(_) => {
                Metrics::inc(&self.metrics.l2_errors);
                self.versions.generation().unwrap_or(0)
            }
        }
    }

    /// [`Shared::generation`], or the error when Redis could not be asked
    /// while the known generation is not trusted as it is: a write must
    /// then not go to Redis, which may have come back without it.
    pub(crate) async fn sure_generation(&self) -> Result<u64> {
        let known = self.versions.generation();
        if let Some(g) = known
            && self.l1_trusted()
            && self.generation_confirmed.load(Ordering::Acquire)
        {
            return Ok(g);
        }
        let (Some(l2), Some(bus)) = (&self.l2, &self.bus) else {
            return Ok(known.unwrap_or(0));
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
            .ensure_version(&generation_key(&self.namespace), candidate, None, &publish)
            .await
        {
            Ok(g) if g != 0 && known.is_some() => {
                // Redis's own (another process cleared meanwhile) wins.
                self.versions.set_generation(g);
                self.generation_confirmed.store(true, Ordering::Release);
                Ok(g)
            }
            Ok(g) if g != 0 => {
                self.versions.set_generation_if_absent(g);
                self.generation_confirmed.store(true, Ordering::Release);
                Ok(self.versions.generation().unwrap_or(g))
            }
            Ok(_) => Ok(known.unwrap_or(0)),
            Err(e) => Err(e),
        }
    }

    /// A tag's current version, read from (or created in) Redis when not
    /// known here; 0 when Redis cannot tell.
    pub(crate) async fn tag_version(&self, t: &str) -> u64 {
        // A reply read while the name was forgotten (a write of the key,
        // a reset) may be the old version: read again, a few times.
        for _ in 0..3 {
            if let Some(v) = self.versions.tag(t) {
                return v;
            }
            let (Some(l2), Some(bus)) = (&self.l2, &self.bus) else {
                let v = new_version();
                self.versions.set_tag_if_absent(t, v);
                return self.versions.tag(t).unwrap_or(v);
            };
            let candidate = new_version();
            let msg = bus.tag_created_message(t, candidate);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let stamp = self.versions.forget_stamp(t);
            match l2
                .ensure_version(
                    &version_key(&self.namespace, t),
                    candidate,
                    t.starts_with(KEY_DEP_PREFIX)
                        .then_some(KEY_DEP_VERSION_TTL_MS),
                    &publish,
                )
                .await
            {
                // A bump that arrived meanwhile is newer than what we read.
                Ok(v) if v != 0 => match self.versions.adopt(t, v, stamp) {
                    Some(v) => return v,
                    None => continue,
                },
                Ok(_) => return 0,
                Err(_) => {
                    Metrics::inc(&self.metrics.l2_errors);
                    return 0;
                }
            }
        }
        0
    }

    /// The versions an entry with `tags` records: each tag's (from
    /// `snapshot`, taken when a load started, else current) and, with
    /// Redis, the namespace generation.
    /// [`Shared::stamp`] for a write (`set`, `set_many`, `add`): also the
    /// L2 error when the namespace generation could not be made sure of
    /// in Redis ([`Shared::sure_generation`]). The entry is then built with
    /// the generation known here, and the caller treats the write as one
    /// Redis could not take (an L1-only copy, the error returned) instead
    /// of storing in Redis an entry other processes would never read.
    pub(crate) async fn stamp_for_write(
        &self,
        tags: &[String],
    ) -> Result<(Vec<(String, u64)>, Option<Error>)> {
        let mut out = self.stamp_tags(tags, &[]).await?;
        let mut unsure = None;
        if self.l2.is_some() {
            let g = match self.sure_generation().await {
                Ok(g) => g,
                Err(e) => {
                    unsure = Some(e);
                    self.versions.generation().unwrap_or(0)
                }
            };
            out.push((GENERATION_TAG.to_owned(), g));
        }
        Ok((out, unsure))
    }

    pub(crate) async fn stamp(
        &self,
        tags: &[String],
        snapshot: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>> {
        let mut out = self.stamp_tags(tags, snapshot).await?;
        if self.l2.is_some() {
            let g = match snapshot.iter().find(|(n, _)| n == GENERATION_TAG) {
                Some((_, v)) => *v,
                None => self.generation().await,
            };
            out.push((GENERATION_TAG.to_owned(), g));
        }
        Ok(out)
    }

    /// `tags` with their versions (from `snapshot` when there), without the
    /// generation.
    async fn stamp_tags(
        &self,
        tags: &[String],
        snapshot: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>> {
        // Room for the generation its callers add with Redis, and none at
        // all for an untagged L1-only entry: this vector lives as long as
        // the entry, in L1 too.
        let mut out = Vec::with_capacity(tags.len() + usize::from(self.l2.is_some()));
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
        Ok(out)
    }

    /// Judge `e` by the current versions, resolving any not known here.
    #[inline]
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
    #[inline]
    pub(crate) async fn judge(&self, e: Arc<Entry>, acc: Accepted) -> Judged {
        self.judge_at(e, acc, now_ms()).await
    }

    /// [`Shared::judge`] at `now` (unix ms), for a caller that has read
    /// the clock already.
    #[inline]
    pub(crate) async fn judge_at(&self, e: Arc<Entry>, acc: Accepted, now: u64) -> Judged {
        if !e.meta.is_live(now) {
            return Judged::Miss;
        }
        if !readable(acc, &e) {
            // Another serializer's entry: a miss, so read-throughs load
            // and overwrite it.
            Metrics::inc(&self.metrics.format_refusals);
            return Judged::Miss;
        }
        match self.validity(&e).await {
            Validity::Current if e.meta.is_fresh(now) => Judged::Fresh(e),
            Validity::Current => Judged::Stale(e),
            Validity::TagStale => {
                Metrics::inc(&self.metrics.stale_by_tag);
                Judged::Stale(e)
            }
            Validity::Gone | Validity::Unknown => {
                Metrics::inc(&self.metrics.stale_by_generation);
                Judged::Miss
            }
        }
    }

    /// Whether L1 may be served: the bus has not been interrupted since L1
    /// was last cleared, and it proved within its lag bound that it is
    /// delivering invalidations ([`Bus::is_current`]). While the bus is
    /// merely late (a slow Redis answering its PINGs slowly), L1 keeps
    /// serving until the last proof is older than the bound: an L1 hit is
    /// then at most that much older than the latest invalidation.
    #[inline]
    pub(crate) fn l1_trusted(&self) -> bool {
        self.l1_unbroken.load(Ordering::Acquire)
            && self.bus.as_ref().is_none_or(Bus::is_current)
            && !self.l2.as_ref().is_some_and(L2::in_outage)
    }

    /// L1's copy of `key`, judged; `Miss` without L1 or while L1 is not
    /// trusted.
    #[inline]
    pub(crate) async fn l1_judged(&self, key: &str, acc: Accepted) -> Judged {
        let Some(l1) = &self.l1 else {
            return Judged::Miss;
        };
        if !self.l1_trusted() {
            Metrics::inc(&self.metrics.l1_distrusted);
            return Judged::Miss;
        }
        let now = now_ms();
        match l1.get(key, now) {
            Some(e) => self.judge_at(e, acc, now).await,
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
        if self.l1_trusted() {
            return Judged::Miss;
        }
        let now = now_ms();
        let judged = match l1.get(key, now) {
            Some(e) => self.judge_at(e, acc, now).await,
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
                tags: tags.into(),
                ..e.meta.clone()
            },
            payload: e.payload.clone(),
            memo: Default::default(),
        })
    }

    pub(crate) fn l2_err(&self, e: Error) -> Error {
        Metrics::inc(&self.metrics.l2_errors);
        e
    }
}
/// An entry judged for serving.
pub(crate) enum Judged {
    Fresh(Arc<Entry>),
    Stale(Arc<Entry>),
    Miss,
}

/// The engine's side of the bus: the subscription's state decides when L1
/// is trusted, and the fleet's events evict L1 copies and move versions.
impl Listener for Shared {
    fn bus(&self) -> Option<&Bus> {
        self.bus.as_ref()
    }

    fn connected(&self, first: bool) {
        if first {
            // A generation learned before the first subscription (read when
            // this process first wrote, or inherited by a forked child) was
            // never covered by the bus: Redis may have lost it meanwhile (a
            // restart). The next write makes sure of it again before
            // recording it (reads keep judging by it).
            self.generation_confirmed.store(false, Ordering::Release);
        }
        if !self.l1_unbroken.load(Ordering::Acquire) {
            // Back after an interruption: whatever L1 and the version
            // cache hold may have missed invalidations. Start over, then
            // trust L1 again.
            if let Some(l1) = &self.l1 {
                l1.clear();
            }
            self.versions.reset();
            self.l1_unbroken.store(true, Ordering::Release);
        }
    }

    fn disconnected(&self) {
        // Invalidations sent from now on would be missed: stop serving L1
        // until the subscription is back.
        self.l1_unbroken.store(false, Ordering::Release);
        self.versions.watchers().all_changed();
    }

    async fn apply(&self, event: BusEvent) {
        match event {
            BusEvent::Keys(keys) => {
                if let Some(l1) = &self.l1 {
                    for k in &keys {
                        l1.remove(k);
                    }
                }
                for k in &keys {
                    self.forget_key_dep(k);
                }
            }
            BusEvent::Released(_) => {}
            BusEvent::Tags(tags) => {
                for (t, v) in &tags {
                    self.versions.set_tag(t, *v);
                }
            }
            BusEvent::Generation(g) => {
                if self.versions.generation() != Some(g) {
                    self.versions.set_generation(g);
                    // The clear removed the key dependency records.
                    self.versions.forget_key_deps();
                    if let Some(l1) = &self.l1 {
                        l1.clear();
                    }
                }
            }
            BusEvent::TagsCreated(tags) => {
                for (t, v) in &tags {
                    if t.starts_with(KEY_DEP_PREFIX) {
                        // Created because Redis had none: a version known
                        // here from before (the record expired, or a
                        // `clear()` removed it) is no longer anyone's.
                        self.versions.set_tag(t, *v);
                    } else {
                        self.versions.set_tag_if_absent(t, *v);
                    }
                }
            }
            BusEvent::GenerationCreated(g) => self.versions.set_generation_if_absent(g),
        }
    }
}
