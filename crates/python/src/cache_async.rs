//! The asyncio twins of `stratacache._native.Cache`'s operations: each
//! returns an awaitable bound to the running loop, driven on the core's
//! runtime (see `runtime.rs`).

use bytes::Bytes;
use pyo3::prelude::*;
use stratacache::Served;

use crate::cache::{PyCache, set_many_formats};
use crate::convert::{opts, ttl_of, value, value_attached, with_formats};
use crate::deps::PyDeps;
use crate::errors::py_err;
use crate::lease::{PyLease, complete_groups, lease_groups, lookup_tuple, try_leases};
use crate::policy::PyPolicy;
use crate::runtime::awaitable;

#[pymethods]
impl PyCache {
    fn ainvalidate_tags<'py>(
        &self,
        py: Python<'py>,
        tags: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            c.invalidate_tags(&refs).await.map_err(py_err)
        })
    }

    #[pyo3(signature = (keys, force = false))]
    fn atry_leases<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<String>,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            try_leases(c, keys, force).await.map_err(py_err)
        })
    }

    #[pyo3(signature = (items, ttl = None, grace = 0.0, deps = None, tags = None))]
    fn acomplete_many<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(PyRef<'py, PyLease>, Vec<u8>, u8)>,
        ttl: Option<f64>,
        grace: f64,
        deps: Option<PyRef<'py, PyDeps>>,
        tags: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let groups = lease_groups(items, ttl, grace, crate::deps::of(deps), tags)?;
        let c = self.inner.clone();
        awaitable(py, async move {
            complete_groups(c, groups).await.map_err(py_err)
        })
    }

    fn aget<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            let r = c.get_sourced(&key).await.map_err(py_err)?;
            r.map(|(e, s)| {
                let (f, b) = value_attached(&e)?;
                Ok((f, b, Served::from(s).code()))
            })
            .transpose()
        })
    }

    /// `lookup_many` for asyncio.
    fn alookup_many<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let found = c.lookup_many(&refs).await.map_err(py_err)?;
            crate::runtime::attach(|py| Ok(crate::lease::many_tuples(py, found)))
        })
    }

    fn aget_many<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = c.get_many(&refs).await.map_err(py_err)?;
            crate::runtime::attach(|py| {
                Ok(r.into_iter()
                    .map(|o| o.map(|e| value(py, &e)))
                    .collect::<Vec<_>>())
            })
        })
    }

    /// `deps`: what the value was built from (an HTTP handler's reads).
    #[pyo3(signature = (key, data, format, ttl = None, grace = 0.0, tags = None, deps = None))]
    #[allow(clippy::too_many_arguments)]
    fn aset<'py>(
        &self,
        py: Python<'py>,
        key: String,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
        deps: Option<PyRef<'py, PyDeps>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut o = opts(format, ttl, grace, tags)?;
        o.deps = crate::deps::of(deps);
        let data = Bytes::copy_from_slice(data);
        let c = self.inner.clone();
        awaitable(
            py,
            async move { c.set(&key, data, &o).await.map_err(py_err) },
        )
    }

    #[pyo3(signature = (items, ttl = None, grace = 0.0))]
    fn aset_many<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(String, Vec<u8>, u8)>,
        ttl: Option<f64>,
        grace: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = opts(0, ttl, grace, None)?;
        let items = with_formats(items);
        let c = self.inner.clone();
        awaitable(py, async move {
            set_many_formats(&c, items, o).await.map_err(py_err)
        })
    }

    #[pyo3(signature = (key, data, format, ttl = None, grace = 0.0))]
    #[allow(clippy::too_many_arguments)]
    fn aadd<'py>(
        &self,
        py: Python<'py>,
        key: String,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let o = opts(format, ttl, grace, None)?;
        let data = Bytes::copy_from_slice(data);
        let c = self.inner.clone();
        awaitable(
            py,
            async move { c.add(&key, data, &o).await.map_err(py_err) },
        )
    }

    fn adelete<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move { c.delete(&key).await.map_err(py_err) })
    }

    fn adelete_many<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.delete_many(&refs).await.map_err(py_err)
        })
    }

    #[pyo3(signature = (key, ttl = None))]
    fn atouch<'py>(
        &self,
        py: Python<'py>,
        key: String,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = ttl_of(ttl)?;
        let c = self.inner.clone();
        awaitable(py, async move { c.touch(&key, t).await.map_err(py_err) })
    }

    #[pyo3(signature = (key, delta = 1))]
    fn aincr<'py>(&self, py: Python<'py>, key: String, delta: i64) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move { c.incr(&key, delta).await.map_err(py_err) })
    }

    fn ahas_key<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move { c.has_key(&key).await.map_err(py_err) })
    }

    fn aclear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        awaitable(py, async move { c.clear().await.map_err(py_err) })
    }

    #[pyo3(signature = (key, policy, deps = None))]
    fn alookup<'py>(
        &self,
        py: Python<'py>,
        key: String,
        policy: &PyPolicy,
        deps: Option<PyRef<'py, PyDeps>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let policy = policy.inner.clone();
        let c = self.inner.clone();
        let deps = crate::deps::of(deps);
        awaitable(py, async move {
            let r = match deps {
                Some(d) => c.lookup_tracked(&key, &policy, &d).await,
                None => c.lookup(&key, &policy).await,
            }
            .map_err(py_err)?;
            crate::runtime::attach(|py| Ok(lookup_tuple(py, r)))
        })
    }
}
