//! HTTP response caching: one engine that the FastAPI, Express and Fastify
//! adapters drive, so a request is answered the same way in every
//! framework and language.
//!
//! The engine does no I/O. An adapter turns its framework's request into an
//! [`Exchange`] and follows its steps:
//!
//! 1. [`Exchange::start`] (or [`Exchange::start_local`], which first tries
//!    to answer from the cache's L1 without waiting on anything) says what
//!    to do: pass the request through
//!    untouched ([`Step::Pass`]: another method, or a private request the
//!    route cannot key), run it and invalidate on success
//!    ([`Step::Unsafe`]), ask the route's `key_by` for the principal
//!    ([`Step::Principal`], then [`Exchange::set_principal`]), or read a key
//!    through the cache's single flight ([`Step::Lookup`]; [`Step::Refresh`]
//!    when the client asked for revalidation and the route honours it).
//! 2. The bytes found go to [`Exchange::on_entry`]: an [`Answer`] to send, or
//!    [`Found::Follow`] a variant key (the stored responses vary on request
//!    headers named by the handler's `Vary`), or [`Found::Unusable`].
//! 3. When the handler ran (this request leads the flight),
//!    [`Exchange::on_response`] says what to store ([`Settle`]) and what to
//!    send.
//!
//! Rules, each one here only:
//! - Keys are injective (see [`key`]); `GET` and `HEAD` share entries, and
//!   `HEAD` never stores one (its body is empty); a `HEAD` answer carries
//!   the entry's `Content-Length`.
//! - Private unless proven shared: a request with `Authorization` or any
//!   cookie the route does not list in `shared_cookies` is never answered
//!   from, nor stored into, a shared entry; with `key_by` it gets entries
//!   keyed by its principal.
//! - Stored: only `200` responses to `GET`, without `Set-Cookie`, without
//!   `Cache-Control` `no-store`, `no-cache`, `max-age=0` / `s-maxage=0`,
//!   `private` (unless keyed by principal), and without `Vary: *`. The
//!   handler's `max-age` (or `s-maxage` for shared entries) shortens the
//!   route's TTL, never lengthens it. The handler's `Cache-Control` is sent
//!   as it was written; a generated one only when it sent none.
//! - A handler's `Vary` is honoured: the base key then holds a marker naming
//!   the headers, and each combination of their values has its own entry.
//! - Request `Cache-Control` is ignored by default (as CDNs do); with
//!   [`RequestDirectives::Honor`], `no-cache` / `max-age=0` refresh the entry
//!   through the single flight (one handler run at a time per key).
//! - `ETag` (the handler's own, else a strong one from the body),
//!   `Last-Modified` (the handler's, else when stored), `If-None-Match`
//!   (weak comparison), then `If-Modified-Since`, answer `304`. `Age`, `X-Cache` and `Cache-Status`
//!   (RFC 9211) go out with every answer.
//! - A successful (2xx/3xx) unsafe request invalidates every entry of its
//!   path ([`url_tag`]), in every process.
//! - Stale-if-error: a `5xx` response (a raised error reaches the adapter as
//!   one) serves the stale entry within the grace.

pub mod edge;
mod entry;
mod key;
mod route;

use std::sync::Arc;

pub use entry::{
    Stored, StoredResponse, cache_control, etag_for, etag_matches, http_date, parse_http_date,
    vary_names,
};
pub use key::{Varied, base_key, canonical_query, url_tag, variant_key};
pub use route::{RequestDirectives, Route, RouteOptions};

use crate::cache::Cache;

use crate::key::hex;

/// The request header carrying the one-time token of a stale entry's
/// background refresh: the drivers replay the request in-process with it,
/// and the replay leads the refresh's flight.
pub const REFRESH_HEADER: &str = "x-stratacache-refresh";

/// Conditional and range request headers. A leader's request (whose
/// response is stored for everyone) and a refresh replay run without them,
/// so the handler produces the full representation; the cache answers the
/// conditions itself ([`Exchange::on_entry`]).
pub const CONDITIONAL_HEADERS: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "range",
    "if-range",
];

/// Headers never stored: hop-by-hop, per-response, per-user, or set by the
/// cache when serving.
const UNSTORED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "set-cookie",
    "date",
    "age",
    "etag",
    "x-cache",
    "cache-status",
];

/// Request headers that make a private response vary.
const PRIVATE_VARY: [&str; 2] = ["authorization", "cookie"];

/// What the adapter does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run the handler and send its response untouched but for
    /// [`Exchange::pass_headers`].
    Pass(Bypass),
    /// An unsafe method: run the handler, then [`Exchange::on_response`]
    /// names the tags to invalidate.
    Unsafe,
    /// Call the route's `key_by`, then [`Exchange::set_principal`].
    Principal,
    /// Read this key through the single flight.
    Lookup(String),
    /// A `HEAD`: read this key *without* leading a flight (a `HEAD`'s empty
    /// body cannot fill the entry, and abandoning a flight would send every
    /// coalesced `GET` to the handler); on a miss, pass the request through
    /// ([`Bypass::Head`]).
    Peek(String),
    /// Refresh this key: lead its flight even over a fresh entry (a forced
    /// lease); when someone else leads already, [`Step::Lookup`] it.
    Refresh(String),
}

/// Why a request or response bypasses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// A method the cache does not serve (`OPTIONS`, `TRACE`, ...).
    Method,
    /// A private request (credentials) on a route without `key_by`.
    Private,
    /// A `HEAD` request led the flight: its empty body is not stored.
    Head,
    /// The response may not be stored (status, directives, cookies, Vary).
    NotStorable,
    /// The response was streamed.
    Streamed,
    /// The handler failed and no stale entry was there to serve.
    Error,
    /// Caching is off for the cache (`Cache::bypassing`, a binding's
    /// `disabled()` scope).
    Disabled,
}

impl Bypass {
    const ALL: [Bypass; 7] = [
        Bypass::Method,
        Bypass::Private,
        Bypass::Head,
        Bypass::NotStorable,
        Bypass::Streamed,
        Bypass::Error,
        Bypass::Disabled,
    ];

    /// From its [`Bypass::detail`] name.
    pub fn from_detail(s: &str) -> Option<Bypass> {
        Self::ALL.into_iter().find(|b| b.detail() == s)
    }

    /// Its name in `Cache-Status` (`detail=`).
    pub fn detail(self) -> &'static str {
        match self {
            Bypass::Method => "method",
            Bypass::Private => "private",
            Bypass::Head => "head",
            Bypass::NotStorable => "not-storable",
            Bypass::Streamed => "streamed",
            Bypass::Error => "error",
            Bypass::Disabled => "disabled",
        }
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Every header to send (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The body; `None` for a `304` or a `HEAD`. `Content-Length` is among
    /// the headers but for a `304`.
    pub body: Option<Vec<u8>>,
}

/// What the bytes read for a key give.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Send this.
    Answer(Answer),
    /// Read this variant key (through the single flight) and call
    /// [`Exchange::on_entry`] with what it holds.
    Follow(String),
    /// Nothing servable (malformed, another format, or a marker loop).
    Unusable,
}

/// What [`Exchange::start_local`] gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A fresh entry in this process's L1 answered the request: send it.
    Answered(Answer),
    /// The first step, as [`Exchange::start`] gives it.
    Step(Step),
}

/// What to do once the handler produced a response (this request leads).
#[derive(Debug, Clone, PartialEq)]
pub struct Settle {
    /// Serve the stale entry instead (`Lease::fail`): the handler answered
    /// a 5xx within stale-if-error. Without one, send `answer`.
    pub use_stale: bool,
    /// Write these keys first (variant entries, markers).
    pub writes: Vec<(String, Vec<u8>)>,
    /// Complete the lease with these bytes; `None`: abandon it as not
    /// shareable (its waiters run their own request).
    pub complete: Option<Vec<u8>>,
    /// Invalidate these tags (a successful unsafe request).
    pub invalidate: Vec<String>,
    /// Send this; `None`: send the handler's response as it is, plus
    /// [`Exchange::pass_headers`] of `bypass`.
    pub answer: Option<Answer>,
    /// Why the response was not stored, if it was not.
    pub bypass: Option<Bypass>,
    /// How long what is written stays fresh (ms).
    pub ttl_ms: u64,
    /// How long past `ttl_ms` it stays servable as stale (ms).
    pub grace_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Read { head: bool },
    Unsafe,
    Other,
}

/// How a stored response is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Stale,
    Miss,
    Refreshed,
}

/// One request's way through the cache.
#[derive(Debug)]
pub struct Exchange {
    route: Arc<Route>,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    principal: Option<String>,
    refresh: bool,
    base: Option<String>,
    /// The marker's headers when reading a variant key.
    followed: Option<Vec<String>>,
    /// The tags a stored response carries to the edge.
    edge_tags: Vec<String>,
}

impl Exchange {
    /// A request: `method`, decoded `path`, decoded `query` pairs in
    /// their order, and its headers (any case; repeated names allowed).
    pub fn new(
        route: Arc<Route>,
        method: &str,
        path: &str,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
    ) -> Exchange {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Read { head: false },
            "HEAD" => Method::Read { head: true },
            "POST" | "PUT" | "PATCH" | "DELETE" => Method::Unsafe,
            _ => Method::Other,
        };
        // Names compared case-insensitively (`header`): not lower-cased here.
        Exchange {
            route,
            method,
            path: path.to_owned(),
            query,
            headers,
            principal: None,
            refresh: false,
            base: None,
            followed: None,
            edge_tags: Vec::new(),
        }
    }

    /// The tags the response will be stored with (the route's and the
    /// handler's own) and what the handler read (`deps`: its tracked
    /// dependencies, tags and keys), for the route's edge tag header.
    pub fn set_edge_tags(&mut self, tags: &[String], deps: Option<&crate::Deps>) {
        let mut all: Vec<String> = tags.to_vec();
        if let Some(d) = deps {
            // Keys read too: a write of one purges it (`purge`).
            all.extend(d.names());
        }
        self.edge_tags = all;
    }

    /// The request's value of header `name` (lower-case); repeated headers
    /// joined as HTTP joins them.
    fn header(&self, name: &str) -> Option<String> {
        let mut it = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let (_, first) = it.next()?;
        let sep = if name == "cookie" { "; " } else { ", " };
        Some(it.fold(first.clone(), |mut acc, (_, v)| {
            acc.push_str(sep);
            acc.push_str(v);
            acc
        }))
    }

    /// Whether the request identifies a user: `Authorization` or one of
    /// the route's private headers, or a cookie not listed as shared.
    pub fn is_private(&self) -> bool {
        let o = &self.route.o;
        if std::iter::once("authorization")
            .chain(o.private_headers.iter().map(String::as_str))
            .any(|h| self.header(h).is_some_and(|a| !a.is_empty()))
        {
            return true;
        }
        self.header("cookie").is_some_and(|c| {
            c.split(';').any(|kv| {
                let name = kv.split('=').next().unwrap_or("").trim();
                !name.is_empty() && !o.shared_cookies.iter().any(|s| s == name)
            })
        })
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        match self.method {
            Method::Other => Step::Pass(Bypass::Method),
            Method::Unsafe => Step::Unsafe,
            Method::Read { .. } if self.is_private() => {
                if self.route.o.keyed {
                    Step::Principal
                } else {
                    Step::Pass(Bypass::Private)
                }
            }
            Method::Read { .. } => self.lookup(),
        }
    }

    /// The first step, answered from `cache`'s L1 when it can be: a plain
    /// lookup (not a `HEAD`, a refresh or a request waiting for `key_by`)
    /// whose key, or the variant its `Vary` marker names, holds a fresh
    /// entry in this process. Otherwise the first step, and the exchange
    /// goes on from it exactly as after [`start`](Self::start). It never
    /// waits (L1 only), so an adapter calls it on its own thread and goes
    /// asynchronous only when it gets a step: an L1 hit is one call.
    pub fn start_local(&mut self, cache: &Cache, now: f64) -> Start {
        let step = self.start();
        // Caching off: nothing is read or stored (a HEAD's peek and a
        // request's refresh included); unsafe requests still invalidate.
        if cache.is_bypassing() && !matches!(step, Step::Unsafe | Step::Pass(_)) {
            return Start::Step(Step::Pass(Bypass::Disabled));
        }
        let Step::Lookup(base) = &step else {
            return Start::Step(step);
        };
        let mut key = base.clone();
        // At most twice: the base key, then the variant its marker names.
        for _ in 0..2 {
            let Ok(Some(e)) = cache.get_local(&key) else {
                break;
            };
            match self.on_entry(&e.payload, false, now) {
                Found::Answer(a) => return Start::Answered(a),
                Found::Follow(variant) => key = variant,
                Found::Unusable => break,
            }
        }
        // Not answered here: the adapter reads the base key through the
        // single flight and meets the marker again.
        self.followed = None;
        Start::Step(step)
    }

    /// The principal `key_by` gave (`None`: it could not tell; the request
    /// bypasses the cache).
    pub fn set_principal(&mut self, principal: Option<String>) -> Step {
        match principal {
            None => Step::Pass(Bypass::Private),
            Some(p) => {
                self.principal = Some(p);
                self.lookup()
            }
        }
    }

    fn varied<'a>(&self, names: &'a [String], values: &'a [Option<String>]) -> Varied<'a> {
        names
            .iter()
            .zip(values)
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect()
    }

    fn values(&self, names: &[String]) -> Vec<Option<String>> {
        names.iter().map(|n| self.header(n)).collect()
    }

    fn lookup(&mut self) -> Step {
        let names = &self.route.o.vary;
        let values = self.values(names);
        let host = self.host();
        let key = base_key(
            &self.route.o.scope,
            host.as_deref(),
            &self.path,
            &self.query,
            self.principal.as_deref(),
            &self.varied(names, &values),
        );
        self.base = Some(key.clone());
        self.refresh = self.route.o.request_directives == RequestDirectives::Honor
            && self.header("cache-control").is_some_and(|cc| {
                cache_control(&cc)
                    .iter()
                    .any(|(n, a)| n == "no-cache" || (n == "max-age" && a.as_deref() == Some("0")))
            });
        if self.method == (Method::Read { head: true }) {
            Step::Peek(key)
        } else if self.refresh {
            Step::Refresh(key)
        } else {
            Step::Lookup(key)
        }
    }

    fn variant(&self, names: &[String]) -> Option<String> {
        let base = self.base.as_deref()?;
        let values = self.values(names);
        Some(variant_key(base, &self.varied(names, &values)))
    }

    /// The request's host, lower-cased.
    fn host(&self) -> Option<String> {
        self.header("host").map(|h| h.to_ascii_lowercase())
    }

    /// The tags every entry stored for this request carries.
    pub fn tags(&self) -> Vec<String> {
        vec![url_tag(
            &self.route.o.scope,
            self.host().as_deref(),
            &self.path,
        )]
    }

    /// What the bytes found under the current key give; `stale` when the
    /// cache served them as stale.
    pub fn on_entry(&mut self, data: &[u8], stale: bool, now: f64) -> Found {
        match Stored::decode(data) {
            Some(Stored::Response(r)) => {
                let how = if stale { Served::Stale } else { Served::Hit };
                Found::Answer(self.answer(&r, how, now))
            }
            Some(Stored::Vary(names)) if self.followed.is_none() => {
                let Some(key) = self.variant(&names) else {
                    return Found::Unusable;
                };
                self.followed = Some(names);
                Found::Follow(key)
            }
            _ => Found::Unusable,
        }
    }

    /// The handler's response, when this request ran it: what to store and
    /// what to send.
    pub fn on_response(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: Vec<u8>,
        now: f64,
    ) -> Settle {
        let mut settle = Settle {
            use_stale: false,
            writes: Vec::new(),
            complete: None,
            invalidate: Vec::new(),
            answer: None,
            bypass: None,
            ttl_ms: 0,
            grace_ms: self.route.grace().as_millis() as u64,
        };
        match self.method {
            Method::Unsafe => {
                if (200..400).contains(&status) {
                    settle.invalidate = self.tags();
                }
                return settle;
            }
            Method::Other => {
                settle.bypass = Some(Bypass::Method);
                return settle;
            }
            Method::Read { head } => {
                if status >= 500 && !self.route.o.stale_if_error.is_zero() {
                    settle.use_stale = true;
                }
                if head {
                    settle.bypass = Some(Bypass::Head);
                    return settle;
                }
            }
        }
        let Some((stored, extra, ttl_ms)) = self.storable(status, headers, body, now) else {
            settle.bypass = Some(if status >= 500 {
                Bypass::Error
            } else {
                Bypass::NotStorable
            });
            return settle;
        };
        let mut stored = stored;
        if let (Some(edge), None) = (&self.route.edge_tags, &self.principal)
            && stored.header(&edge.header).is_none()
        {
            let value = edge.value(self.edge_tags.iter().map(String::as_str));
            stored.headers.push((edge.header.clone(), value));
        }
        let how = if self.refresh {
            Served::Refreshed
        } else {
            Served::Miss
        };
        settle.ttl_ms = ttl_ms;
        settle.answer = Some(self.answer(&stored, how, now));
        let bytes = Stored::Response(stored).encode();
        match (&self.followed, extra.is_empty()) {
            // Stored where it was read.
            (None, true) => settle.complete = Some(bytes),
            (Some(f), false) if *f == extra => settle.complete = Some(bytes),
            (Some(_), true) => settle.complete = Some(bytes),
            // The response varies on headers the key did not: a marker
            // where it was read, the response under its variant key.
            (None, false) => {
                if let Some(key) = self.variant(&extra) {
                    settle.writes.push((key, bytes));
                }
                settle.complete = Some(Stored::Vary(extra).encode());
            }
            // Read through an older marker: replace the marker; the
            // waiters of this variant key run their own request.
            (Some(_), false) => {
                if let (Some(base), Some(key)) = (self.base.clone(), self.variant(&extra)) {
                    settle.writes.push((key, bytes));
                    settle.writes.push((base, Stored::Vary(extra).encode()));
                }
            }
        }
        settle
    }

    /// The response as stored, the `Vary` headers it adds to the route's
    /// and its TTL in ms, or `None` when it may not be stored.
    fn storable(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: Vec<u8>,
        now: f64,
    ) -> Option<(StoredResponse, Vec<String>, u64)> {
        if status != 200 {
            return None;
        }
        let mut cc = Vec::new();
        let mut vary = Vec::new();
        for (k, v) in headers {
            match k.to_ascii_lowercase().as_str() {
                "set-cookie" => return None,
                "cache-control" => cc.extend(cache_control(v)),
                "vary" => vary.push(v.as_str()),
                _ => {}
            }
        }
        let private = self.principal.is_some();
        let has = |name: &str| cc.iter().any(|(n, _)| n == name);
        if has("no-store") || has("no-cache") || (has("private") && !private) {
            return None;
        }
        let vary = vary_names(vary);
        if vary.iter().any(|v| v == "*") {
            return None;
        }
        let mut ttl = self.route.ttl_secs();
        let mut ttl_ms = self.route.o.ttl.as_millis().min(u128::from(u64::MAX)) as u64;
        let lifetime = |name: &str| {
            cc.iter().find(|(n, _)| n == name).map(|(_, a)| {
                a.as_deref()
                    .and_then(|a| a.parse::<u64>().ok())
                    .unwrap_or(0)
            })
        };
        let own = (!private)
            .then(|| lifetime("s-maxage"))
            .flatten()
            .or_else(|| lifetime("max-age"));
        if let Some(secs) = own {
            if secs == 0 {
                return None;
            }
            ttl = ttl.min(secs.min(u64::from(u32::MAX)) as u32);
            ttl_ms = ttl_ms.min(secs.saturating_mul(1000));
        }
        // A private entry is keyed by its principal already; a shared one
        // varies on `Cookie` / `Authorization` like on any other header (a
        // request with only shared cookies, e.g. a theme, gets its own).
        let mut extra: Vec<String> = vary
            .into_iter()
            .filter(|v| {
                let keyed_already = self.route.o.vary.contains(v)
                    || (private && PRIVATE_VARY.contains(&v.as_str()));
                !keyed_already
            })
            .collect();
        extra.sort();
        let kept = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| !UNSTORED.contains(&k.as_str()) && !k.starts_with("proxy-"))
            .collect();
        // The handler's validator is kept (a hit sends what the handler
        // sent); without one, a strong one from the body, equal in every
        // process.
        let etag = headers
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("etag") && !v.trim().is_empty())
            .map_or_else(|| etag_for(&body), |(_, v)| v.trim().to_owned());
        Some((
            StoredResponse {
                status,
                headers: kept,
                body,
                etag,
                stored_at: now,
                ttl,
            },
            extra,
            ttl_ms,
        ))
    }

    fn status_headers(&self, how: Served, remaining: i64) -> Vec<(String, String)> {
        let (x, status) = match how {
            Served::Hit => ("HIT", format!("stratacache; hit; ttl={remaining}")),
            Served::Stale => ("STALE", format!("stratacache; hit; ttl={remaining}")),
            Served::Miss => {
                let fwd = if self.followed.is_some() {
                    "vary-miss"
                } else {
                    "uri-miss"
                };
                ("MISS", format!("stratacache; fwd={fwd}; stored"))
            }
            Served::Refreshed => ("MISS", "stratacache; fwd=request; stored".to_owned()),
        };
        let mut out = Vec::with_capacity(2);
        if self.route.o.x_cache {
            out.push(("x-cache".to_owned(), x.to_owned()));
        }
        out.push(("cache-status".to_owned(), status));
        out
    }

    /// Headers to add to a response the handler sent as it is.
    pub fn pass_headers(&self, why: Bypass) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(2);
        if self.route.o.x_cache {
            out.push(("x-cache".to_owned(), "BYPASS".to_owned()));
        }
        out.push((
            "cache-status".to_owned(),
            format!("stratacache; fwd=bypass; detail={}", why.detail()),
        ));
        out
    }

    fn answer(&self, r: &StoredResponse, how: Served, now: f64) -> Answer {
        let age = (now - r.stored_at).max(0.0) as i64;
        let remaining = i64::from(r.ttl) - age;
        let private = self.principal.is_some();
        let mut vary: Vec<String> = self.route.o.vary.clone();
        for n in vary_names(
            r.headers
                .iter()
                .filter(|(k, _)| k == "vary")
                .map(|(_, v)| v.as_str()),
        ) {
            if !vary.contains(&n) {
                vary.push(n);
            }
        }
        if private {
            for n in PRIVATE_VARY {
                if !vary.iter().any(|v| v == n) {
                    vary.push(n.to_owned());
                }
            }
        }
        let cc = r.header("cache-control").map_or_else(
            || {
                let mut cc = format!(
                    "{}, max-age={}",
                    if private { "private" } else { "public" },
                    remaining.max(0)
                );
                let swr = self.route.o.stale_while_revalidate.as_secs();
                if swr > 0 {
                    cc.push_str(&format!(", stale-while-revalidate={swr}"));
                }
                let edge = self.route.o.edge_ttl.as_secs();
                if !private && edge > 0 {
                    cc.push_str(&format!(", s-maxage={edge}"));
                }
                cc
            },
            str::to_owned,
        );
        let edge = if private {
            None
        } else {
            self.route.edge_directives()
        };
        let last_modified = r.last_modified();
        let mut validators = vec![
            ("etag".to_owned(), r.etag.clone()),
            ("cache-control".to_owned(), cc),
            ("age".to_owned(), age.to_string()),
            ("last-modified".to_owned(), http_date(last_modified)),
        ];
        if !vary.is_empty() {
            validators.push(("vary".to_owned(), vary.join(", ")));
        }
        if let Some(d) = edge {
            for name in ["cdn-cache-control", "surrogate-control"] {
                if r.header(name).is_none() {
                    validators.push((name.to_owned(), d.clone()));
                }
            }
        }
        validators.extend(self.status_headers(how, remaining));
        let not_modified = match self.header("if-none-match") {
            Some(inm) => etag_matches(&inm, &r.etag),
            None => self
                .header("if-modified-since")
                .and_then(|s| parse_http_date(&s))
                .is_some_and(|since| last_modified <= since),
        };
        if not_modified {
            // RFC 9110 §15.4.5: the validators and caching headers only.
            for k in ["content-location", "expires"] {
                if let Some(v) = r.header(k) {
                    validators.push((k.to_owned(), v.to_owned()));
                }
            }
            return Answer {
                status: 304,
                headers: validators,
                body: None,
            };
        }
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "cache-control" | "vary" | "last-modified"))
            .cloned()
            .collect();
        headers.extend(validators);
        headers.push(("content-length".to_owned(), r.body.len().to_string()));
        let head = self.method == Method::Read { head: true };
        Answer {
            status: r.status,
            headers,
            body: (!head).then(|| r.body.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
