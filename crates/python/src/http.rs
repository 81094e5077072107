//! The core's HTTP caching engine (`stratacache::http`) for the ASGI
//! adapter in `python/stratacache/http.py`: argument conversion only.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use stratacache::http::{
    Answer, Bypass, Exchange, Found, RequestDirectives, Route, RouteOptions, Start, Step,
};

use crate::cache::PyCache;
use crate::errors::py_err;

fn secs(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        py_err(stratacache::Error::Config(format!(
            "{name} must be a finite number of seconds >= 0"
        )))
    })
}

/// A route's caching rules, validated by the core.
#[pyclass(frozen, module = "stratacache._native")]
pub(crate) struct HttpRoute {
    inner: Arc<Route>,
}

#[pymethods]
impl HttpRoute {
    #[new]
    #[pyo3(signature = (*, ttl, stale_while_revalidate, stale_if_error, vary, shared_cookies, private_headers, keyed, request_directives, x_cache, scope, edge_ttl = 0.0, edge_tag_header = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        ttl: f64,
        stale_while_revalidate: f64,
        stale_if_error: f64,
        vary: Vec<String>,
        shared_cookies: Vec<String>,
        private_headers: Vec<String>,
        keyed: bool,
        request_directives: &str,
        x_cache: bool,
        scope: String,
        edge_ttl: f64,
        edge_tag_header: Option<String>,
    ) -> PyResult<Self> {
        let route = Route::new(RouteOptions {
            scope,
            ttl: secs("ttl", ttl)?,
            stale_while_revalidate: secs("stale_while_revalidate", stale_while_revalidate)?,
            stale_if_error: secs("stale_if_error", stale_if_error)?,
            vary,
            shared_cookies,
            private_headers,
            keyed,
            request_directives: RequestDirectives::parse(request_directives).map_err(py_err)?,
            x_cache,
            edge_ttl: secs("edge_ttl", edge_ttl)?,
            edge_tag_header,
        })
        .map_err(py_err)?;
        Ok(HttpRoute {
            inner: Arc::new(route),
        })
    }

    /// Whether stored responses carry their tags to the edge (then give
    /// the exchange its tags: `HttpExchange.set_edge_tags`).
    #[getter]
    fn has_edge_tags(&self) -> bool {
        self.inner.edge_tags().is_some()
    }

    /// Freshness lifetime (seconds) of the stored entries.
    #[getter]
    fn ttl(&self) -> f64 {
        self.inner.options().ttl.as_secs_f64()
    }

    /// Grace (seconds) of the stored entries.
    #[getter]
    fn grace(&self) -> f64 {
        self.inner.grace().as_secs_f64()
    }

    /// One request's exchange: decoded path, query pairs in order, headers.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
    ) -> HttpExchange {
        HttpExchange {
            inner: Exchange::new(self.inner.clone(), method, path, query, headers),
        }
    }
}

type StoredAnswer = (u16, Vec<(String, String)>, Option<Py<PyBytes>>);
type PyAnswer<'py> = (u16, Vec<(String, String)>, Option<Bound<'py, PyBytes>>);

fn answer(py: Python<'_>, a: Answer) -> PyAnswer<'_> {
    (a.status, a.headers, a.body.map(|b| PyBytes::new(py, &b)))
}

fn step(s: Step) -> (&'static str, Option<String>) {
    match s {
        Step::Pass(b) => ("pass", Some(b.detail().to_owned())),
        Step::Unsafe => ("unsafe", None),
        Step::Principal => ("principal", None),
        Step::Lookup(k) => ("lookup", Some(k)),
        Step::Refresh(k) => ("refresh", Some(k)),
        Step::Peek(k) => ("peek", Some(k)),
    }
}

/// What to store and send once the handler ran (see `stratacache::http::Settle`).
#[pyclass(frozen, module = "stratacache._native", get_all)]
pub(crate) struct HttpSettle {
    use_stale: bool,
    writes: Vec<(String, Py<PyBytes>)>,
    complete: Option<Py<PyBytes>>,
    invalidate: Vec<String>,
    answer: Option<StoredAnswer>,
    bypass: Option<&'static str>,
    ttl: f64,
    grace: f64,
}

/// One request's way through the cache (not shared between tasks).
#[pyclass(module = "stratacache._native")]
pub(crate) struct HttpExchange {
    inner: Exchange,
}

#[pymethods]
impl HttpExchange {
    /// `(kind, key or bypass reason)`: kind is `pass`, `unsafe`,
    /// `principal`, `lookup`, `refresh` or `peek`.
    fn start(&mut self) -> (&'static str, Option<String>) {
        step(self.inner.start())
    }

    #[pyo3(signature = (principal))]
    fn set_principal(&mut self, principal: Option<String>) -> (&'static str, Option<String>) {
        step(self.inner.set_principal(principal))
    }

    /// `start`, answered from `cache`'s L1 when it can be
    /// (`Exchange::start_local`): `("answer", (status, headers, body))`,
    /// else what `start` gives.
    fn start_local<'py>(
        &mut self,
        py: Python<'py>,
        cache: PyRef<'_, PyCache>,
        now: f64,
    ) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
        Ok(match self.inner.start_local(&cache.inner, now) {
            Start::Answered(a) => ("answer", answer(py, a).into_pyobject(py)?.into_any()),
            Start::Step(s) => {
                let (kind, arg) = step(s);
                (kind, arg.into_pyobject(py)?.into_any())
            }
        })
    }

    fn tags(&self) -> Vec<String> {
        self.inner.tags()
    }

    /// `("answer", (status, headers, body))`, `("follow", key)` or
    /// `("unusable", None)`.
    fn on_entry<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        stale: bool,
        now: f64,
    ) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
        Ok(match self.inner.on_entry(data, stale, now) {
            Found::Answer(a) => ("answer", answer(py, a).into_pyobject(py)?.into_any()),
            Found::Follow(k) => ("follow", k.into_pyobject(py)?.into_any()),
            Found::Unusable => ("unusable", py.None().into_bound(py)),
        })
    }

    fn on_response(
        &mut self,
        py: Python<'_>,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        now: f64,
    ) -> HttpSettle {
        let s = self.inner.on_response(status, &headers, body, now);
        let bytes = |b: Vec<u8>| PyBytes::new(py, &b).unbind();
        HttpSettle {
            use_stale: s.use_stale,
            writes: s.writes.into_iter().map(|(k, b)| (k, bytes(b))).collect(),
            complete: s.complete.map(bytes),
            invalidate: s.invalidate,
            answer: s.answer.map(|a| (a.status, a.headers, a.body.map(bytes))),
            bypass: s.bypass.map(Bypass::detail),
            ttl: s.ttl_ms as f64 / 1000.0,
            grace: s.grace_ms as f64 / 1000.0,
        }
    }

    /// Headers to add to a response sent as the handler made it.
    /// The tags the response will be stored with, and the handler's
    /// collector (`deps`), for the route's edge tag header.
    #[pyo3(signature = (tags, deps = None))]
    fn set_edge_tags(&mut self, tags: Vec<String>, deps: Option<PyRef<'_, crate::deps::PyDeps>>) {
        self.inner
            .set_edge_tags(&tags, crate::deps::of(deps).as_deref());
    }

    fn pass_headers(&self, bypass: &str) -> PyResult<Vec<(String, String)>> {
        let why = Bypass::from_detail(bypass).ok_or_else(|| {
            py_err(stratacache::Error::InvalidValue(format!(
                "unknown bypass reason {bypass:?}"
            )))
        })?;
        Ok(self.inner.pass_headers(why))
    }
}
