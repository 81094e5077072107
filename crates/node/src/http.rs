//! The core's HTTP caching engine (`stratacache::http`) for the Express and
//! Fastify adapters in `node/http.js`: argument conversion only.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::http::{Answer, Bypass, Exchange, Found, Route, RouteOptions, Step};

use crate::{invalid, js_err, ms};

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
        })
        .map_err(js_err)?;
        Ok(HttpRoute {
            inner: Arc::new(route),
        })
    }

    /// Grace (ms) of the stored entries.
    #[napi(getter)]
    pub fn grace_ms(&self) -> f64 {
        self.inner.grace().as_millis() as f64
    }

    /// One request's exchange: decoded path, query pairs in order, headers.
    #[napi]
    pub fn exchange(
        &self,
        method: String,
        path: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
    ) -> HttpExchange {
        HttpExchange {
            inner: Exchange::new(self.inner.clone(), &method, &path, query, headers),
        }
    }
}

/// What to do next: `kind` is `pass` (with `bypass`), `unsafe`,
/// `principal`, `lookup` or `refresh` (with `key`).
#[napi(object, object_from_js = false)]
pub struct HttpStep {
    pub kind: &'static str,
    pub key: Option<String>,
    pub bypass: Option<&'static str>,
}

impl From<Step> for HttpStep {
    fn from(s: Step) -> Self {
        let (kind, key, bypass) = match s {
            Step::Pass(b) => ("pass", None, Some(b.detail())),
            Step::Unsafe => ("unsafe", None, None),
            Step::Principal => ("principal", None, None),
            Step::Lookup(k) => ("lookup", Some(k), None),
            Step::Refresh(k) => ("refresh", Some(k), None),
        };
        HttpStep { kind, key, bypass }
    }
}

#[napi(object, object_from_js = false)]
pub struct HttpAnswer {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    /// `null` for a 304 or a HEAD.
    pub body: Option<Buffer>,
}

fn answer(a: Answer) -> HttpAnswer {
    HttpAnswer {
        status: u32::from(a.status),
        headers: a.headers,
        body: a.body.map(Buffer::from),
    }
}

/// `answer` to send, or `follow` a variant `key`, or `unusable`.
#[napi(object, object_from_js = false)]
pub struct HttpFound {
    pub kind: &'static str,
    pub answer: Option<HttpAnswer>,
    pub key: Option<String>,
}

/// What to store and send once the handler ran (see `stratacache::http::Settle`).
#[napi(object, object_from_js = false)]
pub struct HttpSettle {
    pub use_stale: bool,
    pub writes: Vec<(String, Buffer)>,
    pub complete: Option<Buffer>,
    pub invalidate: Vec<String>,
    pub answer: Option<HttpAnswer>,
    pub bypass: Option<&'static str>,
    pub ttl_ms: f64,
    pub grace_ms: f64,
}

#[napi]
pub struct HttpExchange {
    inner: Exchange,
}

#[napi]
impl HttpExchange {
    #[napi]
    pub fn start(&mut self) -> HttpStep {
        self.inner.start().into()
    }

    /// `key_by`'s answer; `null` when it could not tell.
    #[napi]
    pub fn set_principal(&mut self, principal: Option<String>) -> HttpStep {
        self.inner.set_principal(principal).into()
    }

    /// Tags every entry stored for this request carries.
    #[napi]
    pub fn tags(&self) -> Vec<String> {
        self.inner.tags()
    }

    #[napi]
    pub fn on_entry(&mut self, data: &[u8], stale: bool, now: f64) -> HttpFound {
        match self.inner.on_entry(data, stale, now) {
            Found::Answer(a) => HttpFound {
                kind: "answer",
                answer: Some(answer(a)),
                key: None,
            },
            Found::Follow(k) => HttpFound {
                kind: "follow",
                answer: None,
                key: Some(k),
            },
            Found::Unusable => HttpFound {
                kind: "unusable",
                answer: None,
                key: None,
            },
        }
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
            answer: s.answer.map(answer),
            bypass: s.bypass.map(Bypass::detail),
            ttl_ms: s.ttl_ms as f64,
            grace_ms: s.grace_ms as f64,
        })
    }

    /// Headers to add to a response sent as the handler made it.
    #[napi]
    pub fn pass_headers(&self, bypass: String) -> Result<Vec<(String, String)>> {
        let why = Bypass::from_detail(&bypass)
            .ok_or_else(|| invalid(format!("unknown bypass reason {bypass:?}")))?;
        Ok(self.inner.pass_headers(why))
    }
}
