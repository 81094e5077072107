//! The circuit breaker in front of every Redis command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

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
    pub(super) open_until: AtomicU64,
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
    pub(super) fn admit(&self) -> Result<bool> {
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

    /// Redis answers again after an outage the breaker did not see (a
    /// simulated one): local-only copies stop being served.
    pub(super) fn recovered(&self) {
        self.recoveries.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn record(&self, outcome: &Result<impl Sized>, probe: bool) {
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
