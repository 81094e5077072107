//! The core's HTTP caching engine (`stratacache::http`) for the Express and
//! Fastify adapters in `node/http.js`: argument conversion only.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::http::{Answer, Bypass, Exchange, Found, Route, RouteOptions, Start, Step};

use crate::cache::NativeCache;
use crate::convert::ms;
use crate::error::{invalid, js_err};

/// A route's options, validated by the core.
#[napi(object)]
pub struct HttpRouteOptions {
    pub scope: Option<String>,
    pub ttl_ms: f64,
    pub stale_while_revalidate_ms: f64,
    pub stale_if_error_ms: f64,
    pub vary: Vec<String>,
    pub shared_cookies: Vec<String>,
    pub private_headers: Vec<String>,
    pub keyed: bool,
    /// `"ignore"` (default) or `"honor"`.
    pub request_directives: Option<String>,
    pub x_cache: bool,
    /// How long an edge in front may keep shared responses (0: no edge
    /// directives).
    pub edge_ttl_ms: Option<f64>,
    /// The header carrying stored responses' tags to the edge.
    pub edge_tag_header: Option<String>,
}

#[napi]
pub struct HttpRoute {
    inner: Arc<Route>,
}

#[napi]
impl HttpRoute {
    #[napi(constructor)]
    pub fn new(o: HttpRouteOptions) -> Result<Self> {
        let request_directives = o
            .request_directives
            .as_deref()
            .map(stratacache::http::RequestDirectives::parse)
            .transpose()
            .map_err(js_err)?
            .unwrap_or_default();
        let route = Route::new(RouteOptions {
            scope: o.scope.unwrap_or_default(),
            ttl: ms("ttl", o.ttl_ms)?,
            stale_while_revalidate: ms("staleWhileRevalidate", o.stale_while_revalidate_ms)?,
            stale_if_error: ms("staleIfError", o.stale_if_error_ms)?,
            vary: o.vary,
            shared_cookies: o.shared_cookies,
            private_headers: o.private_headers,
            keyed: o.keyed,
            request_directives,
            x_cache: o.x_cache,
            edge_ttl: ms("edgeTtl", o.edge_ttl_ms.unwrap_or(0.0))?,
            edge_tag_header: o.edge_tag_header,
        })
        .map_err(js_err)?;
        Ok(HttpRoute {
            inner: Arc::new(route),
        })
    }

    /// Whether stored responses carry their tags to the edge (then give
    /// the exchange its tags: `setEdgeTags`).
    #[napi(getter)]
    pub fn has_edge_tags(&self) -> bool {
        self.inner.edge_tags().is_some()
    }

    /// Grace (ms) of the stored entries.
    #[napi(getter)]
    pub fn grace_ms(&self) -> f64 {
        self.inner.grace().as_millis() as f64
    }

    /// One request's exchange: decoded path, query pairs in order, and the
    /// headers as Node's `rawHeaders` joined by NUL (`name\0value\0...`:
    /// one string converts faster than an array of them, and HTTP forbids
    /// NUL in names and values, so Node's parser never lets one through).
    #[napi]
    pub fn exchange(
        &self,
        method: String,
        path: String,
        query: Vec<(String, String)>,
        headers: String,
    ) -> HttpExchange {
        HttpExchange {
            inner: self.new_exchange(&method, &path, query, &headers),
            first: None,
        }
    }

    /// `exchange` and its first step in one call, answered from `cache`'s
    /// L1 when it can be (`Exchange::start_local`): the packed answer (see
    /// `Packed`), or the exchange, whose `start()` then gives that step.
    #[napi(ts_return_type = "Buffer | HttpExchange")]
    pub fn begin(
        &self,
        cache: &NativeCache,
        method: String,
        path: String,
        query: Vec<(String, String)>,
        headers: String,
        now: f64,
    ) -> Either<Packed, HttpExchange> {
        let mut inner = self.new_exchange(&method, &path, query, &headers);
        match inner.start_local(&cache.inner, now) {
            Start::Answered(a) => Either::A(Packed(a)),
            Start::Step(s) => Either::B(HttpExchange {
                inner,
                first: Some(s),
            }),
        }
    }
}

impl HttpRoute {
    fn new_exchange(
        &self,
        method: &str,
        path: &str,
        query: Vec<(String, String)>,
        headers: &str,
    ) -> Exchange {
        let mut it = headers.split('\0');
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k.to_owned(), v.to_owned()));
        }
        Exchange::new(self.inner.clone(), method, path, query, pairs)
    }
}

/// What to do next, as one string (cheaper to hand to JS than an object):
/// the key to look up (it starts with `http:`), `refresh <key>`, `peek
/// <key>`, `pass <reason>`, `unsafe` or `principal`.
fn step(s: Step) -> String {
    match s {
        Step::Lookup(k) => k,
        Step::Refresh(k) => format!("refresh {k}"),
        Step::Peek(k) => format!("peek {k}"),
        Step::Pass(b) => format!("pass {}", b.detail()),
        Step::Unsafe => "unsafe".to_owned(),
        Step::Principal => "principal".to_owned(),
    }
}

fn flat(pairs: Vec<(String, String)>) -> Vec<String> {
    pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
}

/// An answer packed into one Buffer (building a JS object with an array of
/// header strings cost more than the rest of a hit):
/// `u16 status | u8 has body | u32 n | n bytes of UTF-8 "name\0value\0..." |
/// body`. Header names and values never hold NUL (HTTP forbids it).
///
/// Written straight into a Buffer Node allocates (`napi_create_buffer`):
/// an external Buffer over Rust memory costs a finalizer and a global
/// handle per answer, more than the copy.
pub struct Packed(Answer);

impl Packed {
    fn headers_len(&self) -> usize {
        self.0
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum()
    }

    fn write(&self, out: &mut [u8]) {
        let hdrs = self.headers_len();
        let body = self.0.body.as_deref();
        out[..2].copy_from_slice(&self.0.status.to_be_bytes());
        out[2] = u8::from(body.is_some());
        out[3..7].copy_from_slice(&(hdrs as u32).to_be_bytes());
        let mut at = 7;
        for (k, v) in &self.0.headers {
            for part in [k.as_bytes(), b"\0", v.as_bytes(), b"\0"] {
                out[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        }
        if let Some(b) = body {
            out[at..].copy_from_slice(b);
        }
    }
}

impl ToNapiValue for Packed {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let len = 7 + val.headers_len() + val.0.body.as_ref().map_or(0, Vec::len);
        let mut data = std::ptr::null_mut();
        let mut out = std::ptr::null_mut();
        check_status!(
            unsafe { sys::napi_create_buffer(env, len, &mut data, &mut out) },
            "could not allocate the answer's Buffer"
        )?;
        // SAFETY: Node just allocated `len` bytes at `data` for this Buffer.
        let bytes = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
        val.write(bytes);
        Ok(out)
    }
}

/// What to store and send once the handler ran (see `stratacache::http::Settle`).
#[napi(object, object_from_js = false)]
pub struct HttpSettle {
    pub use_stale: bool,
    pub writes: Vec<(String, Buffer)>,
    pub complete: Option<Buffer>,
    pub invalidate: Vec<String>,
    /// Packed as `onEntry`'s answers.
    pub answer: Option<Packed>,
    pub bypass: Option<&'static str>,
    pub ttl_ms: f64,
    pub grace_ms: f64,
}

#[napi]
pub struct HttpExchange {
    inner: Exchange,
    /// The first step when `HttpRoute::begin` took it already.
    first: Option<Step>,
}

#[napi]
impl HttpExchange {
    /// The first step (see `step`).
    #[napi]
    pub fn start(&mut self) -> String {
        step(self.first.take().unwrap_or_else(|| self.inner.start()))
    }

    /// `key_by`'s answer; `null` when it could not tell.
    #[napi]
    pub fn set_principal(&mut self, principal: Option<String>) -> String {
        step(self.inner.set_principal(principal))
    }

    /// Tags every entry stored for this request carries.
    #[napi]
    pub fn tags(&self) -> Vec<String> {
        self.inner.tags()
    }

    /// An answer (packed, see `packed`), a variant key to follow, or
    /// `null` when the bytes are unusable.
    #[napi(ts_return_type = "Buffer | string | null")]
    pub fn on_entry(
        &mut self,
        data: &[u8],
        stale: bool,
        now: f64,
    ) -> Option<Either<Packed, String>> {
        match self.inner.on_entry(data, stale, now) {
            Found::Answer(a) => Some(Either::A(Packed(a))),
            Found::Follow(k) => Some(Either::B(k)),
            Found::Unusable => None,
        }
    }

    /// The tags the response will be stored with, and the handler's
    /// collector, for the route's edge tag header.
    #[napi]
    pub fn set_edge_tags(&mut self, tags: Vec<String>, deps: Option<&crate::deps::NativeDeps>) {
        self.inner
            .set_edge_tags(&tags, deps.map(|d| d.inner.as_ref()));
    }

    #[napi]
    pub fn on_response(
        &mut self,
        status: u32,
        headers: Vec<(String, String)>,
        body: Buffer,
        now: f64,
    ) -> Result<HttpSettle> {
        let status = u16::try_from(status).map_err(|_| invalid("status must be 100-999"))?;
        let s = self.inner.on_response(status, &headers, body.to_vec(), now);
        Ok(HttpSettle {
            use_stale: s.use_stale,
            writes: s
                .writes
                .into_iter()
                .map(|(k, b)| (k, Buffer::from(b)))
                .collect(),
            complete: s.complete.map(Buffer::from),
            invalidate: s.invalidate,
            answer: s.answer.map(Packed),
            bypass: s.bypass.map(Bypass::detail),
            ttl_ms: s.ttl_ms as f64,
            grace_ms: s.grace_ms as f64,
        })
    }

    /// Headers to add to a response sent as the handler made it (flat).
    #[napi]
    pub fn pass_headers(&self, bypass: String) -> Result<Vec<String>> {
        let why = Bypass::from_detail(&bypass)
            .ok_or_else(|| invalid(format!("unknown bypass reason {bypass:?}")))?;
        Ok(flat(self.inner.pass_headers(why)))
    }
}
