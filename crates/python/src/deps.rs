//! `stratacache._native.Deps`: what one load's value is built from (the
//! core's [`stratacache::Deps`]). The Python package keeps the current one
//! in a `contextvars` variable while a loader runs and hands it to the
//! tracked reads and to the lease's settlement.

use std::sync::Arc;

use pyo3::prelude::*;

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
