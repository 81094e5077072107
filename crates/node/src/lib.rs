//! The napi-rs binding of stratacache: `NativeCache` and `NativeLease`,
//! wrapped by the hand-written JS package in `node/`.
//!
//! Thin by design: argument conversion, error mapping, driving core
//! futures. Factories (loaders) never run here: the JS wrapper runs them,
//! driven by the core's leases, so a throwing factory is an ordinary
//! rejected promise on the JS side and never crosses into Rust.
//!
//! Errors: napi's async bridge only carries its own `Status` as `err.code`,
//! so every error's message starts with the core's stable code in
//! brackets (`[E_NOT_FOUND] key not found`); the JS wrapper turns that into
//! its error classes with `err.code === 'E_NOT_FOUND'`.

// napi's generated glue and `Buffer` have no `Debug`; these types are
// only ever inspected from JS.
#![allow(missing_debug_implementations)]

mod http;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::task::{Context, Poll, Waker};
use stratacache::{
    Cache, Config, Format, Lookup, LookupPolicy, OnWaitTimeout, Prior, ReadStart, RedisLocation,
    Ttl, WriteOptions,
};

/// A factory error, carried through the core to the coalesced waiters by
/// an id the JS wrapper maps back to the original error object.
#[derive(Debug)]
struct JsLoaderError {
    id: u32,
    message: String,
}

impl std::fmt::Display for JsLoaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsLoaderError {}

fn js_err(e: stratacache::Error) -> Error {
    if let stratacache::Error::Loader(inner) = &e
        && let Some(le) = inner.downcast_ref::<JsLoaderError>()
    {
        return Error::new(
            Status::GenericFailure,
            format!("[E_LOADER:{}] {}", le.id, le.message),
        );
    }
    Error::new(Status::GenericFailure, format!("[{}] {}", e.code(), e))
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::new(Status::InvalidArg, format!("[E_INVALID_VALUE] {msg}"))
}

fn ms(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v / 1000.0).map_err(|_| {
        invalid(format!(
            "{name} must be a finite number of milliseconds >= 0"
        ))
    })
}

/// `undefined` → the cache default; `Infinity` → never; `<= 0` → do not cache.
fn ttl_of(ttl_ms: Option<f64>) -> Result<Ttl> {
    Ok(match ttl_ms {
        None => Ttl::Default,
        Some(t) if t.is_nan() => return Err(invalid("ttl must not be NaN")),
        Some(t) if t == f64::INFINITY => Ttl::Never,
        Some(t) if t <= 0.0 => Ttl::After(Duration::ZERO),
        Some(t) => Ttl::After(ms("ttl", t)?),
    })
}

fn write_opts(
    format: u32,
    ttl_ms: Option<f64>,
    grace_ms: Option<f64>,
    tags: Option<Vec<String>>,
) -> Result<WriteOptions> {
    let format = u8::try_from(format).map_err(|_| invalid("format must be 0-255"))?;
    Ok(WriteOptions::new(ttl_of(ttl_ms)?, Format(format))
        .with_grace(ms("grace", grace_ms.unwrap_or(0.0))?)
        .with_tags(tags.unwrap_or_default()))
}

/// Options of `new NativeCache(...)`; the JS wrapper documents them.
#[napi(object)]
pub struct NativeOptions {
    pub namespace: Option<String>,
    pub redis: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub l1: Option<bool>,
    pub l1_max_bytes: Option<f64>,
    /// Milliseconds; `Infinity` = never expire.
    pub default_ttl_ms: Option<f64>,
    pub compress_threshold: Option<u32>,
    pub max_value_bytes: Option<u32>,
    pub signing_key: Option<Buffer>,
    pub connect_timeout_ms: Option<f64>,
    pub op_timeout_ms: Option<f64>,
    pub wait_timeout_ms: Option<f64>,
    pub tombstone_ttl_ms: Option<f64>,
    /// Fraction (0-1) by which TTLs are randomly shortened.
    pub ttl_jitter: Option<f64>,
    /// Fleet-wide single loader (default true).
    pub fleet_lease: Option<bool>,
    pub lease_ttl_ms: Option<f64>,
    pub breaker_threshold: Option<u32>,
    pub breaker_cooldown_ms: Option<f64>,
    /// Formats the JS serializer reads; others are misses (counted).
    pub accepted_formats: Option<Vec<u8>>,
}

/// A stored value: serializer id and bytes.
#[napi(object, object_from_js = false)]
pub struct NativeValue {
    pub format: u32,
    pub data: Buffer,
}

fn value(e: &stratacache::Entry) -> NativeValue {
    NativeValue {
        format: u32::from(e.meta.format.0),
        data: Buffer::from(e.payload.to_vec()),
    }
}

/// A value read for `get` and friends, converted on the JS thread: a JSON
/// entry, the common case, as its JSON text (a JS string: the cheapest
/// thing to hand over, and what `JSON.parse` wants); any other as
/// `[format, data]`, `data` being a string for UTF-8 and integers and a
/// Buffer (a copy) otherwise.
pub struct JsEntry(Arc<stratacache::Entry>);

impl ToNapiValue for JsEntry {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let e = &val.0;
        let format = e.meta.format;
        if !matches!(format, Format::JSON | Format::UTF8 | Format::INT) {
            let data = Buffer::from(e.payload.to_vec());
            return unsafe { ToNapiValue::to_napi_value(env, (u32::from(format.0), data)) };
        }
        let text = unsafe { js_text(env, &e.payload) }?;
        if format == Format::JSON {
            return Ok(text);
        }
        let pair = (u32::from(format.0), unsafe {
            napi::JsString::from_napi_value(env, text)
        }?);
        unsafe { ToNapiValue::to_napi_value(env, pair) }
    }
}

/// A JS string of UTF-8 `bytes`, copied once: ASCII (most JSON) straight
/// into a one-byte string; anything else decoded by V8, which replaces
/// invalid sequences with U+FFFD exactly as `Buffer#toString` does.
unsafe fn js_text(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
    let mut out = std::ptr::null_mut();
    let len = bytes.len() as isize;
    let ptr = bytes.as_ptr().cast();
    let status = if bytes.is_ascii() {
        unsafe { sys::napi_create_string_latin1(env, ptr, len, &mut out) }
    } else {
        unsafe { sys::napi_create_string_utf8(env, ptr, len, &mut out) }
    };
    check_status!(status, "could not create a string of a cached value")?;
    Ok(out)
}

/// Outcome of `lookup`: `kind` 0 fresh, 1 stale, 2 lead.
#[napi(object, object_from_js = false)]
pub struct NativeLookup {
    pub kind: u32,
    pub value: Option<NativeValue>,
    pub lease: Option<NativeLease>,
}

#[napi]
pub struct NativeCache {
    inner: Cache,
    /// `[connectTimeout, opTimeout]` in ms, for the JS read connection.
    timeouts: (f64, f64),
}

#[napi]
impl NativeCache {
    #[napi(constructor)]
    pub fn new(options: Option<NativeOptions>) -> Result<Self> {
        let o = options.unwrap_or(NativeOptions {
            namespace: None,
            redis: None,
            cluster: None,
            l1: None,
            l1_max_bytes: None,
            default_ttl_ms: None,
            compress_threshold: None,
            max_value_bytes: None,
            signing_key: None,
            connect_timeout_ms: None,
            op_timeout_ms: None,
            wait_timeout_ms: None,
            tombstone_ttl_ms: None,
            ttl_jitter: None,
            fleet_lease: None,
            lease_ttl_ms: None,
            breaker_threshold: None,
            breaker_cooldown_ms: None,
            accepted_formats: None,
        });
        let mut cfg = Config::default();
        if let Some(ns) = o.namespace {
            cfg.namespace = ns;
        }
        cfg.redis = match (o.redis, o.cluster) {
            (Some(_), Some(_)) => return Err(invalid("give either redis or cluster, not both")),
            (Some(u), None) if !u.is_empty() => Some(RedisLocation::Standalone(u)),
            (None, Some(seeds)) => Some(RedisLocation::Cluster(seeds)),
            _ => None,
        };
        if let Some(v) = o.l1 {
            cfg.l1_enabled = v;
        }
        if let Some(v) = o.l1_max_bytes {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid("l1.maxBytes must be a finite number >= 0"));
            }
            cfg.l1_max_bytes = v as u64;
        }
        if let Some(t) = o.default_ttl_ms {
            cfg.default_ttl = if t == f64::INFINITY {
                None
            } else {
                Some(ms("ttl", t)?)
            };
        }
        if let Some(v) = o.compress_threshold {
            cfg.compress_threshold = v as usize;
        }
        if let Some(v) = o.max_value_bytes {
            cfg.max_value_bytes = v as usize;
        }
        cfg.signing_key = o.signing_key.map(|b| b.to_vec());
        if let Some(v) = o.connect_timeout_ms {
            cfg.connect_timeout = ms("connectTimeout", v)?;
        }
        if let Some(v) = o.op_timeout_ms {
            cfg.op_timeout = ms("opTimeout", v)?;
        }
        if let Some(v) = o.wait_timeout_ms {
            cfg.wait_timeout = ms("waitTimeout", v)?;
        }
        if let Some(v) = o.tombstone_ttl_ms {
            cfg.tombstone_ttl = ms("tombstoneTtl", v)?;
        }
        if let Some(v) = o.ttl_jitter {
            cfg.ttl_jitter = v;
        }
        if let Some(v) = o.fleet_lease {
            cfg.fleet_lease = v;
        }
        if let Some(v) = o.lease_ttl_ms {
            cfg.lease_ttl = ms("leaseTtl", v)?;
        }
        if let Some(v) = o.breaker_threshold {
            cfg.breaker_threshold = v;
        }
        if let Some(v) = o.breaker_cooldown_ms {
            cfg.breaker_cooldown = ms("breaker.cooldown", v)?;
        }
        cfg.accepted_formats = o.accepted_formats;
        let timeouts = (
            cfg.connect_timeout.as_secs_f64() * 1000.0,
            cfg.op_timeout.as_secs_f64() * 1000.0,
        );
        Ok(NativeCache {
            inner: Cache::new(cfg).map_err(js_err)?,
            timeouts,
        })
    }

    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.inner.namespace().to_owned()
    }

    /// `[connectTimeout, opTimeout]` in milliseconds, as configured.
    #[napi(getter)]
    pub fn timeouts(&self) -> (f64, f64) {
        self.timeouts
    }

    #[napi(getter)]
    pub fn has_l2(&self) -> bool {
        self.inner.has_l2()
    }

    /// Synchronous L1-only read, else `null` (then call `get` when Redis is
    /// configured); the value shaped by [`JsEntry`].
    #[napi(ts_return_type = "string | [number, string | Buffer] | null")]
    pub fn get_local(&self, key: String) -> Result<Option<JsEntry>> {
        // L1 reads never touch the runtime: poll once, no context needed.
        let mut fut = Box::pin(self.inner.get_local(&key));
        let e = match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => stratacache::runtime::block_on(fut),
        };
        Ok(e.map_err(js_err)?.map(JsEntry))
    }

    /// The first half of a `get` whose Redis `GET` the JS wrapper sends
    /// itself (see `node/reader.js`; the core's `start_read`). `null`: use
    /// `get` (no Redis, breaker open, or L1 needs Redis to judge its
    /// entry); `[redisKey, epoch]`: `GET redisKey`, then `finishRead`;
    /// anything else is an L1 hit shaped as `getLocal`'s.
    #[napi(ts_return_type = "[string, number] | string | [number, string | Buffer] | null")]
    pub fn start_read(&self, key: String) -> Result<Option<Either<(String, f64), JsEntry>>> {
        if !self.inner.l2_ready() {
            return Ok(None);
        }
        // Pending only when judging an L1 entry needs Redis (an unknown tag
        // version): dropped, and `get` does it all on the runtime. Nothing
        // is counted before that point.
        let mut fut = Box::pin(self.inner.start_read(&key));
        let polled = {
            let _ctx = stratacache::runtime::runtime().enter();
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        let r = match polled {
            Poll::Ready(r) => r.map_err(js_err)?,
            Poll::Pending => return Ok(None),
        };
        Ok(read_shape(r))
    }

    /// `startRead` for every key of a `getMany` (each shaped as
    /// `startRead`'s answer); the wrapper sends one `MGET` of the
    /// `[redisKey, epoch]` ones and finishes each with `finishRead`.
    /// `null`: use `getMany` (no Redis, or the breaker is open); a Promise
    /// when judging an L1 entry needs Redis.
    #[napi(
        ts_return_type = "Array<[string, number] | string | [number, string | Buffer] | null> | null | Promise<Array<[string, number] | string | [number, string | Buffer] | null>>"
    )]
    pub fn start_read_many<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
    ) -> Result<Either<Option<Vec<ReadShape>>, ManyStarts<'env>>> {
        if !self.inner.l2_ready() {
            return Ok(Either::A(None));
        }
        let cache = self.inner.clone();
        let r = now_or_promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let starts = cache.start_read_many(&refs).await.map_err(js_err)?;
            Ok(starts.into_iter().map(read_shape).collect::<Vec<_>>())
        })?;
        Ok(match r {
            Either::A(v) => Either::A(Some(v)),
            Either::B(p) => Either::B(p),
        })
    }

    /// `finishRead` for the keys of one `MGET` (`data`: its replies, in
    /// order; `epochs`: `startReadMany`'s): one call instead of one per
    /// key. Values shaped as `getLocal`'s, or null; a Promise when judging
    /// an entry needs Redis.
    #[napi(
        ts_args_type = "keys: string[], data: Array<Buffer | null>, epochs: number[]",
        ts_return_type = "Array<string | [number, string | Buffer] | null> | Promise<Array<string | [number, string | Buffer] | null>>"
    )]
    pub fn finish_read_many<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
        data: Vec<Option<Buffer>>,
        epochs: Vec<f64>,
    ) -> Result<Either<Vec<Option<JsEntry>>, ManyValues<'env>>> {
        if data.len() != keys.len() || epochs.len() != keys.len() {
            return Err(invalid("keys, data and epochs differ in length"));
        }
        let cache = self.inner.clone();
        let bytes: Vec<Option<Vec<u8>>> = data.into_iter().map(|b| b.map(|b| b.to_vec())).collect();
        now_or_promise(env, async move {
            let mut out = Vec::with_capacity(keys.len());
            for ((k, b), e) in keys.iter().zip(bytes).zip(epochs) {
                out.push(cache.finish_read(k, b, e as u64).await.map(JsEntry));
            }
            Ok(out)
        })
    }

    /// The second half: `data` is Redis's reply to the `GET`. Returns the
    /// value shaped as `getLocal`'s (or `null`), or a Promise of it when
    /// judging the entry needs Redis. `joined`: how many other callers
    /// share this read's answer (getOrSet's coalescing), counted as
    /// coalesced waits when it is a hit.
    #[napi(
        ts_return_type = "string | [number, string | Buffer] | null | Promise<string | [number, string | Buffer] | null>"
    )]
    pub fn finish_read<'env>(
        &self,
        env: &'env Env,
        key: String,
        data: Option<BufferSlice<'_>>,
        epoch: f64,
        joined: Option<u32>,
    ) -> Result<Either<Option<JsEntry>, PromiseRaw<'env, Option<JsEntry>>>> {
        let cache = self.inner.clone();
        // Borrowed, not a `Buffer` (which takes a reference on the JS
        // object): the bytes are copied out here anyway.
        let bytes = data.map(|b| b.to_vec());
        now_or_promise(env, async move {
            let e = cache.finish_read(&key, bytes, epoch as u64).await;
            if let Some(n) = joined
                && n > 0
                && e.is_some()
            {
                cache.count_joined_reads(u64::from(n));
            }
            Ok(e.map(JsEntry))
        })
    }

    /// The Redis half of `get` after `startRead` (the wrapper's fallback
    /// when its own connection fails): breaker, outage fallback, errors.
    #[napi(ts_return_type = "Promise<string | [number, string | Buffer] | null>")]
    pub async fn fetch(&self, key: String, epoch: f64) -> Result<Option<JsEntry>> {
        let r = self.inner.fetch(&key, epoch as u64).await.map_err(js_err)?;
        Ok(r.map(JsEntry))
    }

    #[napi(ts_return_type = "Promise<string | [number, string | Buffer] | null>")]
    pub async fn get(&self, key: String) -> Result<Option<JsEntry>> {
        let r = self.inner.get(&key).await.map_err(js_err)?;
        Ok(r.map(JsEntry))
    }

    #[napi(ts_return_type = "Promise<Array<string | [number, string | Buffer] | null>>")]
    pub async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<JsEntry>>> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = self.inner.get_many(&refs).await.map_err(js_err)?;
        Ok(r.into_iter().map(|o| o.map(JsEntry)).collect())
    }

    #[napi]
    pub async fn set(
        &self,
        key: String,
        data: Buffer,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
        tags: Option<Vec<String>>,
    ) -> Result<()> {
        let o = write_opts(format, ttl_ms, grace_ms, tags)?;
        let data = Bytes::from(data.to_vec());
        self.inner.set(&key, data, &o).await.map_err(js_err)
    }

    /// `entries`: `[key, data, format]`; resolves to the keys that failed.
    #[napi(
        ts_args_type = "entries: Array<[string, Buffer, number]>, ttlMs?: number | undefined | null, graceMs?: number | undefined | null"
    )]
    pub async fn set_many(
        &self,
        entries: Vec<(String, Buffer, u32)>,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
    ) -> Result<Vec<String>> {
        let mut groups: Vec<(WriteOptions, Vec<(String, Bytes)>)> = Vec::new();
        for (k, d, f) in entries {
            let item = (k, Bytes::from(d.to_vec()));
            match groups.iter_mut().find(|(o, _)| u32::from(o.format.0) == f) {
                Some((_, v)) => v.push(item),
                None => groups.push((write_opts(f, ttl_ms, grace_ms, None)?, vec![item])),
            }
        }
        let mut failed = Vec::new();
        for (o, items) in &groups {
            let refs: Vec<(&str, Bytes)> =
                items.iter().map(|(k, d)| (k.as_str(), d.clone())).collect();
            failed.extend(
                self.inner
                    .set_many(&refs, o)
                    .await
                    .map_err(js_err)?
                    .into_iter()
                    .map(|(k, _)| k),
            );
        }
        Ok(failed)
    }

    #[napi]
    pub async fn add(
        &self,
        key: String,
        data: Buffer,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
    ) -> Result<bool> {
        let o = write_opts(format, ttl_ms, grace_ms, None)?;
        let data = Bytes::from(data.to_vec());
        self.inner.add(&key, data, &o).await.map_err(js_err)
    }

    #[napi]
    pub async fn delete(&self, key: String) -> Result<bool> {
        self.inner.delete(&key).await.map_err(js_err)
    }

    #[napi]
    pub async fn delete_many(&self, keys: Vec<String>) -> Result<u32> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let n = self.inner.delete_many(&refs).await.map_err(js_err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    #[napi]
    pub async fn touch(&self, key: String, ttl_ms: Option<f64>) -> Result<bool> {
        let t = ttl_of(ttl_ms)?;
        self.inner.touch(&key, t).await.map_err(js_err)
    }

    /// Atomic add; resolves to the new value as a decimal string (i64 does
    /// not fit a JS number; the wrapper converts).
    #[napi]
    pub async fn incr(&self, key: String, delta: i64) -> Result<String> {
        Ok(self
            .inner
            .incr(&key, delta)
            .await
            .map_err(js_err)?
            .to_string())
    }

    #[napi]
    pub async fn has(&self, key: String) -> Result<bool> {
        self.inner.has_key(&key).await.map_err(js_err)
    }

    #[napi]
    pub async fn clear(&self) -> Result<()> {
        self.inner.clear().await.map_err(js_err)
    }

    /// Invalidate every entry carrying any of `tags`, fleet-wide.
    #[napi]
    pub async fn invalidate_tags(&self, tags: Vec<String>) -> Result<()> {
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        self.inner.invalidate_tags(&refs).await.map_err(js_err)
    }

    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }

    /// The JS read connection stalled (no reply for opTimeout): an L2
    /// error, and the breaker opens so the native fallback fails fast.
    #[napi]
    pub fn read_stalled(&self) {
        self.inner.read_stalled();
    }

    /// Counters and L1 size.
    #[napi(ts_return_type = "Record<string, number>")]
    pub fn stats(&self) -> Result<std::collections::HashMap<String, f64>> {
        let s = poll_ready(self.inner.stats());
        Ok(s.counters()
            .into_iter()
            .chain(s.gauges())
            .map(|(k, _, v)| (k.to_owned(), v as f64))
            .collect())
    }

    #[napi]
    pub fn metrics(&self) -> String {
        poll_ready(self.inner.metrics_text())
    }

    #[napi]
    pub async fn lookup(&self, key: String, policy: NativePolicy) -> Result<NativeLookup> {
        let policy = policy.build()?;
        let r = self.inner.lookup(&key, &policy).await.map_err(js_err)?;
        Ok(native_lookup(r))
    }

    /// `lookup` after the wrapper's own read of Redis found nothing fresh
    /// (the core's `lookup_after`): `data`, the reply to its `GET` sent
    /// after `startRead` gave `epoch`; no `data` and `joined`: the caller
    /// began with `startRead` and joined another caller's read.
    #[napi(
        ts_args_type = "key: string, policy: NativePolicy, joined: boolean, data: Buffer | null, epoch: number"
    )]
    pub async fn lookup_after(
        &self,
        key: String,
        policy: NativePolicy,
        joined: bool,
        data: Option<Buffer>,
        epoch: f64,
    ) -> Result<NativeLookup> {
        let policy = policy.build()?;
        let prior = if joined {
            Prior::Joined
        } else {
            Prior::Read {
                bytes: data.map(|b| b.to_vec()),
                epoch: epoch as u64,
            }
        };
        let r = self
            .inner
            .lookup_after(&key, &policy, prior)
            .await
            .map_err(js_err)?;
        Ok(native_lookup(r))
    }

    /// Leases for the keys that need loading ahead of traffic (see `warm`).
    #[napi]
    pub async fn try_leases(&self, keys: Vec<String>, force: bool) -> Result<Vec<NativeLease>> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(self
            .inner
            .try_leases(&refs, force)
            .await
            .map_err(js_err)?
            .into_iter()
            .map(NativeLease::new)
            .collect())
    }
}

/// Poll `fut` once, here on the JS thread (in the core runtime's context):
/// its value now, or a Promise of it when it has to wait (judging an entry
/// whose tag versions are not known here reads them from Redis).
fn now_or_promise<T, F>(env: &Env, fut: F) -> Result<Either<T, PromiseRaw<'_, T>>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let polled = {
        let _ctx = stratacache::runtime::runtime().enter();
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    match polled {
        Poll::Ready(r) => r.map(Either::A),
        Poll::Pending => env.spawn_future(fut).map(Either::B),
    }
}

/// One key's `startRead` answer: `[redisKey, epoch]`, an L1 value, or null.
type ReadShape = Option<Either<(String, f64), JsEntry>>;

/// `startReadMany`'s answer when it needed Redis to judge an L1 entry.
type ManyStarts<'env> = PromiseRaw<'env, Vec<ReadShape>>;

/// `finishReadMany`'s answer when it needed Redis to judge an entry.
type ManyValues<'env> = PromiseRaw<'env, Vec<Option<JsEntry>>>;

fn read_shape(r: ReadStart) -> ReadShape {
    match r {
        ReadStart::Done(Some(e)) => Some(Either::B(JsEntry(e))),
        ReadStart::Done(None) => None,
        ReadStart::Fetch { redis_key, epoch } => Some(Either::A((redis_key, epoch as f64))),
    }
}

fn native_lookup(r: Lookup) -> NativeLookup {
    match r {
        Lookup::Fresh(e) => NativeLookup {
            kind: 0,
            value: Some(value(&e)),
            lease: None,
        },
        Lookup::Stale(e, lease) => NativeLookup {
            kind: 1,
            value: Some(value(&e)),
            lease: lease.map(NativeLease::new),
        },
        Lookup::Lead(lease) => NativeLookup {
            kind: 2,
            value: None,
            lease: Some(NativeLease::new(lease)),
        },
    }
}

/// A read-through policy (see `getOrSet` in the JS package).
#[napi(object)]
pub struct NativePolicy {
    pub allow_stale: Option<bool>,
    pub wait_timeout_ms: Option<f64>,
    pub wait_timeout_fails: Option<bool>,
    pub early_refresh: Option<f64>,
    pub refresh_ahead: Option<f64>,
    pub fail_safe: Option<bool>,
    pub fail_safe_throttle_ms: Option<f64>,
    pub soft_timeout_ms: Option<f64>,
    pub hard_timeout_ms: Option<f64>,
    pub tags: Option<Vec<String>>,
}

impl NativePolicy {
    fn build(&self) -> Result<LookupPolicy> {
        // Tag names are checked by the core's lookup (E_INVALID_VALUE).
        let mut policy = LookupPolicy::default()
            .allow_stale(self.allow_stale.unwrap_or(false))
            .fail_safe(self.fail_safe.unwrap_or(false))
            .on_wait_timeout(if self.wait_timeout_fails.unwrap_or(false) {
                OnWaitTimeout::Fail
            } else {
                OnWaitTimeout::Load
            });
        if let Some(w) = self.wait_timeout_ms {
            policy = policy.wait_timeout(ms("waitTimeout", w)?);
        }
        if let Some(beta) = self.early_refresh {
            if !(beta.is_finite() && beta >= 0.0) {
                return Err(invalid("earlyRefresh (beta) must be a finite number >= 0"));
            }
            policy = policy.early_refresh(beta);
        }
        if let Some(f) = self.refresh_ahead {
            if !(0.0..=1.0).contains(&f) {
                return Err(invalid("refreshAhead must be a fraction between 0 and 1"));
            }
            policy = policy.refresh_ahead(f);
        }
        if let Some(t) = self.fail_safe_throttle_ms {
            policy = policy.fail_safe_throttle(ms("failSafeThrottle", t)?);
        }
        if let Some(t) = self.soft_timeout_ms {
            policy = policy.soft_timeout(ms("softTimeout", t)?);
        }
        if let Some(t) = self.hard_timeout_ms {
            policy = policy.hard_timeout(ms("hardTimeout", t)?);
        }
        if let Some(tags) = &self.tags {
            policy = policy.tags(tags.clone());
        }
        Ok(policy)
    }
}

/// Run a future that never waits (L1 reads, stats) to completion on the
/// calling thread. Its first poll happens inside the core runtime's
/// context; a future that unexpectedly pends is finished on that runtime.
fn poll_ready<F: std::future::Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    let mut fut = Box::pin(fut);
    {
        let _ctx = stratacache::runtime::runtime().enter();
        if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return v;
        }
    }
    stratacache::runtime::block_on(fut)
}

/// The right to load one key; see `Cache.getOrSet` in the JS package.
#[napi]
pub struct NativeLease {
    key: String,
    inner: Arc<Mutex<Option<stratacache::Lease>>>,
}

impl NativeLease {
    fn new(l: stratacache::Lease) -> Self {
        NativeLease {
            key: l.key().to_owned(),
            inner: Arc::new(Mutex::new(Some(l))),
        }
    }

    fn take(&self) -> Result<stratacache::Lease> {
        self.inner
            .lock()
            .map_err(|_| invalid("lease state poisoned"))?
            .take()
            .ok_or_else(|| {
                Error::new(
                    Status::GenericFailure,
                    "[E_INVALID_VALUE] this lease was already completed or abandoned",
                )
            })
    }
}

#[napi]
impl NativeLease {
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    #[napi]
    pub async fn complete(
        &self,
        data: Buffer,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
        tags: Option<Vec<String>>,
    ) -> Result<()> {
        let o = write_opts(format, ttl_ms, grace_ms, tags)?;
        let lease = self.take()?;
        let data = Bytes::from(data.to_vec());
        lease.complete(data, &o).await.map(|_| ()).map_err(js_err)
    }

    /// Fail the load: every caller waiting on this key is rejected with the
    /// error the wrapper registered under `errorId`.
    #[napi]
    pub fn abandon(&self, error_id: u32, message: String) -> Result<()> {
        let lease = self.take()?;
        lease.abandon(Arc::new(JsLoaderError {
            id: error_id,
            message,
        }));
        Ok(())
    }

    /// The factory failed: resolves with the fail-safe stale value (served
    /// to every waiter and kept fresh for the throttle period), or rejects
    /// like `abandon`.
    #[napi]
    pub async fn fail(&self, error_id: u32, message: String) -> Result<NativeValue> {
        let lease = self.take()?;
        let e = lease
            .fail(Arc::new(JsLoaderError {
                id: error_id,
                message,
            }))
            .await
            .map_err(js_err)?;
        Ok(value(&e))
    }

    /// The stale value this load may fall back on (fail-safe), if any.
    #[napi]
    pub fn fallback(&self) -> Option<NativeValue> {
        let g = self.inner.lock().ok()?;
        g.as_ref().and_then(|l| l.fallback()).map(|e| value(&e))
    }

    /// The factory exceeded its soft (`hard = false`) or hard timeout: the
    /// stale value to serve meanwhile (also offered to every waiter), or
    /// `null`. The lease stays valid for the factory still running.
    #[napi]
    pub fn timed_out(&self, hard: bool) -> Option<NativeValue> {
        let g = self.inner.lock().ok()?;
        g.as_ref()
            .and_then(|l| l.timed_out(hard))
            .map(|e| value(&e))
    }

    /// Hand `data` to every waiter without caching it.
    #[napi]
    pub async fn complete_uncached(&self, data: Buffer, format: u32) -> Result<()> {
        let o = write_opts(format, None, None, None)?;
        let lease = self.take()?;
        let data = Bytes::from(data.to_vec());
        lease
            .complete_uncached(data, &o)
            .await
            .map(|_| ())
            .map_err(js_err)
    }

    /// Whether this lease also holds the fleet-wide lease in Redis.
    #[napi(getter)]
    pub fn is_fleet(&self) -> bool {
        self.inner
            .lock()
            .ok()
            .is_some_and(|g| g.as_ref().is_some_and(|l| l.is_fleet()))
    }
}

#[napi_derive::module_init]
fn init() {
    if let Ok(rt) = stratacache::runtime::build_runtime() {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}
