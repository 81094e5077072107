//! `stratacache._native`: the PyO3 binding of the stratacache core.
//!
//! Thin by design: argument conversion, error mapping, and driving core
//! futures (sync methods release the GIL around every wait; async methods
//! return asyncio awaitables). Loaders never run here: the Python package
//! runs them in the caller's thread or task, driven by the core's leases.

mod cache;
mod cache_async;
mod convert;
mod deps;
mod errors;
mod feed;
mod http;
mod lease;
mod memo;
mod policy;
mod runtime;
mod served;

use pyo3::prelude::*;

/// The extension's own Rust allocations (L1 entries and slabs, Redis
/// buffers) come from mimalloc, not from the heap the interpreter shares:
/// with glibc's malloc, L1 churn interleaved with Python's allocations
/// fragments the shared heap and resident memory grows without bound
/// (docs/benchmarks.md, "L1 memory under churn").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tell the core this process is a freshly forked child (registered with
/// `os.register_at_fork` by the Python package; the core also installs a
/// `pthread_atfork` hook of its own, so this is belt and braces).
#[pyfunction]
fn after_fork_child() {
    stratacache::runtime::after_fork_child();
    runtime::reset_gate();
}

/// One Prometheus exposition for several caches (the core's: each family
/// once, a sample per namespace), for the metrics endpoints.
#[pyfunction]
fn metrics_text(py: Python<'_>, caches: Vec<PyRef<'_, cache::PyCache>>) -> String {
    let stats: Vec<(String, stratacache::Stats)> = caches
        .iter()
        .map(|c| {
            let inner = c.inner.clone();
            (
                inner.namespace().to_owned(),
                runtime::run(py, async move { inner.stats().await }),
            )
        })
        .collect();
    let refs: Vec<(&str, stratacache::Stats)> =
        stats.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    stratacache::Stats::prometheus(&refs)
}

/// The key of a rendered fragment (`{% load stratacache %}`'s `cache`
/// tag), by the core's injective rule (`stratacache::key::fragment_key`).
#[pyfunction]
fn fragment_key(name: &str, vary_on: Vec<String>) -> String {
    let vary: Vec<&str> = vary_on.iter().map(String::as_str).collect();
    stratacache::key::fragment_key(name, &vary)
}

/// `url` with its password replaced by `***` (the core's rule), for
/// messages and prompts.
#[pyfunction]
fn redacted_url(url: &str) -> String {
    stratacache::redacted_url(url)
}

/// The known option name nearest to a mistyped one, by the core's rule
/// (for "did you mean" hints).
#[pyfunction]
fn nearest_name(name: &str, known: Vec<String>) -> Option<String> {
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    stratacache::nearest_name(name, &known).map(str::to_owned)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // mimalloc, set up as the core's measurements assume (`stratacache::alloc`).
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    for (option, value) in stratacache::alloc::MIMALLOC_OPTIONS {
        unsafe { mi_option_set(option, value) };
    }
    m.add_class::<cache::PyCache>()?;
    m.add_class::<lease::PyLease>()?;
    m.add_class::<deps::PyDeps>()?;
    m.add_class::<policy::PyPolicy>()?;
    m.add_class::<http::HttpRoute>()?;
    m.add_class::<http::HttpExchange>()?;
    m.add_class::<http::HttpSettle>()?;
    m.add_class::<feed::PyPgListener>()?;
    m.add_class::<feed::PyEventListener>()?;
    m.add_function(wrap_pyfunction!(after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_name, m)?)?;
    m.add_function(wrap_pyfunction!(redacted_url, m)?)?;
    m.add_function(wrap_pyfunction!(fragment_key, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_text, m)?)?;
    m.add_function(wrap_pyfunction!(feed::listen_config, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(served::take_served, m)?)?;
    m.add_function(wrap_pyfunction!(served::note_served, m)?)?;
    m.add("FRESH", lease::FRESH)?;
    m.add("STALE", lease::STALE)?;
    m.add("LEAD", lease::LEAD)?;
    m.add("BUSY", lease::BUSY)?;
    m.add("SERVED_LOADED", stratacache::Served::Loaded.code())?;
    m.add("SERVED_STALE", stratacache::Served::Stale.code())?;
    m.add("VALUE", lease::VALUE)?;
    m.add("NOTHING", lease::NOTHING)?;
    m.add("UNCACHED", lease::UNCACHED)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ERROR_CODES", stratacache::Error::ALL_CODES.to_vec())?;
    m.add("L2_ERROR_CODES", stratacache::Error::L2_CODES.to_vec())?;
    m.add("HTTP_REFRESH_HEADER", stratacache::http::REFRESH_HEADER)?;
    m.add(
        "HTTP_CONDITIONAL_HEADERS",
        stratacache::http::CONDITIONAL_HEADERS.to_vec(),
    )?;
    Ok(())
}
