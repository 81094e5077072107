//! Cache keys of HTTP requests: an injective encoding, hashed.
//!
//! Every field enters the hash as a big-endian `u64` length followed by its
//! bytes, and every list as its count followed by its items, so no byte in a
//! path, a query name or value, a header value or a principal can make two
//! distinct requests encode alike (`?a=1%00q:b=2` and `?a=1&b=2` differ in
//! the count of pairs before any byte is compared). Optional fields carry a
//! presence byte: an absent header and an empty one are different requests.
//!
//! Query pairs are ordered by name (bytes), stably: distinct names are
//! sorted (`?a=1&b=2` and `?b=2&a=1` share an entry), while repeated names
//! keep their relative order (`?s=2&s=1` and `?s=1&s=2` do not).

use sha2::{Digest, Sha256};

use super::hex;

/// Domain separation for the base key; bump on any encoding change.
const BASE: &[u8] = b"stratacache/http-key/2";
/// Domain separation for a variant key (learned from a response's `Vary`).
const VARIANT: &[u8] = b"stratacache/http-variant/2";
/// Domain separation for the URL tag.
const URL: &[u8] = b"stratacache/http-url/2";

struct Encoder(Sha256);

impl Encoder {
    fn new(domain: &[u8]) -> Self {
        let mut e = Encoder(Sha256::new());
        e.field(domain);
        e
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn optional(&mut self, v: Option<&str>) {
        match v {
            None => self.0.update([0]),
            Some(s) => {
                self.0.update([1]);
                self.field(s.as_bytes());
            }
        }
    }

    fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// Query pairs in key order: stably sorted by name.
pub fn canonical_query(query: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut q: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    q.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    q
}

/// The values of the varied request headers, in key order: `(name,
/// value)` sorted by the (lower-case, deduplicated) name; `None` for a
/// header the request does not carry.
pub type Varied<'a> = Vec<(&'a str, Option<&'a str>)>;

/// The base key of a request: scope, host, path, query, principal and the
/// values of the route's configured `Vary` headers. The host (the request's
/// `Host`, lower-cased; absent and empty differ) keeps tenants of one app
/// apart and stops a crafted `Host` from reaching other hosts' entries. `private` keys (with a
/// principal) and shared ones never meet: the principal's presence is part
/// of the encoding, and the key names its scope.
pub fn base_key(
    scope: &str,
    host: Option<&str>,
    path: &str,
    query: &[(String, String)],
    principal: Option<&str>,
    varied: &Varied<'_>,
) -> String {
    let mut e = Encoder::new(BASE);
    e.field(scope.as_bytes());
    e.optional(host);
    e.field(path.as_bytes());
    let q = canonical_query(query);
    e.count(q.len());
    for (k, v) in q {
        e.field(k.as_bytes());
        e.field(v.as_bytes());
    }
    e.optional(principal);
    encode_varied(&mut e, varied);
    let kind = if principal.is_some() {
        "private"
    } else {
        "public"
    };
    format!("http:{kind}:{}", e.finish())
}

/// The key of one variant of `base` selected by the request's values of the
/// headers a response named in `Vary`.
pub fn variant_key(base: &str, varied: &Varied<'_>) -> String {
    let mut e = Encoder::new(VARIANT);
    e.field(base.as_bytes());
    encode_varied(&mut e, varied);
    // Keeps the base key's scope word (public/private) visible.
    let kind = base.split(':').nth(1).unwrap_or("public");
    format!("http:{kind}:v:{}", e.finish())
}

fn encode_varied(e: &mut Encoder, varied: &Varied<'_>) {
    e.count(varied.len());
    for (name, value) in varied {
        e.field(name.as_bytes());
        e.optional(*value);
    }
}

/// The tag every entry stored for a URL carries, whatever its variant or
/// principal: a successful unsafe request to the URL invalidates it
/// (RFC 9111 §4.4). It covers the path, not the query: invalidating every
/// query of a path is allowed (caches may invalidate more) and keeps one
/// tag per resource.
pub fn url_tag(scope: &str, host: Option<&str>, path: &str) -> String {
    let mut e = Encoder::new(URL);
    e.field(scope.as_bytes());
    e.optional(host);
    e.field(path.as_bytes());
    format!("http:url:{}", &e.finish()[..32])
}
