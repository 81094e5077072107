//! Names the caller chooses (keys, tags, namespaces): their validation,
//! and the Redis key layout they map to.
//!
//! ```text
//! sc:<namespace>:{<k>}          the entry (envelope or counter)
//! sc:<namespace>:{<k>}:tomb     tombstone: Redis time (µs) of the last delete
//! sc:<namespace>:{<k>}:lease    fleet lease (token), see `docs/architecture.md`
//! sc:<namespace>:t:{<tag>}      a tag's current version (random u64)
//! sc:<namespace>:gen            the namespace's generation (random u64)
//! ```
//!
//! `<k>` is the caller's key, or `#` + hex SHA-256 of it when the key
//! contains `{` or `}`, starts with `#`, or is longer than
//! [`MAX_PLAIN_KEY_BYTES`]. The hash tag `{<k>}` puts all records of one
//! entry in one Redis Cluster slot, so one Lua script can touch them
//! atomically. The mapping is injective (short of a SHA-256 collision): a
//! plain key never starts with `#`, so it can never equal a hashed one.
//!
//! Namespaces are restricted to `[A-Za-z0-9_.-]{1,64}`: no `:` (so one
//! namespace's `SCAN` pattern can never match another's keys) and no glob
//! metacharacters.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Keys up to this many bytes are used as they are; longer ones are hashed.
pub const MAX_PLAIN_KEY_BYTES: usize = 200;

/// Check a namespace.
pub fn validate_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "namespace {ns:?} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        )))
    }
}

/// Check a caller's key.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("keys must not be empty".into()));
    }
    Ok(())
}

/// The Redis names of one entry's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKeys {
    /// The entry itself.
    pub value: String,
}

impl RedisKeys {
    /// Tombstone record.
    pub fn tomb(&self) -> String {
        format!("{}:tomb", self.value)
    }
    /// Lease record.
    pub fn lease(&self) -> String {
        format!("{}:lease", self.value)
    }
    /// The key's dependency version: exists while some entry depends on
    /// the key; every write of the key deletes it (see `deps`).
    pub fn dep_version(&self) -> String {
        format!("{}:ver", self.value)
    }
}

/// Envelope tag names starting with this are dependencies on a key: the
/// rest is the key's slot name (`{<k>}` or `{#<hash>}`), so the name is
/// at most 3 + 2 + [`MAX_PLAIN_KEY_BYTES`] bytes and maps back to the
/// key's records.
pub const KEY_DEP_PREFIX: &str = "\0k:";

/// The dependency name of `key` (an entry built from `key` records it).
pub(crate) fn key_dep_name(key: &str) -> String {
    format!("{KEY_DEP_PREFIX}{}", slot_name(key))
}

/// The Redis key holding the current version of `name`: a tag's version
/// key, or a key dependency's `:ver` record beside the key's entry.
pub(crate) fn version_key(namespace: &str, name: &str) -> String {
    match name.strip_prefix(KEY_DEP_PREFIX) {
        Some(slot) => format!("sc:{namespace}:{slot}:ver"),
        None => tag_key(namespace, name),
    }
}

/// The key of a rendered fragment (Django's `{% cache %}` through
/// `{% load stratacache %}`, Node's `cache.fragment`): `fragment:`, the
/// name, and the SHA-256 of the name and each vary-on value, each
/// length-prefixed. Injective over (name, values): `["a:b", "c"]` and
/// `["a", "b:c"]` are two fragments, as are `["a"]` and `["a", ""]`.
pub fn fragment_key(name: &str, vary_on: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in std::iter::once(name).chain(vary_on.iter().copied()) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let name: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("fragment:{name}:{}", hex(&h.finalize()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `{<k>}` (or `{#<sha256 hex>}` for awkward names): a hash-tagged slot name.
/// Whether `name`'s Redis records are named by its hash (it is longer than
/// [`MAX_PLAIN_KEY_BYTES`], starts with `#` or holds a brace): such a key
/// cannot be read back from a `SCAN` of the namespace.
pub fn is_hashed(name: &str) -> bool {
    name.len() > MAX_PLAIN_KEY_BYTES
        || name.starts_with('#')
        || name.bytes().any(|b| b == b'{' || b == b'}')
}

/// The caller's key of an entry record found by `SCAN` in `namespace`:
/// `Some(Some(key))` for a plain name, `Some(None)` for a hashed one,
/// `None` for any other record (tombstone, lease, tag, ...).
pub(crate) fn entry_key_of(namespace: &str, redis_name: &[u8]) -> Option<Option<String>> {
    let rest = std::str::from_utf8(redis_name)
        .ok()?
        .strip_prefix("sc:")?
        .strip_prefix(namespace)?
        .strip_prefix(":{")?
        .strip_suffix('}')?;
    if rest.contains(['{', '}']) {
        return None;
    }
    Some(if rest.starts_with('#') {
        None
    } else {
        Some(rest.to_owned())
    })
}

fn slot_name(name: &str) -> String {
    if is_hashed(name) {
        format!("{{#{}}}", hex(&Sha256::digest(name.as_bytes())))
    } else {
        format!("{{{name}}}")
    }
}

/// Build the Redis key names for `key` in `namespace`.
pub fn redis_keys(namespace: &str, key: &str) -> RedisKeys {
    if is_hashed(key) {
        return RedisKeys {
            value: format!("sc:{namespace}:{}", slot_name(key)),
        };
    }
    // Every read and write names its key: built in one allocation (the
    // same name as above, without `format!`'s two).
    let mut value = String::with_capacity(namespace.len() + key.len() + 6);
    value.push_str("sc:");
    value.push_str(namespace);
    value.push_str(":{");
    value.push_str(key);
    value.push('}');
    RedisKeys { value }
}

/// The Redis key holding `tag`'s current version in `namespace`.
pub fn tag_key(namespace: &str, tag: &str) -> String {
    format!("sc:{namespace}:t:{}", slot_name(tag))
}

/// The Redis key of the fleet lease of the change feed reading `slot`.
pub fn feed_lease_key(namespace: &str, slot: &str) -> String {
    format!("sc:{namespace}:feed:{}", slot_name(slot))
}

/// The Redis key holding `namespace`'s generation.
pub fn generation_key(namespace: &str) -> String {
    format!("sc:{namespace}:gen")
}

/// Whether a key found by `clear()`'s scan is version state (a tag's
/// version or the generation), which `clear()` keeps: deleting it would let
/// processes that cached the old value and processes that recreate it
/// disagree.
pub(crate) fn is_version_key(namespace: &str, redis_key: &[u8]) -> bool {
    let gen_key = generation_key(namespace);
    let tag_prefix = format!("sc:{namespace}:t:");
    redis_key == gen_key.as_bytes() || redis_key.starts_with(tag_prefix.as_bytes())
}

/// `SCAN MATCH` pattern for every record of `namespace`.
pub fn namespace_pattern(namespace: &str) -> String {
    format!("sc:{namespace}:*")
}

/// The namespace's pub/sub channel (the bus: fills, deletes,
/// invalidations). Channels are not keys: `SCAN` never sees it.
pub fn bus_channel(namespace: &str) -> String {
    format!("sc:{namespace}:bus")
}

/// Check a user's tag name.
pub fn validate_tag(t: &str) -> Result<()> {
    if t.is_empty() || t.len() > 255 || t.starts_with('\0') {
        return Err(Error::InvalidValue(
            "tag names must be 1-255 bytes and must not start with NUL".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn entry_keys_read_back_from_names() {
        use super::{entry_key_of, redis_keys};
        for k in ["user:1", "a b", "ü", &"x".repeat(200)] {
            let name = redis_keys("ns", k).value;
            assert_eq!(
                entry_key_of("ns", name.as_bytes()),
                Some(Some(k.to_owned()))
            );
        }
        for k in ["{x}", "#x", &"x".repeat(201)] {
            let name = redis_keys("ns", k).value;
            assert_eq!(entry_key_of("ns", name.as_bytes()), Some(None));
        }
        let rk = redis_keys("ns", "k");
        assert_eq!(entry_key_of("ns", rk.tomb().as_bytes()), None);
        assert_eq!(entry_key_of("ns", b"sc:ns:t:{k}"), None);
        assert_eq!(entry_key_of("ns", b"sc:ns2:{k}"), None);
    }

    #[test]
    fn fragment_keys_are_injective() {
        let k = |n: &str, v: &[&str]| super::fragment_key(n, v);
        assert_ne!(k("a", &["b:c"]), k("a", &["b", "c"]));
        assert_ne!(k("a:b", &["c"]), k("a", &["b:c"]));
        assert_ne!(k("a", &[]), k("a", &[""]));
        assert_eq!(k("sidebar", &["7"]), k("sidebar", &["7"]));
        assert!(k("sidebar", &["7"]).starts_with("fragment:sidebar:"));
        assert!(k("a b\n", &[]).starts_with("fragment:a_b_:"));
    }
    use super::*;

    #[test]
    fn tag_names() {
        assert!(validate_tag("user:1").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("\0gen").is_err());
        assert!(validate_tag(&"x".repeat(255)).is_ok());
        assert!(validate_tag(&"x".repeat(256)).is_err());
    }

    #[test]
    fn version_keys() {
        assert_eq!(tag_key("shop", "user:1"), "sc:shop:t:{user:1}");
        assert!(tag_key("shop", "a{b}").starts_with("sc:shop:t:{#"));
        assert_eq!(generation_key("shop"), "sc:shop:gen");
        assert!(is_version_key("shop", b"sc:shop:gen"));
        assert!(is_version_key("shop", b"sc:shop:t:{x}"));
        // An entry whose key starts with "t:" is not version state: entry
        // records always start with a brace after the namespace.
        assert!(!is_version_key(
            "shop",
            redis_keys("shop", "t:x").value.as_bytes()
        ));
        assert!(!is_version_key("shop", b"sc:shop:{gen}"));
    }

    #[test]
    fn layout() {
        let k = redis_keys("shop", "user:1");
        assert_eq!(k.value, "sc:shop:{user:1}");
        assert_eq!(k.tomb(), "sc:shop:{user:1}:tomb");
        assert_eq!(k.lease(), "sc:shop:{user:1}:lease");
    }

    #[test]
    fn braces_hash_and_long_keys_are_hashed_injectively() {
        let a = redis_keys("ns", "a{b}");
        assert!(a.value.starts_with("sc:ns:{#") && a.value.len() == "sc:ns:{#}".len() + 64);
        // A caller cannot forge the hashed name of another key.
        let forged = a.value["sc:ns:{".len()..a.value.len() - 1].to_owned();
        assert_ne!(redis_keys("ns", &forged).value, a.value);
        let long = "x".repeat(MAX_PLAIN_KEY_BYTES + 1);
        assert!(redis_keys("ns", &long).value.contains("{#"));
        let edge = "x".repeat(MAX_PLAIN_KEY_BYTES);
        assert!(!redis_keys("ns", &edge).value.contains("{#"));
    }

    #[test]
    fn namespaces() {
        assert!(validate_namespace("shop-v1.2_x").is_ok());
        for bad in ["", "a:b", "a*", "a{b}", "é", &"n".repeat(65)] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key("").is_err());
    }
}
