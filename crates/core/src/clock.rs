//! Wall-clock time in unix milliseconds.
//!
//! Freshness deadlines in envelopes are absolute wall-clock instants written
//! by the writer and compared by every reader, so processes of one fleet
//! must keep their clocks synchronised (NTP); skew shifts freshness by the
//! skew. Fencing against deletes does not use clocks at all (see `l2`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch (0 if the clock is before 1970).
#[inline]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
