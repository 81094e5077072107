//! `stratacache._native.Policy`: a read-through policy in seconds,
//! validated once by the core (`LookupPolicy::validate`).

use pyo3::prelude::*;
use stratacache::{LookupPolicy, OnWaitTimeout};

use crate::convert::{secs, ttl_of};
use crate::errors::py_err;

/// A validated read-through policy, built once and reused for many calls
/// (see `stratacache._loading.Policy`).
#[pyclass(frozen, module = "stratacache._native", name = "Policy")]
pub(crate) struct PyPolicy {
    pub(crate) inner: LookupPolicy,
}

#[pymethods]
impl PyPolicy {
    #[new]
    #[pyo3(signature = (
        *, allow_stale = false, wait_timeout = None, early_refresh = None, refresh_ahead = None,
        fail_safe = false, fail_safe_throttle = None, soft_timeout = None, hard_timeout = None,
        wait_timeout_fails = false, tags = None, none_ttl = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        allow_stale: bool,
        wait_timeout: Option<f64>,
        early_refresh: Option<f64>,
        refresh_ahead: Option<f64>,
        fail_safe: bool,
        fail_safe_throttle: Option<f64>,
        soft_timeout: Option<f64>,
        hard_timeout: Option<f64>,
        wait_timeout_fails: bool,
        tags: Option<Vec<String>>,
        none_ttl: Option<f64>,
    ) -> PyResult<Self> {
        let mut p = LookupPolicy::default()
            .allow_stale(allow_stale)
            .fail_safe(fail_safe)
            .on_wait_timeout(if wait_timeout_fails {
                OnWaitTimeout::Fail
            } else {
                OnWaitTimeout::Load
            })
            .tags(tags.unwrap_or_default());
        p.early_refresh = early_refresh;
        p.refresh_ahead = refresh_ahead;
        if let Some(t) = wait_timeout {
            p = p.wait_timeout(secs("wait_timeout", t)?);
        }
        if let Some(t) = fail_safe_throttle {
            p = p.fail_safe_throttle(secs("fail_safe_throttle", t)?);
        }
        if let Some(t) = soft_timeout {
            p = p.soft_timeout(secs("soft_timeout", t)?);
        }
        if let Some(t) = hard_timeout {
            p = p.hard_timeout(secs("hard_timeout", t)?);
        }
        if let Some(t) = none_ttl {
            // `<= 0`: never cache a loader's None; `inf`: cache it forever.
            p = p.none_ttl(ttl_of(Some(t))?);
        }
        p.validate().map_err(py_err)?;
        Ok(PyPolicy { inner: p })
    }

    fn __repr__(&self) -> String {
        format!("<stratacache Policy {:?}>", self.inner)
    }
}
