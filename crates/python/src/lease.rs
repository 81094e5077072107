//! `stratacache._native.Lease`: the right to load one key. Python runs
//! the loader and reports what it did; the core settles the load
//! (`Lease::settle`) and decides what each deadline means (`LoadClock`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use stratacache::{Cache, LoadClock, LoadOutcome, Lookup, Settled, WriteOptions};

use crate::convert::{Value, opts, secs, ttl_of, value, value_attached};
use crate::deps::PyDeps;
use crate::errors::{IntoPyResult, PyLoaderError, py_err};
use crate::runtime::{awaitable, run};

/// What the loader did, as `settle`'s first argument.
pub(crate) const VALUE: u8 = 0;
pub(crate) const NOTHING: u8 = 1;
pub(crate) const UNCACHED: u8 = 2;

fn with_deps(mut o: WriteOptions, deps: Option<PyRef<'_, PyDeps>>) -> WriteOptions {
    o.deps = crate::deps::of(deps);
    o
}

/// A loader's `Loaded(value, ttl=, grace=, tags=)`: `(ttl, grace, tags)`,
/// each `None` when not given.
pub(crate) type Adapt = (Option<f64>, Option<f64>, Option<Vec<String>>);

/// Apply a loader's own choices (the core's [`WriteOptions::adapt`]).
pub(crate) fn adapted(mut o: WriteOptions, adapt: Option<Adapt>) -> PyResult<WriteOptions> {
    if let Some((ttl, grace, tags)) = adapt {
        let ttl = ttl.map(|t| ttl_of(Some(t))).transpose()?;
        let grace = grace.map(|g| secs("grace", g)).transpose()?;
        o.adapt(ttl, grace, tags.unwrap_or_default())
            .map_err(py_err)?;
    }
    Ok(o)
}

fn outcome(kind: u8, data: &[u8]) -> PyResult<LoadOutcome> {
    let b = Bytes::copy_from_slice(data);
    Ok(match kind {
        VALUE => LoadOutcome::Value(b),
        NOTHING => LoadOutcome::Nothing(b),
        UNCACHED => LoadOutcome::Uncached(b),
        _ => {
            return Err(PyRuntimeError::new_err(format!(
                "unknown load outcome {kind}"
            )));
        }
    })
}

/// A failed load's answer: the fail-safe value, or `None` when the
/// loader's error stands (every waiter got it; the caller re-raises it).
fn failed(r: stratacache::Result<Settled>) -> PyResult<Option<Settled>> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(stratacache::Error::Loader(_)) => Ok(None),
        Err(e) => Err(py_err(e)),
    }
}

/// The right to load one key (see `Cache.get_or_set`). Exactly one of
/// `settle`/`asettle`/`complete`/`acomplete`/`fail`/`afail`/`abandon` may
/// be called; a lease garbage-collected unused releases its waiters with
/// `LeaseDroppedError`. The deadlines stay usable after settlement.
#[pyclass(frozen, module = "stratacache._native", name = "Lease")]
pub(crate) struct PyLease {
    key: String,
    tracks: bool,
    clock: LoadClock,
    inner: Mutex<Option<stratacache::Lease>>,
}

impl PyLease {
    pub(crate) fn new(l: stratacache::Lease) -> Self {
        PyLease {
            key: l.key().to_owned(),
            tracks: l.tracks_dependencies(),
            clock: l.clock(),
            inner: Mutex::new(Some(l)),
        }
    }

    pub(crate) fn take(&self) -> PyResult<stratacache::Lease> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lease state poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this lease was already completed or abandoned"))
    }
}

#[pymethods]
impl PyLease {
    #[getter]
    fn key(&self) -> String {
        self.key.clone()
    }

    /// Whether the loader should run in a collecting scope (the cache's
    /// `track_dependencies`).
    #[getter]
    fn tracks_dependencies(&self) -> bool {
        self.tracks
    }

    /// Settle the load with what the loader did (`VALUE`, `NOTHING`: a
    /// `None`, `UNCACHED`: a `NoCache`); the core applies `none_ttl`.
    /// `deps`: what the loader read (its collector), recorded with the
    /// value.
    /// `adapt`: the loader's `Loaded` choices, `(ttl, grace, tags)`.
    /// Returns whether the value was stored (the core's `Lease::stores`).
    #[pyo3(signature = (kind, data, format, ttl = None, grace = 0.0, tags = None, deps = None, adapt = None))]
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        py: Python<'_>,
        kind: u8,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
        deps: Option<PyRef<'_, PyDeps>>,
        adapt: Option<Adapt>,
    ) -> PyResult<bool> {
        let o = adapted(with_deps(opts(format, ttl, grace, tags)?, deps), adapt)?;
        let out = outcome(kind, data)?;
        let lease = self.take()?;
        let stores = lease.stores(&out, &o);
        run(py, lease.settle(out, &o)).py(py).map(|_| stores)
    }

    #[pyo3(signature = (kind, data, format, ttl = None, grace = 0.0, tags = None, deps = None, adapt = None))]
    #[allow(clippy::too_many_arguments)]
    fn asettle<'py>(
        &self,
        py: Python<'py>,
        kind: u8,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
        deps: Option<PyRef<'py, PyDeps>>,
        adapt: Option<Adapt>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = adapted(with_deps(opts(format, ttl, grace, tags)?, deps), adapt)?;
        let out = outcome(kind, data)?;
        let lease = self.take()?;
        let stores = lease.stores(&out, &o);
        awaitable(py, async move {
            lease.settle(out, &o).await.map(|_| stores).map_err(py_err)
        })
    }

    /// Store `data` as the loaded value (no `none_ttl` rule: the HTTP
    /// layer's responses and warm-ups).
    #[pyo3(signature = (data, format, ttl = None, grace = 0.0, tags = None, deps = None))]
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        py: Python<'_>,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
        deps: Option<PyRef<'_, PyDeps>>,
    ) -> PyResult<()> {
        self.settle(py, VALUE, data, format, ttl, grace, tags, deps, None)
            .map(|_| ())
    }

    #[pyo3(signature = (data, format, ttl = None, grace = 0.0, tags = None, deps = None))]
    #[allow(clippy::too_many_arguments)]
    fn acomplete<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
        deps: Option<PyRef<'py, PyDeps>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.asettle(py, VALUE, data, format, ttl, grace, tags, deps, None)
    }

    /// Fail the load: every caller waiting on this key gets `exc`.
    fn abandon(&self, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let lease = self.take()?;
        lease.abandon(PyLoaderError::wrap(&exc));
        Ok(())
    }

    /// The loader raised `exc`: the fail-safe stale value `(format, data)`
    /// if the policy allows one (served to every waiter and kept fresh for
    /// the throttle period), else `None` (every waiter got `exc`; re-raise
    /// it).
    fn fail(&self, py: Python<'_>, exc: Bound<'_, PyAny>) -> PyResult<Option<Value>> {
        let lease = self.take()?;
        let err = PyLoaderError::wrap(&exc);
        let s = failed(run(py, lease.fail(err)))?;
        Ok(s.map(|s| value(py, s.entry())))
    }

    fn afail<'py>(&self, py: Python<'py>, exc: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let lease = self.take()?;
        let err = PyLoaderError::wrap(&exc);
        awaitable(py, async move {
            match failed(lease.fail(err).await)? {
                Some(s) => value_attached(s.entry()).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The stale value this load may fall back on (fail-safe), if any.
    fn fallback(&self, py: Python<'_>) -> PyResult<Option<Value>> {
        let g = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lease state poisoned"))?;
        Ok(g.as_ref().and_then(|l| l.fallback()).map(|e| value(py, &e)))
    }

    /// The `i`-th deadline of the caller running the loader: `(seconds
    /// from now, is_hard)`, or `None` (wait for the loader).
    fn deadline(&self, i: usize) -> Option<(f64, bool)> {
        self.clock
            .deadline(i)
            .map(|d| (d.left.as_secs_f64(), d.hard))
    }

    /// The loader was still running at a deadline: the stale value to
    /// answer with (also offered to every waiter; the load goes on), or
    /// `None` to keep waiting; `LoaderTimeoutError` at the hard deadline
    /// without one.
    fn deadline_passed(&self, py: Python<'_>, hard: bool) -> PyResult<Option<Value>> {
        Ok(self
            .clock
            .passed(hard)
            .map_err(py_err)?
            .map(|e| value(py, &e)))
    }

    /// Whether this lease also holds the fleet-wide lease in Redis.
    #[getter]
    fn is_fleet(&self) -> PyResult<bool> {
        let g = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lease state poisoned"))?;
        Ok(g.as_ref().is_some_and(|l| l.is_fleet()))
    }

    fn __repr__(&self) -> String {
        format!("<stratacache Lease key={:?}>", self.key)
    }
}

pub(crate) async fn try_leases(
    c: Cache,
    keys: Vec<String>,
    force: bool,
) -> stratacache::Result<Vec<PyLease>> {
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    Ok(c.try_leases(&refs, force)
        .await?
        .into_iter()
        .map(PyLease::new)
        .collect())
}

pub(crate) type LeaseGroups = Vec<(WriteOptions, Vec<(stratacache::Lease, Bytes)>)>;

pub(crate) fn lease_groups(
    items: Vec<(PyRef<'_, PyLease>, Vec<u8>, u8)>,
    ttl: Option<f64>,
    grace: f64,
    deps: Option<Arc<stratacache::Deps>>,
    tags: Option<Vec<String>>,
) -> PyResult<LeaseGroups> {
    let mut groups: LeaseGroups = Vec::new();
    for (lease, d, f) in items {
        let l = lease.take()?;
        match groups.iter_mut().find(|(o, _)| o.format.0 == f) {
            Some((_, v)) => v.push((l, Bytes::from(d))),
            None => {
                let mut o = opts(f, ttl, grace, tags.clone())?;
                o.deps = deps.clone();
                groups.push((o, vec![(l, Bytes::from(d))]));
            }
        }
    }
    Ok(groups)
}

pub(crate) async fn complete_groups(c: Cache, groups: LeaseGroups) -> stratacache::Result<usize> {
    let mut n = 0;
    for (o, items) in groups {
        n += c.complete_many(items, &o).await?;
    }
    Ok(n)
}

/// `lookup_many`'s answers as `(kind, format, data, lease)`: FRESH with
/// the value, LEAD with a lease, BUSY with neither.
pub(crate) fn many_tuples(py: Python<'_>, found: Vec<stratacache::ManyLookup>) -> Vec<LookupTuple> {
    found
        .into_iter()
        .map(|m| match m {
            stratacache::ManyLookup::Fresh(e) => {
                let (f, b) = crate::convert::value(py, &e);
                (FRESH, Some(f), Some(b), None)
            }
            stratacache::ManyLookup::Lead(l) => (LEAD, None, None, Some(PyLease::new(l))),
            _ => (BUSY, None, None, None),
        })
        .collect()
}

/// `(kind, format, data, lease)`, see `PyCache::lookup`.
pub(crate) type LookupTuple = (u8, Option<u8>, Option<Py<PyBytes>>, Option<PyLease>);

/// Lookup outcomes, as the first item of `lookup()`'s tuple.
pub(crate) const FRESH: u8 = 0;
pub(crate) const STALE: u8 = 1;
pub(crate) const LEAD: u8 = 2;
/// `lookup_many`: being loaded elsewhere (read it through `lookup`).
pub(crate) const BUSY: u8 = 3;

/// `(kind, format, data, lease, served)`, see `PyCache::lookup`.
pub(crate) type LookupAnswer = (u8, Option<u8>, Option<Py<PyBytes>>, Option<PyLease>, u8);

/// A lookup's answer as `lookup()` / `alookup()` return it: an early
/// refresh is FRESH with the lease to refresh with; `served` is
/// `stratacache::Served::code` (for `note_served`).
pub(crate) fn lookup_tuple(py: Python<'_>, r: Lookup) -> LookupAnswer {
    let served = r.served().code();
    match r {
        Lookup::Fresh(e, _) => {
            let (f, b) = value(py, &e);
            (FRESH, Some(f), Some(b), None, served)
        }
        Lookup::Refresh(e, lease) => {
            let (f, b) = value(py, &e);
            (FRESH, Some(f), Some(b), Some(PyLease::new(lease)), served)
        }
        Lookup::Stale(e, lease) => {
            let (f, b) = value(py, &e);
            (STALE, Some(f), Some(b), lease.map(PyLease::new), served)
        }
        Lookup::Lead(lease) => (LEAD, None, None, Some(PyLease::new(lease)), served),
    }
}
