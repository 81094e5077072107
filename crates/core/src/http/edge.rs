//! Tag headers for the CDN or reverse proxy in front: which header, how
//! tags are written in it, and what happens past the vendor's limits.
//!
//! | header | vendor | separator | limits |
//! |---|---|---|---|
//! | `Surrogate-Key` | Fastly, Varnish `xkey` | space | 16,384 bytes, 1,024 per key |
//! | `Cache-Tag` | Cloudflare | comma | 16,384 bytes, 1,000 tags, 1,024 per tag |
//! | `Edge-Cache-Tag` | Akamai | comma | 128 tags, 128 bytes per tag |
//! | any other name | CloudFront (a header it is configured to read) | comma | 50 tags, 256 bytes per tag |
//!
//! A tag is written as it is when it is made of characters the vendor
//! takes (`A-Z a-z 0-9 - _ . : / @ + = ~ !`; Akamai refuses `: / @ =`)
//! and fits the per-tag limit;
//! otherwise as `h-` and 32 hex digits of its SHA-256, the same everywhere,
//! so a purge of the tag names the same string ([`EdgeTags::edge_tag`]).
//! A response whose tags do not fit the header's limits carries
//! [`OVERFLOW_TAG`] alone instead: coarser, never a dropped purge (every
//! purge also purges it).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::key::hex;

/// What a response too many tags for its header carries instead.
pub const OVERFLOW_TAG: &str = "stratacache-overflow";

/// A tag header and its vendor's limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeTags {
    /// Header name, lower case.
    pub header: String,
    separator: char,
    max_tags: usize,
    max_tag_bytes: usize,
    max_bytes: usize,
    /// Punctuation a tag may carry as it is.
    punctuation: &'static [u8],
}

impl EdgeTags {
    /// The header `name` (case-insensitive): a vendor's own, or a
    /// configured one with CloudFront's limits.
    pub fn for_header(name: &str) -> Result<EdgeTags> {
        let header = name.to_ascii_lowercase();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(Error::Config(format!(
                "edge_tag_header: {name:?} is not a header name"
            )));
        }
        let (separator, max_tags, max_tag_bytes, max_bytes) = match header.as_str() {
            "surrogate-key" => (' ', usize::MAX, 1024, 16 * 1024),
            "cache-tag" => (',', 1000, 1024, 16 * 1024),
            "edge-cache-tag" => (',', 128, 128, usize::MAX),
            _ => (',', 50, 256, usize::MAX),
        };
        let punctuation: &'static [u8] = if header == "edge-cache-tag" {
            b"-_.+~!"
        } else {
            b"-_.:/@+=~!"
        };
        Ok(EdgeTags {
            header,
            separator,
            max_tags,
            max_tag_bytes,
            max_bytes,
            punctuation,
        })
    }

    /// `tag` as this header writes it (and a purge names it).
    pub fn edge_tag(&self, tag: &str) -> String {
        let plain = !tag.is_empty()
            && tag.len() <= self.max_tag_bytes
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || self.punctuation.contains(&b));
        if plain {
            tag.to_owned()
        } else {
            format!("h-{}", &hex(&Sha256::digest(tag.as_bytes()))[..32])
        }
    }

    /// The header's value for a response carrying `tags` (duplicates
    /// dropped, order kept), or [`OVERFLOW_TAG`] when they do not fit.
    pub fn value<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> String {
        let mut out: Vec<String> = Vec::new();
        for t in tags {
            let e = self.edge_tag(t);
            if !out.contains(&e) {
                out.push(e);
            }
        }
        let joined = out.join(&self.separator.to_string());
        if out.len() > self.max_tags || joined.len() > self.max_bytes {
            return OVERFLOW_TAG.to_owned();
        }
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_separators_encoding_and_overflow() {
        let fastly = EdgeTags::for_header("Surrogate-Key").expect("header");
        assert_eq!(
            fastly.value(["product:7", "catalog", "product:7"]),
            "product:7 catalog"
        );
        let cf = EdgeTags::for_header("Cache-Tag").expect("header");
        assert_eq!(cf.value(["a", "b"]), "a,b");
        // A separator, a space or a non-ASCII character inside a tag:
        // hashed, the same for the header and a purge.
        let odd = cf.edge_tag("a,b");
        assert!(odd.starts_with("h-") && odd.len() == 34);
        assert_eq!(fastly.edge_tag("a,b"), odd);
        assert_eq!(cf.value(["a,b"]), odd);
        assert_ne!(cf.edge_tag("caf\u{e9}"), cf.edge_tag("cafe"));
        // Akamai: 128 bytes per tag, 128 tags.
        let akamai = EdgeTags::for_header("edge-cache-tag").expect("header");
        let long = "x".repeat(129);
        assert!(akamai.value([long.as_str()]).starts_with("h-"));
        assert_eq!(akamai.edge_tag("a.b~c_1"), "a.b~c_1");
        assert!(akamai.edge_tag("product:7").starts_with("h-"));
        let many: Vec<String> = (0..129).map(|i| format!("t{i}")).collect();
        assert_eq!(akamai.value(many.iter().map(String::as_str)), OVERFLOW_TAG);
        assert_ne!(
            akamai.value(many[..128].iter().map(String::as_str)),
            OVERFLOW_TAG
        );
        // CloudFront (a configured header): 50 tags.
        let cloudfront = EdgeTags::for_header("X-Cache-Tags").expect("header");
        assert_eq!(cloudfront.header, "x-cache-tags");
        assert_eq!(
            cloudfront.value(many[..51].iter().map(String::as_str)),
            OVERFLOW_TAG
        );
        // Fastly: 16 KB in all (2,000 tags of 10 bytes do not fit).
        let lots: Vec<String> = (0..2000).map(|i| format!("tag-{i:06}")).collect();
        assert_eq!(fastly.value(lots.iter().map(String::as_str)), OVERFLOW_TAG);
        assert!(EdgeTags::for_header("bad header").is_err());
        assert!(EdgeTags::for_header("").is_err());
    }
}
