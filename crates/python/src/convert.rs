//! Python values ↔ core values: durations in seconds, TTLs, write
//! options, and entries as `(format_id, bytes)`.

use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use stratacache::{Format, Ttl, WriteOptions};

/// An entry as Python sees it: `(format_id, bytes)`.
pub(crate) type Value = (u8, Py<PyBytes>);

pub(crate) fn secs(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a finite number of seconds >= 0, got {v}"
        ))
    })
}

/// `None` → the cache default; `inf` → never; `<= 0` → do not cache.
pub(crate) fn ttl_of(ttl: Option<f64>) -> PyResult<Ttl> {
    Ok(match ttl {
        None => Ttl::Default,
        Some(t) if t.is_infinite() && t > 0.0 => Ttl::Never,
        Some(t) if t.is_nan() => return Err(PyValueError::new_err("ttl must not be NaN")),
        Some(t) if t <= 0.0 => Ttl::After(Duration::ZERO),
        Some(t) => Ttl::After(secs("ttl", t)?),
    })
}

pub(crate) fn opts(
    format: u8,
    ttl: Option<f64>,
    grace: f64,
    tags: Option<Vec<String>>,
) -> PyResult<WriteOptions> {
    Ok(WriteOptions::new(ttl_of(ttl)?, Format(format))
        .with_grace(secs("grace", grace)?)
        .with_tags(tags.unwrap_or_default()))
}

pub(crate) fn value(py: Python<'_>, e: &stratacache::Entry) -> Value {
    (e.meta.format.0, PyBytes::new(py, &e.payload).unbind())
}

/// [`value`] from a runtime thread (attaches to the interpreter).
pub(crate) fn value_attached(e: &stratacache::Entry) -> PyResult<Value> {
    crate::runtime::attach(|py| Ok(value(py, e)))
}

/// `set_many`'s `(key, data, format)` items, for the core.
pub(crate) fn with_formats(items: Vec<(String, Vec<u8>, u8)>) -> Vec<(String, Bytes, Format)> {
    items
        .into_iter()
        .map(|(k, d, f)| (k, Bytes::from(d), Format(f)))
        .collect()
}
