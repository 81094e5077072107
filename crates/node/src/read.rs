//! The split read of `NativeCache`: the JS wrapper sends plain `GET`s and
//! `MGET`s over its own Redis connection (`node/reader.js`) and the core
//! does everything around them (`Cache::start_read` / `finish_read`).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::runtime::poll_once_in_runtime;
use stratacache::{ReadStart, Served};

use crate::cache::NativeCache;
use crate::convert::JsEntry;
use crate::error::{invalid, js_err};
use crate::settle::now_or_promise;

#[napi]
impl NativeCache {
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
        match poll_once_in_runtime(Box::pin(self.inner.start_read(&key))) {
            Ok(r) => Ok(read_shape(r.map_err(js_err)?)),
            Err(_pending) => Ok(None),
        }
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
    /// `[entry, served]`: `served` is how it was served (see `get`).
    #[napi(ts_return_type = "Promise<[string | [number, string | Buffer], number] | null>")]
    pub fn fetch<'env>(
        &self,
        env: &'env Env,
        key: String,
        epoch: f64,
    ) -> Result<PromiseRaw<'env, Option<(JsEntry, u32)>>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let r = c.fetch(&key, epoch as u64).await.map_err(js_err)?;
            Ok(r.map(|(e, s)| (JsEntry(e), u32::from(Served::from(s).code()))))
        })
    }

    /// The JS read connection stalled (no reply for opTimeout): an L2
    /// error, and the breaker opens so the native fallback fails fast.
    #[napi]
    pub fn read_stalled(&self) {
        self.inner.read_stalled();
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
