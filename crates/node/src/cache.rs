//! `NativeCache`: the cache handle the JS wrapper (`node/index.js`)
//! drives, and its options.

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::runtime::poll_once_in_runtime;
use stratacache::{Cache, Config, Format, RedisLocation, Served};

use crate::convert::{Data, JsEntry, NativeValue, data_bytes, ms, ttl_of, value, write_opts};
use crate::error::{invalid, js_err};
use crate::settle::now_or_promise;

/// Options of `new NativeCache(...)`; the JS wrapper documents them.
#[napi(object)]
pub struct NativeOptions {
    pub namespace: Option<String>,
    pub redis: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub l1: Option<bool>,
    pub l1_max_bytes: Option<f64>,
    /// The part of `l1_max_bytes` set aside for the values hits keep (see
    /// `kept.rs`); default a quarter, 0 for none.
    pub l1_memo_bytes: Option<f64>,
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
    /// Factories collect what they read as dependencies (default true).
    pub track_dependencies: Option<bool>,
    pub lease_ttl_ms: Option<f64>,
    pub breaker_threshold: Option<u32>,
    pub breaker_cooldown_ms: Option<f64>,
    /// Formats the JS serializer reads; others are misses (counted).
    pub accepted_formats: Option<Vec<u8>>,
    /// The edges to purge, as the JSON the core parses (`EdgePurge`).
    pub edge_purge: Option<String>,
}

/// A page of `scanPage`: `keys[i]` (`null` for a key stored under its
/// hash) and `values[i]`.
#[napi(object, object_from_js = false)]
pub struct NativeScanPage {
    pub cursor: String,
    pub keys: Vec<Option<String>>,
    pub values: Vec<NativeValue>,
}

#[napi]
pub struct NativeCache {
    pub(crate) inner: Cache,
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
            l1_memo_bytes: None,
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
            track_dependencies: None,
            lease_ttl_ms: None,
            breaker_threshold: None,
            breaker_cooldown_ms: None,
            accepted_formats: None,
            edge_purge: None,
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
        cfg.l1_memo_bytes = match o.l1_memo_bytes {
            None => cfg.binding_memo_bytes(),
            Some(v) if v.is_finite() && v >= 0.0 => v as u64,
            Some(_) => return Err(invalid("l1.memoBytes must be a finite number >= 0")),
        };
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
        if let Some(v) = o.track_dependencies {
            cfg.track_dependencies = v;
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
        if let Some(json) = o.edge_purge {
            cfg.edge_purge = stratacache::purge::EdgePurge::parse_list(&json).map_err(js_err)?;
        }
        Ok(NativeCache {
            inner: Cache::new(cfg).map_err(js_err)?,
        })
    }

    #[napi(getter)]
    pub fn namespace(&self) -> String {
        self.inner.namespace().to_owned()
    }

    /// Whether factories run in a collecting scope (`trackDependencies`).
    #[napi(getter)]
    pub fn tracks_dependencies(&self) -> bool {
        self.inner.tracks_dependencies()
    }

    #[napi(getter)]
    pub fn has_l2(&self) -> bool {
        self.inner.has_l2()
    }

    /// `getLocal(key)`, a function bound to this cache: the synchronous
    /// L1-only read, else `null` (then call `get` when Redis is
    /// configured), the value shaped by [`JsEntry`]. A plain function,
    /// not a method, to spare L1 hits a `#[napi]` method's per-call
    /// bookkeeping (see `reader.rs`).
    #[napi(ts_return_type = "(key: string) => string | [number, string | Buffer] | null")]
    pub fn local_reader<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::reader::local_reader(env, &self.inner)?;
        // SAFETY: a function value just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    /// `[entry, served]`: the entry as `getLocal` shapes it and how it
    /// was served (`stratacache::Served::code`; `constants().served`
    /// names it), for the tracing wrappers.
    #[napi(ts_return_type = "Promise<[string | [number, string | Buffer], number] | null>")]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        key: String,
    ) -> Result<PromiseRaw<'env, Option<(JsEntry, u32)>>> {
        get_sourced(env, self.inner.clone(), key)
    }

    /// `getL2(key, sourced)`, a function bound to this cache: `get`, and
    /// without `sourced` a Promise of the entry alone (not in an array).
    /// A plain function, not a method (see `reader.rs`).
    #[napi(
        ts_return_type = "(key: string, sourced?: boolean) => Promise<string | [number, string | Buffer] | [string | [number, string | Buffer], number] | null>"
    )]
    pub fn l2_reader<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::reader::l2_reader(env, &self.inner)?;
        // SAFETY: a function value just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    #[napi(ts_return_type = "Promise<Array<string | [number, string | Buffer] | null>>")]
    pub fn get_many<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
    ) -> Result<PromiseRaw<'env, Vec<Option<JsEntry>>>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = c.get_many(&refs).await.map_err(js_err)?;
            Ok(r.into_iter().map(|o| o.map(JsEntry)).collect())
        })
    }

    /// The writes below answer on the JS thread when they can (an L1-only
    /// cache always can): the core future is polled once here and only
    /// handed to the runtime, as a Promise, when it must wait on Redis.
    #[napi(ts_return_type = "void | Promise<void>")]
    #[allow(clippy::too_many_arguments)] // the JS call's arguments, one each
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: String,
        #[napi(ts_arg_type = "string | Buffer")] data: Data<'_>,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
        tags: Option<Vec<String>>,
        deps: Option<&crate::deps::NativeDeps>,
    ) -> Result<Either<(), PromiseRaw<'env, ()>>> {
        let deps = deps.map(|d| d.inner.clone());
        write(
            env,
            &self.inner,
            key,
            data,
            format,
            ttl_ms,
            grace_ms,
            tags,
            deps,
        )
    }

    /// `set(key, data, format, ttlMs, graceMs, tags)` without dependencies,
    /// a function bound to this cache (`Cache#set`'s path; a plain
    /// function, not a method: see `reader.rs`).
    #[napi(
        ts_return_type = "(key: string, data: string | Buffer, format: number, ttlMs?: number | undefined | null, graceMs?: number | undefined | null, tags?: Array<string> | undefined | null) => void | Promise<void>"
    )]
    pub fn writer<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::reader::writer(env, &self.inner)?;
        // SAFETY: a function value just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    /// `entries`: `[key, data, format]`; the keys that failed.
    #[napi(
        ts_args_type = "entries: Array<[string, string | Buffer, number]>, ttlMs?: number | undefined | null, graceMs?: number | undefined | null",
        ts_return_type = "Array<string> | Promise<Array<string>>"
    )]
    pub fn set_many<'env>(
        &self,
        env: &'env Env,
        entries: Vec<(String, Data<'_>, u32)>,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
    ) -> Result<Either<Vec<String>, PromiseRaw<'env, Vec<String>>>> {
        let o = write_opts(0, ttl_ms, grace_ms, None)?;
        let mut items = Vec::with_capacity(entries.len());
        for (k, d, f) in entries {
            let f = u8::try_from(f).map_err(|_| invalid("format must be 0-255"))?;
            items.push((k, data_bytes(d), Format(f)));
        }
        let cache = self.inner.clone();
        now_or_promise(env, async move {
            let refs: Vec<(&str, Bytes, Format)> = items
                .iter()
                .map(|(k, d, f)| (k.as_str(), d.clone(), *f))
                .collect();
            let failed = cache.set_many_formats(&refs, &o).await.map_err(js_err)?;
            Ok(failed.into_iter().map(|(k, _)| k).collect())
        })
    }

    #[napi(ts_return_type = "boolean | Promise<boolean>")]
    pub fn add<'env>(
        &self,
        env: &'env Env,
        key: String,
        #[napi(ts_arg_type = "string | Buffer")] data: Data<'_>,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
    ) -> Result<Either<bool, PromiseRaw<'env, bool>>> {
        let o = write_opts(format, ttl_ms, grace_ms, None)?;
        let data = data_bytes(data);
        let cache = self.inner.clone();
        now_or_promise(env, async move {
            cache.add(&key, data, &o).await.map_err(js_err)
        })
    }

    #[napi(ts_return_type = "boolean | Promise<boolean>")]
    pub fn delete<'env>(
        &self,
        env: &'env Env,
        key: String,
    ) -> Result<Either<bool, PromiseRaw<'env, bool>>> {
        let cache = self.inner.clone();
        now_or_promise(env, async move { cache.delete(&key).await.map_err(js_err) })
    }

    #[napi(ts_return_type = "number | Promise<number>")]
    pub fn delete_many<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
    ) -> Result<Either<u32, PromiseRaw<'env, u32>>> {
        let cache = self.inner.clone();
        now_or_promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let n = cache.delete_many(&refs).await.map_err(js_err)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    #[napi(ts_return_type = "boolean | Promise<boolean>")]
    pub fn touch<'env>(
        &self,
        env: &'env Env,
        key: String,
        ttl_ms: Option<f64>,
    ) -> Result<Either<bool, PromiseRaw<'env, bool>>> {
        let t = ttl_of(ttl_ms)?;
        let cache = self.inner.clone();
        now_or_promise(
            env,
            async move { cache.touch(&key, t).await.map_err(js_err) },
        )
    }

    /// Atomic add; the new value as a decimal string (i64 does not fit a
    /// JS number; the wrapper converts).
    #[napi(ts_return_type = "string | Promise<string>")]
    pub fn incr<'env>(
        &self,
        env: &'env Env,
        key: String,
        delta: i64,
    ) -> Result<Either<String, PromiseRaw<'env, String>>> {
        let cache = self.inner.clone();
        now_or_promise(env, async move {
            Ok(cache.incr(&key, delta).await.map_err(js_err)?.to_string())
        })
    }

    #[napi(ts_return_type = "boolean | Promise<boolean>")]
    pub fn has<'env>(
        &self,
        env: &'env Env,
        key: String,
    ) -> Result<Either<bool, PromiseRaw<'env, bool>>> {
        let cache = self.inner.clone();
        now_or_promise(
            env,
            async move { cache.has_key(&key).await.map_err(js_err) },
        )
    }

    /// Driven on the JS thread, as the writes are (`settle`): its
    /// commands follow this thread's earlier writes on its connection.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn clear<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move { c.clear().await.map_err(js_err) })
    }

    /// Invalidate every entry carrying any of `tags`, fleet-wide. Driven
    /// on the JS thread, so it follows this thread's earlier writes.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn invalidate_tags<'env>(
        &self,
        env: &'env Env,
        tags: Vec<String>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            c.invalidate_tags(&refs).await.map_err(js_err)
        })
    }

    /// Start the PostgreSQL change feed into this cache.
    #[napi]
    pub async fn start_pg_listener(
        &self,
        o: crate::feed::PgFeedOptions,
    ) -> Result<crate::feed::NativePgListener> {
        crate::feed::start(self.inner.clone(), o).await
    }

    /// Start consuming invalidation events from `broker` (`"nats"` or
    /// `"amqp"`) into this cache.
    #[napi]
    pub async fn start_event_listener(
        &self,
        broker: String,
        o: crate::feed::EventFeedOptions,
    ) -> Result<crate::feed::NativeEventListener> {
        crate::feed::start_events(self.inner.clone(), broker, o).await
    }

    #[napi]
    pub fn close(&self) {
        self.inner.close();
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

    /// Which cache this is (`Cache::identity`): what `disabled()` scopes name.
    #[napi(getter)]
    pub fn identity(&self) -> String {
        self.inner.identity()
    }

    /// A handle on the same cache with caching off (`Cache::bypassing`):
    /// what a `disabled()` scope's calls go to.
    #[napi]
    pub fn bypassing(&self) -> NativeCache {
        NativeCache {
            inner: self.inner.bypassing(),
        }
    }

    /// Start or end a simulated Redis outage (`stratacache/testing`).
    #[napi]
    pub fn simulate_outage(&self, on: bool) {
        self.inner.simulate_outage(on);
    }

    /// The set-up checks (`stratacache doctor`): `[text, exitCode]`, the
    /// text JSON when `json`.
    #[napi(ts_return_type = "Promise<[string, number]>")]
    pub async fn doctor(&self, json: bool) -> Result<(String, i32)> {
        let r = self.inner.doctor().await;
        Ok((if json { r.json() } else { r.text() }, r.exit_code()))
    }

    /// One page of the namespace's live entries (Keyv's `iterator()`):
    /// `cursor` `""` to start; the page's `cursor` is `""` at the end.
    #[napi]
    pub async fn scan_page(&self, cursor: String) -> Result<NativeScanPage> {
        let p = self.inner.scan_page(&cursor).await.map_err(js_err)?;
        Ok(NativeScanPage {
            cursor: p.cursor,
            keys: p.entries.iter().map(|(k, _)| k.clone()).collect(),
            values: p.entries.iter().map(|(_, e)| value(e)).collect(),
        })
    }

    /// The namespace's records in Redis by kind (`stratacache stats`).
    #[napi]
    pub async fn census(&self, json: bool) -> Result<String> {
        let c = self.inner.census().await.map_err(js_err)?;
        Ok(if json { c.json() } else { c.text() })
    }

    /// Resolves once the queued edge purges are sent or given up (`true`),
    /// or after `timeout_ms` (`false`).
    #[napi]
    pub async fn flush_edge_purges(&self, timeout_ms: f64) -> Result<bool> {
        let t = ms("timeout", timeout_ms)?;
        Ok(self.inner.flush_edge_purges(t).await)
    }
}

/// Run a future that never waits (L1 reads, stats) to completion on the
/// calling thread. Its first poll happens inside the core runtime's
/// context; a future that unexpectedly pends is finished on that runtime.
pub(crate) fn poll_ready<F: std::future::Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    poll_once_in_runtime(Box::pin(fut)).unwrap_or_else(stratacache::runtime::block_on)
}

/// `get`'s Promise of `[entry, served]` (`stratacache::Served::code`).
pub(crate) fn get_sourced(
    env: &Env,
    c: Cache,
    key: String,
) -> Result<PromiseRaw<'_, Option<(JsEntry, u32)>>> {
    crate::settle::promise(env, async move {
        let r = c.get_sourced(&key).await.map_err(js_err)?;
        Ok(r.map(|(e, s)| (JsEntry(e), u32::from(Served::from(s).code()))))
    })
}

/// A write as `set` and the bound writer make it: answered on the JS thread
/// when it can be, else a Promise.
#[allow(clippy::too_many_arguments)] // the JS call's arguments, one each
pub(crate) fn write<'env>(
    env: &'env Env,
    cache: &Cache,
    key: String,
    data: Data<'_>,
    format: u32,
    ttl_ms: Option<f64>,
    grace_ms: Option<f64>,
    tags: Option<Vec<String>>,
    deps: Option<std::sync::Arc<stratacache::Deps>>,
) -> Result<Either<(), PromiseRaw<'env, ()>>> {
    let mut o = write_opts(format, ttl_ms, grace_ms, tags)?;
    o.deps = deps;
    let data = data_bytes(data);
    let cache = cache.clone();
    now_or_promise(env, async move {
        cache.set(&key, data, &o).await.map_err(js_err)
    })
}
