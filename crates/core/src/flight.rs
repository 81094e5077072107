//! Single-flight: at most one load per key per process, and the [`Lease`]
//! that hands that load to the caller.
//!
//! A *flight* exists while one caller (the leader) is reading L2 or loading
//! a key. Other callers subscribe to it and sleep on a `tokio::sync::watch`
//! channel (no polling) until the leader resolves it:
//!
//! - `Value`: the value (from L2 or the loader) for every waiter;
//! - `Failed`: the loader's error (via [`Lease::abandon`]), or
//!   [`Error::LeaseDropped`] if the lease was dropped unused;
//! - `Retry`: the leader went away *before* a lease existed (its lookup
//!   future was cancelled): waiters start over, one of them becomes leader;
//! - `Stale`: a stale value is being refreshed; waiters that accept stale
//!   values take it, the rest keep waiting for the refresh.
//!
//! Whoever resolves a flight first removes it from the map, so a caller
//! arriving afterwards finds the value in L1 or starts a new flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cache::{Shared, WriteOptions};
use crate::envelope::{Entry, Format};
use crate::error::{Error, LoaderError, Result};
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::runtime::fork_generation;

/// Why a flight offers a stale value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StaleKind {
    /// Stale-while-revalidate: a refresh is running; taken by callers that
    /// accept stale values.
    Swr,
    /// Fail-safe: the load failed or is too slow; also taken by callers
    /// that only accept stale values as a fallback.
    FailSafe,
}

#[derive(Clone)]
pub(crate) enum FlightState {
    /// The leader is reading L2 or waiting on another process's lease.
    Pending,
    /// The leader holds a lease and is loading (waiters' wait clock
    /// restarts here: waiting on the fleet and waiting on the load are
    /// bounded separately).
    Loading,
    /// The leader refreshes a value that was still fresh (early refresh).
    /// A caller that joins it found no L1 entry, so the entry was dropped
    /// meanwhile (typically by another process's newer write): it reads
    /// Redis once before it waits for the refresh.
    Refreshing,
    Stale(Arc<Entry>, StaleKind),
    Value(Arc<Entry>),
    Failed(Error),
    Retry,
}

pub(crate) struct Flight {
    tx: watch::Sender<FlightState>,
}

/// The in-flight loads of one shared cache, forgotten after `fork` (their
/// leaders' threads do not exist in the child).
#[derive(Default)]
pub(crate) struct Flights {
    generation: u64,
    map: HashMap<Arc<str>, Arc<Flight>>,
}

pub(crate) enum Joined {
    Leader(FlightGuard),
    Waiter(watch::Receiver<FlightState>),
}

pub(crate) fn join(shared: &Arc<Shared>, key: &str) -> Joined {
    let mut f = shared.flights.lock().unwrap_or_else(|e| e.into_inner());
    let generation = fork_generation();
    if f.generation != generation {
        // The parent's flights (a forked child): leaked, not dropped, so no
        // waker of the parent's runtime is called (its locks may have been
        // held by a thread that does not exist here).
        std::mem::forget(std::mem::take(&mut f.map));
        f.generation = generation;
    }
    if let Some(flight) = f.map.get(key) {
        return Joined::Waiter(flight.tx.subscribe());
    }
    let key: Arc<str> = Arc::from(key);
    let (tx, _) = watch::channel(FlightState::Pending);
    let flight = Arc::new(Flight { tx });
    f.map.insert(key.clone(), flight.clone());
    Joined::Leader(FlightGuard {
        shared: shared.clone(),
        key,
        flight,
        resolved: false,
        leased: false,
    })
}

/// Lead `key` only if no flight for it exists (never waits).
pub(crate) fn try_lead(shared: &Arc<Shared>, key: &str) -> Option<FlightGuard> {
    match join(shared, key) {
        Joined::Leader(g) => Some(g),
        Joined::Waiter(_) => None,
    }
}

/// A flight of one that no other caller can join: the caller loads on its
/// own (after its wait for someone else's load timed out).
pub(crate) fn detached(shared: &Arc<Shared>, key: &str) -> FlightGuard {
    let (tx, _) = watch::channel(FlightState::Pending);
    FlightGuard {
        shared: shared.clone(),
        key: Arc::from(key),
        flight: Arc::new(Flight { tx }),
        resolved: false,
        leased: false,
    }
}

/// Leadership of one flight. Dropping it unresolved releases the waiters.
pub(crate) struct FlightGuard {
    shared: Arc<Shared>,
    pub(crate) key: Arc<str>,
    flight: Arc<Flight>,
    resolved: bool,
    leased: bool,
}

impl FlightGuard {
    fn unregister(&self) {
        let mut f = self
            .shared
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(cur) = f.map.get(&self.key)
            && Arc::ptr_eq(cur, &self.flight)
        {
            f.map.remove(&self.key);
        }
    }

    /// Resolve the flight: unregister it, then wake every waiter.
    pub(crate) fn resolve(&mut self, state: FlightState) {
        if self.resolved {
            return;
        }
        self.resolved = true;
        self.unregister();
        self.flight.tx.send_replace(state);
    }

    /// Mark the flight as an early refresh ([`FlightState::Refreshing`]).
    pub(crate) fn refreshing(&self) {
        self.flight.tx.send_replace(FlightState::Refreshing);
    }

    /// Offer a stale value to waiters while the refresh goes on.
    pub(crate) fn offer_stale(&self, e: Arc<Entry>, kind: StaleKind) {
        self.flight.tx.send_replace(FlightState::Stale(e, kind));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.resolved {
            if self.leased {
                Metrics::inc(&self.shared.metrics.leases_dropped);
                self.resolve(FlightState::Failed(Error::LeaseDropped));
            } else {
                self.resolve(FlightState::Retry);
            }
        }
    }
}

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

/// How a lease may fall back on a stale value (fail-safe).
#[derive(Clone, Default)]
pub(crate) struct Fallback {
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) fail_safe: bool,
    pub(crate) throttle: Duration,
    /// Tag versions and generation taken before the load started; the
    /// loaded value records these, so an invalidation during the load
    /// makes it stale at once.
    pub(crate) snapshot: Vec<(String, u64)>,
}

/// The right (and duty) to load one key: you are the only caller in this
/// process (and, with Redis, in the fleet) loading it. Call
/// [`Lease::complete`] with the value or [`Lease::abandon`] /
/// [`Lease::fail`] with the loader's error; every caller waiting on the key
/// gets that outcome. Dropping the lease unused releases them with
/// [`Error::LeaseDropped`] (and the fleet lease in Redis).
pub struct Lease {
    guard: FlightGuard,
    rkeys: Option<RedisKeys>,
    /// Tombstone token seen before the load started; `None` when L2 is
    /// absent or could not be read (then L2 is not written).
    fence: Option<Vec<u8>>,
    epoch: u64,
    started: Instant,
    fleet: Option<FleetLease>,
    fallback: Fallback,
    /// Taken by `try_lease` (a warm-up): counted as warmed when stored.
    warm: bool,
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
        mut guard: FlightGuard,
        rkeys: Option<RedisKeys>,
        fence: Option<Vec<u8>>,
        epoch: u64,
        fleet: Option<FleetLease>,
        fallback: Fallback,
    ) -> Self {
        guard.leased = true;
        Metrics::inc(&guard.shared.metrics.leads);
        guard.flight.tx.send_if_modified(|s| {
            if matches!(s, FlightState::Pending) {
                *s = FlightState::Loading;
                true
            } else {
                false
            }
        });
        Lease {
            guard,
            rkeys,
            fence,
            epoch,
            started: Instant::now(),
            fleet,
            fallback,
            warm: false,
        }
    }

    /// Mark this lease as a warm-up's.
    pub(crate) fn warming(mut self) -> Self {
        self.warm = true;
        self
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
        if !self.fallback.fail_safe {
            return None;
        }
        self.fallback
            .entry
            .clone()
            .filter(|e| e.meta.is_live(crate::clock::now_ms()))
    }

    /// The loader is taking too long: call this when the soft (or hard)
    /// timeout of the caller that runs it expires. With a fallback, every
    /// caller waiting on the key (now and until the load ends) is served the
    /// stale value, which is returned for the caller itself; the lease stays
    /// valid, so the load can finish in the background and still fill the
    /// cache. Without one, `None`: the caller reports a timeout.
    pub fn timed_out(&self, hard: bool) -> Option<Arc<Entry>> {
        let m = &self.guard.shared.metrics;
        match self.fallback() {
            Some(e) => {
                Metrics::inc(if hard {
                    &m.hard_timeouts
                } else {
                    &m.soft_timeouts
                });
                Metrics::inc(&m.fail_safe_served);
                self.guard.offer_stale(e.clone(), StaleKind::FailSafe);
                Some(e)
            }
            None => {
                if hard {
                    Metrics::inc(&m.hard_timeouts);
                } else {
                    Metrics::inc(&m.soft_timeouts);
                }
                None
            }
        }
    }

    /// Store the loaded value (L2 then L1) and hand it to every waiter.
    ///
    /// The L2 write is refused if the key was deleted after the load began
    /// (the tombstone fence), and the L1 write if this process wrote or
    /// deleted the key meanwhile: the waiters still get the value they
    /// asked for, but it is not cached over the newer state.
    pub async fn complete(self, payload: bytes::Bytes, opts: &WriteOptions) -> Result<Arc<Entry>> {
        self.finish(payload, opts, true).await
    }

    /// Hand the loaded value to every waiter without caching it (a
    /// loader's "don't cache this" answer); the fleet lease is released.
    pub async fn complete_uncached(
        self,
        payload: bytes::Bytes,
        opts: &WriteOptions,
    ) -> Result<Arc<Entry>> {
        Metrics::inc(&self.guard.shared.metrics.not_cached);
        self.finish(payload, opts, false).await
    }

    async fn finish(
        mut self,
        payload: bytes::Bytes,
        opts: &WriteOptions,
        store: bool,
    ) -> Result<Arc<Entry>> {
        let shared = self.guard.shared.clone();
        let mut opts = opts.clone();
        if opts.load_duration.is_none() {
            opts.load_duration = Some(self.started.elapsed());
        }

        let built = match shared.stamp(&opts.tags, &self.fallback.snapshot).await {
            Ok(tags) => shared.build_entry(payload, &opts, tags),
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
        Metrics::inc(&shared.metrics.loads_completed);
        let store =
            store && (entry.meta.stale_until_ms == 0 || entry.meta.is_live(crate::clock::now_ms()));
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
        let shared = self.guard.shared.clone();
        let m = &shared.metrics;
        let fleet = self.fleet.take();
        let mut refused = false;
        let mut released = false;
        // With Redis configured, a value Redis did not take (it could not be
        // reached now, or when the load began) is kept as an L1-only copy.
        let mark = shared.versions.local_mark();
        let mut local = shared.l2.is_some();
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
            match l2
                .complete(rk, &bytes, shared.px_for(entry), fence, &notice)
                .await
            {
                Ok(true) => {
                    local = false;
                    Metrics::inc(&m.writes);
                }
                Ok(false) => {
                    refused = true;
                    Metrics::inc(&m.late_writes_refused);
                }
                Err(e) => {
                    local = crate::l2::unreachable(&e);
                    Metrics::inc(&m.l2_errors);
                }
            }
            released = true;
        }
        if !released {
            self.fleet = fleet;
            self.release_fleet();
        }
        if !refused
            && let Some(l1) = &shared.l1
            && (shared.l2.is_none() || entry.meta.format != Format::INT)
        {
            let entry = if local {
                shared.local_copy(entry, mark)
            } else {
                entry.clone()
            };
            l1.fill(&self.guard.key, entry, self.epoch).await;
        }
    }

    /// Release the fleet lease (if held) in the background, waking the
    /// fleet's waiters so one of them takes over.
    fn release_fleet(&mut self) {
        let Some(mut fleet) = self.fleet.take() else {
            return;
        };
        if let Some(rk) = &self.rkeys {
            spawn_release(
                &self.guard.shared,
                rk,
                &self.guard.key,
                std::mem::take(&mut fleet.token),
            );
        }
    }

    /// Give up: every waiter gets [`Error::Loader`] with `error`.
    pub fn abandon(mut self, error: LoaderError) {
        Metrics::inc(&self.guard.shared.metrics.loader_errors);
        self.release_fleet();
        self.guard
            .resolve(FlightState::Failed(Error::Loader(error)));
    }

    /// The loader failed: with fail-safe on and a live stale value, serve
    /// that value to the caller and every waiter and keep it fresh for the
    /// throttle period (in L1 and L2, so the failing origin is not hammered
    /// by the fleet); otherwise [`Lease::abandon`] and return the error.
    pub async fn fail(mut self, error: LoaderError) -> Result<Arc<Entry>> {
        let Some(stale) = self.fallback() else {
            let e = Error::Loader(error.clone());
            self.abandon(error);
            return Err(e);
        };
        let shared = self.guard.shared.clone();
        Metrics::inc(&shared.metrics.loader_errors);
        Metrics::inc(&shared.metrics.fail_safe_served);
        let now = crate::clock::now_ms();
        let mut kept = (*stale).clone();
        // Kept on purpose: record the current versions, or a tag
        // invalidation that made it stale would keep it stale.
        let names: Vec<String> = kept
            .meta
            .tags
            .iter()
            .filter(|(n, _)| n != crate::versions::GENERATION_TAG)
            .map(|(n, _)| n.clone())
            .collect();
        if let Ok(tags) = shared.stamp(&names, &[]).await {
            kept.meta.tags = tags;
        }
        let grace = stale.meta.stale_until_ms.saturating_sub(now);
        kept.meta.fresh_until_ms = now.saturating_add(self.fallback.throttle.as_millis() as u64);
        kept.meta.stale_until_ms = kept.meta.fresh_until_ms.saturating_add(grace);
        let kept = Arc::new(kept);
        self.store(&kept).await;
        self.guard.resolve(FlightState::Value(kept.clone()));
        Ok(kept)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release_fleet();
    }
}

pub(crate) type FlightMap = Mutex<Flights>;

// Leases travel between threads and tasks of the bindings.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send_sync::<Lease>();
};
