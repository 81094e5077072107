//! Core errors → Python exceptions.
//!
//! The exception classes are defined in Python (`stratacache.exceptions`,
//! where they can inherit from the builtin they resemble, e.g. `ValueError`
//! or `TimeoutError`) and looked up here by the core's stable error code.
//! A loader's own exception travels through the core inside
//! [`PyLoaderError`] and comes back out unchanged, so every caller waiting
//! on a failed load sees the loader's exception object.

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

/// A Python exception carried through the core as a [`stratacache::LoaderError`].
#[derive(Debug)]
pub(crate) struct PyLoaderError {
    exc: Py<PyAny>,
    message: String,
}

impl std::fmt::Display for PyLoaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PyLoaderError {}

impl PyLoaderError {
    pub(crate) fn wrap(exc: &Bound<'_, PyAny>) -> stratacache::LoaderError {
        let message = exc
            .str()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "loader failed".to_owned());
        Arc::new(PyLoaderError {
            exc: exc.clone().unbind(),
            message,
        })
    }
}

static CLASSES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

fn class_for<'py>(py: Python<'py>, code: &str) -> PyResult<Bound<'py, PyType>> {
    let table = CLASSES.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let m = py.import("stratacache.exceptions")?;
        Ok(m.getattr("_BY_CODE")?.cast_into::<PyDict>()?.unbind())
    })?;
    match table.bind(py).get_item(code)? {
        Some(cls) => Ok(cls.cast_into::<PyType>()?),
        None => Ok(m_base(py)?),
    }
}

fn m_base(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py
        .import("stratacache.exceptions")?
        .getattr("StrataCacheError")?
        .cast_into::<PyType>()?)
}

/// Convert a core error into the matching Python exception.
pub(crate) fn to_py(py: Python<'_>, e: stratacache::Error) -> PyErr {
    if let stratacache::Error::Loader(inner) = &e
        && let Some(le) = inner.downcast_ref::<PyLoaderError>()
    {
        return PyErr::from_value(le.exc.bind(py).clone());
    }
    match class_for(py, e.code()) {
        Ok(cls) => match cls.call1((e.to_string(),)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => PyRuntimeError::new_err(format!("{} ({err})", e)),
    }
}

/// `Result` extension: map the core error with the GIL at hand.
pub(crate) trait IntoPyResult<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for stratacache::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// For async bodies, which have no `Python` token: attach to convert.
pub(crate) fn py_err(e: stratacache::Error) -> PyErr {
    crate::runtime::attach(|py| Ok(to_py(py, e))).unwrap_or_else(|exiting| exiting)
}
