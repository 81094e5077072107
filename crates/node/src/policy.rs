//! `NativePolicy`: a read-through policy in milliseconds, validated by
//! the core (`LookupPolicy::validate`).

use napi_derive::napi;
use stratacache::{LookupPolicy, OnWaitTimeout};

use napi::bindgen_prelude::*;

use crate::convert::{ms, ttl_of};
use crate::error::js_err;

/// A read-through policy (see `getOrSet` in the JS package).
#[napi(object)]
pub struct NativePolicy {
    pub allow_stale: Option<bool>,
    pub wait_timeout_ms: Option<f64>,
    pub wait_timeout_fails: Option<bool>,
    pub early_refresh: Option<f64>,
    pub refresh_ahead: Option<f64>,
    pub fail_safe: Option<bool>,
    pub fail_safe_throttle_ms: Option<f64>,
    pub soft_timeout_ms: Option<f64>,
    pub hard_timeout_ms: Option<f64>,
    pub tags: Option<Vec<String>>,
    pub none_ttl_ms: Option<f64>,
}

impl NativePolicy {
    pub(crate) fn build(&self) -> Result<LookupPolicy> {
        let mut policy = LookupPolicy::default()
            .allow_stale(self.allow_stale.unwrap_or(false))
            .fail_safe(self.fail_safe.unwrap_or(false))
            .on_wait_timeout(if self.wait_timeout_fails.unwrap_or(false) {
                OnWaitTimeout::Fail
            } else {
                OnWaitTimeout::Load
            })
            .tags(self.tags.clone().unwrap_or_default());
        policy.early_refresh = self.early_refresh;
        policy.refresh_ahead = self.refresh_ahead;
        if let Some(w) = self.wait_timeout_ms {
            policy = policy.wait_timeout(ms("waitTimeout", w)?);
        }
        if let Some(t) = self.fail_safe_throttle_ms {
            policy = policy.fail_safe_throttle(ms("failSafeThrottle", t)?);
        }
        if let Some(t) = self.soft_timeout_ms {
            policy = policy.soft_timeout(ms("softTimeout", t)?);
        }
        if let Some(t) = self.hard_timeout_ms {
            policy = policy.hard_timeout(ms("hardTimeout", t)?);
        }
        if let Some(t) = self.none_ttl_ms {
            // `<= 0`: never cache a factory's null; `Infinity`: forever.
            policy = policy.none_ttl(ttl_of(Some(t))?);
        }
        policy.validate().map_err(js_err)?;
        Ok(policy)
    }
}
