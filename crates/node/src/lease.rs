//! `NativeLease`: the right to load one key. The JS wrapper runs the
//! factory and reports what it did; the core settles the load
//! (`Lease::settle`) and decides what each deadline means (`LoadClock`).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::{LoadClock, LoadOutcome};

use crate::convert::{Data, NativeValue, data_bytes, ms, ttl_of, value, write_opts};
use crate::deps::NativeDeps;
use crate::error::{JsLoaderError, invalid, js_err};

/// A factory's `new Loaded(value, { ttl, grace, tags })`: its own choices
/// for the entry (milliseconds), applied by the core's
/// `WriteOptions::adapt`.
#[napi(object)]
pub struct NativeAdapt {
    pub ttl: Option<f64>,
    pub grace: Option<f64>,
    pub tags: Option<Vec<String>>,
}

/// What the factory did, as `settle`'s first argument.
const VALUE: u32 = 0;
const NOTHING: u32 = 1;
const UNCACHED: u32 = 2;

/// One deadline of the caller running the factory.
#[napi(object, object_from_js = false)]
pub struct NativeDeadline {
    /// Milliseconds from now.
    pub left_ms: f64,
    /// The hard timeout (else the soft one).
    pub hard: bool,
}

/// The right to load one key; see `Cache.getOrSet` in the JS package.
/// The deadlines stay usable after the lease is settled.
#[napi]
pub struct NativeLease {
    key: String,
    tracks: bool,
    clock: LoadClock,
    inner: Arc<Mutex<Option<stratacache::Lease>>>,
}

impl NativeLease {
    pub(crate) fn new(l: stratacache::Lease) -> Self {
        NativeLease {
            key: l.key().to_owned(),
            tracks: l.tracks_dependencies(),
            clock: l.clock(),
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

    /// Whether the factory should run in a collecting scope (the cache's
    /// `trackDependencies`).
    #[napi(getter)]
    pub fn tracks_dependencies(&self) -> bool {
        self.tracks
    }

    /// Settle the load with what the factory did (0 a value, 1 null, 2 a
    /// `NoCache`); the core applies `noneTtl`. Resolves whether the value
    /// was stored (the core's `Lease::stores`).
    /// `deps`: what the factory read (its collector), recorded with the
    /// value.
    #[napi(ts_return_type = "Promise<boolean>")]
    #[allow(clippy::too_many_arguments)] // the JS call's arguments, one each
    pub fn settle<'env>(
        &self,
        env: &'env Env,
        kind: u32,
        #[napi(ts_arg_type = "string | Buffer")] data: Data<'_>,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
        tags: Option<Vec<String>>,
        deps: Option<&NativeDeps>,
        adapt: Option<NativeAdapt>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let mut o = write_opts(format, ttl_ms, grace_ms, tags)?;
        o.deps = deps.map(|d| d.inner.clone());
        if let Some(a) = adapt {
            let ttl = a.ttl.map(|t| ttl_of(Some(t))).transpose()?;
            let grace = a.grace.map(|g| ms("grace", g)).transpose()?;
            o.adapt(ttl, grace, a.tags.unwrap_or_default())
                .map_err(js_err)?;
        }
        let b = data_bytes(data);
        let out = match kind {
            VALUE => LoadOutcome::Value(b),
            NOTHING => LoadOutcome::Nothing(b),
            UNCACHED => LoadOutcome::Uncached(b),
            _ => return Err(invalid(format!("unknown load outcome {kind}"))),
        };
        let lease = self.take()?;
        let stores = lease.stores(&out, &o);
        crate::settle::promise(env, async move {
            lease.settle(out, &o).await.map(|_| stores).map_err(js_err)
        })
    }

    /// Store `data` as the loaded value (the HTTP layer's responses and
    /// warm-ups: no `noneTtl` rule).
    #[napi(ts_return_type = "Promise<boolean>")]
    #[allow(clippy::too_many_arguments)] // the JS call's arguments, one each
    pub fn complete<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string | Buffer")] data: Data<'_>,
        format: u32,
        ttl_ms: Option<f64>,
        grace_ms: Option<f64>,
        tags: Option<Vec<String>>,
        deps: Option<&NativeDeps>,
    ) -> Result<PromiseRaw<'env, bool>> {
        self.settle(env, VALUE, data, format, ttl_ms, grace_ms, tags, deps, None)
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
    /// to every waiter and kept fresh for the throttle period), or null
    /// when the factory's error stands (every waiter got it; rethrow it).
    /// Driven on the JS thread (`settle`), after this thread's writes.
    #[napi(ts_return_type = "Promise<NativeValue | null>")]
    pub fn fail<'env>(
        &self,
        env: &'env Env,
        error_id: u32,
        message: String,
    ) -> Result<PromiseRaw<'env, Option<NativeValue>>> {
        let lease = self.take()?;
        crate::settle::promise(env, async move {
            let r = lease
                .fail(Arc::new(JsLoaderError {
                    id: error_id,
                    message,
                }))
                .await;
            match r {
                Ok(s) => Ok(Some(value(s.entry()))),
                Err(stratacache::Error::Loader(_)) => Ok(None),
                Err(e) => Err(js_err(e)),
            }
        })
    }

    /// The stale value this load may fall back on (fail-safe), if any.
    #[napi]
    pub fn fallback(&self) -> Option<NativeValue> {
        let g = self.inner.lock().ok()?;
        g.as_ref().and_then(|l| l.fallback()).map(|e| value(&e))
    }

    /// The `i`-th deadline of the caller running the factory, or null
    /// (wait for the factory).
    #[napi]
    pub fn deadline(&self, i: u32) -> Option<NativeDeadline> {
        self.clock.deadline(i as usize).map(|d| NativeDeadline {
            left_ms: d.left.as_secs_f64() * 1000.0,
            hard: d.hard,
        })
    }

    /// The factory was still running at a deadline: the stale value to
    /// answer with (also offered to every waiter; the load goes on), or
    /// null to keep waiting; rejects with E_LOADER_TIMEOUT at the hard
    /// deadline without one.
    #[napi]
    pub fn deadline_passed(&self, hard: bool) -> Result<Option<NativeValue>> {
        Ok(self.clock.passed(hard).map_err(js_err)?.map(|e| value(&e)))
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
