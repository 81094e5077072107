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
use std::time::Instant;

use tokio::sync::watch;

use crate::cache::{Shared, WriteOptions};
use crate::envelope::{Entry, Format};
use crate::error::{Error, LoaderError, Result};
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::runtime::fork_generation;

#[derive(Clone)]
pub(crate) enum FlightState {
    Pending,
    Stale(Arc<Entry>),
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
        f.map.clear();
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

/// Wait for a flight's outcome. `accept_stale` makes a `Stale` state final.
pub(crate) async fn wait(mut rx: watch::Receiver<FlightState>, accept_stale: bool) -> FlightState {
    let r = rx
        .wait_for(|s| match s {
            FlightState::Pending => false,
            FlightState::Stale(_) => accept_stale,
            _ => true,
        })
        .await;
    match r {
        Ok(s) => s.clone(),
        // The sender is gone without a final state: only possible if the
        // flight was forgotten (fork). Start over.
        Err(_) => FlightState::Retry,
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

    /// Offer a stale value to waiters while the refresh goes on.
    pub(crate) fn offer_stale(&self, e: Arc<Entry>) {
        self.flight.tx.send_replace(FlightState::Stale(e));
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

/// The right (and duty) to load one key: you are the only caller in this
/// process loading it. Call [`Lease::complete`] with the value or
/// [`Lease::abandon`] with the loader's error; every caller waiting on the
/// key gets that outcome. Dropping the lease unused releases them with
/// [`Error::LeaseDropped`].
pub struct Lease {
    guard: FlightGuard,
    rkeys: Option<RedisKeys>,
    /// Tombstone token seen before the load started; `None` when L2 is
    /// absent or could not be read (then L2 is not written).
    fence: Option<Vec<u8>>,
    epoch: u64,
    started: Instant,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.guard.key)
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(crate) fn new(
        mut guard: FlightGuard,
        rkeys: Option<RedisKeys>,
        fence: Option<Vec<u8>>,
        epoch: u64,
    ) -> Self {
        guard.leased = true;
        Metrics::inc(&guard.shared.metrics.leads);
        Lease {
            guard,
            rkeys,
            fence,
            epoch,
            started: Instant::now(),
        }
    }

    /// The key being loaded.
    pub fn key(&self) -> &str {
        &self.guard.key
    }

    /// Store the loaded value (L2 then L1) and hand it to every waiter.
    ///
    /// The L2 write is refused if the key was deleted after the load began
    /// (the tombstone fence), and the L1 write if this process wrote or
    /// deleted the key meanwhile: the waiters still get the value they
    /// asked for, but it is not cached over the newer state.
    pub async fn complete(
        mut self,
        payload: bytes::Bytes,
        opts: &WriteOptions,
    ) -> Result<Arc<Entry>> {
        let shared = self.guard.shared.clone();
        let mut opts = opts.clone();
        if opts.load_duration.is_none() {
            opts.load_duration = Some(self.started.elapsed());
        }
        let entry = match shared.build_entry(payload, &opts) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                self.guard.resolve(FlightState::Failed(e.clone()));
                return Err(e);
            }
        };
        let m = &shared.metrics;
        Metrics::inc(&m.loads_completed);
        if entry.meta.stale_until_ms != 0 && !entry.meta.is_live(crate::clock::now_ms()) {
            // Zero TTL: hand it out, store nothing.
            self.guard.resolve(FlightState::Value(entry.clone()));
            return Ok(entry);
        }
        let mut refused = false;
        if let (Some(l2), Some(rk), Some(fence)) = (&shared.l2, &self.rkeys, &self.fence) {
            let bytes = shared.codec.encode(&entry);
            match l2.complete(rk, &bytes, shared.px_for(&entry), fence).await {
                Ok(true) => Metrics::inc(&m.writes),
                Ok(false) => {
                    refused = true;
                    Metrics::inc(&m.late_writes_refused);
                }
                Err(_) => Metrics::inc(&m.l2_errors),
            }
        }
        if !refused
            && let Some(l1) = &shared.l1
            && (shared.l2.is_none() || entry.meta.format != Format::INT)
        {
            l1.fill(&self.guard.key, entry.clone(), self.epoch).await;
        }
        self.guard.resolve(FlightState::Value(entry.clone()));
        Ok(entry)
    }

    /// Give up: every waiter gets [`Error::Loader`] with `error`.
    pub fn abandon(mut self, error: LoaderError) {
        Metrics::inc(&self.guard.shared.metrics.loader_errors);
        self.guard
            .resolve(FlightState::Failed(Error::Loader(error)));
    }
}

pub(crate) type FlightMap = Mutex<Flights>;

// Leases travel between threads and tasks of the bindings.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send_sync::<Lease>();
};
