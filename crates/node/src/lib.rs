//! The napi-rs binding of stratacache, wrapped by the hand-written JS
//! package in `node/`. This file only registers; one module per concern:
//! `cache` (the handle), `lookup` (read-throughs), `lease`, `policy`,
//! `convert` (values), `error`,
//! `http` (the HTTP engine's route and exchange).
//!
//! Thin by design: argument conversion, error mapping, driving core
//! futures. Factories (loaders) never run here: the JS wrapper runs them,
//! driven by the core's leases, so a throwing factory is an ordinary
//! rejected promise on the JS side and never crosses into Rust.

// napi's generated glue and `Buffer` have no `Debug`; these types are
// only ever inspected from JS.
#![allow(missing_debug_implementations)]

/// The addon's own Rust allocations (L1 entries and slabs, Redis
/// buffers) come from mimalloc, not from the heap Node's own allocations
/// share: with glibc's malloc, L1 churn interleaved with them fragments
/// that heap and resident memory grows without bound (docs/benchmarks.md,
/// "L1 memory under churn").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cache;
mod convert;
mod deps;
mod error;
mod evloop;
mod feed;
mod http;
mod kept;
mod lease;
mod lookup;
mod policy;
mod reader;
mod settle;

#[napi_derive::module_init]
fn init() {
    // mimalloc, set up as the core's measurements assume (`stratacache::alloc`).
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    for (option, value) in stratacache::alloc::MIMALLOC_OPTIONS {
        unsafe { mi_option_set(option, value) };
    }
    // Calls come from JS threads (one per isolate): one runtime worker (see
    // `set_worker_threads`). Before the first runtime is built.
    stratacache::runtime::set_worker_threads(1);
    if let Ok(rt) = stratacache::runtime::build_runtime() {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

/// Constants the JS package takes from the core rather than copying them.
#[napi_derive::napi(object, object_from_js = false)]
pub struct NativeConstants {
    /// Every error code, in the core's order.
    pub error_codes: Vec<String>,
    /// The codes of Redis (L2) errors: what fail-open swallows.
    pub l2_error_codes: Vec<String>,
    /// The header of an HTTP background refresh's one-time token.
    pub http_refresh_header: String,
    /// Request headers a leader's request and a refresh replay run without.
    pub http_conditional_headers: Vec<String>,
    /// How a read was served, by its code (`stratacache::Served`): the
    /// outcome (`"hit"`, `"waited"`, `"stale"`, `"loaded"`) and a hit's
    /// tier (`"l1"`, `"l2"`); index 0 (no code) is `["", null]`.
    pub served: Vec<(String, Option<String>)>,
}

/// See [`NativeConstants`].
#[napi_derive::napi]
pub fn constants() -> NativeConstants {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    NativeConstants {
        error_codes: owned(stratacache::Error::ALL_CODES),
        l2_error_codes: owned(stratacache::Error::L2_CODES),
        http_refresh_header: stratacache::http::REFRESH_HEADER.to_owned(),
        http_conditional_headers: owned(stratacache::http::CONDITIONAL_HEADERS),
        served: (0..=u8::MAX)
            .map_while(|c| match stratacache::Served::from_code(c) {
                Some(s) => Some((s.outcome().to_owned(), s.tier().map(str::to_owned))),
                None if c == 0 => Some((String::new(), None)),
                None => None,
            })
            .collect(),
    }
}

/// Check tag names by the core's rule (`E_INVALID_VALUE` naming it): the
/// JS wrapper calls this before a lookup, so a hit accepts no tag a miss
/// would reject.
#[napi_derive::napi]
pub fn validate_tags(tags: Vec<String>) -> napi::Result<()> {
    for t in &tags {
        stratacache::key::validate_tag(t).map_err(error::js_err)?;
    }
    Ok(())
}

/// The known option name nearest to a mistyped one, by the core's rule
/// (for "did you mean" hints).
#[napi_derive::napi]
pub fn nearest_name(name: String, known: Vec<String>) -> Option<String> {
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    stratacache::nearest_name(&name, &known).map(str::to_owned)
}

/// One Prometheus exposition for several caches (the core's: each family
/// once, a sample per namespace): each cache's namespace and its
/// `stats()` snapshot, in the same order.
#[napi_derive::napi]
pub fn metrics_text(
    namespaces: Vec<String>,
    stats: Vec<std::collections::HashMap<String, f64>>,
) -> napi::Result<String> {
    if namespaces.len() != stats.len() {
        return Err(napi::Error::from_reason(
            "metricsText: one snapshot per namespace",
        ));
    }
    let all: Vec<(&str, stratacache::Stats)> = namespaces
        .iter()
        .zip(stats)
        .map(|(n, m)| {
            let mut s = stratacache::Stats::default();
            for (k, v) in m {
                s.set_named(&k, v as u64);
            }
            (n.as_str(), s)
        })
        .collect();
    Ok(stratacache::Stats::prometheus(&all))
}

/// The key of a rendered fragment (`cache.fragment`), by the core's
/// injective rule (`stratacache::key::fragment_key`).
#[napi_derive::napi]
pub fn fragment_key(name: String, vary_on: Vec<String>) -> String {
    let vary: Vec<&str> = vary_on.iter().map(String::as_str).collect();
    stratacache::key::fragment_key(&name, &vary)
}

/// `url` with its password replaced by `***` (the core's rule), for
/// messages and prompts.
#[napi_derive::napi]
pub fn redacted_url(url: String) -> String {
    stratacache::redacted_url(&url)
}

/// Whether `key`'s records are named by its hash in Redis (so a listing
/// cannot give the key back): the core's rule.
#[napi_derive::napi]
pub fn key_is_hashed(key: String) -> bool {
    stratacache::key::is_hashed(&key)
}

/// A listen configuration file's text, checked and with every default
/// filled in, as JSON (the core reads it: `stratacache::feed::config`).
#[napi_derive::napi]
pub fn listen_config(text: String) -> napi::Result<String> {
    stratacache::feed::config::normalized_json(&text).map_err(error::js_err)
}
