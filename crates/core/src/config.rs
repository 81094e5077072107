//! Configuration, built with [`CacheBuilder`] (`Cache::builder()`).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::validate_namespace;

/// Where L2 lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisLocation {
    /// One server: `redis://`, `rediss://` (TLS) or `unix://` URL (or
    /// Valkey's `valkey://`, `valkeys://`, `valkey+unix://`).
    Standalone(String),
    /// Redis Cluster, from one or more seed node URLs.
    Cluster(Vec<String>),
}

impl RedisLocation {
    /// Identity used to share one L1 between handles on the same data.
    pub(crate) fn identity(&self) -> String {
        match self {
            RedisLocation::Standalone(u) => format!("standalone:{u}"),
            RedisLocation::Cluster(seeds) => {
                let mut s = seeds.clone();
                s.sort();
                format!("cluster:{}", s.join(","))
            }
        }
    }
}

impl Config {
    /// Which live handle's state (L1, flights, metrics, L2 client) a new
    /// handle shares: same Redis location, namespace, and every setting
    /// that state is built from (the signing key only as a hash), so a
    /// handle never silently runs on another handle's settings. Only the
    /// per-handle wait timeout is left out.
    pub(crate) fn sharing_identity(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            self.l1_max_bytes,
            self.l1_memo_bytes,
            self.default_ttl,
            self.compress_threshold,
            self.zstd_level,
            self.max_value_bytes,
            &self.signing_key,
            self.connect_timeout,
            self.op_timeout,
            self.tombstone_ttl,
        )
            .hash(&mut h);
        (
            self.ttl_jitter.to_bits(),
            self.fleet_lease,
            self.track_dependencies,
            self.lease_ttl,
            self.breaker_threshold,
            self.breaker_cooldown,
            &self.edge_purge,
        )
            .hash(&mut h);
        format!(
            "{}|{}|{:016x}",
            self.redis
                .as_ref()
                .map_or_else(|| "local".to_owned(), RedisLocation::identity),
            self.namespace,
            h.finish()
        )
    }
}

/// Everything a cache needs. Construct with [`CacheBuilder`]; all fields have
/// documented defaults.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Namespace of every key (`[A-Za-z0-9_.-]{1,64}`). Default `"default"`.
    pub namespace: String,
    /// L2; `None` (the default) runs L1-only.
    pub redis: Option<RedisLocation>,
    /// Whether L1 is used at all. Default `true`.
    pub l1_enabled: bool,
    /// L1 capacity in bytes (keys + payloads + per-entry overhead). Default 64 MiB.
    pub l1_max_bytes: u64,
    /// The part of `l1_max_bytes` set aside for decoded values a binding
    /// keeps beside entries ([`Cache::memoize`](crate::Cache::memoize));
    /// entries get the rest. Default 0 (no memos).
    pub l1_memo_bytes: u64,
    /// TTL when a write does not give one; `None` means entries never expire.
    /// Default 5 minutes.
    pub default_ttl: Option<Duration>,
    /// Payloads of at least this many bytes are zstd-compressed in Redis.
    /// Default 4096; `usize::MAX` disables compression.
    pub compress_threshold: usize,
    /// zstd level. Default 3.
    pub zstd_level: i32,
    /// Largest payload accepted (and decompressed). Default 32 MiB.
    pub max_value_bytes: usize,
    /// HMAC-SHA256 key: entries are signed, and unsigned or forged ones read
    /// from Redis are rejected (a counted miss). Default none.
    pub signing_key: Option<Vec<u8>>,
    /// Redis connect timeout. Default 1 s.
    pub connect_timeout: Duration,
    /// Per-command Redis timeout. Default 500 ms.
    pub op_timeout: Duration,
    /// How long a delete's tombstone stays in Redis; a load that outlives
    /// it is no longer fenced against that delete. Default 60 s.
    pub tombstone_ttl: Duration,
    /// How long a caller waits for another caller's load. Default 30 s.
    pub wait_timeout: Duration,
    /// Random spread on TTLs so entries written together do not expire
    /// together: each TTL is shortened by up to this fraction (0.1 = up to
    /// 10 %), never lengthened. Default 0 (off).
    pub ttl_jitter: f64,
    /// Fleet-wide single loader: on an L2 miss the flight leader takes a
    /// lease in Redis, so one process of the fleet loads a key while the
    /// others wait for its fill. Default `true` (no effect without Redis).
    pub fleet_lease: bool,
    /// Loaders collect what they read as dependencies of the value they
    /// build (see `deps`): the bindings open a collecting scope around
    /// every loader of this cache. Default `true`. Off, only explicit tags
    /// invalidate what loaders build (and, in Node 20, no
    /// `AsyncLocalStorage` is entered, whose promise hooks slow every
    /// `await` of the process once on).
    pub track_dependencies: bool,
    /// Lifetime of a fleet lease. The holder extends it while its loader
    /// runs; a crashed holder's lease expires after this long and a waiter
    /// takes over. Default 5 s.
    pub lease_ttl: Duration,
    /// Circuit breaker: after this many consecutive failures to reach
    /// Redis, L2 is skipped (calls fail at once, fail-open surfaces serve
    /// L1 and loaders) for `breaker_cooldown`, then probed. Default 5.
    pub breaker_threshold: u32,
    /// How long an open breaker skips Redis before probing it. Default
    /// 250 ms (Redis is used again within a second of coming back).
    pub breaker_cooldown: Duration,
    /// Value formats this handle's serializer can read (`Format` ids);
    /// `None` (the default): every format. An entry in another format (one
    /// written by another serializer, e.g. before a deploy switched it) is
    /// a miss for every read, counted in `format_refusals`: read-throughs
    /// load and overwrite it, through the single flight. A property of the
    /// handle: handles reading different formats still share one L1.
    pub accepted_formats: Option<Vec<u8>>,
    /// Give this handle its own L1, flights and metrics instead of sharing
    /// them with other handles on the same Redis location and namespace
    /// (each handle then behaves as a separate process would). Default
    /// `false`.
    pub isolated: bool,
    /// The edges (CDNs, reverse proxies, webhooks) that invalidated tags
    /// are purged from, by the process that invalidates them (see
    /// `purge`). Parsed from JSON by [`EdgePurge::parse_list`]. Default
    /// none.
    pub edge_purge: Vec<crate::purge::EdgePurge>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("namespace", &self.namespace)
            .field("redis", &self.redis)
            .field("l1_enabled", &self.l1_enabled)
            .field("l1_max_bytes", &self.l1_max_bytes)
            .field("l1_memo_bytes", &self.l1_memo_bytes)
            .field("default_ttl", &self.default_ttl)
            .field("compress_threshold", &self.compress_threshold)
            .field("max_value_bytes", &self.max_value_bytes)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("tombstone_ttl", &self.tombstone_ttl)
            .field("wait_timeout", &self.wait_timeout)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("fleet_lease", &self.fleet_lease)
            .field("track_dependencies", &self.track_dependencies)
            .field("lease_ttl", &self.lease_ttl)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("accepted_formats", &self.accepted_formats)
            .field("isolated", &self.isolated)
            .field("edge_purge", &self.edge_purge)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: "default".into(),
            redis: None,
            l1_enabled: true,
            l1_max_bytes: 64 << 20,
            l1_memo_bytes: 0,
            default_ttl: Some(Duration::from_secs(300)),
            compress_threshold: 4096,
            zstd_level: 3,
            max_value_bytes: 32 << 20,
            signing_key: None,
            connect_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_millis(500),
            tombstone_ttl: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(30),
            ttl_jitter: 0.0,
            fleet_lease: true,
            track_dependencies: true,
            lease_ttl: Duration::from_secs(5),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_millis(250),
            accepted_formats: None,
            isolated: false,
            edge_purge: Vec::new(),
        }
    }
}

impl Config {
    /// What a binding that keeps decoded values beside entries (Python's
    /// memo, Node's kept values) sets aside for them unless told
    /// otherwise: a quarter of the L1 bound.
    pub fn binding_memo_bytes(&self) -> u64 {
        self.l1_max_bytes / 4
    }

    /// Check the configuration; every message names the field.
    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.namespace)?;
        if self.l1_enabled && self.l1_max_bytes == 0 {
            return Err(Error::Config(
                "l1_max_bytes must be > 0 when L1 is enabled".into(),
            ));
        }
        if self.l1_enabled && self.l1_memo_bytes >= self.l1_max_bytes {
            return Err(Error::Config(format!(
                "l1_memo_bytes ({}) must be less than l1_max_bytes ({})",
                self.l1_memo_bytes, self.l1_max_bytes
            )));
        }
        if !self.l1_enabled && self.redis.is_none() {
            return Err(Error::Config(
                "with L1 disabled a Redis location is required (nothing would be cached)".into(),
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > u32::MAX as usize {
            return Err(Error::Config(
                "max_value_bytes must be between 1 and 4 GiB".into(),
            ));
        }
        if !(-7..=22).contains(&self.zstd_level) {
            return Err(Error::Config("zstd_level must be between -7 and 22".into()));
        }
        if let Some(k) = &self.signing_key
            && k.is_empty()
        {
            return Err(Error::Config("signing_key must not be empty".into()));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("tombstone_ttl", self.tombstone_ttl),
            ("wait_timeout", self.wait_timeout),
            ("lease_ttl", self.lease_ttl),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be > 0")));
            }
        }
        if !(0.0..=1.0).contains(&self.ttl_jitter) {
            return Err(Error::Config(
                "ttl_jitter must be a fraction between 0 and 1".into(),
            ));
        }
        if self.tombstone_ttl < Duration::from_millis(1) {
            return Err(Error::Config("tombstone_ttl must be at least 1 ms".into()));
        }
        match &self.redis {
            Some(RedisLocation::Standalone(url)) => check_url(url)?,
            Some(RedisLocation::Cluster(seeds)) => {
                if seeds.is_empty() {
                    return Err(Error::Config(
                        "a cluster needs at least one seed URL".into(),
                    ));
                }
                for s in seeds {
                    check_url(s)?;
                }
            }
            None => {}
        }
        Ok(())
    }
}

fn check_url(url: &str) -> Result<()> {
    if crate::l2::sentinel::is_sentinel_url(url) {
        return crate::l2::sentinel::SentinelSpec::parse(url).map(|_| ());
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        Error::Config(format!(
            "Redis URL {:?} is not valid: {}",
            redacted_url(url),
            e.to_string().replace(url, &redacted_url(url))
        ))
    })
}

/// `url` with the password of its user info replaced by `***`, for
/// messages and prompts (`redis://app:s3cret@h/0` -> `redis://app:***@h/0`).
/// Several comma-separated URLs are redacted each.
pub fn redacted_url(url: &str) -> String {
    if url.contains(',') && !url.contains("+sentinel://") {
        return url
            .split(',')
            .map(redacted_url)
            .collect::<Vec<_>>()
            .join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Builder for [`crate::Cache`].
#[derive(Debug, Clone, Default)]
pub struct CacheBuilder {
    config: Config,
}

impl CacheBuilder {
    /// Start from the defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Start from a full config.
    pub fn from_config(config: Config) -> Self {
        CacheBuilder { config }
    }
    /// Namespace of every key.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.config.namespace = ns.into();
        self
    }
    /// Use one Redis (or Valkey) server (`redis://`, `rediss://`,
    /// `unix://`, `valkey://`, `valkeys://`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis = Some(RedisLocation::Standalone(url.into()));
        self
    }
    /// Use a Redis Cluster, from seed node URLs.
    pub fn redis_cluster<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.redis = Some(RedisLocation::Cluster(
            seeds.into_iter().map(Into::into).collect(),
        ));
        self
    }
    /// Enable or disable L1.
    pub fn l1_enabled(mut self, on: bool) -> Self {
        self.config.l1_enabled = on;
        self
    }
    /// L1 capacity in bytes.
    /// See [`Config::accepted_formats`].
    pub fn accepted_formats(mut self, formats: Option<Vec<u8>>) -> Self {
        self.config.accepted_formats = formats;
        self
    }

    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.config.l1_max_bytes = bytes;
        self
    }
    /// Bytes of the L1 bound set aside for bindings' decoded values.
    pub fn l1_memo_bytes(mut self, bytes: u64) -> Self {
        self.config.l1_memo_bytes = bytes;
        self
    }
    /// Default TTL (`None` = never expire).
    pub fn default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config.default_ttl = ttl;
        self
    }
    /// Compression threshold in bytes.
    pub fn compress_threshold(mut self, bytes: usize) -> Self {
        self.config.compress_threshold = bytes;
        self
    }
    /// Largest accepted payload.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.config.max_value_bytes = bytes;
        self
    }
    /// HMAC signing key.
    pub fn signing_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.config.signing_key = Some(key.into());
        self
    }
    /// Redis connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }
    /// Per-command Redis timeout.
    pub fn op_timeout(mut self, d: Duration) -> Self {
        self.config.op_timeout = d;
        self
    }
    /// Tombstone lifetime.
    pub fn tombstone_ttl(mut self, d: Duration) -> Self {
        self.config.tombstone_ttl = d;
        self
    }
    /// Default wait for another caller's load.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.config.wait_timeout = d;
        self
    }
    /// Shorten TTLs by a random fraction up to `fraction`.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.config.ttl_jitter = fraction;
        self
    }
    /// Turn the fleet-wide lease on or off.
    pub fn fleet_lease(mut self, on: bool) -> Self {
        self.config.fleet_lease = on;
        self
    }
    /// Turn dependency tracking in loaders on or off.
    pub fn track_dependencies(mut self, on: bool) -> Self {
        self.config.track_dependencies = on;
        self
    }
    /// Fleet lease lifetime (extended while the load runs).
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.config.lease_ttl = d;
        self
    }
    /// Circuit breaker threshold and cool-down.
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.config.breaker_threshold = threshold;
        self.config.breaker_cooldown = cooldown;
        self
    }
    /// Purge invalidated tags from these edges.
    pub fn edge_purge(mut self, edges: Vec<crate::purge::EdgePurge>) -> Self {
        self.config.edge_purge = edges;
        self
    }
    /// Do not share L1, flights and metrics with other handles.
    pub fn isolated(mut self, on: bool) -> Self {
        self.config.isolated = on;
        self
    }
    /// Validate and build the cache.
    pub fn build(self) -> Result<crate::Cache> {
        crate::Cache::new(self.config)
    }
}

/// The known option name nearest to a mistyped `name`, for "did you mean"
/// hints in every binding's configuration errors: the closest by edit
/// distance, ignoring case and `_` / `-`, and at most two edits (or a
/// third of the name) away; `None` when nothing is that close.
pub fn nearest_name<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = norm(name);
    let limit = 2.max(want.len() / 3);
    known
        .iter()
        .map(|k| (edit_distance(&want, &norm(k)), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(prev + usize::from(ca != cb));
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod nearest_tests {
    use super::nearest_name;

    #[test]
    fn hints_the_closest_known_name() {
        let known = [
            "namespace",
            "l1MaxBytes",
            "L1_MAX_BYTES",
            "opTimeout",
            "ttl",
        ];
        assert_eq!(nearest_name("namepsace", &known), Some("namespace"));
        assert_eq!(
            nearest_name("l1_max_byte", &["l1_max_bytes", "l1"]),
            Some("l1_max_bytes")
        );
        assert_eq!(
            nearest_name("L1_MAX_BYTE", &known[2..]),
            Some("L1_MAX_BYTES")
        );
        assert_eq!(nearest_name("optimeout", &known), Some("opTimeout"));
        assert_eq!(nearest_name("password", &known), None);
        assert_eq!(nearest_name("", &known), None);
        assert_eq!(nearest_name("x", &[]), None);
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted_url("redis://app:s3cret@h:6379/0"),
            "redis://app:***@h:6379/0"
        );
        assert_eq!(redacted_url("rediss://:s3cret@h"), "rediss://:***@h");
        assert_eq!(redacted_url("redis://tok@h"), "redis://***@h");
        assert_eq!(redacted_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redacted_url("redis://a:x@h1:1,redis://b:y@h2:2"),
            "redis://a:***@h1:1,redis://b:***@h2:2"
        );
        assert_eq!(
            redacted_url("redis+sentinel://u:p@s1:26379,s2/shop"),
            "redis+sentinel://u:***@s1:26379,s2/shop"
        );
    }
}
