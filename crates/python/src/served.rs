//! How the last read on this thread was served, for `stratacache.otel`'s
//! spans: the sync reads note it where they answer; an asyncio caller,
//! whose answer arrives from a runtime thread, notes the code the answer
//! carries. The span wrapper clears it before a call and takes it after.

use std::cell::Cell;

use pyo3::prelude::*;
use stratacache::Served;

thread_local! {
    static LAST: Cell<u8> = const { Cell::new(0) };
}

/// Note `s` as how this thread's last read was served.
#[inline]
pub(crate) fn note(s: Served) {
    LAST.with(|c| c.set(s.code()));
}

/// `(outcome, tier)` of this thread's last read since the last call (see
/// `stratacache::Served`), or `None`; clears it.
#[pyfunction]
pub(crate) fn take_served() -> Option<(&'static str, Option<&'static str>)> {
    let s = Served::from_code(LAST.with(|c| c.replace(0)))?;
    Some((s.outcome(), s.tier()))
}

/// Note the served `code` an asyncio answer carries (`alookup`'s fifth
/// item, `aget`'s third) as this thread's last read.
#[pyfunction]
pub(crate) fn note_served(code: u8) {
    LAST.with(|c| c.set(code));
}
