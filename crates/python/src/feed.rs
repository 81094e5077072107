//! `stratacache._native.PgListener` and `EventListener`: the core's change
//! feed and broker consumers (see `stratacache.feed` for the public API).
//! Argument conversion only: unset options reach the core as `None`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use stratacache::feed::amqp::AmqpFeed;
use stratacache::feed::events::TableRule;
use stratacache::feed::nats::NatsFeed;
use stratacache::feed::{EventListener, Listener, PgFeed};

use crate::cache::PyCache;
use crate::convert::secs;
use crate::errors::IntoPyResult;
use crate::runtime::run;

/// A running change feed.
#[pyclass(frozen, module = "stratacache._native", name = "PgListener")]
pub(crate) struct PyPgListener {
    inner: Listener,
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
        let poll = poll_interval
            .map(|p| secs("poll_interval", p))
            .transpose()?;
        let lease = lease_ttl.map(|l| secs("lease_ttl", l)).transpose()?;
        let feed = PgFeed::from_options(url, tables, slot, publication, poll, lease);
        let listener = run(py, Listener::start(cache.inner.clone(), feed)).py(py)?;
        Ok(PyPgListener { inner: listener })
    }

    /// The listener's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
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
        run(py, self.inner.stop());
    }
}

/// A table's rule for Debezium events: `(table, key columns, templates)`.
type PyTableRule = (String, Option<Vec<String>>, Option<Vec<String>>);

fn rules(tables: Vec<PyTableRule>) -> Vec<(String, TableRule)> {
    tables
        .into_iter()
        .map(|(t, key, templates)| (t, TableRule { key, templates }))
        .collect()
}

/// A running broker consumer (NATS JetStream or RabbitMQ).
#[pyclass(frozen, module = "stratacache._native", name = "EventListener")]
pub(crate) struct PyEventListener {
    inner: EventListener,
}

impl PyEventListener {
    fn started(py: Python<'_>, r: stratacache::Result<EventListener>) -> PyResult<Self> {
        Ok(PyEventListener { inner: r.py(py)? })
    }
}

#[pymethods]
impl PyEventListener {
    /// Consume a NATS JetStream durable consumer; unset options take the
    /// core's defaults.
    #[staticmethod]
    #[pyo3(signature = (cache, url, *, stream = None, subjects = None, durable = None, tables = Vec::new()))]
    fn nats(
        py: Python<'_>,
        cache: &PyCache,
        url: String,
        stream: Option<String>,
        subjects: Option<Vec<String>>,
        durable: Option<String>,
        tables: Vec<PyTableRule>,
    ) -> PyResult<Self> {
        let feed = NatsFeed::from_options(url, stream, subjects, durable, rules(tables));
        let r = run(py, EventListener::start_nats(cache.inner.clone(), feed));
        Self::started(py, r)
    }

    /// Consume a RabbitMQ queue; unset options take the core's defaults.
    #[staticmethod]
    #[pyo3(signature = (cache, url, *, queue = None, bind = None, tables = Vec::new()))]
    fn amqp(
        py: Python<'_>,
        cache: &PyCache,
        url: String,
        queue: Option<String>,
        bind: Option<(String, String)>,
        tables: Vec<PyTableRule>,
    ) -> PyResult<Self> {
        let feed = AmqpFeed::from_options(url, queue, bind, rules(tables));
        let r = run(py, EventListener::start_amqp(cache.inner.clone(), feed));
        Self::started(py, r)
    }

    /// The listener's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("messages", s.messages)?;
        d.set_item("tags_invalidated", s.tags_invalidated)?;
        d.set_item("keys_deleted", s.keys_deleted)?;
        d.set_item("malformed", s.malformed)?;
        d.set_item("errors", s.errors)?;
        Ok(d)
    }

    /// Stop after the message in progress (idempotent).
    fn stop(&self, py: Python<'_>) {
        run(py, self.inner.stop());
    }
}

/// A listen configuration file's text, checked and with every default
/// filled in, as JSON (the core reads it: `stratacache::feed::config`).
#[pyfunction]
pub(crate) fn listen_config(py: Python<'_>, text: &str) -> PyResult<String> {
    stratacache::feed::config::normalized_json(text).py(py)
}
