//! The core's HTTP caching rules (`stratacache::http`) for the FastAPI
//! integration: the same implementation the Node middleware uses.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use stratacache::http::{self, CachedResponse};

#[pyfunction]
#[pyo3(signature = (route, method, path, query, vary, principal = None))]
pub(crate) fn http_request_key(
    route: &str,
    method: &str,
    path: &str,
    query: Vec<(String, String)>,
    vary: Vec<(String, String)>,
    principal: Option<&str>,
) -> String {
    http::request_key(route, method, path, &query, &vary, principal)
}

#[pyfunction]
#[pyo3(signature = (authorization, cookie, credential_cookies))]
pub(crate) fn http_has_credentials(
    authorization: Option<&str>,
    cookie: Option<&str>,
    credential_cookies: Vec<String>,
) -> bool {
    http::has_credentials(authorization, cookie, &credential_cookies)
}

#[pyfunction]
pub(crate) fn http_directives(cache_control: &str) -> Vec<String> {
    http::cache_control(cache_control)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The entry bytes to store for a response, or `None` when it may not be stored.
#[pyfunction]
#[pyo3(signature = (status, headers, body, stored_at, ttl, private))]
pub(crate) fn http_store<'py>(
    py: Python<'py>,
    status: u16,
    headers: Vec<(String, String)>,
    body: &[u8],
    stored_at: f64,
    ttl: u32,
    private: bool,
) -> Option<Bound<'py, PyBytes>> {
    CachedResponse::storable(status, &headers, body.to_vec(), stored_at, ttl, private)
        .map(|r| PyBytes::new(py, &r.encode()))
}

/// `(status, headers, body or None for a 304, etag)` to answer from entry
/// bytes, or `None` if they are malformed.
#[pyfunction]
#[pyo3(signature = (entry, now, private, stale_while_revalidate, vary, if_none_match = None))]
#[allow(clippy::type_complexity)]
pub(crate) fn http_answer<'py>(
    py: Python<'py>,
    entry: &[u8],
    now: f64,
    private: bool,
    stale_while_revalidate: u32,
    vary: Vec<String>,
    if_none_match: Option<&str>,
) -> Option<(
    u16,
    Vec<(String, String)>,
    Option<Bound<'py, PyBytes>>,
    String,
)> {
    let r = CachedResponse::decode(entry)?;
    let serving = r.serving_headers(now, private, stale_while_revalidate, &vary);
    if if_none_match.is_some_and(|inm| http::etag_matches(inm, &r.etag)) {
        return Some((304, serving, None, r.etag));
    }
    let mut headers = r.headers.clone();
    headers.extend(serving);
    Some((r.status, headers, Some(PyBytes::new(py, &r.body)), r.etag))
}

#[pyfunction]
pub(crate) fn http_etag(body: &[u8]) -> String {
    http::etag_for(body)
}
