//! What is stored for a URL: a rendered response, or a `Vary` marker that
//! sends readers on to a variant key.
//!
//! Format, version 2 (integers big-endian):
//!
//! ```text
//! b"SCH2" | u8 kind
//! kind 0, response: u16 status | f64 stored_at (unix s) | u32 ttl (s)
//!                   | u32 n | n bytes of UTF-8 JSON [[name, value], ...]
//!                   (lower-case names, "etag" included) | body
//! kind 1, marker:   UTF-8 JSON [name, ...] (lower-case header names)
//! ```
//!
//! Anything else (an older format included) decodes to `None`: a miss.

use sha2::{Digest, Sha256};

use super::hex;

const MAGIC: &[u8; 4] = b"SCH2";
const RESPONSE: u8 = 0;
const MARKER: u8 = 1;
const HEAD: usize = 5 + 2 + 8 + 4 + 4;

/// A rendered response as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Stored headers: lower-case names, hop-by-hop and per-response ones
    /// left out, the handler's `Cache-Control`, `Vary` and `Last-Modified`
    /// kept.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Strong ETag of the body, quoted.
    pub etag: String,
    /// When it was stored (unix seconds).
    pub stored_at: f64,
    /// Freshness lifetime in seconds.
    pub ttl: u32,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// A response to serve.
    Response(StoredResponse),
    /// The responses for this key vary on these request headers: read the
    /// variant key they select.
    Vary(Vec<String>),
}

/// A strong ETag from the body alone: every process, language and restart
/// agrees on it.
pub fn etag_for(body: &[u8]) -> String {
    format!("\"{}\"", &hex(&Sha256::digest(body))[..32])
}

/// RFC 9110 `If-None-Match` against `etag` (weak comparison; `*` matches).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let inm = if_none_match.trim();
    if inm == "*" {
        return true;
    }
    let want = etag.strip_prefix("W/").unwrap_or(etag);
    inm.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .any(|t| t.strip_prefix("W/").unwrap_or(t) == want)
}

/// `Cache-Control` directives, lower-cased, with their arguments.
pub fn cache_control(value: &str) -> Vec<(String, Option<String>)> {
    value
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            if part.is_empty() {
                return None;
            }
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n, Some(a.trim().trim_matches('"').to_owned())),
                None => (part, None),
            };
            Some((
                name.trim().to_ascii_lowercase(),
                arg.filter(|a| !a.is_empty()),
            ))
        })
        .collect()
}

/// Header names listed in `Vary` values, lower-cased and deduplicated.
pub fn vary_names<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let n = n.to_ascii_lowercase();
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for unix seconds.
pub fn http_date(unix: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0.0) as u64);
    httpdate::fmt_http_date(t)
}

/// Unix seconds of an HTTP-date (any of the three RFC 9110 forms).
pub fn parse_http_date(s: &str) -> Option<f64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as f64)
}

impl Stored {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        match self {
            Stored::Response(r) => {
                let mut pairs: Vec<[&str; 2]> = r
                    .headers
                    .iter()
                    .map(|(k, v)| [k.as_str(), v.as_str()])
                    .collect();
                pairs.push(["etag", &r.etag]);
                let hdrs = json(&pairs);
                out.reserve(HEAD + hdrs.len() + r.body.len());
                out.push(RESPONSE);
                out.extend_from_slice(&r.status.to_be_bytes());
                out.extend_from_slice(&r.stored_at.to_be_bytes());
                out.extend_from_slice(&r.ttl.to_be_bytes());
                out.extend_from_slice(&(hdrs.len() as u32).to_be_bytes());
                out.extend_from_slice(hdrs.as_bytes());
                out.extend_from_slice(&r.body);
            }
            Stored::Vary(names) => {
                out.push(MARKER);
                out.extend_from_slice(json(names).as_bytes());
            }
        }
        out
    }

    /// Parse stored bytes; `None` for anything malformed or of another
    /// format version.
    pub fn decode(data: &[u8]) -> Option<Self> {
        if data.len() < 5 || &data[..4] != MAGIC {
            return None;
        }
        match data[4] {
            MARKER => {
                let names: Vec<String> = serde_json::from_slice(&data[5..]).ok()?;
                Some(Stored::Vary(names))
            }
            RESPONSE if data.len() >= HEAD => {
                let status = u16::from_be_bytes(data[5..7].try_into().ok()?);
                let stored_at = f64::from_be_bytes(data[7..15].try_into().ok()?);
                let ttl = u32::from_be_bytes(data[15..19].try_into().ok()?);
                let n = u32::from_be_bytes(data[19..23].try_into().ok()?) as usize;
                let end = HEAD.checked_add(n)?;
                let pairs: Vec<(String, String)> =
                    serde_json::from_slice(data.get(HEAD..end)?).ok()?;
                let body = data[end..].to_vec();
                let mut etag = None;
                let mut headers = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    if k == "etag" {
                        etag = Some(v);
                    } else {
                        headers.push((k, v));
                    }
                }
                Some(Stored::Response(StoredResponse {
                    status,
                    headers,
                    etag: etag.unwrap_or_else(|| etag_for(&body)),
                    body,
                    stored_at,
                    ttl,
                }))
            }
            _ => None,
        }
    }
}

impl StoredResponse {
    /// The first stored value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// When the represented resource last changed: the handler's
    /// `Last-Modified`, else when the response was stored.
    pub fn last_modified(&self) -> f64 {
        self.header("last-modified")
            .and_then(parse_http_date)
            .unwrap_or(self.stored_at.floor())
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Serializing strings cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}
