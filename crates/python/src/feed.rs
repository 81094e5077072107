//! `stratacache._native.PgListener`: the core's PostgreSQL change feed
//! (see `stratacache.feed` for the public API).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use stratacache::feed::{Listener, PgFeed};

use crate::cache::PyCache;
use crate::convert::secs;
use crate::errors::IntoPyResult;
use crate::runtime::run;

/// A running change feed.
#[pyclass(frozen, module = "stratacache._native", name = "PgListener")]
pub(crate) struct PyPgListener {
    inner: Mutex<Option<Listener>>,
}

#[pymethods]
impl PyPgListener {
    /// Start listening; options left `None` take the core's defaults.
    #[new]
    #[pyo3(signature = (cache, url, tables, *, slot = None, publication = None, poll_interval = None, lease_ttl = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        cache: &PyCache,
        url: String,
        tables: Vec<(String, Option<Vec<String>>)>,
        slot: Option<String>,
        publication: Option<String>,
        poll_interval: Option<f64>,
        lease_ttl: Option<f64>,
    ) -> PyResult<Self> {
        let mut feed = PgFeed::new(url);
        for (table, templates) in tables {
            feed = match templates {
                None => feed.table(table),
                Some(t) => feed.table_tags(table, t),
            };
        }
        if let Some(s) = slot {
            feed = feed.slot(s);
        }
        if let Some(p) = publication {
            feed = feed.publication(p);
        }
        if let Some(p) = poll_interval {
            feed = feed.poll_interval(secs("poll_interval", p)?);
        }
        if let Some(l) = lease_ttl {
            feed = feed.lease_ttl(secs("lease_ttl", l)?);
        }
        let cache = cache.inner.clone();
        let listener = run(py, Listener::start(cache, feed)).py(py)?;
        Ok(PyPgListener {
            inner: Mutex::new(Some(listener)),
        })
    }

    /// The listener's counters (all zero once stopped).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(Listener::stats)
            .unwrap_or_default();
        let d = PyDict::new(py);
        d.set_item("active", s.active)?;
        d.set_item("transactions", s.transactions)?;
        d.set_item("changes", s.changes)?;
        d.set_item("tags_invalidated", s.tags_invalidated)?;
        d.set_item("errors", s.errors)?;
        d.set_item("lag_ms", s.lag_ms)?;
        Ok(d)
    }

    /// Stop after the batch in progress and give up the fleet lease
    /// (idempotent).
    fn stop(&self, py: Python<'_>) {
        let l = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(l) = l {
            run(py, l.stop());
        }
    }
}
