//! The [`Lease`]: the right (and duty) to load one key, and the one
//! place a load is settled.
//!
//! The core never runs a loader. The caller that leads a key runs its
//! loader in its own world (a tokio task, a Python thread or coroutine, a
//! JS promise), reports what the loader did as a [`LoadOutcome`] to
//! [`Lease::settle`], and waits on the [`LoadClock`] meanwhile. The core
//! decides everything else: `none_ttl`, "do not cache", fail-safe or
//! abandon on an error, and what each soft/hard deadline means.
//! [`Lease::run`] is that protocol for Rust callers, and the reference
//! the bindings follow.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::deps::{Deps, is_key_dep};
use crate::engine::{Shared, Wrote};
use crate::envelope::Entry;
use crate::error::{Error, LoaderError, Result};
use crate::flight::{Flight, FlightGuard, FlightState, StaleKind};
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::options::{LookupPolicy, Ttl, WriteOptions};
use crate::versions::Validity;

/// A fleet lease held in Redis, kept alive while the load runs.
pub(crate) struct FleetLease {
    pub(crate) token: String,
    keepalive: tokio::task::AbortHandle,
}

impl FleetLease {
    /// Start extending `token`'s lease on `rk` every third of its TTL until
    /// the lease ends (or stops being ours).
    pub(crate) fn hold(shared: &Arc<Shared>, rk: &RedisKeys, token: String) -> FleetLease {
        let sh = shared.clone();
        let rk = rk.clone();
        let t = token.clone();
        let ttl = shared.lease_ttl;
        let task = crate::runtime::runtime().spawn(async move {
            let px = ttl.as_millis() as u64;
            loop {
                tokio::time::sleep(ttl / 3).await;
                let Some(l2) = &sh.l2 else { return };
                if let Ok(false) = l2.extend(&rk, &t, px).await {
                    return;
                }
            }
        });
        FleetLease {
            token,
            keepalive: task.abort_handle(),
        }
    }
}

/// Release fleet lease `token` on `rk` in the background (only if it is
/// still ours), waking the fleet's waiters for `key`.
pub(crate) fn spawn_release(shared: &Arc<Shared>, rk: &RedisKeys, key: &str, token: String) {
    let shared = shared.clone();
    let rk = rk.clone();
    let key = key.to_owned();
    crate::runtime::runtime().spawn(async move {
        let (Some(l2), Some(bus)) = (&shared.l2, &shared.bus) else {
            return;
        };
        let msg = bus.released_message(&[&key]);
        if l2.release(&rk, &token, &bus.channel, &msg).await.is_err() {
            Metrics::inc(&shared.metrics.l2_errors);
        }
    });
}

impl Drop for FleetLease {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// The policy's terms a lease is settled under: the stale value it may
/// fall back on (fail-safe), its deadlines, and what a "nothing" does.
#[derive(Clone, Default)]
pub(crate) struct Terms {
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) fail_safe: bool,
    pub(crate) throttle: Duration,
    /// Tag versions and generation taken before the load started; the
    /// loaded value records these, so an invalidation during the load
    /// makes it stale at once.
    pub(crate) snapshot: Vec<(String, u64)>,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    none_ttl: Option<Ttl>,
}

impl Terms {
    /// The terms `policy` sets for a load that may fall back on `stale`.
    pub(crate) fn of(
        policy: &LookupPolicy,
        stale: Option<Arc<Entry>>,
        snapshot: Vec<(String, u64)>,
    ) -> Terms {
        Terms {
            entry: stale,
            fail_safe: policy.fail_safe,
            throttle: policy.fail_safe_throttle,
            snapshot,
            soft_timeout: policy.soft_timeout,
            hard_timeout: policy.hard_timeout,
            none_ttl: policy.none_ttl,
        }
    }

    /// The live stale value to fall back on, if fail-safe allows one.
    fn fallback(&self) -> Option<Arc<Entry>> {
        if !self.fail_safe {
            return None;
        }
        self.entry
            .clone()
            .filter(|e| e.meta.is_live(crate::clock::now_ms()))
    }
}

/// What a loader did, as the caller that ran it reports it.
#[derive(Debug, Clone)]
pub enum LoadOutcome {
    /// A value, stored under the write options.
    Value(Bytes),
    /// The loader's "nothing" (`None`, `null`), serialized: stored like a
    /// value unless the policy's `none_ttl` says otherwise.
    Nothing(Bytes),
    /// A value for the callers, never stored (Python's and JS's
    /// `NoCache(value)`).
    Uncached(Bytes),
    /// The loader failed.
    Failed(LoaderError),
}

/// How a settled load answers its caller.
#[derive(Debug, Clone)]
pub enum Settled {
    /// The loaded value (the caller may answer with the object it
    /// serialized instead of decoding this).
    Loaded(Arc<Entry>),
    /// The loader failed and fail-safe serves this stale value instead.
    Stale(Arc<Entry>),
}

impl Settled {
    /// The entry either way.
    pub fn entry(&self) -> &Arc<Entry> {
        match self {
            Settled::Loaded(e) | Settled::Stale(e) => e,
        }
    }
}

/// One moment the caller running a loader stops waiting for it to ask
/// the core what to do ([`LoadClock::passed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// How long from now.
    pub left: Duration,
    /// The hard timeout (else the soft one).
    pub hard: bool,
}

/// The deadlines of one load, usable while the load runs and after its
/// lease was settled (then they do nothing). Cheap to clone.
#[derive(Clone)]
pub struct LoadClock {
    shared: Arc<Shared>,
    flight: Arc<Flight>,
    fallback: Option<Arc<Entry>>,
    soft: Option<Duration>,
    hard: Option<Duration>,
    started: Instant,
    /// The collector of the load that asked for this key: a fallback
    /// served at a deadline is what that load reads.
    parent: Option<Arc<Deps>>,
}

impl std::fmt::Debug for LoadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadClock")
            .field("soft", &self.soft)
            .field("hard", &self.hard)
            .finish_non_exhaustive()
    }
}

impl LoadClock {
    fn live_fallback(&self) -> Option<Arc<Entry>> {
        self.fallback
            .clone()
            .filter(|e| e.meta.is_live(crate::clock::now_ms()))
    }

    /// The `i`-th deadline (0, 1, ...) the caller waits for, or `None`
    /// when it waits for the load to end. A soft timeout counts only when
    /// the load began with a stale value to serve; the hard one always.
    /// The list is fixed when the clock is made, so a stale value that
    /// expires during the wait never drops the hard deadline.
    pub fn deadline(&self, i: usize) -> Option<Deadline> {
        let soft = self
            .soft
            .filter(|_| self.fallback.is_some())
            .map(|d| (d, false));
        let hard = self.hard.map(|d| (d, true));
        let (at, is_hard) = soft.into_iter().chain(hard).nth(i)?;
        Some(Deadline {
            left: at.saturating_sub(self.started.elapsed()),
            hard: is_hard,
        })
    }

    /// Whether the caller must race its loader against deadlines at all
    /// (else it just awaits the loader).
    pub fn is_timed(&self) -> bool {
        self.deadline(0).is_some()
    }

    /// The load was still running at a deadline: `Ok(Some(stale))` to
    /// answer now (every waiter is offered it too; the load goes on and
    /// still fills the cache), `Ok(None)` to keep waiting (a soft deadline
    /// without a stale value), [`Error::LoaderTimeout`] at the hard one
    /// without a stale value.
    pub fn passed(&self, hard: bool) -> Result<Option<Arc<Entry>>> {
        let m = &self.shared.metrics;
        Metrics::inc(if hard {
            &m.hard_timeouts
        } else {
            &m.soft_timeouts
        });
        match self.live_fallback() {
            Some(e) => {
                Metrics::inc(&m.fail_safe_served);
                self.flight.offer_stale(e.clone(), StaleKind::FailSafe);
                if let Some(p) = &self.parent {
                    p.record(&self.shared.scope, &e);
                }
                Ok(Some(e))
            }
            None if hard => Err(Error::LoaderTimeout(self.hard.unwrap_or_default())),
            None => Ok(None),
        }
    }
}

/// The right (and duty) to load one key: you are the only caller in this
/// process (and, with Redis, in the fleet) loading it. Call
/// [`Lease::complete`] with the value or [`Lease::abandon`] /
/// [`Lease::fail`] with the loader's error; every caller waiting on the key
/// gets that outcome. Dropping the lease unused releases them with
/// [`Error::LeaseDropped`] (and the fleet lease in Redis).
pub struct Lease {
    shared: Arc<Shared>,
    guard: FlightGuard,
    rkeys: Option<RedisKeys>,
    /// Tombstone token seen before the load started; `None` when L2 is
    /// absent or could not be read (then L2 is not written).
    fence: Option<Vec<u8>>,
    epoch: u64,
    started: Instant,
    fleet: Option<FleetLease>,
    terms: Terms,
    /// Taken by `try_lease` (a warm-up): counted as warmed when stored.
    warm: bool,
    /// The collector of the load that asked for this key
    /// ([`Cache::lookup_tracked`](crate::Cache::lookup_tracked)): the
    /// settled value's tags and this load's own dependencies are its too.
    parent: Option<Arc<Deps>>,
    /// Taken with caching off ([`Cache::bypassing`](crate::Cache::bypassing)):
    /// a flight of its own that stores nothing.
    bypass: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.guard.key)
            .field("fleet", &self.fleet.is_some())
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(crate) fn new(
        shared: Arc<Shared>,
        mut guard: FlightGuard,
        rkeys: Option<RedisKeys>,
        fence: Option<Vec<u8>>,
        epoch: u64,
        fleet: Option<FleetLease>,
        terms: Terms,
    ) -> Self {
        guard.loading();
        Metrics::inc(&shared.metrics.leads);
        Lease {
            shared,
            guard,
            rkeys,
            fence,
            epoch,
            started: Instant::now(),
            fleet,
            terms,
            warm: false,
            parent: None,
            bypass: false,
        }
    }

    /// The lease every read-through gets with caching off: a flight no
    /// other caller joins, no fleet lease, no stale value to fall back on
    /// (the policy's hard timeout still bounds the caller), and settling
    /// it stores nothing.
    pub(crate) fn bypassed(shared: &Arc<Shared>, key: &str, policy: &LookupPolicy) -> Self {
        let mut guard = crate::flight::detached(&shared.flights, key);
        guard.loading();
        // Not a lead (nor, when settled, a "not cached" load): with caching
        // off the cache's counters do not move.
        Lease {
            shared: shared.clone(),
            guard,
            rkeys: None,
            fence: None,
            epoch: 0,
            started: Instant::now(),
            fleet: None,
            terms: Terms::of(policy, None, Vec::new()),
            warm: false,
            parent: None,
            bypass: true,
        }
    }

    /// Report this load's dependencies and value to `parent` when settled.
    pub(crate) fn feeding(mut self, parent: Arc<Deps>) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Tell the parent load (if any) what this one settled with.
    fn feed_parent(
        parent: Option<Arc<Deps>>,
        scope: &Arc<str>,
        opts: &WriteOptions,
        r: &Result<Settled>,
    ) {
        let Some(p) = parent else { return };
        if let Some(own) = &opts.deps {
            own.merge_into(&p);
        }
        if let Ok(Settled::Loaded(e) | Settled::Stale(e)) = r {
            p.record(scope, e);
        }
    }

    /// Mark this lease as a warm-up's.
    pub(crate) fn warming(mut self) -> Self {
        self.warm = true;
        self
    }

    /// Whether this load should collect its dependencies (the cache's
    /// `track_dependencies`): a binding opens a collecting scope around
    /// the loader only then.
    pub fn tracks_dependencies(&self) -> bool {
        self.shared.track_dependencies && !self.bypass
    }

    /// The key being loaded.
    pub fn key(&self) -> &str {
        &self.guard.key
    }

    /// Whether this lease also holds the fleet-wide lease in Redis.
    pub fn is_fleet(&self) -> bool {
        self.fleet.is_some()
    }

    /// The stale value this load may fall back on (fail-safe on, a live
    /// stale value known when the load began), if any.
    pub fn fallback(&self) -> Option<Arc<Entry>> {
        self.terms.fallback()
    }

    /// The deadlines of this load (see [`LoadClock`]).
    pub fn clock(&self) -> LoadClock {
        LoadClock {
            shared: self.shared.clone(),
            flight: self.guard.flight(),
            fallback: self.terms.fallback(),
            soft: self.terms.soft_timeout,
            hard: self.terms.hard_timeout,
            started: self.started,
            parent: self.parent.clone(),
        }
    }

    /// Settle the load with what the loader did; every caller waiting on
    /// the key gets the same answer.
    ///
    /// - `Value`: stored (L2 then L1, see [`Lease::complete`]);
    /// - `Nothing`: stored, for `none_ttl` if the policy sets one, not at
    ///   all if that is zero;
    /// - `Uncached`: handed to the waiters, not stored;
    /// - `Failed`: with fail-safe and a live stale value, that value is
    ///   served to everyone and kept fresh for the throttle period
    ///   ([`Settled::Stale`]); otherwise [`Error::Loader`] with the
    ///   loader's own error, for the caller and every waiter.
    pub async fn settle(mut self, outcome: LoadOutcome, opts: &WriteOptions) -> Result<Settled> {
        let parent = self.parent.take();
        let scope = self.shared.scope.clone();
        let r = self.settle_inner(outcome, opts).await;
        Self::feed_parent(parent, &scope, opts, &r);
        r
    }

    /// Whether settling with `outcome` under `opts` stores the value (as
    /// opposed to handing it to the waiters only): not for `Uncached` or
    /// `Failed`, not under a zero TTL (a loader's adaptive "not this one"),
    /// and for `Nothing` unless the policy's `none_ttl` is zero. The one
    /// rule [`Lease::settle`] follows; bindings count stores by it.
    pub fn stores(&self, outcome: &LoadOutcome, opts: &WriteOptions) -> bool {
        match outcome {
            _ if self.bypass => false,
            LoadOutcome::Uncached(_) | LoadOutcome::Failed(_) => false,
            _ if opts.stores_nothing() => false,
            LoadOutcome::Value(_) => true,
            LoadOutcome::Nothing(_) => !matches!(
                self.terms.none_ttl,
                Some(Ttl::After(d)) if d.is_zero()
            ),
        }
    }

    async fn settle_inner(self, outcome: LoadOutcome, opts: &WriteOptions) -> Result<Settled> {
        let stores = self.stores(&outcome, opts);
        match outcome {
            LoadOutcome::Failed(e) => self.fail(e).await,
            LoadOutcome::Value(b) | LoadOutcome::Nothing(b) | LoadOutcome::Uncached(b)
                if !stores =>
            {
                self.complete_uncached(b, opts).await.map(Settled::Loaded)
            }
            LoadOutcome::Nothing(b) => match self.terms.none_ttl {
                Some(ttl) => {
                    let mut o = opts.clone();
                    o.ttl = ttl;
                    self.complete(b, &o).await.map(Settled::Loaded)
                }
                None => self.complete(b, opts).await.map(Settled::Loaded),
            },
            // (`Uncached` never stores: the guard above took it.)
            LoadOutcome::Value(b) | LoadOutcome::Uncached(b) => {
                self.complete(b, opts).await.map(Settled::Loaded)
            }
        }
    }

    /// Run `load` (a future yielding what the loader did) for this lease
    /// and settle it: the protocol every binding follows, for Rust
    /// callers. The load runs as its own task, so a caller whose deadline
    /// passes gets its answer (the fail-safe value or
    /// [`Error::LoaderTimeout`]) while the load goes on and still fills
    /// the cache.
    pub async fn run<F>(self, load: F, opts: WriteOptions) -> Result<Settled>
    where
        F: Future<Output = LoadOutcome> + Send + 'static,
    {
        let clock = self.clock();
        if !clock.is_timed() {
            let outcome = load.await;
            return self.settle(outcome, &opts).await;
        }
        let mut task =
            crate::runtime::runtime().spawn(async move { self.settle(load.await, &opts).await });
        let mut i = 0;
        while let Some(d) = clock.deadline(i) {
            match tokio::time::timeout(d.left, &mut task).await {
                Ok(done) => return done.map_err(|_| Error::LeaseDropped)?,
                Err(_) => {
                    if let Some(stale) = clock.passed(d.hard)? {
                        return Ok(Settled::Stale(stale));
                    }
                }
            }
            i += 1;
        }
        task.await.map_err(|_| Error::LeaseDropped)?
    }

    /// Store the loaded value (L2 then L1) and hand it to every waiter.
    ///
    /// The L2 write is refused if the key was deleted after the load began
    /// (the tombstone fence), and the L1 write if this process wrote or
    /// deleted the key meanwhile: the waiters still get the value they
    /// asked for, but it is not cached over the newer state.
    pub async fn complete(self, payload: Bytes, opts: &WriteOptions) -> Result<Arc<Entry>> {
        self.finish(payload, opts, true).await
    }

    /// Hand the loaded value to every waiter without caching it (a
    /// loader's "don't cache this" answer); the fleet lease is released.
    pub async fn complete_uncached(
        self,
        payload: Bytes,
        opts: &WriteOptions,
    ) -> Result<Arc<Entry>> {
        if !self.bypass {
            Metrics::inc(&self.shared.metrics.not_cached);
        }
        self.finish(payload, opts, false).await
    }

    async fn finish(
        mut self,
        payload: Bytes,
        opts: &WriteOptions,
        store: bool,
    ) -> Result<Arc<Entry>> {
        let shared = self.shared.clone();
        let mut opts = opts.clone();
        if opts.load_duration.is_none() {
            opts.load_duration = Some(self.started.elapsed());
        }

        let mut spoiled = false;
        let stamped = if self.bypass {
            // Checked as a stored value's would be; no version is read.
            opts.tags
                .iter()
                .try_for_each(|t| crate::key::validate_tag(t))
                .map(|()| Vec::new())
        } else {
            shared.stamp(&opts.tags, &self.terms.snapshot).await
        };
        let built = match stamped {
            Ok(mut tags) => {
                if let Some(d) = &opts.deps {
                    spoiled = d.stamp_into(&shared.scope, &mut tags);
                }
                shared.build_entry(payload, &opts, tags)
            }
            Err(e) => Err(e),
        };
        let entry = match built {
            Ok(e) => Arc::new(e),
            Err(e) => {
                self.release_fleet();
                self.guard.resolve(FlightState::Failed(e.clone()));
                return Err(e);
            }
        };
        if !self.bypass {
            Metrics::inc(&shared.metrics.loads_completed);
        }
        let mut store = store
            && !self.bypass
            && (entry.meta.stale_until_ms == 0 || entry.meta.is_live(crate::clock::now_ms()));
        // Built from inputs that changed while it loaded: handed to its
        // callers (they asked before the change), not stored.
        if store
            && (spoiled
                || (opts
                    .deps
                    .as_ref()
                    .is_some_and(|d| d.has_scope(&shared.scope))
                    && shared.validity(&entry).await != Validity::Current))
        {
            Metrics::inc(&shared.metrics.deps_refused);
            store = false;
        }
        if store {
            self.store(&entry).await;
            if self.warm {
                Metrics::inc(&shared.metrics.warmed);
            }
        } else {
            self.release_fleet();
        }
        self.guard.resolve(FlightState::Value(entry.clone()));
        Ok(entry)
    }

    /// Write `entry` to L2 (fenced, releasing the fleet lease and telling
    /// the fleet) and to L1.
    async fn store(&mut self, entry: &Arc<Entry>) {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        let fleet = self.fleet.take();
        // Without Redis the value is simply stored; with Redis, a value
        // Redis did not take (it could not be reached now, or when the
        // load began: no fence) is kept as an L1-only copy.
        let mark = shared.versions.local_mark();
        let mut wrote = if shared.l2.is_some() {
            Wrote::Unreachable
        } else {
            Wrote::Stored
        };
        let mut released = false;
        if let (Some(l2), Some(bus), Some(rk), Some(fence)) =
            (&shared.l2, &shared.bus, &self.rkeys, &self.fence)
        {
            let bytes = shared.codec.encode(entry);
            let token = fleet.as_ref().map_or("", |f| f.token.as_str());
            let msg = bus.keys_message(&[&self.guard.key]);
            let refused_msg = bus.released_message(&[&self.guard.key]);
            let notice = crate::l2::Notice {
                token,
                channel: &bus.channel,
                msg: &msg,
                refused_msg: &refused_msg,
            };
            let r = l2
                .complete(rk, &bytes, shared.px_for(entry), fence, &notice)
                .await;
            wrote = match r {
                Ok(true) => {
                    Metrics::inc(&m.writes);
                    Wrote::Stored
                }
                Ok(false) => {
                    Metrics::inc(&m.late_writes_refused);
                    Wrote::Refused
                }
                Err(e) => {
                    Metrics::inc(&m.l2_errors);
                    Wrote::of::<()>(&Err(e))
                }
            };
            released = true;
        }
        if !released {
            self.fleet = fleet;
            self.release_fleet();
        }
        shared
            .after_l2_write(&self.guard.key, entry, wrote, mark, Some(self.epoch))
            .await;
    }

    /// Release the fleet lease (if held) in the background, waking the
    /// fleet's waiters so one of them takes over.
    fn release_fleet(&mut self) {
        let Some(mut fleet) = self.fleet.take() else {
            return;
        };
        if let Some(rk) = &self.rkeys {
            spawn_release(
                &self.shared,
                rk,
                &self.guard.key,
                std::mem::take(&mut fleet.token),
            );
        }
    }

    /// Give up: every waiter gets [`Error::Loader`] with `error`.
    pub fn abandon(mut self, error: LoaderError) {
        Metrics::inc(&self.shared.metrics.loader_errors);
        self.release_fleet();
        self.guard
            .resolve(FlightState::Failed(Error::Loader(error)));
    }

    /// The loader failed: with fail-safe on and a live stale value, serve
    /// that value to the caller and every waiter and keep it fresh for the
    /// throttle period (in L1 and L2, so the failing origin is not hammered
    /// by the fleet); otherwise [`Lease::abandon`] and return the error.
    pub async fn fail(mut self, error: LoaderError) -> Result<Settled> {
        let parent = self.parent.take();
        let scope = self.shared.scope.clone();
        let r = self.fail_inner(error).await;
        Self::feed_parent(parent, &scope, &WriteOptions::default(), &r);
        r
    }

    async fn fail_inner(mut self, error: LoaderError) -> Result<Settled> {
        let Some(stale) = self.fallback() else {
            let e = Error::Loader(error.clone());
            self.abandon(error);
            return Err(e);
        };
        let shared = self.shared.clone();
        Metrics::inc(&shared.metrics.loader_errors);
        Metrics::inc(&shared.metrics.fail_safe_served);
        let now = crate::clock::now_ms();
        let mut kept = (*stale).clone();
        // Kept on purpose: record the current versions, or a tag
        // invalidation that made it stale would keep it stale.
        let (key_deps, names): (Vec<String>, Vec<String>) = kept
            .meta
            .tags
            .iter()
            .filter(|(n, _)| n != crate::envelope::GENERATION_TAG)
            .map(|(n, _)| n.clone())
            .partition(|n| is_key_dep(n));
        if let Ok(mut tags) = shared.stamp(&names, &[]).await {
            for n in key_deps {
                let v = shared.tag_version(&n).await;
                tags.push((n, v));
            }
            kept.meta.tags = tags.into();
        }
        let grace = stale.meta.stale_until_ms.saturating_sub(now);
        kept.meta.fresh_until_ms = now.saturating_add(self.terms.throttle.as_millis() as u64);
        kept.meta.stale_until_ms = kept.meta.fresh_until_ms.saturating_add(grace);
        let kept = Arc::new(kept);
        self.store(&kept).await;
        self.guard.resolve(FlightState::Value(kept.clone()));
        Ok(Settled::Stale(kept))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.guard.is_resolved() {
            // Unsettled: the guard releases the waiters with LeaseDropped.
            Metrics::inc(&self.shared.metrics.leases_dropped);
        }
        self.release_fleet();
    }
}

// Leases and clocks travel between threads and tasks of the bindings.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send_sync::<Lease>();
    is_send_sync::<LoadClock>();
};

/// Settlement and deadlines on the in-memory engine (a cache without
/// Redis); the same rules against Redis and Cluster are exercised by
/// `tests/load_outcomes.rs` and `tests/fleet.rs`.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Cache, Lookup};

    fn cache() -> Cache {
        Cache::builder()
            .namespace(format!("lease-{:x}", rand::random::<u64>()))
            .build()
            .expect("cache")
    }

    async fn lead(c: &Cache, key: &str, p: &LookupPolicy) -> Lease {
        match c.lookup(key, p).await.expect("lookup") {
            Lookup::Lead(l) => l,
            other => panic!("expected to lead, got {other:?}"),
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[derive(Debug)]
    struct Boom;
    impl std::fmt::Display for Boom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("boom")
        }
    }
    impl std::error::Error for Boom {}

    /// A stale (within grace) value of `key`, as fail-safe's fallback.
    async fn stale(c: &Cache, key: &str) {
        let o = WriteOptions::default()
            .with_grace(Duration::from_secs(60))
            .with_tags(vec!["t".into()]);
        c.set(key, b("old"), &o).await.expect("set");
        c.invalidate_tags(&["t"]).await.expect("invalidate");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_gets_the_settled_value() {
        let c = cache();
        let p = LookupPolicy::default();
        let lease = lead(&c, "k", &p).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.lookup("k", &LookupPolicy::default()).await })
        };
        // The waiter is parked on the flight before the value lands.
        while c.stats().await.coalesced_waits == 0 {
            tokio::task::yield_now().await;
        }
        let s = lease
            .settle(LoadOutcome::Value(b("v")), &WriteOptions::default())
            .await
            .expect("settle");
        assert!(matches!(s, Settled::Loaded(ref e) if &e.payload[..] == b"v"));
        match waiter.await.expect("join").expect("lookup") {
            Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.stats().await.leads, 1);
    }

    #[tokio::test]
    async fn nothing_follows_none_ttl_and_uncached_is_not_stored() {
        let c = cache();
        let zero = LookupPolicy::default().none_ttl(Ttl::After(Duration::ZERO));
        let lease = lead(&c, "n", &zero).await;
        lease
            .settle(LoadOutcome::Nothing(Bytes::new()), &WriteOptions::default())
            .await
            .expect("settle");
        assert!(
            c.get("n").await.expect("get").is_none(),
            "none_ttl 0: not stored"
        );

        let lease = lead(&c, "n", &LookupPolicy::default()).await;
        lease
            .settle(LoadOutcome::Nothing(Bytes::new()), &WriteOptions::default())
            .await
            .expect("settle");
        assert!(
            c.get("n").await.expect("get").is_some(),
            "no none_ttl: stored"
        );

        let lease = lead(&c, "u", &LookupPolicy::default()).await;
        lease
            .settle(LoadOutcome::Uncached(b("x")), &WriteOptions::default())
            .await
            .expect("settle");
        assert!(c.get("u").await.expect("get").is_none());
        assert_eq!(c.stats().await.not_cached, 2);
    }

    #[tokio::test]
    async fn a_failure_is_the_loaders_error_unless_fail_safe_has_a_stale_value() {
        let c = cache();
        let lease = lead(&c, "k", &LookupPolicy::default()).await;
        let r = lease
            .settle(
                LoadOutcome::Failed(Arc::new(Boom)),
                &WriteOptions::default(),
            )
            .await;
        assert!(matches!(r, Err(Error::Loader(e)) if e.to_string() == "boom"));

        stale(&c, "k").await;
        let fs = LookupPolicy::default()
            .fail_safe(true)
            .fail_safe_throttle(Duration::from_secs(60));
        let lease = lead(&c, "k", &fs).await;
        let r = lease
            .settle(
                LoadOutcome::Failed(Arc::new(Boom)),
                &WriteOptions::default(),
            )
            .await
            .expect("fail-safe");
        let Settled::Stale(e) = r else {
            panic!("{r:?}")
        };
        assert_eq!(&e.payload[..], b"old");
        // Kept fresh for the throttle period: nobody reloads meanwhile.
        let now = crate::clock::now_ms();
        assert!(e.meta.fresh_until_ms >= now + 59_000, "{:?}", e.meta);
        assert!(matches!(
            c.lookup("k", &fs).await.expect("lookup"),
            Lookup::Fresh(_, _)
        ));
    }

    #[tokio::test]
    async fn a_dropped_lease_fails_its_waiters_and_is_counted() {
        let c = cache();
        let lease = lead(&c, "k", &LookupPolicy::default()).await;
        drop(lease);
        assert_eq!(c.stats().await.leases_dropped, 1);
        // The flight is gone: the next caller leads.
        let lease = lead(&c, "k", &LookupPolicy::default()).await;
        lease
            .settle(LoadOutcome::Value(b("v")), &WriteOptions::default())
            .await
            .expect("settle");
        assert_eq!(
            c.stats().await.leases_dropped,
            1,
            "a settled lease is not counted"
        );
    }

    #[tokio::test]
    async fn deadlines_soft_only_with_a_stale_value_then_hard() {
        let c = cache();
        let both = LookupPolicy::default()
            .fail_safe(true)
            .soft_timeout(Duration::from_secs(10))
            .hard_timeout(Duration::from_secs(20));
        // No stale value: the soft deadline does not count.
        let lease = lead(&c, "cold", &both).await;
        let clock = lease.clock();
        let d = clock.deadline(0).expect("hard");
        assert!(d.hard && d.left <= Duration::from_secs(20));
        assert!(clock.deadline(1).is_none());
        assert!(matches!(clock.passed(true), Err(Error::LoaderTimeout(_))));
        assert_eq!(clock.passed(false).expect("soft"), None);
        drop(lease);

        stale(&c, "k").await;
        let lease = lead(&c, "k", &both).await;
        let clock = lease.clock();
        let (soft, hard) = (
            clock.deadline(0).expect("soft"),
            clock.deadline(1).expect("hard"),
        );
        assert!(!soft.hard && hard.hard && soft.left <= hard.left);
        assert!(clock.deadline(2).is_none());
        let served = clock.passed(false).expect("soft").expect("the stale value");
        assert_eq!(&served.payload[..], b"old");
        // The load goes on and lands; the clock outlives the lease.
        lease
            .settle(LoadOutcome::Value(b("new")), &WriteOptions::default())
            .await
            .expect("settle");
        assert!(clock.passed(true).expect("hard").is_some());
        assert_eq!(
            &c.get("k").await.expect("get").expect("hit").payload[..],
            b"new"
        );
        let s = c.stats().await;
        assert_eq!((s.soft_timeouts, s.hard_timeouts), (2, 2));

        let none = LookupPolicy::default();
        let lease = lead(&c, "plain", &none).await;
        assert!(!lease.clock().is_timed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_answers_at_the_hard_deadline_and_the_load_still_lands() {
        let c = cache();
        let hard = LookupPolicy::default().hard_timeout(Duration::from_millis(30));
        let lease = lead(&c, "k", &hard).await;
        let gate = Arc::new(tokio::sync::Notify::new());
        let load = {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                LoadOutcome::Value(b("late"))
            }
        };
        let r = lease.run(load, WriteOptions::default()).await;
        assert!(matches!(r, Err(Error::LoaderTimeout(_))), "{r:?}");
        gate.notify_one();
        // A caller without deadlines joins the flight and gets the value.
        match c
            .lookup("k", &LookupPolicy::default())
            .await
            .expect("lookup")
        {
            Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"late"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hard_deadline_holds_when_the_stale_value_expires_during_the_soft_wait() {
        let c = cache();
        // Stale after 20 ms, servable until 120 ms: alive when the load
        // begins, gone before the soft deadline at 150 ms.
        let o = WriteOptions::new(Ttl::After(Duration::from_millis(20)), Default::default())
            .with_grace(Duration::from_millis(100));
        c.set("k", b("old"), &o).await.expect("set");
        let mut stale_now = false;
        while !stale_now {
            tokio::task::yield_now().await;
            let e = c.get_local("k").expect("get");
            stale_now = e.is_none();
        }
        let p = LookupPolicy::default()
            .fail_safe(true)
            .soft_timeout(Duration::from_millis(150))
            .hard_timeout(Duration::from_millis(300));
        let lease = lead(&c, "k", &p).await;
        let never = std::future::pending::<LoadOutcome>();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            lease.run(never, WriteOptions::default()),
        )
        .await
        .expect("the caller's wait is bounded by the hard deadline");
        assert!(matches!(r, Err(Error::LoaderTimeout(_))), "{r:?}");
    }
}
