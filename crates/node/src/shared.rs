//! Hits that share one decoded value per L1 entry (`clone: false`).
//!
//! The JS side keeps the decoded, deep-frozen value of each entry it read,
//! beside the entry's *stamp*: a number the binding attaches to the entry
//! as its memo (`Cache::memoize`) the first time it is read this way. A
//! hit asks for the stamp only; the same stamp means the same entry (a
//! write, a delete or an invalidation replaces or removes it, and L1's own
//! checks, freshness, trust and versions, run as for any hit), so the
//! kept value is the answer and no bytes cross.

use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::cache::NativeCache;
use crate::convert::JsEntry;
use crate::error::js_err;

/// Stamps: never 0 (0 says "not kept"), never reused in a process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// An entry's stamp (its memo).
struct Stamp(u64);

/// Charged to the memo budget per stamped entry: the decoded objects the
/// JS side keeps take up to about four times their JSON text (arrays of
/// numbers, many small objects), and a slot; the JS side bounds what it
/// keeps by the same estimate.
fn charge(payload: usize) -> u64 {
    4 * payload as u64 + 64
}

#[napi]
impl NativeCache {
    /// The budget (bytes) of kept values: the JS side drops the oldest
    /// beyond it.
    #[napi(getter)]
    pub fn shared_budget(&self) -> f64 {
        self.inner.memo_budget() as f64
    }

    /// `getShared(key, known)`, a function bound to this cache ([`answer`];
    /// a plain function, not a method: see `reader.rs`).
    #[napi(
        ts_return_type = "(key: string, known: number) => number | [number, string | [number, string | Buffer]] | null"
    )]
    pub fn shared_reader<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::reader::shared_reader(env, &self.inner)?;
        // SAFETY: a function value just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }
}

/// An L1 hit for a cache sharing values: `known` when the fresh entry of
/// `key` is the one with that stamp; else `[stamp, value]` (stamp 0: the
/// budget is spent, do not keep it); `None` when L1 has no fresh entry
/// (then read as `get` does).
pub(crate) fn answer(
    cache: &stratacache::Cache,
    key: &str,
    known: f64,
) -> Result<Option<Either<f64, (f64, JsEntry)>>> {
    let Some(e) = cache.get_local(key).map_err(js_err)? else {
        return Ok(None);
    };
    if e.memo.get::<Stamp>().is_none() {
        let stamp = NEXT.fetch_add(1, Ordering::Relaxed);
        // Refused when the budget is spent (or another read stamped the
        // entry first: then that stamp is the one).
        cache.memoize(&e, Stamp(stamp), charge(e.payload.len()));
    }
    let stamp = e.memo.get::<Stamp>().map_or(0, |s| s.0) as f64;
    if stamp != 0.0 && stamp == known {
        return Ok(Some(Either::A(known)));
    }
    Ok(Some(Either::B((stamp, JsEntry(e)))))
}
