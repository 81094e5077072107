//! Single-flight: at most one load per key per process. The map of
//! flights and the leader's guard; the [`crate::Lease`] built on a guard
//! lives in `lease.rs`.
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

use tokio::sync::watch;

use crate::envelope::Entry;
use crate::error::Error;
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

impl Flight {
    /// Offer a stale value to waiters while the load goes on; a flight
    /// already resolved keeps its outcome.
    pub(crate) fn offer_stale(&self, e: Arc<Entry>, kind: StaleKind) {
        self.tx.send_if_modified(|s| match s {
            FlightState::Value(_) | FlightState::Failed(_) | FlightState::Retry => false,
            _ => {
                *s = FlightState::Stale(e, kind);
                true
            }
        });
    }
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

pub(crate) fn join(flights: &Arc<FlightMap>, key: &str) -> Joined {
    let mut f = flights.lock().unwrap_or_else(|e| e.into_inner());
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
        flights: flights.clone(),
        key,
        flight,
        resolved: false,
        leased: false,
    })
}

/// Lead `key` only if no flight for it exists (never waits).
pub(crate) fn try_lead(flights: &Arc<FlightMap>, key: &str) -> Option<FlightGuard> {
    match join(flights, key) {
        Joined::Leader(g) => Some(g),
        Joined::Waiter(_) => None,
    }
}

/// A flight of one that no other caller can join: the caller loads on its
/// own (after its wait for someone else's load timed out).
pub(crate) fn detached(flights: &Arc<FlightMap>, key: &str) -> FlightGuard {
    let (tx, _) = watch::channel(FlightState::Pending);
    FlightGuard {
        flights: flights.clone(),
        key: Arc::from(key),
        flight: Arc::new(Flight { tx }),
        resolved: false,
        leased: false,
    }
}

/// Leadership of one flight. Dropping it unresolved releases the waiters.
pub(crate) struct FlightGuard {
    flights: Arc<FlightMap>,
    pub(crate) key: Arc<str>,
    flight: Arc<Flight>,
    resolved: bool,
    pub(crate) leased: bool,
}

impl FlightGuard {
    fn unregister(&self) {
        let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Whether the flight has its outcome.
    pub(crate) fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// The leader now holds a lease: waiters restart their wait clock.
    pub(crate) fn loading(&mut self) {
        self.leased = true;
        self.flight.tx.send_if_modified(|s| {
            if matches!(s, FlightState::Pending) {
                *s = FlightState::Loading;
                true
            } else {
                false
            }
        });
    }

    /// A handle on the flight that outlives the guard's owner (a lease
    /// consumed by its settlement), for offering stale values.
    pub(crate) fn flight(&self) -> Arc<Flight> {
        self.flight.clone()
    }

    /// Mark the flight as an early refresh ([`FlightState::Refreshing`]).
    pub(crate) fn refreshing(&self) {
        self.flight.tx.send_replace(FlightState::Refreshing);
    }

    /// Offer a stale value to waiters while the refresh goes on.
    pub(crate) fn offer_stale(&self, e: Arc<Entry>, kind: StaleKind) {
        self.flight.offer_stale(e, kind);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.resolved {
            if self.leased {
                // Counted by the lease (`leases_dropped`).
                self.resolve(FlightState::Failed(Error::LeaseDropped));
            } else {
                self.resolve(FlightState::Retry);
            }
        }
    }
}

pub(crate) type FlightMap = Mutex<Flights>;

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Arc<FlightMap> {
        Arc::new(Mutex::new(Flights::default()))
    }

    fn entry(v: &'static [u8]) -> Arc<Entry> {
        Arc::new(Entry {
            meta: crate::envelope::Meta {
                format: crate::envelope::Format::RAW,
                created_at_ms: 0,
                fresh_until_ms: 0,
                stale_until_ms: 0,
                load_us: 0,
                tags: Default::default(),
            },
            payload: bytes::Bytes::from_static(v),
            memo: Default::default(),
        })
    }

    #[test]
    fn the_first_caller_leads_and_the_next_waits() {
        let m = map();
        let Joined::Leader(mut g) = join(&m, "k") else {
            panic!("first caller leads");
        };
        let Joined::Waiter(rx) = join(&m, "k") else {
            panic!("second caller waits");
        };
        assert!(try_lead(&m, "k").is_none(), "no second leader");
        assert!(try_lead(&m, "other").is_some(), "flights are per key");
        g.resolve(FlightState::Value(entry(b"v")));
        assert!(matches!(&*rx.borrow(), FlightState::Value(e) if &e.payload[..] == b"v"));
        // Resolved flights leave the map: the next caller leads again.
        assert!(try_lead(&m, "k").is_some());
    }

    #[test]
    fn a_guard_dropped_unresolved_releases_its_waiters() {
        let m = map();
        let Joined::Leader(g) = join(&m, "k") else {
            panic!()
        };
        let Joined::Waiter(rx) = join(&m, "k") else {
            panic!()
        };
        drop(g);
        assert!(
            matches!(&*rx.borrow(), FlightState::Retry),
            "no lease yet: retry"
        );

        let Joined::Leader(mut g) = join(&m, "k") else {
            panic!()
        };
        let Joined::Waiter(rx) = join(&m, "k") else {
            panic!()
        };
        g.loading();
        assert!(matches!(&*rx.borrow(), FlightState::Loading));
        drop(g);
        assert!(
            matches!(&*rx.borrow(), FlightState::Failed(Error::LeaseDropped)),
            "a lease dropped unused fails its waiters"
        );
    }

    #[test]
    fn a_detached_flight_is_not_joinable() {
        let m = map();
        let _solo = detached(&m, "k");
        assert!(matches!(join(&m, "k"), Joined::Leader(_)));
    }

    #[test]
    fn a_late_stale_offer_does_not_replace_the_outcome() {
        let m = map();
        let Joined::Leader(mut g) = join(&m, "k") else {
            panic!()
        };
        let Joined::Waiter(rx) = join(&m, "k") else {
            panic!()
        };
        let flight = g.flight();
        flight.offer_stale(entry(b"old"), StaleKind::FailSafe);
        assert!(matches!(
            &*rx.borrow(),
            FlightState::Stale(_, StaleKind::FailSafe)
        ));
        g.resolve(FlightState::Value(entry(b"new")));
        flight.offer_stale(entry(b"old"), StaleKind::FailSafe);
        assert!(matches!(&*rx.borrow(), FlightState::Value(e) if &e.payload[..] == b"new"));
    }
}
