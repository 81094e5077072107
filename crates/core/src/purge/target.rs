//! Where purges go: one [`EdgePurge`] per edge (a Varnish, a CDN service,
//! a webhook), parsed from the same JSON object in every binding, and the
//! requests a batch of tags becomes for it, in each vendor's documented
//! shape and within its batching limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::http::edge::EdgeTags;

/// Which edge, and how to reach it.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Vendor {
    /// A Varnish with `vmod_xkey`: requests to `url` with the keys in a
    /// header its VCL hands to `xkey.purge` / `xkey.softpurge`, at most
    /// 8,000 bytes of keys each.
    Varnish {
        /// Where to send (`http://varnish:6081/`).
        url: String,
        /// Request method (default `PURGE`).
        method: String,
        /// Header carrying the keys (default `xkey-purge`, or
        /// `xkey-softpurge` for a soft purge).
        key_header: String,
        /// Extra request headers (a shared secret the VCL checks).
        headers: BTreeMap<String, String>,
    },
    /// Fastly: purge by surrogate key, 256 keys per request.
    Fastly {
        /// The service's id.
        service_id: String,
        /// API token (`Fastly-Key`), with `purge_select` scope.
        token: String,
        /// `https://api.fastly.com` unless set.
        api_base: String,
    },
    /// Cloudflare: purge by cache tag, 100 tags per request.
    Cloudflare {
        /// The zone's id.
        zone_id: String,
        /// API token (`Authorization: Bearer`), with Cache Purge permission.
        token: String,
        /// `https://api.cloudflare.com` unless set.
        api_base: String,
    },
    /// Amazon CloudFront: an invalidation of `#tag` items (SigV4-signed).
    CloudFront {
        /// The distribution's id.
        distribution_id: String,
        /// AWS access key id.
        access_key_id: String,
        /// AWS secret access key.
        secret_access_key: String,
        /// Session token of temporary credentials.
        session_token: Option<String>,
        /// `https://cloudfront.amazonaws.com` unless set.
        api_base: String,
    },
    /// Akamai Fast Purge v3 by cache tag (EdgeGrid-signed).
    Akamai {
        /// The API client's host (`akab-….purge.akamaiapis.net`).
        host: String,
        /// EdgeGrid client token.
        client_token: String,
        /// EdgeGrid client secret.
        client_secret: String,
        /// EdgeGrid access token.
        access_token: String,
        /// `production` (default) or `staging`.
        network: String,
        /// `https://<host>` unless set.
        api_base: String,
    },
    /// Any HTTP endpoint: a JSON `POST` of the namespace, the tags as
    /// invalidated and the soft flag, signed with HMAC-SHA256 when a
    /// secret is set.
    Webhook {
        /// Where to send.
        url: String,
        /// Key of the `X-Stratacache-Signature: sha256=<hex>` body signature.
        secret: Option<String>,
        /// Extra request headers.
        headers: BTreeMap<String, String>,
    },
}

/// One edge to purge, with how to batch and retry for it.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct EdgePurge {
    /// The vendor and its credentials.
    pub vendor: Vendor,
    /// Mark stale instead of removing (Varnish soft purge, Fastly soft
    /// purge, Akamai invalidate rather than delete). Default `false`.
    pub soft: bool,
    /// How a tag is written for this edge: the rules of this tag header
    /// ([`EdgeTags`]). Default: the vendor's own header (`Surrogate-Key`
    /// for Varnish, Fastly and webhooks, `Cache-Tag`, `Edge-Cache-Tag`,
    /// CloudFront's limits).
    pub tags: EdgeTags,
    /// Per-request timeout. Default 5 s.
    pub timeout: Duration,
    /// Attempts per request before it is given up (counted in
    /// `edge_purge_failures`). Default 5.
    pub max_attempts: u32,
    /// How long tags gather before a batch is sent. Default 50 ms.
    pub linger: Duration,
}

impl std::fmt::Debug for Vendor {
    /// The vendor's name only: every variant holds a credential or a URL
    /// that may carry one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Vendor {
    /// The vendor's name, as `kind` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Vendor::Varnish { .. } => "varnish",
            Vendor::Fastly { .. } => "fastly",
            Vendor::Cloudflare { .. } => "cloudflare",
            Vendor::CloudFront { .. } => "cloudfront",
            Vendor::Akamai { .. } => "akamai",
            Vendor::Webhook { .. } => "webhook",
        }
    }
}

impl std::fmt::Debug for EdgePurge {
    /// Names the vendor and where it sends; credentials never.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgePurge")
            .field("kind", &self.kind())
            .field("endpoint", &self.label())
            .field("soft", &self.soft)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("linger", &self.linger)
            .finish()
    }
}

/// A request to send, before signing.
#[derive(Clone, PartialEq, Eq)]
pub struct PurgeRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers (lower-case names), signatures added at send time.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// How many tags it purges.
    pub tags: usize,
}

impl std::fmt::Debug for PurgeRequest {
    /// Method, the URL's origin and the tag count: headers and the URL's
    /// query may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeRequest")
            .field("method", &self.method)
            .field("origin", &origin(&self.url))
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

/// Varnish's default `http_req_hdr_len` is 8 KiB: keys per request stay
/// under it with room for the header name.
const VARNISH_HEADER_BYTES: usize = 8000;
const FASTLY_KEYS: usize = 256;
const CLOUDFLARE_TAGS: usize = 100;
const CLOUDFRONT_ITEMS: usize = 1000;
/// Fast Purge refuses bodies over 50,000 bytes, and a request needing
/// more cache-tag tokens than its bucket holds (5,000, refilled at 500 a
/// minute) is refused whole: 500 tags a request.
const AKAMAI_BODY_BYTES: usize = 50_000;
const AKAMAI_TAGS: usize = 500;
const WEBHOOK_TAGS: usize = 1000;

impl EdgePurge {
    /// Every edge in `json`: a JSON array of objects (or one object), each
    /// with a `kind` (`varnish`, `fastly`, `cloudflare`, `cloudfront`,
    /// `akamai`, `webhook`), that kind's fields and the common ones
    /// (`soft`, `timeout_ms`, `max_attempts`, `linger_ms`, `tag_header`).
    /// Errors name the entry and the field, never a credential's value.
    pub fn parse_list(json: &str) -> Result<Vec<EdgePurge>> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("edge_purge: not JSON ({e})")))?;
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| EdgePurge::from_value(item, &format!("edge_purge[{i}]")))
                .collect(),
            Value::Object(_) => Ok(vec![EdgePurge::from_value(&v, "edge_purge")?]),
            _ => Err(Error::Config(
                "edge_purge: expected a list of objects, each with a \"kind\"".into(),
            )),
        }
    }

    fn from_value(v: &Value, at: &str) -> Result<EdgePurge> {
        let Some(obj) = v.as_object() else {
            return Err(Error::Config(format!("{at}: expected an object")));
        };
        let mut f = Fields {
            obj,
            at,
            used: vec!["kind"],
        };
        let kind = f.req_str("kind")?;
        let vendor = match kind.as_str() {
            "varnish" => {
                let soft = f.opt_bool("soft")?.unwrap_or(false);
                let method = f.opt_str("method")?.unwrap_or_else(|| "PURGE".into());
                if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                    return Err(Error::Config(format!("{at}.method is not an HTTP method")));
                }
                let key_header = f
                    .opt_str("key_header")?
                    .unwrap_or_else(|| if soft { "xkey-softpurge" } else { "xkey-purge" }.into());
                if reqwest::header::HeaderName::from_bytes(key_header.as_bytes()).is_err() {
                    return Err(Error::Config(format!(
                        "{at}.key_header is not a header name"
                    )));
                }
                Vendor::Varnish {
                    url: f.url("url")?,
                    method,
                    key_header,
                    headers: f.headers()?,
                }
            }
            "fastly" => Vendor::Fastly {
                service_id: f.req_str("service_id")?,
                token: f.secret("token")?,
                api_base: f.base("https://api.fastly.com")?,
            },
            "cloudflare" => Vendor::Cloudflare {
                zone_id: f.req_str("zone_id")?,
                token: f.secret("token")?,
                api_base: f.base("https://api.cloudflare.com")?,
            },
            "cloudfront" => Vendor::CloudFront {
                distribution_id: f.req_str("distribution_id")?,
                access_key_id: f.secret("access_key_id")?,
                secret_access_key: f.req_str("secret_access_key")?,
                session_token: match f.opt_str("session_token")? {
                    Some(_) => Some(f.secret("session_token")?),
                    None => None,
                },
                api_base: f.base("https://cloudfront.amazonaws.com")?,
            },
            "akamai" => {
                let host = f.req_str("host")?;
                if host.contains("://")
                    || host
                        .bytes()
                        .any(|b| b"/@?# ".contains(&b) || b.is_ascii_control())
                {
                    return Err(Error::Config(format!(
                        "{at}.host: the API client's host alone (akab-....purge.akamaiapis.net), no scheme or path"
                    )));
                }
                let network = f.opt_str("network")?.unwrap_or_else(|| "production".into());
                if network != "production" && network != "staging" {
                    return Err(Error::Config(format!(
                        "{at}.network: \"production\" or \"staging\", not {network:?}"
                    )));
                }
                Vendor::Akamai {
                    api_base: f.base(&format!("https://{host}"))?,
                    host,
                    client_token: f.secret("client_token")?,
                    client_secret: f.req_str("client_secret")?,
                    access_token: f.secret("access_token")?,
                    network,
                }
            }
            "webhook" => Vendor::Webhook {
                url: f.url("url")?,
                secret: f.opt_str("secret")?,
                headers: f.headers()?,
            },
            other => {
                return Err(Error::Config(format!(
                    "{at}.kind: {other:?} is not one of varnish, fastly, cloudflare, cloudfront, akamai, webhook"
                )));
            }
        };
        let soft = f.opt_bool("soft")?.unwrap_or(false);
        if soft
            && matches!(
                vendor,
                Vendor::Cloudflare { .. } | Vendor::CloudFront { .. }
            )
        {
            return Err(Error::Config(format!(
                "{at}.soft: {kind} has no soft purge (its purges always remove)"
            )));
        }
        let default_header = match vendor {
            Vendor::Cloudflare { .. } => "cache-tag",
            Vendor::Akamai { .. } => "edge-cache-tag",
            Vendor::CloudFront { .. } => "x-cache-tag",
            _ => "surrogate-key",
        };
        let header = f.opt_str("tag_header")?;
        let tags = EdgeTags::for_header(header.as_deref().unwrap_or(default_header))
            .map_err(|e| Error::Config(format!("{at}.tag_header: {e}")))?;
        let ms =
            |f: &mut Fields<'_>, name: &'static str, default: u64, min: u64| -> Result<Duration> {
                let v = f.opt_u64(name)?.unwrap_or(default);
                if v < min {
                    return Err(Error::Config(format!("{at}.{name} must be >= {min}")));
                }
                Ok(Duration::from_millis(v))
            };
        let timeout = ms(&mut f, "timeout_ms", 5000, 1)?;
        let linger = ms(&mut f, "linger_ms", 50, 0)?;
        if linger > Duration::from_secs(60) {
            return Err(Error::Config(format!(
                "{at}.linger_ms must be at most 60000"
            )));
        }
        let max_attempts = f.opt_u64("max_attempts")?.unwrap_or(5);
        if !(1..=100).contains(&max_attempts) {
            return Err(Error::Config(format!(
                "{at}.max_attempts must be between 1 and 100"
            )));
        }
        f.no_unknown()?;
        Ok(EdgePurge {
            vendor,
            soft,
            tags,
            timeout,
            max_attempts: max_attempts as u32,
            linger,
        })
    }

    /// The vendor's name.
    pub fn kind(&self) -> &'static str {
        self.vendor.kind()
    }

    /// Where it sends, for logs: scheme, host and port only (a URL's
    /// path or query may carry a secret).
    pub fn label(&self) -> String {
        let url = match &self.vendor {
            Vendor::Varnish { url, .. } | Vendor::Webhook { url, .. } => url,
            Vendor::Fastly { api_base, .. }
            | Vendor::Cloudflare { api_base, .. }
            | Vendor::CloudFront { api_base, .. }
            | Vendor::Akamai { api_base, .. } => api_base,
        };
        origin(url)
    }

    /// The requests that purge `tags` (edge forms, deduplicated by the
    /// caller) from this edge, each within the vendor's limits.
    pub fn requests(&self, namespace: &str, tags: &[String]) -> Vec<PurgeRequest> {
        let json_headers = || vec![("content-type".to_owned(), "application/json".to_owned())];
        match &self.vendor {
            Vendor::Varnish {
                url,
                method,
                key_header,
                headers,
            } => pack_by_bytes(tags, VARNISH_HEADER_BYTES, 1)
                .into_iter()
                .map(|chunk| {
                    let mut h: Vec<(String, String)> = headers
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect();
                    h.push((key_header.to_ascii_lowercase(), chunk.join(" ")));
                    PurgeRequest {
                        method: method.clone(),
                        url: url.clone(),
                        headers: h,
                        body: Vec::new(),
                        tags: chunk.len(),
                    }
                })
                .collect(),
            Vendor::Fastly {
                service_id,
                token,
                api_base,
            } => tags
                .chunks(FASTLY_KEYS)
                .map(|chunk| {
                    let mut h = json_headers();
                    h.push(("fastly-key".into(), token.clone()));
                    h.push(("accept".into(), "application/json".into()));
                    if self.soft {
                        h.push(("fastly-soft-purge".into(), "1".into()));
                    }
                    PurgeRequest {
                        method: "POST".into(),
                        url: format!("{api_base}/service/{}/purge", path_segment(service_id)),
                        headers: h,
                        body: json!({ "surrogate_keys": chunk }).to_string().into_bytes(),
                        tags: chunk.len(),
                    }
                })
                .collect(),
            Vendor::Cloudflare {
                zone_id,
                token,
                api_base,
            } => tags
                .chunks(CLOUDFLARE_TAGS)
                .map(|chunk| {
                    let mut h = json_headers();
                    h.push(("authorization".into(), format!("Bearer {token}")));
                    PurgeRequest {
                        method: "POST".into(),
                        url: format!(
                            "{api_base}/client/v4/zones/{}/purge_cache",
                            path_segment(zone_id)
                        ),
                        headers: h,
                        body: json!({ "tags": chunk }).to_string().into_bytes(),
                        tags: chunk.len(),
                    }
                })
                .collect(),
            Vendor::CloudFront {
                distribution_id,
                api_base,
                ..
            } => tags
                .chunks(CLOUDFRONT_ITEMS)
                .map(|chunk| PurgeRequest {
                    method: "POST".into(),
                    url: format!(
                        "{api_base}/2020-05-31/distribution/{}/invalidation",
                        path_segment(distribution_id)
                    ),
                    headers: vec![("content-type".into(), "text/xml".into())],
                    body: cloudfront_batch(chunk).into_bytes(),
                    tags: chunk.len(),
                })
                .collect(),
            Vendor::Akamai {
                network, api_base, ..
            } => {
                let op = if self.soft { "invalidate" } else { "delete" };
                // {"objects":[...]}: 14 bytes of frame, 3 per tag ("",).
                tags.chunks(AKAMAI_TAGS)
                    .flat_map(|c| pack_by_bytes(c, AKAMAI_BODY_BYTES - 14, 3))
                    .map(|chunk| PurgeRequest {
                        method: "POST".into(),
                        url: format!("{api_base}/ccu/v3/{op}/tag/{network}"),
                        headers: json_headers(),
                        body: json!({ "objects": chunk }).to_string().into_bytes(),
                        tags: chunk.len(),
                    })
                    .collect()
            }
            Vendor::Webhook { url, headers, .. } => tags
                .chunks(WEBHOOK_TAGS)
                .map(|chunk| {
                    let mut h = json_headers();
                    h.extend(
                        headers
                            .iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
                    );
                    PurgeRequest {
                        method: "POST".into(),
                        url: url.clone(),
                        headers: h,
                        body: json!({
                            "namespace": namespace,
                            "tags": chunk,
                            "soft": self.soft,
                        })
                        .to_string()
                        .into_bytes(),
                        tags: chunk.len(),
                    }
                })
                .collect(),
        }
    }
}

/// `tags` in groups whose joined size (each tag plus `per_tag` bytes of
/// separator or quoting) stays within `max`; a tag is never split.
fn pack_by_bytes(tags: &[String], max: usize, per_tag: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for t in tags {
        let n = t.len() + per_tag;
        match out.last_mut() {
            Some(last) if size + n <= max => {
                last.push(t.clone());
                size += n;
            }
            _ => {
                out.push(vec![t.clone()]);
                size = n;
            }
        }
    }
    out
}

/// The `InvalidationBatch` XML of CloudFront's CreateInvalidation, one
/// `#tag` path per tag (edge forms need no XML escaping: they are made of
/// characters XML takes as they are, or hashed).
fn cloudfront_batch(tags: &[String]) -> String {
    let items: String = tags.iter().map(|t| format!("<Path>#{t}</Path>")).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
         <Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths>\
         <CallerReference>stratacache-{}</CallerReference></InvalidationBatch>",
        tags.len(),
        crate::key::hex(&rand::random::<[u8; 12]>()),
    )
}

/// An id as a URL path segment: unreserved characters kept, the rest
/// percent-encoded (a configured id can never reach another path).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of `url`, never its user, path or query.
pub(crate) fn origin(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(
        |_| "<not a URL>".to_owned(),
        |u| u.origin().ascii_serialization(),
    )
}

/// Typed reads of a JSON object's fields, each error naming
/// `<at>.<field>`; remembers which fields were read so the rest can be
/// refused as unknown.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    at: &'a str,
    used: Vec<&'static str>,
}

impl Fields<'_> {
    fn get(&mut self, name: &'static str) -> Option<&Value> {
        self.used.push(name);
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn opt_str(&mut self, name: &'static str) -> Result<Option<String>> {
        let at = self.at;
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(Error::Config(format!(
                "{at}.{name} must be a non-empty string"
            ))),
        }
    }

    /// A required credential that travels in a header: a one-line value
    /// (a token read from a file with its newline is refused here, not at
    /// every purge). The error never shows it.
    fn secret(&mut self, name: &'static str) -> Result<String> {
        let at = self.at;
        let v = self.req_str(name)?;
        if reqwest::header::HeaderValue::from_str(&v).is_err() {
            return Err(Error::Config(format!(
                "{at}.{name} has characters a header cannot carry (a trailing newline?)"
            )));
        }
        Ok(v)
    }

    fn req_str(&mut self, name: &'static str) -> Result<String> {
        let at = self.at;
        self.opt_str(name)?
            .ok_or_else(|| Error::Config(format!("{at}.{name} is required")))
    }

    fn opt_bool(&mut self, name: &'static str) -> Result<Option<bool>> {
        let at = self.at;
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Error::Config(format!("{at}.{name} must be true or false"))),
        }
    }

    fn opt_u64(&mut self, name: &'static str) -> Result<Option<u64>> {
        let at = self.at;
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::Config(format!("{at}.{name} must be a whole number >= 0"))),
        }
    }

    fn url(&mut self, name: &'static str) -> Result<String> {
        let at = self.at;
        let u = self.req_str(name)?;
        check_url(&u).map_err(|why| Error::Config(format!("{at}.{name}: {why}")))?;
        Ok(u)
    }

    fn base(&mut self, default: &str) -> Result<String> {
        let at = self.at;
        match self.opt_str("api_base")? {
            None => Ok(default.to_owned()),
            Some(u) => {
                check_url(&u).map_err(|why| Error::Config(format!("{at}.api_base: {why}")))?;
                if u.contains(['?', '#']) {
                    return Err(Error::Config(format!(
                        "{at}.api_base: scheme, host and port only"
                    )));
                }
                Ok(u.trim_end_matches('/').to_owned())
            }
        }
    }

    fn headers(&mut self) -> Result<BTreeMap<String, String>> {
        let at = self.at;
        let Some(v) = self.get("headers") else {
            return Ok(BTreeMap::new());
        };
        let Some(m) = v.as_object() else {
            return Err(Error::Config(format!(
                "{at}.headers must be an object of header names to strings"
            )));
        };
        let mut out = BTreeMap::new();
        for (k, v) in m {
            let ok_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let value = v
                .as_str()
                .filter(|s| !s.bytes().any(|b| b == b'\r' || b == b'\n'));
            match (ok_name, value) {
                (true, Some(s)) => {
                    out.insert(k.clone(), s.to_owned());
                }
                _ => {
                    return Err(Error::Config(format!(
                        "{at}.headers.{k}: a header name and a one-line string value"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn no_unknown(&self) -> Result<()> {
        for k in self.obj.keys() {
            if !self.used.contains(&k.as_str()) {
                let hint = crate::config::nearest_name(k, &self.used)
                    .map(|n| format!(" (did you mean {n:?}?)"))
                    .unwrap_or_default();
                return Err(Error::Config(format!(
                    "{}.{k}: not an option of this kind{hint}",
                    self.at
                )));
            }
        }
        Ok(())
    }
}

fn check_url(u: &str) -> std::result::Result<(), &'static str> {
    let url = reqwest::Url::parse(u).map_err(|_| "not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("an http:// or https:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL: give them as headers");
    }
    Ok(())
}
