//! `stratacache._native.Deps`: what one load's value is built from (the
//! core's [`stratacache::Deps`]). The Python package keeps the current one
//! in a `contextvars` variable while a loader runs and hands it to the
//! tracked reads and to the lease's settlement.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::cache::PyCache;
use crate::convert::{Value, value, value_attached};
use crate::errors::{IntoPyResult, py_err};
use crate::runtime::{awaitable, run};

#[pyclass(name = "Deps", module = "stratacache._native", frozen)]
pub(crate) struct PyDeps {
    pub(crate) inner: Arc<stratacache::Deps>,
}

#[pymethods]
impl PyDeps {
    #[new]
    fn new() -> Self {
        PyDeps {
            inner: Arc::new(stratacache::Deps::new()),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Add what this collector holds to `parent`'s.
    fn merge_into(&self, parent: &PyDeps) {
        self.inner.merge_into(&parent.inner);
    }
}

/// The core's collector behind an optional Python one.
pub(crate) fn of(d: Option<PyRef<'_, PyDeps>>) -> Option<Arc<stratacache::Deps>> {
    d.map(|d| d.inner.clone())
}

/// The tracked reads (the core's `get_tracked`, `get_many_tracked`,
/// `track_tags`): what `Cache.get` and friends call inside a loader.
#[pymethods]
impl PyCache {
    /// `get` inside a load: the key and the value's tags become
    /// dependencies of what the load builds (`deps`, its collector).
    fn get_tracked(&self, py: Python<'_>, key: String, deps: &PyDeps) -> PyResult<Option<Value>> {
        let d = deps.inner.clone();
        let r = run(py, self.inner.get_tracked(&key, &d)).py(py)?;
        Ok(r.map(|e| value(py, &e)))
    }

    fn get_many_tracked(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        deps: &PyDeps,
    ) -> PyResult<Vec<Option<Value>>> {
        let d = deps.inner.clone();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = run(py, self.inner.get_many_tracked(&refs, &d)).py(py)?;
        Ok(r.into_iter().map(|o| o.map(|e| value(py, &e))).collect())
    }

    fn aget_tracked<'py>(
        &self,
        py: Python<'py>,
        key: String,
        deps: &PyDeps,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        awaitable(py, async move {
            let r = c.get_tracked(&key, &d).await.map_err(py_err)?;
            r.map(|e| value_attached(&e)).transpose()
        })
    }

    fn aget_many_tracked<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<String>,
        deps: &PyDeps,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = c.get_many_tracked(&refs, &d).await.map_err(py_err)?;
            crate::runtime::attach(|py| {
                Ok(r.into_iter()
                    .map(|o| o.map(|e| value(py, &e)))
                    .collect::<Vec<_>>())
            })
        })
    }

    /// `depends_on`: the load collecting into `deps` depends on `tags`.
    fn track_tags(&self, py: Python<'_>, deps: &PyDeps, tags: Vec<String>) -> PyResult<()> {
        let d = deps.inner.clone();
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        run(py, self.inner.track_tags(&d, &refs)).py(py)
    }

    fn atrack_tags<'py>(
        &self,
        py: Python<'py>,
        deps: &PyDeps,
        tags: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            c.track_tags(&d, &refs).await.map_err(py_err)
        })
    }
}
