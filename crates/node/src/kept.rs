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
//! time it is read this way (text is kept from its third read on). A hit
//! asks for the stamp only; the same stamp means the same entry (a write,
//! a delete or an invalidation replaces or removes it, and L1's own
//! checks, freshness, trust and versions, run as for any hit), so what is
//! kept is the answer and no bytes cross.

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::Format;
use stratacache::watch::{Board, RECHECK, WORDS, Watched};

use crate::cache::NativeCache;
use crate::convert::JsEntry;
use crate::error::js_err;

/// Stamps: never 0 (0 says "not kept"), never reused in a process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// An entry's stamp (its memo): how many reads of text met it, and what
/// is charged for it now.
struct Stamp {
    id: u64,
    reads: AtomicU32,
    /// Bytes charged to the memo budget, or [`CHARGING`] while a read
    /// charges more (a `clone: false` handle's values cost more than the
    /// text a copying handle on the same L1 kept first).
    charged: AtomicU64,
}

/// [`Stamp::charged`] while one read charges more.
const CHARGING: u64 = u64::MAX;

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

/// The shortest text kept for copied hits. A kept hit makes no call
/// (watch boards), so keeping pays from about the size of one API object
/// (a 10-field user is ~190 bytes of JSON); below it, the JS side's
/// record ([`RECORD`]) and the stamp would be most of what is kept.
pub(crate) const TEXT_MIN: usize = 128;

/// Charged for the JS side's record of kept text (an object and a Map
/// entry) beside the text itself. The key's string the Map holds is not
/// counted: usually the caller's own.
const RECORD: u64 = 64;

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
    /// Whether this kind keeps something for `e` (no scan of the payload:
    /// this runs on every hit).
    fn keeps(self, e: &stratacache::Entry) -> bool {
        match self {
            Kind::Values => true,
            Kind::Text => {
                matches!(e.meta.format, Format::JSON | Format::UTF8) && e.payload.len() >= TEXT_MIN
            }
        }
    }

    /// What keeping `e` costs against the memo budget. The JS side bounds
    /// what it keeps by the same charges (returned with each stamp).
    fn charge(self, e: &stratacache::Entry) -> u64 {
        let n = e.payload.len() as u64;
        match self {
            // The decoded objects take up to about four times their JSON
            // text (arrays of numbers, many small objects), and a slot.
            Kind::Values => 4 * n + SLOT,
            // A one-byte string for ASCII, else at most two bytes per
            // UTF-8 byte (two per UTF-16 unit), a slot and the record.
            Kind::Text => (if e.payload.is_ascii() { n } else { 2 * n }) + SLOT + RECORD,
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

    /// Count `n` L1 hits the JS side served itself.
    #[napi]
    pub fn note_l1_hits(&self, n: f64) {
        if n >= 1.0 {
            self.inner.note_l1_hits(n as u64);
        }
    }

    /// `[getKept, words, hold]`: `getKept(key, fetch, hits)` is a function
    /// bound to this cache ([`answer`]; a plain function, not a method: see
    /// `reader.rs`; `hits`: L1 hits served on the JS side since the last
    /// call, counted); `share` picks [`Kind::Values`], else [`Kind::Text`].
    /// `words` (`WORDS` u32s: this reader's watch board) and `hold`
    /// (`HOLD` f64s: how long `getKept`'s last answer holds) let the JS
    /// side serve a kept answer again without a call ([`stratacache::watch`]);
    /// both `null` where the runtime refuses buffers over native memory.
    #[napi(
        ts_return_type = "[(key: string, fetch?: boolean, hits?: number) => number | string | [number, string | Buffer] | [number, string | [number, string | Buffer], number] | null, ArrayBuffer | null, ArrayBuffer | null]"
    )]
    pub fn kept_reader<'env>(&self, env: &'env Env, share: bool) -> Result<Unknown<'env>> {
        let kind = if share { Kind::Values } else { Kind::Text };
        let watch = Watch {
            board: self.inner.watch_board(),
            hold: Arc::new(Default::default()),
        };
        let board = watch.board.clone();
        let words = unsafe { external(env, board.as_ptr().cast(), 4 * WORDS, board.clone()) }?;
        let hold = watch.hold.clone();
        let held = unsafe { external(env, hold.as_ptr() as *mut u8, 8 * HOLD, hold.clone()) }?;
        let (buffers, watch) = match (words, held) {
            (Some(w), Some(h)) => (Some((w, h)), Some(watch)),
            _ => (None, None),
        };
        let f = crate::reader::kept_reader(env, &self.inner, kind, watch)?;
        let mut out = ptr::null_mut();
        // SAFETY: values of this env, set into an array made here.
        unsafe {
            check_status!(sys::napi_create_array_with_length(env.raw(), 3, &mut out))?;
            let (words, held) = match buffers {
                Some(b) => b,
                None => {
                    let mut null = ptr::null_mut();
                    check_status!(sys::napi_get_null(env.raw(), &mut null))?;
                    (null, null)
                }
            };
            for (i, v) in [f, words, held].into_iter().enumerate() {
                check_status!(sys::napi_set_element(env.raw(), out, i as u32, v))?;
            }
            Ok(Unknown::from_raw_unchecked(env.raw(), out))
        }
    }
}

/// f64s in a hold: how many hits the JS side may serve before it asks
/// again ([`stratacache::watch::RECHECK`]; 0: ask every hit), the
/// stripe's word's index, the global word, the stripe's word
/// ([`stratacache::watch::Watched`]).
const HOLD: usize = 4;

/// Where a kept reader says how long its last answer holds: read by the
/// JS side (the same thread) right after the call.
pub(crate) struct Watch {
    board: Arc<Board>,
    hold: Arc<[AtomicU64; HOLD]>,
}

impl Watch {
    fn tell(&self, w: Option<Watched>) {
        let v = match w {
            Some(w) => [
                f64::from(RECHECK),
                w.slot as f64,
                w.global as f64,
                w.word as f64,
            ],
            None => [0.0; HOLD],
        };
        for (cell, x) in self.hold.iter().zip(v) {
            cell.store(x.to_bits(), Ordering::Relaxed);
        }
    }
}

/// An ArrayBuffer over `len` bytes at `data`, which `keep` keeps alive
/// until the engine lets the buffer go; `None` where the runtime refuses
/// buffers over native memory.
///
/// # Safety
/// `data` points to `len` bytes that live as long as `keep`, and no other
/// ArrayBuffer is made over them.
unsafe fn external<T: Send + Sync + 'static>(
    env: &Env,
    data: *mut u8,
    len: usize,
    keep: Arc<T>,
) -> Result<Option<sys::napi_value>> {
    unsafe extern "C" fn release<T>(
        _env: sys::napi_env,
        _data: *mut std::ffi::c_void,
        hint: *mut std::ffi::c_void,
    ) {
        // SAFETY: the box `external` leaked, freed once, here.
        drop(unsafe { Box::from_raw(hint.cast::<Arc<T>>()) });
    }
    let hint = Box::into_raw(Box::new(keep));
    let mut out = ptr::null_mut();
    // SAFETY: as the caller promises; the finalizer frees `hint`.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env.raw(),
            data.cast(),
            len,
            Some(release::<T>),
            hint.cast(),
            &mut out,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: not handed to the engine.
        drop(unsafe { Box::from_raw(hint) });
        return match status {
            sys::Status::napi_no_external_buffers_allowed => Ok(None),
            _ => Err(Error::new(
                Status::GenericFailure,
                "cannot create a watch board",
            )),
        };
    }
    Ok(Some(out))
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
///
/// With `watch`, it says there how long an answer to keep (a stamp) holds.
pub(crate) fn answer(
    cache: &stratacache::Cache,
    key: &str,
    fetch: bool,
    kind: Kind,
    watch: Option<&Watch>,
) -> Result<Option<Kept>> {
    let (e, seen) = match watch {
        Some(w) => match cache.get_local_seen(key, &w.board).map_err(js_err)? {
            Some((e, seen)) => (e, seen),
            None => return Ok(None),
        },
        None => match cache.get_local(key).map_err(js_err)? {
            Some(e) => (e, None),
            None => return Ok(None),
        },
    };
    // Where the JS side keeps the answer (a stamp): how long it holds.
    let tell = |e: &stratacache::Entry| {
        if let Some(w) = watch {
            w.tell(seen.and_then(|s| cache.hold(s, e)));
        }
    };
    if !kind.keeps(&e) {
        return Ok(Some(Either3::B(JsEntry(e))));
    }
    let before = e.memo.get::<Stamp>().map(|s| s.id);
    if before.is_none() {
        // Text holds its slot until it is kept (see `TEXT_READS`).
        let first = match kind {
            Kind::Values => kind.charge(&e),
            Kind::Text => SLOT,
        };
        let stamp = Stamp {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            reads: AtomicU32::new(0),
            charged: AtomicU64::new(first),
        };
        // Refused when the budget is spent (or another read stamped the
        // entry first: then that stamp is the one).
        cache.memoize(&e, stamp, first);
    }
    let not_kept = |e, charge| Ok(Some(Either3::C((0.0, JsEntry(e), charge as f64))));
    let Some(stamp) = e.memo.get::<Stamp>() else {
        let charge = kind.charge(&e);
        return not_kept(e, charge);
    };
    if matches!(kind, Kind::Text) && stamp.reads.load(Ordering::Relaxed) < TEXT_READS {
        // Counted only until it is kept: no shared write on the hot path.
        if stamp.reads.fetch_add(1, Ordering::Relaxed) + 1 < TEXT_READS {
            return Ok(Some(Either3::B(JsEntry(e))));
        }
    }
    // The hot path: stamped before and charged in full for this kind. A
    // text charge is worked out (a scan of the payload) only off it: any
    // full charge of a long text exceeds the slot.
    if before == Some(stamp.id) && !fetch {
        let have = stamp.charged.load(Ordering::Relaxed);
        let full = have != CHARGING
            && match kind {
                Kind::Values => have >= kind.charge(&e),
                Kind::Text => have > SLOT,
            };
        if full {
            tell(&e);
            return Ok(Some(Either3::A(stamp.id as f64)));
        }
    }
    let charge = kind.charge(&e);
    let have = stamp.charged.load(Ordering::Relaxed);
    if have == CHARGING {
        // Another thread's read is charging it now.
        return not_kept(e, charge);
    }
    if have < charge {
        // The read that keeps it (or keeps more for it): the rest, once.
        if stamp
            .charged
            .compare_exchange(have, CHARGING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return not_kept(e, charge);
        }
        if !cache.memo_grow(&e, charge - have) {
            stamp.charged.store(have, Ordering::Relaxed);
            return not_kept(e, charge);
        }
        stamp.charged.store(charge, Ordering::Relaxed);
    }
    // New to this JS side (or just charged for it): the entry to keep.
    tell(&e);
    Ok(Some(Either3::C((
        stamp.id as f64,
        JsEntry(e),
        charge as f64,
    ))))
}
