//! `NativeDeps`: what one load's value is built from (the core's
//! [`stratacache::Deps`]), and the tracked reads that fill it. The JS
//! package keeps the current one in an `AsyncLocalStorage` while a factory
//! runs (`node/deps.js`).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::cache::NativeCache;
use crate::convert::JsEntry;
use crate::error::js_err;
use crate::lookup::{NativeLookup, native_lookup};
use crate::settle::now_or_promise;

/// `getMany`'s answer: one entry (or none) per key.
type Entries = Vec<Option<JsEntry>>;

#[napi]
pub struct NativeDeps {
    pub(crate) inner: Arc<stratacache::Deps>,
}

impl Default for NativeDeps {
    fn default() -> Self {
        Self::new()
    }
}

#[napi]
impl NativeDeps {
    #[napi(constructor)]
    pub fn new() -> Self {
        NativeDeps {
            inner: Arc::new(stratacache::Deps::new()),
        }
    }

    /// How many names (keys and tags) are recorded.
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }
}

#[napi]
impl NativeCache {
    /// `get` inside a load: the key and the value's tags become
    /// dependencies of what the load builds.
    #[napi(
        ts_return_type = "string | [number, string | Buffer] | null | Promise<string | [number, string | Buffer] | null>"
    )]
    pub fn get_tracked<'env>(
        &self,
        env: &'env Env,
        key: String,
        deps: &NativeDeps,
    ) -> Result<Either<Option<JsEntry>, PromiseRaw<'env, Option<JsEntry>>>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        now_or_promise(env, async move {
            let r = c.get_tracked(&key, &d).await.map_err(js_err)?;
            Ok(r.map(JsEntry))
        })
    }

    #[napi(
        ts_return_type = "Array<string | [number, string | Buffer] | null> | Promise<Array<string | [number, string | Buffer] | null>>"
    )]
    pub fn get_many_tracked<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
        deps: &NativeDeps,
    ) -> Result<Either<Entries, PromiseRaw<'env, Entries>>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        now_or_promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = c.get_many_tracked(&refs, &d).await.map_err(js_err)?;
            Ok(r.into_iter().map(|o| o.map(JsEntry)).collect())
        })
    }

    /// `lookup` inside a load (see `getTracked`); a lease it leads hands
    /// its own dependencies and value to `deps` when settled.
    #[napi(ts_return_type = "Promise<NativeLookup>")]
    pub fn lookup_tracked<'env>(
        &self,
        env: &'env Env,
        key: String,
        policy: crate::policy::NativePolicy,
        deps: &NativeDeps,
    ) -> Result<PromiseRaw<'env, NativeLookup>> {
        let policy = policy.build()?;
        let c = self.inner.clone();
        let d = deps.inner.clone();
        crate::settle::promise(env, async move {
            let r = c.lookup_tracked(&key, &policy, &d).await.map_err(js_err)?;
            Ok(native_lookup(r))
        })
    }

    /// `dependsOn`: the load collecting into `deps` depends on `tags`.
    #[napi(ts_return_type = "void | Promise<void>")]
    pub fn track_tags<'env>(
        &self,
        env: &'env Env,
        deps: &NativeDeps,
        tags: Vec<String>,
    ) -> Result<Either<(), PromiseRaw<'env, ()>>> {
        let c = self.inner.clone();
        let d = deps.inner.clone();
        now_or_promise(env, async move {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            c.track_tags(&d, &refs).await.map_err(js_err)
        })
    }
}
