//! `stratacache._native.Cache` and `Lease`: thin wrappers over the core.
//!
//! Values cross as `(format_id, bytes)`; (de)serialization lives in the
//! Python package. Inputs are copied into owned Rust values *before* any
//! wait, so nothing borrowed from Python is touched with the GIL released.

use std::sync::Arc;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use stratacache::{Cache, Config, Entry, Format, Lookup, RedisLocation, Served, WriteOptions};

use crate::convert::{Value, opts, secs, ttl_of, value, with_formats};
use crate::deps::PyDeps;
use crate::errors::IntoPyResult;
use crate::lease::{
    FRESH, LEAD, LookupAnswer, LookupTuple, PyLease, STALE, complete_groups, lease_groups,
    lookup_tuple, try_leases,
};
use crate::memo::{self};
use crate::policy::PyPolicy;
use crate::runtime::run;
use crate::served;

/// A tiered cache handle (see `stratacache.Cache` for the public API).
#[pyclass(frozen, module = "stratacache._native", name = "Cache")]
pub(crate) struct PyCache {
    pub(crate) inner: Cache,
}

impl PyCache {
    /// The L1 read of `get_local` (it never waits).
    fn local(&self, py: Python<'_>, key: &str) -> PyResult<Option<Arc<Entry>>> {
        self.inner.get_local(key).py(py)
    }

    /// `get` on the runtime, with the tier that answered.
    fn read(&self, py: Python<'_>, key: &str) -> PyResult<Option<(Arc<Entry>, Served)>> {
        Ok(run(py, self.inner.get_sourced(key))
            .py(py)?
            .map(|(e, s)| (e, s.into())))
    }

    /// `e` decoded as `get_value` does, noting (once decoded) that `how`
    /// served it (`served.rs`).
    fn decoded(
        &self,
        py: Python<'_>,
        e: &Entry,
        how: Served,
        loads: &Bound<'_, PyAny>,
        memo: u8,
    ) -> PyResult<Py<PyAny>> {
        let v = memo::decoded(&self.inner, py, e, loads, memo)?;
        served::note(how);
        Ok(v)
    }
}

#[pymethods]
impl PyCache {
    /// Every option left `None` takes the core's default (`Config::default()`).
    #[new]
    #[pyo3(signature = (
        *, namespace = None, redis_url = None, cluster = None, l1 = None,
        l1_max_bytes = None, l1_memo_bytes = None, default_ttl = None, compress_threshold = None,
        max_value_bytes = None, signing_key = None, connect_timeout = None,
        op_timeout = None, tombstone_ttl = None, wait_timeout = None, ttl_jitter = None,
        fleet_lease = None, lease_ttl = None, isolated = None, breaker_threshold = None,
        breaker_cooldown = None, accepted_formats = None, track_dependencies = None,
        edge_purge = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        namespace: Option<String>,
        redis_url: Option<String>,
        cluster: Option<Vec<String>>,
        l1: Option<bool>,
        l1_max_bytes: Option<u64>,
        l1_memo_bytes: Option<u64>,
        default_ttl: Option<f64>,
        compress_threshold: Option<usize>,
        max_value_bytes: Option<usize>,
        signing_key: Option<Vec<u8>>,
        connect_timeout: Option<f64>,
        op_timeout: Option<f64>,
        tombstone_ttl: Option<f64>,
        wait_timeout: Option<f64>,
        ttl_jitter: Option<f64>,
        fleet_lease: Option<bool>,
        lease_ttl: Option<f64>,
        isolated: Option<bool>,
        breaker_threshold: Option<u32>,
        breaker_cooldown: Option<f64>,
        accepted_formats: Option<Vec<u8>>,
        track_dependencies: Option<bool>,
        edge_purge: Option<String>,
    ) -> PyResult<Self> {
        let redis = match (redis_url, cluster) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give either redis_url or cluster, not both",
                ));
            }
            (Some(u), None) if !u.is_empty() => Some(RedisLocation::Standalone(u)),
            (None, Some(seeds)) => Some(RedisLocation::Cluster(seeds)),
            _ => None,
        };
        let mut cfg = Config::default();
        cfg.redis = redis;
        cfg.signing_key = signing_key;
        cfg.accepted_formats = accepted_formats;
        let set_secs = |slot: &mut std::time::Duration, name: &str, v: Option<f64>| {
            if let Some(v) = v {
                *slot = secs(name, v)?;
            }
            PyResult::Ok(())
        };
        set_secs(&mut cfg.connect_timeout, "connect_timeout", connect_timeout)?;
        set_secs(&mut cfg.op_timeout, "op_timeout", op_timeout)?;
        set_secs(&mut cfg.tombstone_ttl, "tombstone_ttl", tombstone_ttl)?;
        set_secs(&mut cfg.wait_timeout, "wait_timeout", wait_timeout)?;
        set_secs(&mut cfg.lease_ttl, "lease_ttl", lease_ttl)?;
        set_secs(
            &mut cfg.breaker_cooldown,
            "breaker_cooldown",
            breaker_cooldown,
        )?;
        if let Some(v) = namespace {
            cfg.namespace = v;
        }
        if let Some(v) = l1 {
            cfg.l1_enabled = v;
        }
        if let Some(v) = l1_max_bytes {
            cfg.l1_max_bytes = v;
        }
        // Decoded values kept beside entries (0 turns them off): the memo
        // is what makes Python's hits skip unpickling.
        cfg.l1_memo_bytes = l1_memo_bytes.unwrap_or(cfg.binding_memo_bytes());
        match default_ttl {
            None => {}
            Some(t) if t.is_infinite() => cfg.default_ttl = None,
            Some(t) => cfg.default_ttl = Some(secs("default_ttl", t)?),
        }
        if let Some(v) = compress_threshold {
            cfg.compress_threshold = v;
        }
        if let Some(v) = max_value_bytes {
            cfg.max_value_bytes = v;
        }
        if let Some(v) = ttl_jitter {
            cfg.ttl_jitter = v;
        }
        if let Some(v) = fleet_lease {
            cfg.fleet_lease = v;
        }
        if let Some(v) = track_dependencies {
            cfg.track_dependencies = v;
        }
        if let Some(v) = isolated {
            cfg.isolated = v;
        }
        if let Some(v) = breaker_threshold {
            cfg.breaker_threshold = v;
        }
        if let Some(json) = edge_purge {
            cfg.edge_purge = stratacache::purge::EdgePurge::parse_list(&json).py(py)?;
        }
        Ok(PyCache {
            inner: Cache::new(cfg).py(py)?,
        })
    }

    #[getter]
    fn namespace(&self) -> String {
        self.inner.namespace().to_owned()
    }

    #[getter]
    fn tracks_dependencies(&self) -> bool {
        self.inner.tracks_dependencies()
    }

    #[getter]
    fn has_l2(&self) -> bool {
        self.inner.has_l2()
    }

    /// L1 only, never waits: the value on a fresh L1 hit, else `None`
    /// (which is not a miss when Redis is configured). Lets async callers
    /// answer an L1 hit without an event-loop round trip.
    fn get_local(&self, py: Python<'_>, key: String) -> PyResult<Option<Value>> {
        Ok(self.local(py, &key)?.map(|e| value(py, &e)))
    }

    fn get(&self, py: Python<'_>, key: String) -> PyResult<Option<Value>> {
        Ok(self.read(py, &key)?.map(|(e, _)| value(py, &e)))
    }

    /// `get`, decoded here: `loads(format, data)` of the fresh value, or
    /// `default`. `memo` is the serializer's memo key (0: none): with one,
    /// values that a copy cannot tell apart from a decode are kept beside
    /// the L1 entry and later hits skip `loads` (see `memo.rs`).
    fn get_value(
        &self,
        py: Python<'_>,
        key: String,
        loads: &Bound<'_, PyAny>,
        memo: u8,
        default: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        // The L1 hit first, without entering the runtime (as `get_local`).
        if let Some(e) = self.local(py, &key)? {
            return self.decoded(py, &e, Served::L1, loads, memo);
        }
        if !self.inner.has_l2() {
            return Ok(default);
        }
        match self.read(py, &key)? {
            Some((e, how)) => self.decoded(py, &e, how, loads, memo),
            None => Ok(default),
        }
    }

    /// `get_local`, decoded as `get_value` does; `default` when L1 has no
    /// fresh value.
    fn get_local_value(
        &self,
        py: Python<'_>,
        key: String,
        loads: &Bound<'_, PyAny>,
        memo: u8,
        default: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        match self.local(py, &key)? {
            Some(e) => self.decoded(py, &e, Served::L1, loads, memo),
            None => Ok(default),
        }
    }

    fn get_many(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Vec<Option<Value>>> {
        let c = &self.inner;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = run(py, c.get_many(&refs)).py(py)?;
        Ok(r.into_iter().map(|o| o.map(|e| value(py, &e))).collect())
    }

    /// `get_many`, decoded as `get_value` does: one item per key, `missing`
    /// where there is no fresh value, `refused` where `loads` raised a
    /// `refused_type` (an entry in a format the serializer does not take).
    #[allow(clippy::too_many_arguments)]
    fn get_many_values(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        loads: &Bound<'_, PyAny>,
        memo: u8,
        missing: Py<PyAny>,
        refused: Py<PyAny>,
        refused_type: &Bound<'_, pyo3::types::PyType>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let c = &self.inner;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = run(py, c.get_many(&refs)).py(py)?;
        r.into_iter()
            .map(|o| match o {
                None => Ok(missing.clone_ref(py)),
                Some(e) => match memo::decoded(&self.inner, py, &e, loads, memo) {
                    Err(err) if err.is_instance(py, refused_type) => Ok(refused.clone_ref(py)),
                    v => v,
                },
            })
            .collect()
    }

    #[pyo3(signature = (key, data, format, ttl = None, grace = 0.0, tags = None))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        key: String,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
        tags: Option<Vec<String>>,
    ) -> PyResult<()> {
        let o = opts(format, ttl, grace, tags)?;
        let data = Bytes::copy_from_slice(data);
        run(py, self.inner.set(&key, data, &o)).py(py)
    }

    /// `items`: `(key, data, format)`; returns the keys that failed.
    #[pyo3(signature = (items, ttl = None, grace = 0.0))]
    fn set_many(
        &self,
        py: Python<'_>,
        items: Vec<(String, Vec<u8>, u8)>,
        ttl: Option<f64>,
        grace: f64,
    ) -> PyResult<Vec<String>> {
        let o = opts(0, ttl, grace, None)?;
        let items = with_formats(items);
        run(py, set_many_formats(&self.inner, items, o)).py(py)
    }

    #[pyo3(signature = (key, data, format, ttl = None, grace = 0.0))]
    fn add(
        &self,
        py: Python<'_>,
        key: String,
        data: &[u8],
        format: u8,
        ttl: Option<f64>,
        grace: f64,
    ) -> PyResult<bool> {
        let o = opts(format, ttl, grace, None)?;
        let data = Bytes::copy_from_slice(data);
        run(py, self.inner.add(&key, data, &o)).py(py)
    }

    fn delete(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        run(py, self.inner.delete(&key)).py(py)
    }

    fn delete_many(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<u64> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        run(py, self.inner.delete_many(&refs)).py(py)
    }

    #[pyo3(signature = (key, ttl = None))]
    fn touch(&self, py: Python<'_>, key: String, ttl: Option<f64>) -> PyResult<bool> {
        let t = ttl_of(ttl)?;
        run(py, self.inner.touch(&key, t)).py(py)
    }

    #[pyo3(signature = (key, delta = 1))]
    fn incr(&self, py: Python<'_>, key: String, delta: i64) -> PyResult<i64> {
        run(py, self.inner.incr(&key, delta)).py(py)
    }

    fn has_key(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        run(py, self.inner.has_key(&key)).py(py)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        run(py, self.inner.clear()).py(py)
    }

    /// Invalidate every entry carrying any of `tags`, fleet-wide.
    fn invalidate_tags(&self, py: Python<'_>, tags: Vec<String>) -> PyResult<()> {
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        run(py, self.inner.invalidate_tags(&refs)).py(py)
    }

    fn close(&self) {
        self.inner.close();
    }

    /// Counters and gauges (L1 size, breaker, bus) as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = run(py, self.inner.stats());
        let d = PyDict::new(py);
        for (name, _, v) in s.counters() {
            d.set_item(name, v)?;
        }
        for (name, _, v) in s.gauges() {
            d.set_item(name, v)?;
        }
        Ok(d)
    }

    fn metrics_text(&self, py: Python<'_>) -> String {
        run(py, self.inner.metrics_text())
    }

    /// Which cache this is (`Cache::identity`): what `disabled()` scopes name.
    #[getter]
    fn identity(&self) -> String {
        self.inner.identity()
    }

    /// A handle on the same cache with caching off (`Cache::bypassing`):
    /// what a `disabled()` block's calls go to.
    fn bypassing(&self) -> PyCache {
        PyCache {
            inner: self.inner.bypassing(),
        }
    }

    /// Start or end a simulated Redis outage (`stratacache.testing`).
    fn simulate_outage(&self, on: bool) {
        self.inner.simulate_outage(on);
    }

    /// `(text, exit_code)` of the set-up checks (`stratacache doctor`);
    /// `text` is JSON when `json`.
    fn doctor(&self, py: Python<'_>, json: bool) -> (String, i32) {
        let r = run(py, self.inner.doctor());
        (if json { r.json() } else { r.text() }, r.exit_code())
    }

    /// The namespace's records in Redis by kind (`stratacache stats`), as
    /// text or JSON.
    fn census(&self, py: Python<'_>, json: bool) -> PyResult<String> {
        let c = run(py, self.inner.census()).py(py)?;
        Ok(if json { c.json() } else { c.text() })
    }

    /// Wait (without the GIL) until the queued edge purges are sent or
    /// given up, at most `timeout` seconds: `True` when none are left.
    fn flush_edge_purges(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = secs("timeout", timeout)?;
        Ok(run(py, self.inner.flush_edge_purges(t)))
    }

    /// Read-through: `(kind, format, data, lease, served)` with kind FRESH
    /// (with a lease: refresh it in the background), STALE or LEAD.
    fn lookup(&self, py: Python<'_>, key: String, policy: &PyPolicy) -> PyResult<LookupAnswer> {
        let r = run(py, self.inner.lookup(&key, &policy.inner)).py(py)?;
        Ok(lookup_tuple(py, r))
    }

    /// `lookup`, with a fresh or stale value decoded as `get_value` does:
    /// `(kind, value, lease)`, `value` `None` for a lead; a lease beside a
    /// value is a refresh to run in the background. If `loads` raises, so
    /// does this (a refresh lease is then abandoned).
    /// With `deps` (inside a load), the key and the value's tags become
    /// that load's dependencies.
    #[pyo3(signature = (key, policy, loads, memo, deps = None))]
    fn lookup_value(
        &self,
        py: Python<'_>,
        key: String,
        policy: &PyPolicy,
        loads: &Bound<'_, PyAny>,
        memo: u8,
        deps: Option<PyRef<'_, PyDeps>>,
    ) -> PyResult<(u8, Option<Py<PyAny>>, Option<PyLease>)> {
        let r = match crate::deps::of(deps) {
            Some(d) => run(py, self.inner.lookup_tracked(&key, &policy.inner, &d)).py(py)?,
            None => run(py, self.inner.lookup(&key, &policy.inner)).py(py)?,
        };
        let how = r.served();
        Ok(match r {
            Lookup::Fresh(e, _) => (FRESH, Some(self.decoded(py, &e, how, loads, memo)?), None),
            Lookup::Refresh(e, lease) => {
                let lease = PyLease::new(lease);
                (
                    FRESH,
                    Some(self.decoded(py, &e, how, loads, memo)?),
                    Some(lease),
                )
            }
            Lookup::Stale(e, lease) => {
                let lease = lease.map(PyLease::new);
                (STALE, Some(self.decoded(py, &e, how, loads, memo)?), lease)
            }
            Lookup::Lead(lease) => {
                served::note(how);
                (LEAD, None, Some(PyLease::new(lease)))
            }
        })
    }

    /// A lease to load `key` ahead of traffic, or `None` when it is fresh
    /// (unless `force`) or being loaded (here or elsewhere in the fleet).
    #[pyo3(signature = (keys, force = false))]
    fn try_leases(&self, py: Python<'_>, keys: Vec<String>, force: bool) -> PyResult<Vec<PyLease>> {
        let c = self.inner.clone();
        run(py, try_leases(c, keys, force)).py(py)
    }

    /// Several keys at once (`get_or_set_many`): per key
    /// `(kind, format, data, lease)`: FRESH with its value, LEAD with a
    /// lease to complete, BUSY (loaded elsewhere: `lookup` it after
    /// completing the leases).
    fn lookup_many(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Vec<LookupTuple>> {
        let c = self.inner.clone();
        let found = run(py, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.lookup_many(&refs).await
        })
        .py(py)?;
        Ok(crate::lease::many_tuples(py, found))
    }

    /// Complete leases from `try_leases` with `(lease, data, format)` items,
    /// pipelined; returns how many were stored.
    #[pyo3(signature = (items, ttl = None, grace = 0.0, deps = None, tags = None))]
    fn complete_many(
        &self,
        py: Python<'_>,
        items: Vec<(PyRef<'_, PyLease>, Vec<u8>, u8)>,
        ttl: Option<f64>,
        grace: f64,
        deps: Option<PyRef<'_, PyDeps>>,
        tags: Option<Vec<String>>,
    ) -> PyResult<usize> {
        let groups = lease_groups(items, ttl, grace, crate::deps::of(deps), tags)?;
        let c = self.inner.clone();
        run(py, complete_groups(c, groups)).py(py)
    }

    // ---- asyncio twins: each returns an awaitable bound to the running loop.
}

/// The core's [`Cache::set_many_formats`]; the keys that failed.
pub(crate) async fn set_many_formats(
    c: &Cache,
    items: Vec<(String, Bytes, Format)>,
    o: WriteOptions,
) -> stratacache::Result<Vec<String>> {
    let refs: Vec<(&str, Bytes, Format)> = items
        .iter()
        .map(|(k, d, f)| (k.as_str(), d.clone(), *f))
        .collect();
    let failed = c.set_many_formats(&refs, &o).await?;
    Ok(failed.into_iter().map(|(k, _)| k).collect())
}
