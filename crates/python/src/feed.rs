//! `stratacache._native.PgListener`: the core's PostgreSQL change feed
//! (see `stratacache.feed` for the public API).

use std::collections::HashMap;
use std::sync::Mutex;

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

/// A table's rule for Debezium events: `(table, key columns, templates)`.
type PyTableRule = (String, Option<Vec<String>>, Option<Vec<String>>);

fn rules(tables: Vec<PyTableRule>) -> HashMap<String, TableRule> {
    tables
        .into_iter()
        .map(|(t, key, templates)| (t, TableRule { key, templates }))
        .collect()
}

/// A running broker consumer (NATS JetStream or RabbitMQ).
#[pyclass(frozen, module = "stratacache._native", name = "EventListener")]
pub(crate) struct PyEventListener {
    inner: Mutex<Option<EventListener>>,
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
        let mut feed = NatsFeed::new(url);
        if stream.is_some() || subjects.is_some() {
            let name = stream.unwrap_or_else(|| feed.stream.clone());
            let subjects = subjects.unwrap_or_else(|| feed.subjects.clone());
            feed = feed.stream(name, subjects);
        }
        if let Some(d) = durable {
            feed = feed.durable(d);
        }
        for (t, r) in rules(tables) {
            feed = feed.table(t, r);
        }
        let cache = cache.inner.clone();
        let l = run(py, EventListener::start_nats(cache, feed)).py(py)?;
        Ok(PyEventListener {
            inner: Mutex::new(Some(l)),
        })
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
        let mut feed = AmqpFeed::new(url);
        if let Some(q) = queue {
            feed = feed.queue(q);
        }
        if let Some((exchange, key)) = bind {
            feed = feed.bind(exchange, key);
        }
        for (t, r) in rules(tables) {
            feed = feed.table(t, r);
        }
        let cache = cache.inner.clone();
        let l = run(py, EventListener::start_amqp(cache, feed)).py(py)?;
        Ok(PyEventListener {
            inner: Mutex::new(Some(l)),
        })
    }

    /// The listener's counters (all zero once stopped).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(EventListener::stats)
            .unwrap_or_default();
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
