//! What a caller asks of a write and of a read-through: [`Ttl`],
//! [`WriteOptions`], [`LookupPolicy`] (with its validation) and their
//! defaults. A leaf module: plain data, no engine state.

use std::sync::Arc;
use std::time::Duration;

use crate::deps::Deps;
use crate::envelope::{Format, Meta};
use crate::error::{Error, Result};
use crate::key::validate_tag;

/// How long a written entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The cache's `default_ttl`.
    #[default]
    Default,
    /// Never expires.
    Never,
    /// Fresh for this long. Zero means "do not cache" (a `set` removes the
    /// key, as Django's `TIMEOUT=0` does).
    After(Duration),
}

/// Options of a write (`set`, `add`, `set_many`, [`crate::Lease::complete`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Freshness lifetime.
    pub ttl: Ttl,
    /// How long after going stale the value may still be served by
    /// lookups that accept stale values.
    pub grace: Duration,
    /// Serializer id of the payload.
    pub format: Format,
    /// Tags (names, 1..=255 bytes). Versions are filled in by the core.
    pub tags: Vec<String>,
    /// Load duration to record (defaults to the lease's measured time).
    pub load_duration: Option<Duration>,
    /// What the value was built from (the loader's collector, see
    /// [`crate::Deps`]): recorded with the entry, which is not stored when
    /// an input changed meanwhile.
    pub deps: Option<Arc<Deps>>,
}

impl WriteOptions {
    /// Options with this TTL and format, the rest default.
    pub fn new(ttl: Ttl, format: Format) -> Self {
        WriteOptions {
            ttl,
            format,
            ..Default::default()
        }
    }
    /// Set the grace period.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
    /// Set the tags.
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }
    /// Set what the value was built from.
    pub fn with_deps(mut self, deps: Arc<Deps>) -> Self {
        self.deps = Some(deps);
        self
    }

    /// Adaptive caching: the loader's own choices for the entry it built,
    /// made from what it loaded (Python's `Loaded(value, ttl=..., ...)`,
    /// JS's `new Loaded(value, {...})`). A given `ttl` or `grace` replaces
    /// the caller's (a zero TTL: hand the value out, do not store it);
    /// `tags` are added to the caller's. Tags are checked as a write's are.
    pub fn adapt(
        &mut self,
        ttl: Option<Ttl>,
        grace: Option<Duration>,
        tags: Vec<String>,
    ) -> crate::Result<()> {
        for t in &tags {
            crate::key::validate_tag(t)?;
        }
        if let Some(ttl) = ttl {
            self.ttl = ttl;
        }
        if let Some(grace) = grace {
            self.grace = grace;
        }
        for t in tags {
            if !self.tags.contains(&t) {
                self.tags.push(t);
            }
        }
        Ok(())
    }

    /// Whether these options say "do not store" (a zero TTL).
    pub(crate) fn stores_nothing(&self) -> bool {
        self.ttl == Ttl::After(Duration::ZERO)
    }
}

/// What a caller does when its wait for another caller's load (in this
/// process or, through the fleet lease, in another) times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnWaitTimeout {
    /// Load the key itself (the default): a stuck or very slow holder
    /// delays callers but never fails them.
    #[default]
    Load,
    /// Fail with [`Error::WaitTimeout`].
    Fail,
}

/// How long a fail-safe stale value is kept fresh after a failed load,
/// unless the policy says otherwise.
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

/// How a read-through lookup behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LookupPolicy {
    /// Serve a stale (within grace) value at once and refresh it in the
    /// background ([`crate::Lookup::Stale`]) instead of waiting for a load.
    pub allow_stale: bool,
    /// How long to wait for another caller's load; the cache's
    /// `wait_timeout` when `None`.
    pub wait_timeout: Option<Duration>,
    /// Probabilistic early refresh (XFetch) with this `beta` (1.0 is the
    /// classic setting; larger refreshes earlier): a fresh hit is refreshed
    /// when `now + load_duration * beta * -ln(rand) >= fresh_until`, so hot
    /// keys are reloaded shortly before they expire and cold keys just
    /// expire. `None`: off.
    pub early_refresh: Option<f64>,
    /// Deterministic refresh-ahead: a fresh hit within this fraction of its
    /// TTL from expiry (e.g. 0.2 = the last 20 %) is refreshed. `None`: off.
    pub refresh_ahead: Option<f64>,
    /// Fail-safe: when the load fails ([`crate::Lease::fail`]) or exceeds the soft
    /// timeout, serve the stale value (within its grace) instead.
    pub fail_safe: bool,
    /// How long a fail-safe stale value is kept fresh after a failed load,
    /// so a failing origin is not hammered. Default 30 s.
    pub fail_safe_throttle: Duration,
    /// With fail-safe and a stale value: how long a load (or a wait on
    /// another process's load) may take before the stale value is served;
    /// the load goes on in the background. `None`: no soft timeout.
    pub soft_timeout: Option<Duration>,
    /// Upper bound on every caller's wait for a value; past it a caller
    /// gets the fail-safe stale value or [`Error::LoaderTimeout`], and the
    /// load goes on in the background. `None`: unbounded.
    pub hard_timeout: Option<Duration>,
    /// What a timed-out wait does. Default [`OnWaitTimeout::Load`].
    pub on_wait_timeout: OnWaitTimeout,
    /// The tags the loaded value will carry: their versions are recorded
    /// when the load *starts*, so an invalidation during the load makes
    /// its result stale at once.
    pub tags: Vec<String>,
    /// TTL of a loader's "nothing" ([`crate::LoadOutcome::Nothing`]: a
    /// Python `None`, a JS `null`): `Some(Ttl::After(ZERO))` hands it to
    /// the callers without caching it, `Some(ttl)` caches it with that TTL
    /// (`Ttl::Never` included), `None` (default) treats it like any value.
    pub none_ttl: Option<Ttl>,
}

impl Default for LookupPolicy {
    fn default() -> Self {
        LookupPolicy {
            allow_stale: false,
            wait_timeout: None,
            early_refresh: None,
            refresh_ahead: None,
            fail_safe: false,
            fail_safe_throttle: DEFAULT_FAIL_SAFE_THROTTLE,
            soft_timeout: None,
            hard_timeout: None,
            on_wait_timeout: OnWaitTimeout::Load,
            tags: Vec::new(),
            none_ttl: None,
        }
    }
}

impl LookupPolicy {
    /// Turn on probabilistic early refresh (XFetch) with `beta`.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }
    /// Refresh fresh hits in the last `fraction` of their TTL.
    pub fn refresh_ahead(mut self, fraction: f64) -> Self {
        self.refresh_ahead = Some(fraction);
        self
    }

    /// Whether a fresh entry is due for an early refresh at `now_ms`.
    pub(crate) fn due(&self, meta: &Meta, now_ms: u64) -> bool {
        if meta.fresh_until_ms == 0
            || (self.early_refresh.is_none() && self.refresh_ahead.is_none())
        {
            return false;
        }
        let left = meta.fresh_until_ms.saturating_sub(now_ms) as f64;
        if let Some(fraction) = self.refresh_ahead {
            let total = meta.fresh_until_ms.saturating_sub(meta.created_at_ms) as f64;
            if left <= total * fraction {
                return true;
            }
        }
        if let Some(beta) = self.early_refresh {
            let delta_ms = f64::from(meta.load_us) / 1000.0;
            // 1 - U is in (0, 1], so -ln is in [0, inf).
            let gap = delta_ms * beta * -(1.0 - rand::random::<f64>()).ln();
            if gap >= left {
                return true;
            }
        }
        false
    }

    /// Accept stale values.
    pub fn allow_stale(mut self, on: bool) -> Self {
        self.allow_stale = on;
        self
    }
    /// Bound the wait for another caller's load.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = Some(d);
        self
    }
    /// Turn fail-safe on or off.
    pub fn fail_safe(mut self, on: bool) -> Self {
        self.fail_safe = on;
        self
    }
    /// Fail-safe throttle period.
    pub fn fail_safe_throttle(mut self, d: Duration) -> Self {
        self.fail_safe_throttle = d;
        self
    }
    /// Soft timeout (fail-safe).
    pub fn soft_timeout(mut self, d: Duration) -> Self {
        self.soft_timeout = Some(d);
        self
    }
    /// Hard timeout.
    pub fn hard_timeout(mut self, d: Duration) -> Self {
        self.hard_timeout = Some(d);
        self
    }
    /// What a timed-out wait does.
    pub fn on_wait_timeout(mut self, action: OnWaitTimeout) -> Self {
        self.on_wait_timeout = action;
        self
    }
    /// Tags of the value to load (see [`LookupPolicy::tags`]).
    pub fn tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }
    /// TTL of a loader's "nothing" (see [`LookupPolicy::none_ttl`]).
    pub fn none_ttl(mut self, ttl: Ttl) -> Self {
        self.none_ttl = Some(ttl);
        self
    }

    /// Check every field: [`Error::InvalidValue`] naming the first bad one.
    /// Bindings call this once when they build a policy; the lookup
    /// trusts a validated policy.
    pub fn validate(&self) -> Result<()> {
        if let Some(beta) = self.early_refresh
            && !(beta.is_finite() && beta >= 0.0)
        {
            return Err(Error::InvalidValue(format!(
                "early refresh (beta) must be a finite number >= 0, got {beta}"
            )));
        }
        if let Some(f) = self.refresh_ahead
            && !(0.0..=1.0).contains(&f)
        {
            return Err(Error::InvalidValue(format!(
                "refresh ahead must be a fraction between 0 and 1, got {f}"
            )));
        }
        for t in &self.tags {
            validate_tag(t)?;
        }
        Ok(())
    }

    pub(crate) fn keeps_stale(&self) -> bool {
        self.allow_stale || self.fail_safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        assert!(LookupPolicy::default().validate().is_ok());
        let e = LookupPolicy::default().early_refresh(f64::NAN).validate();
        assert!(matches!(e, Err(Error::InvalidValue(m)) if m.starts_with("early refresh")));
        let e = LookupPolicy::default().early_refresh(-1.0).validate();
        assert!(matches!(e, Err(Error::InvalidValue(_))));
        let e = LookupPolicy::default().refresh_ahead(1.5).validate();
        assert!(matches!(e, Err(Error::InvalidValue(m)) if m.starts_with("refresh ahead")));
        assert!(
            LookupPolicy::default()
                .refresh_ahead(1.0)
                .validate()
                .is_ok()
        );
        let e = LookupPolicy::default().tags(vec![String::new()]).validate();
        assert!(matches!(e, Err(Error::InvalidValue(m)) if m.starts_with("tag names")));
    }
}
