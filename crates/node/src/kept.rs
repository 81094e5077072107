//! Values that L1 hits keep on the JS side, one per L1 entry.
//!
//! Two kinds, one protocol. With `clone: false` every hit shares one
//! decoded, deep-frozen value per entry ([`Kind::Values`]). Otherwise hits
//! are copies, and what is kept is the entry's text ([`Kind::Text`]: JSON
//! or UTF-8 of at least [`TEXT_MIN`] bytes), so that a hit parses a JS
//! string made once rather than copying the entry's bytes into a new one
//! every time (JS strings cannot change, so sharing one is safe).
//!
//! The JS side keeps what it made beside the entry's *stamp*: a number the
//! binding attaches to the entry as its memo (`Cache::memoize`) the first
//! time it is read this way (text is kept from its third read on). A hit asks for the stamp only; the same stamp
//! means the same entry (a write, a delete or an invalidation replaces or
//! removes it, and L1's own checks, freshness, trust and versions, run as
//! for any hit), so what is kept is the answer and no bytes cross.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::Format;

use crate::cache::NativeCache;
use crate::convert::JsEntry;
use crate::error::js_err;

/// Stamps: never 0 (0 says "not kept"), never reused in a process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// An entry's stamp (its memo): how many reads of text met it, and
/// whether what is kept for it is charged yet.
struct Stamp {
    id: u64,
    reads: AtomicU32,
    state: AtomicU8,
}

/// [`Stamp::state`]: charged its slot only; being charged the rest; charged.
const UNCHARGED: u8 = 0;
const CHARGING: u8 = 1;
const CHARGED: u8 = 2;

/// Charged for a stamped entry whose text is not kept yet.
const SLOT: u64 = 64;

/// Text is kept from an entry's third read on, and charged its full
/// size then. Kept sooner, the text of entries read once or twice (most
/// of them, under churn) would pass through V8's old space, which only a
/// full collection empties: the memory soak's mixed-size run peaked at
/// 2.9x its bound keeping text from the first or the second read
/// (docs/benchmarks.md). Charged sooner, entries read once would hold the
/// budget that entries read again need.
const TEXT_READS: u32 = 3;

/// The shortest text kept for copied hits. Below it, copying the bytes
/// into a new string per hit costs about what the lookup of a kept one
/// does, and a kept string's slot would be a large share of its memory
/// (docs/benchmarks.md).
pub(crate) const TEXT_MIN: usize = 1024;

/// What the hits of one cache keep.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `clone: false`: the decoded, deep-frozen value.
    Values,
    /// Copied hits: the text of JSON and UTF-8 entries of at least
    /// [`TEXT_MIN`] bytes, parsed per hit, from the [`TEXT_READS`]th read.
    Text,
}

impl Kind {
    /// What keeping `e` costs against the memo budget, or `None` when this
    /// kind does not keep it. The JS side bounds what it keeps by the same
    /// charges (returned with each stamp).
    fn charge(self, e: &stratacache::Entry) -> Option<u64> {
        let n = e.payload.len() as u64;
        match self {
            // The decoded objects take up to about four times their JSON
            // text (arrays of numbers, many small objects), and a slot.
            Kind::Values => Some(4 * n + 64),
            // A one-byte string for ASCII, else two bytes per UTF-16 unit
            // (at most one per UTF-8 byte), and a slot.
            Kind::Text => (matches!(e.meta.format, Format::JSON | Format::UTF8)
                && e.payload.len() >= TEXT_MIN)
                .then(|| if e.payload.is_ascii() { n } else { 2 * n } + 64),
        }
    }
}

#[napi]
impl NativeCache {
    /// The budget (bytes) of kept values: the JS side drops the oldest
    /// beyond it.
    #[napi(getter)]
    pub fn kept_budget(&self) -> f64 {
        self.inner.memo_budget() as f64
    }

    /// `getKept(key, fetch)`, a function bound to this cache ([`answer`];
    /// a plain function, not a method: see `reader.rs`); `share` picks
    /// [`Kind::Values`], else [`Kind::Text`].
    #[napi(
        ts_return_type = "(key: string, fetch?: boolean) => number | string | [number, string | Buffer] | [number, string | [number, string | Buffer], number] | null"
    )]
    pub fn kept_reader<'env>(&self, env: &'env Env, share: bool) -> Result<Unknown<'env>> {
        let kind = if share { Kind::Values } else { Kind::Text };
        let f = crate::reader::kept_reader(env, &self.inner, kind)?;
        // SAFETY: a function value just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }
}

/// What [`answer`] gives JS: a stamp, an entry, or `[stamp, entry, charge]`.
pub(crate) type Kept = Either3<f64, JsEntry, (f64, JsEntry, f64)>;

/// An L1 hit for a cache that keeps values of `kind`:
/// - `None` when L1 has no fresh entry (then read as `get` does);
/// - the entry as `getLocal` shapes it when `kind` does not keep it;
/// - its stamp when it was stamped before this call and `fetch` is false
///   (the JS side compares it with the one it kept);
/// - the entry as `getLocal` shapes it on text's first reads (it is kept
///   from the [`TEXT_READS`]th on);
/// - else `[stamp, entry, charge]` (stamp 0: the budget is spent, do not
///   keep it).
pub(crate) fn answer(
    cache: &stratacache::Cache,
    key: &str,
    fetch: bool,
    kind: Kind,
) -> Result<Option<Kept>> {
    let Some(e) = cache.get_local(key).map_err(js_err)? else {
        return Ok(None);
    };
    let Some(charge) = kind.charge(&e) else {
        return Ok(Some(Either3::B(JsEntry(e))));
    };
    let before = e.memo.get::<Stamp>().map(|s| s.id);
    if before.is_none() {
        // Text is charged its slot until it is kept (see `TEXT_READS`).
        let (first, state) = match kind {
            Kind::Values => (charge, CHARGED),
            Kind::Text => (SLOT.min(charge), UNCHARGED),
        };
        let stamp = Stamp {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            reads: AtomicU32::new(0),
            state: AtomicU8::new(state),
        };
        // Refused when the budget is spent (or another read stamped the
        // entry first: then that stamp is the one).
        cache.memoize(&e, stamp, first);
    }
    let not_kept = |e| Ok(Some(Either3::C((0.0, JsEntry(e), charge as f64))));
    let Some(stamp) = e.memo.get::<Stamp>() else {
        return not_kept(e);
    };
    if matches!(kind, Kind::Text) && stamp.reads.load(Ordering::Relaxed) < TEXT_READS {
        // Counted only until it is kept: no shared write on the hot path.
        if stamp.reads.fetch_add(1, Ordering::Relaxed) + 1 < TEXT_READS {
            return Ok(Some(Either3::B(JsEntry(e))));
        }
    }
    let mut fetch = fetch;
    match stamp
        .state
        .compare_exchange(UNCHARGED, CHARGING, Ordering::Relaxed, Ordering::Relaxed)
    {
        Ok(_) => {
            // The read that keeps it: the rest of its charge, once.
            if !cache.memo_grow(&e, charge.saturating_sub(SLOT)) {
                stamp.state.store(UNCHARGED, Ordering::Relaxed);
                return not_kept(e);
            }
            stamp.state.store(CHARGED, Ordering::Relaxed);
            fetch = true;
        }
        Err(CHARGED) => {}
        // Another thread's read is charging it now.
        Err(_) => return not_kept(e),
    }
    if before == Some(stamp.id) && !fetch {
        return Ok(Some(Either3::A(stamp.id as f64)));
    }
    Ok(Some(Either3::C((
        stamp.id as f64,
        JsEntry(e),
        charge as f64,
    ))))
}
