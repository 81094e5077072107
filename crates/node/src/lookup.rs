//! The read-through half of `NativeCache`: the core's lookups (`lookup`,
//! `lookupMany`) and
//! warm-up leases, answered as `NativeLookup`s; getOrSet, getOrSetMany,
//! warm and the HTTP middleware drive them (node/index.js, loader.js).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::Lookup;

use crate::cache::NativeCache;
use crate::convert::{NativeValue, value};
use crate::error::js_err;
use crate::lease::NativeLease;
use crate::policy::NativePolicy;

/// Outcome of `lookup`: `kind` 0 fresh (with a lease: an early refresh
/// to run in the background), 1 stale, 2 lead; `served`: how it was
/// served (`stratacache::Served::code`; `constants().served` names it).
#[napi(object, object_from_js = false)]
pub struct NativeLookup {
    pub kind: u32,
    pub value: Option<NativeValue>,
    pub lease: Option<NativeLease>,
    pub served: u32,
}

#[napi]
impl NativeCache {
    #[napi(ts_return_type = "Promise<NativeLookup>")]
    pub fn lookup<'env>(
        &self,
        env: &'env Env,
        key: String,
        policy: NativePolicy,
    ) -> Result<PromiseRaw<'env, NativeLookup>> {
        // A bad policy rejects, like every other failure of the call.
        let policy = policy.build();
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let r = c.lookup(&key, &policy?).await.map_err(js_err)?;
            Ok(native_lookup(r))
        })
    }

    /// Several keys at once (`getOrSetMany`): per key, kind 0 with its
    /// fresh value, 2 with a lease to complete, 3 when it is being loaded
    /// elsewhere (read it through `lookup` after completing the leases).
    #[napi(ts_return_type = "Promise<Array<NativeLookup>>")]
    pub fn lookup_many<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
    ) -> Result<PromiseRaw<'env, Vec<NativeLookup>>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let found = c.lookup_many(&refs).await.map_err(js_err)?;
            Ok(many_lookups(found))
        })
    }

    /// Leases for the keys that need loading ahead of traffic (see `warm`).
    /// Driven on the JS thread (`settle`), after this thread's writes.
    #[napi(ts_return_type = "Promise<Array<NativeLease>>")]
    pub fn try_leases<'env>(
        &self,
        env: &'env Env,
        keys: Vec<String>,
        force: bool,
    ) -> Result<PromiseRaw<'env, Vec<NativeLease>>> {
        let c = self.inner.clone();
        crate::settle::promise(env, async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            Ok(c.try_leases(&refs, force)
                .await
                .map_err(js_err)?
                .into_iter()
                .map(NativeLease::new)
                .collect())
        })
    }
}

pub(crate) fn native_lookup(r: Lookup) -> NativeLookup {
    let served = u32::from(r.served().code());
    let (kind, value, lease) = match r {
        Lookup::Fresh(e, _) => (0, Some(value(&e)), None),
        Lookup::Refresh(e, lease) => (0, Some(value(&e)), Some(NativeLease::new(lease))),
        Lookup::Stale(e, lease) => (1, Some(value(&e)), lease.map(NativeLease::new)),
        Lookup::Lead(lease) => (2, None, Some(NativeLease::new(lease))),
    };
    NativeLookup {
        kind,
        value,
        lease,
        served,
    }
}

/// Per key, what `lookupMany` answers (see there).
fn many_lookups(found: Vec<stratacache::ManyLookup>) -> Vec<NativeLookup> {
    found
        .into_iter()
        .map(|m| match m {
            stratacache::ManyLookup::Fresh(e) => NativeLookup {
                kind: 0,
                value: Some(value(&e)),
                lease: None,
                served: 0,
            },
            stratacache::ManyLookup::Lead(l) => NativeLookup {
                kind: 2,
                value: None,
                lease: Some(NativeLease::new(l)),
                served: 0,
            },
            _ => NativeLookup {
                kind: 3,
                value: None,
                lease: None,
                served: 0,
            },
        })
        .collect()
}
