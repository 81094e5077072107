//! A route's caching options, checked and normalized once: what every
//! exchange of the route reads.

use std::time::Duration;

use super::{edge, vary_names};
use crate::error::{Error, Result};

/// What to do with a client's own `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestDirectives {
    /// Ignore it (the default of CDNs and nginx): no client can make the
    /// handler run.
    #[default]
    Ignore,
    /// `no-cache` / `max-age=0` refresh the entry, through the single
    /// flight: concurrent refreshing requests share one handler run.
    Honor,
}

impl RequestDirectives {
    /// From its configuration name, `"ignore"` or `"honor"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ignore" => Ok(Self::Ignore),
            "honor" | "honour" => Ok(Self::Honor),
            other => Err(Error::Config(format!(
                "request_directives must be \"ignore\" or \"honor\", not {other:?}"
            ))),
        }
    }
}

/// A route's caching options.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    /// Separates the entries of apps sharing a namespace (default empty).
    pub scope: String,
    /// How long a response is fresh (an upper bound: the handler's
    /// `max-age` may shorten it).
    pub ttl: Duration,
    /// How long past its TTL a response is served while one request
    /// refreshes it in the background.
    pub stale_while_revalidate: Duration,
    /// How long past its TTL a response is served instead of a failure.
    pub stale_if_error: Duration,
    /// Request headers the responses always vary on.
    pub vary: Vec<String>,
    /// Cookie names that do not identify a user (analytics, preferences):
    /// a request carrying only these may get a shared entry.
    pub shared_cookies: Vec<String>,
    /// Request headers besides `Authorization` and `Cookie` that carry
    /// credentials (an API key header): a request with one is private.
    pub private_headers: Vec<String>,
    /// The route gives a `key_by` (private requests get per-principal
    /// entries).
    pub keyed: bool,
    /// What a client's `Cache-Control` does.
    pub request_directives: RequestDirectives,
    /// Send `X-Cache` (`Cache-Status` is always sent).
    pub x_cache: bool,
    /// How long a CDN or reverse proxy in front may keep a shared response
    /// (zero: no edge directives). Shared responses then carry
    /// `s-maxage` in the default `Cache-Control`, and `CDN-Cache-Control`
    /// (RFC 9213) and `Surrogate-Control` (Varnish, Fastly) with
    /// `max-age` and the route's `stale-while-revalidate` /
    /// `stale-if-error` (RFC 5861), unless the handler sent its own.
    /// Private responses never do.
    pub edge_ttl: Duration,
    /// The header that carries a stored response's tags to the edge
    /// (`Surrogate-Key`, `Cache-Tag`, `Edge-Cache-Tag`, or a configured
    /// one; see [`edge`]), or `None`. Shared responses only.
    pub edge_tag_header: Option<String>,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            scope: String::new(),
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            vary: Vec::new(),
            shared_cookies: Vec::new(),
            private_headers: Vec::new(),
            keyed: false,
            request_directives: RequestDirectives::Ignore,
            x_cache: true,
            edge_ttl: Duration::ZERO,
            edge_tag_header: None,
        }
    }
}

/// A validated route configuration.
#[derive(Debug)]
pub struct Route {
    pub(super) o: RouteOptions,
    pub(super) edge_tags: Option<edge::EdgeTags>,
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Route {
    /// Check and normalize `o`.
    pub fn new(mut o: RouteOptions) -> Result<Route> {
        if o.ttl.is_zero() {
            return Err(Error::Config("ttl must be > 0".into()));
        }
        for h in &o.vary {
            if !is_token(h) || h == "*" {
                return Err(Error::Config(format!(
                    "vary: {h:?} is not a header name (Vary: * would make nothing cacheable)"
                )));
            }
        }
        o.vary = vary_names(o.vary.iter().map(String::as_str));
        o.vary.sort();
        for h in &o.private_headers {
            if !is_token(h) {
                return Err(Error::Config(format!(
                    "private_headers: {h:?} is not a header name"
                )));
            }
        }
        o.private_headers = vary_names(o.private_headers.iter().map(String::as_str));
        for c in &o.shared_cookies {
            if c.is_empty() || c.contains([';', '=', ' ']) {
                return Err(Error::Config(format!(
                    "shared_cookies: {c:?} is not a cookie name"
                )));
            }
        }
        let edge_tags = o
            .edge_tag_header
            .as_deref()
            .map(edge::EdgeTags::for_header)
            .transpose()?;
        Ok(Route { o, edge_tags })
    }

    /// The tag header this route sends, if any (a binding then hands the
    /// exchange its tags before the response: [`Exchange::set_edge_tags`]).
    pub fn edge_tags(&self) -> Option<&edge::EdgeTags> {
        self.edge_tags.as_ref()
    }

    /// The options, normalized.
    pub fn options(&self) -> &RouteOptions {
        &self.o
    }

    /// How long entries stay servable past their TTL.
    pub fn grace(&self) -> Duration {
        self.o.stale_while_revalidate.max(self.o.stale_if_error)
    }

    /// The edge directives of a shared response: `max-age` and RFC 5861's
    /// extensions, or `None` without an edge TTL.
    pub(super) fn edge_directives(&self) -> Option<String> {
        let edge = self.o.edge_ttl.as_secs();
        if edge == 0 {
            return None;
        }
        let mut d = format!("max-age={edge}");
        let swr = self.o.stale_while_revalidate.as_secs();
        if swr > 0 {
            d.push_str(&format!(", stale-while-revalidate={swr}"));
        }
        let sie = self.o.stale_if_error.as_secs();
        if sie > 0 {
            d.push_str(&format!(", stale-if-error={sie}"));
        }
        Some(d)
    }

    pub(super) fn ttl_secs(&self) -> u32 {
        // Rounded, at least 1: what headers can say of a sub-second TTL.
        let s = (self.o.ttl.as_millis() as f64 / 1000.0).round();
        s.clamp(1.0, f64::from(u32::MAX)) as u32
    }
}
