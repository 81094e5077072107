//! HTTP response caching rules shared by every web integration (FastAPI,
//! Express, Fastify): request keys, the stored response format, strong
//! ETags, `Cache-Control` parsing and what may be stored.
//!
//! Stored response format, version 1 (all integers big-endian):
//!
//! ```text
//! b"SCH1" | u16 status | f64 stored_at (unix s) | u32 ttl (s) | u32 n
//! | n bytes of UTF-8 JSON: [[header, value], ...] (lower-case names,
//!   including "etag") | body
//! ```
//!
//! The ETag is computed once, from the body alone, when the response is
//! stored, so every worker, every language and every restart agrees on it.

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"SCH1";
const HEAD: usize = 4 + 2 + 8 + 4 + 4;

/// Headers never stored: hop-by-hop, per-response, per-user, or set by the
/// cache itself when serving.
const UNSTORED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "set-cookie",
    "date",
    "age",
    "x-cache",
    "etag",
    "cache-control",
    "vary",
];

/// A rendered response as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResponse {
    /// HTTP status.
    pub status: u16,
    /// Stored headers (lower-case names, without the unstored ones).
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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A strong ETag from the body alone.
pub fn etag_for(body: &[u8]) -> String {
    format!("\"{}\"", &hex(&Sha256::digest(body))[..32])
}

/// RFC 9110 `If-None-Match` against `etag` (weak comparison; `*` matches).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let inm = if_none_match.trim();
    if inm.is_empty() {
        return false;
    }
    if inm == "*" {
        return true;
    }
    let want = etag.strip_prefix("W/").unwrap_or(etag);
    inm.split(',')
        .map(|t| t.trim())
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

fn has_directive(cc: &[(String, Option<String>)], name: &str) -> bool {
    cc.iter().any(|(n, _)| n == name)
}

/// The cache key of a request: route, method, path, sorted query, the
/// values of the varied request headers, and the principal (if the route
/// keys per user). Hashed, so any URL gives a short valid key and the
/// principal never appears in Redis in clear.
pub fn request_key(
    route: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    vary: &[(String, String)],
    principal: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    for part in [route, &method.to_ascii_uppercase(), path] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let mut q: Vec<_> = query.iter().collect();
    q.sort();
    for (k, v) in q {
        h.update(format!("q:{k}={v}").as_bytes());
        h.update([0]);
    }
    let mut v: Vec<_> = vary
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    v.sort();
    for (k, val) in v {
        h.update(format!("h:{k}={val}").as_bytes());
        h.update([0]);
    }
    if let Some(p) = principal {
        h.update(b"p:");
        h.update(p.as_bytes());
    }
    let scope = if principal.is_some() {
        "private"
    } else {
        "public"
    };
    format!("http:{scope}:{}", hex(&h.finalize()))
}

/// Whether a request identifies a user (it must never be answered from a
/// shared entry): an `Authorization` header, or one of the named cookies.
pub fn has_credentials(
    authorization: Option<&str>,
    cookie_header: Option<&str>,
    credential_cookies: &[String],
) -> bool {
    if authorization.is_some_and(|a| !a.is_empty()) {
        return true;
    }
    let Some(cookies) = cookie_header else {
        return false;
    };
    cookies.split(';').any(|c| {
        let name = c.split('=').next().unwrap_or("").trim();
        credential_cookies.iter().any(|n| n == name)
    })
}

/// Default names of session cookies (Django, Flask, Express, Rails, Laravel).
pub const DEFAULT_CREDENTIAL_COOKIES: &[&str] = &[
    "sessionid",
    "session",
    "connect.sid",
    "_session",
    "remember_token",
];

impl CachedResponse {
    /// A response that may be stored, or `None`: only 200s, never with
    /// `Cache-Control: no-store`, never `private` unless keyed per user,
    /// never one that sets cookies.
    pub fn storable(
        status: u16,
        headers: &[(String, String)],
        body: Vec<u8>,
        stored_at: f64,
        ttl: u32,
        private: bool,
    ) -> Option<Self> {
        if status != 200 {
            return None;
        }
        let mut cc = Vec::new();
        for (k, v) in headers {
            match k.to_ascii_lowercase().as_str() {
                "set-cookie" => return None,
                "cache-control" => cc.extend(cache_control(v)),
                _ => {}
            }
        }
        if has_directive(&cc, "no-store") || (has_directive(&cc, "private") && !private) {
            return None;
        }
        let kept = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| !UNSTORED.contains(&k.as_str()))
            .collect();
        let etag = etag_for(&body);
        Some(CachedResponse {
            status,
            headers: kept,
            body,
            etag,
            stored_at,
            ttl,
        })
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut pairs: Vec<[&str; 2]> = self
            .headers
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        pairs.push(["etag", &self.etag]);
        let hdrs = json_pairs(&pairs);
        let mut out = Vec::with_capacity(HEAD + hdrs.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&(hdrs.len() as u32).to_be_bytes());
        out.extend_from_slice(hdrs.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parse stored bytes; `None` for anything malformed (a miss).
    pub fn decode(data: &[u8]) -> Option<Self> {
        if data.len() < HEAD || &data[..4] != MAGIC {
            return None;
        }
        let status = u16::from_be_bytes(data[4..6].try_into().ok()?);
        let stored_at = f64::from_be_bytes(data[6..14].try_into().ok()?);
        let ttl = u32::from_be_bytes(data[14..18].try_into().ok()?);
        let n = u32::from_be_bytes(data[18..22].try_into().ok()?) as usize;
        let end = HEAD.checked_add(n)?;
        let hdrs = std::str::from_utf8(data.get(HEAD..end)?).ok()?;
        let pairs = parse_json_pairs(hdrs)?;
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
        let etag = etag.unwrap_or_else(|| etag_for(&body));
        Some(CachedResponse {
            status,
            headers,
            body,
            etag,
            stored_at,
            ttl,
        })
    }

    /// `Cache-Control`, `Age`, `ETag` and `Vary` to send when serving this
    /// entry at `now` (unix seconds).
    pub fn serving_headers(
        &self,
        now: f64,
        private: bool,
        stale_while_revalidate: u32,
        vary: &[String],
    ) -> Vec<(String, String)> {
        let age = (now - self.stored_at).max(0.0) as u64;
        let mut cc = format!(
            "{}, max-age={}",
            if private { "private" } else { "public" },
            u64::from(self.ttl).saturating_sub(age)
        );
        if stale_while_revalidate > 0 {
            cc.push_str(&format!(
                ", stale-while-revalidate={stale_while_revalidate}"
            ));
        }
        let mut out = vec![
            ("etag".to_owned(), self.etag.clone()),
            ("cache-control".to_owned(), cc),
            ("age".to_owned(), age.to_string()),
        ];
        let mut v: Vec<String> = vary.iter().map(|h| h.to_ascii_lowercase()).collect();
        if private {
            v.extend(["authorization".to_owned(), "cookie".to_owned()]);
        }
        if !v.is_empty() {
            out.push(("vary".to_owned(), v.join(", ")));
        }
        out
    }
}

fn json_pairs(pairs: &[[&str; 2]]) -> String {
    // Serializing strings cannot fail.
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_json_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = serde_json::from_str(s).ok()?;
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn entries_round_trip_and_drop_unstored_headers() {
        let r = CachedResponse::storable(
            200,
            &h(&[
                ("Content-Type", "application/json"),
                ("X-Quote", "a \"b\" \\ ü \u{1}"),
                ("Date", "x"),
                ("ETag", "\"w\""),
            ]),
            b"{\"ok\":true}".to_vec(),
            1_700_000_000.5,
            60,
            false,
        )
        .expect("storable");
        assert_eq!(
            r.headers,
            h(&[
                ("content-type", "application/json"),
                ("x-quote", "a \"b\" \\ ü \u{1}")
            ])
        );
        assert_eq!(r.etag, etag_for(b"{\"ok\":true}"));
        assert_eq!(CachedResponse::decode(&r.encode()), Some(r.clone()));
        let enc = r.encode();
        for n in 0..HEAD + 3 {
            assert_eq!(CachedResponse::decode(&enc[..n]), None);
        }
        assert_eq!(CachedResponse::decode(b"SCH2...................."), None);
    }

    #[test]
    fn what_may_be_stored() {
        // (status, headers, keyed per principal, storable)
        type Case = (u16, &'static [(&'static str, &'static str)], bool, bool);
        let cases: &[Case] = &[
            (404, &[], false, false),
            (200, &[("set-cookie", "a=b")], false, false),
            (200, &[("cache-control", "no-store")], false, false),
            (
                200,
                &[("Cache-Control", "Private, max-age=5")],
                false,
                false,
            ),
            (200, &[("cache-control", "private")], true, true),
            (200, &[("cache-control", "public, max-age=9")], false, true),
        ];
        for &(status, headers, private, storable) in cases {
            let r = CachedResponse::storable(status, &h(headers), b"x".to_vec(), 0.0, 1, private);
            assert_eq!(
                r.is_some(),
                storable,
                "{status} {headers:?} private={private}"
            );
        }
    }

    #[test]
    fn etags_keys_and_credentials() {
        let e = etag_for(b"abc");
        assert!(etag_matches(&format!("\"zz\", {e}"), &e));
        assert!(etag_matches(&format!("W/{e}"), &e));
        assert!(etag_matches("*", &e));
        assert!(!etag_matches("\"other\"", &e) && !etag_matches("", &e));
        let q = |p: &[(&str, &str)]| h(p);
        let a = request_key("r", "get", "/p", &q(&[("b", "2"), ("a", "1")]), &[], None);
        assert_eq!(
            a,
            request_key("r", "GET", "/p", &q(&[("a", "1"), ("b", "2")]), &[], None)
        );
        assert!(a.starts_with("http:public:"));
        assert_ne!(
            a,
            request_key("r", "GET", "/p", &q(&[("a", "1")]), &[], None)
        );
        let alice = request_key("r", "GET", "/p", &[], &[], Some("alice"));
        assert!(
            alice.starts_with("http:private:")
                && alice != request_key("r", "GET", "/p", &[], &[], Some("bob"))
        );
        let cookies: Vec<String> = DEFAULT_CREDENTIAL_COOKIES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(has_credentials(Some("Bearer x"), None, &cookies));
        assert!(has_credentials(
            None,
            Some("theme=dark; sessionid=abc"),
            &cookies
        ));
        assert!(!has_credentials(
            None,
            Some("theme=dark; xsessionid=1"),
            &cookies
        ));
        assert!(!has_credentials(Some(""), None, &cookies));
        assert_eq!(
            cache_control("no-cache, Max-Age=\"5\""),
            vec![
                ("no-cache".into(), None),
                ("max-age".into(), Some("5".into()))
            ]
        );
    }

    #[test]
    fn serving_headers() {
        let r =
            CachedResponse::storable(200, &[], b"b".to_vec(), 100.0, 60, false).expect("storable");
        let hs = r.serving_headers(110.9, false, 30, &["Accept-Language".into()]);
        assert!(hs.contains(&(
            "cache-control".into(),
            "public, max-age=50, stale-while-revalidate=30".into()
        )));
        assert!(hs.contains(&("age".into(), "10".into())));
        assert!(hs.contains(&("vary".into(), "accept-language".into())));
        let private = r.serving_headers(100.0, true, 0, &[]);
        assert!(private.contains(&("vary".into(), "authorization, cookie".into())));
    }
}
