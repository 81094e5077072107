//! Watch boards: how a binding serves an L1 hit again without asking.
//!
//! A call into native code costs a binding more than some hits are worth
//! (Node's shared hits). [`crate::Cache::get_local_seen`] answers an L1
//! hit as [`crate::Cache::get_local`] does, and [`crate::Cache::hold`]
//! (for an answer the binding keeps) says how long that answer holds: while two words of a [`Board`] keep the values they had
//! when the hit was judged. The board's *global* word moves whenever any
//! answer may have changed (tag versions, the namespace's generation, L1
//! cleared or no longer trusted) and once the hold's deadline has passed
//! (the entry's freshness, and how long L1 stays trusted if the bus
//! proves nothing more; see [`Ticker`]); the word of the key's *stripe*
//! moves after every write, delete or invalidation of a key of that
//! stripe. A binding that keeps the answer, reads the two words (whole
//! u32s) before serving it again, and asks again now and then (so
//! L1's eviction still sees the key in use, see [`RECHECK`]) serves what a
//! call would, but for the ticker's wake-up delay past a deadline.
//!
//! Words are read *before* the hit is judged and moved *after* a change
//! is made, so a change that races the judgement either shows in the hit
//! or moves a word the binding compares.
//!
//! Each watcher (a binding's handle, in its own thread) has a board of its
//! own: JS engines refuse two buffers over the same memory, and a board is
//! only ever read by the one thread its handle lives on. The shared state
//! moves every live board ([`Watchers`]); with none registered (Python,
//! Rust) moving words costs one atomic load.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use crate::clock::now_ms;

/// Stripes of keys on a board: a write moves the word that 1/`STRIPES` of
/// the keys share.
pub const STRIPES: usize = 64;

/// The global word's index.
pub const GLOBAL: usize = 0;

/// Words on a board: the global word, then one per stripe.
pub const WORDS: usize = 1 + STRIPES;

/// How many times a binding serves a kept hit before it asks again (the
/// ask records the access that L1's eviction weighs and brings the
/// deadline up to date).
pub const RECHECK: u32 = 16;

/// The words one watcher reads. `#[repr(C)]`, so a binding can hand the
/// words to its engine as one buffer of `WORDS` u32s.
#[repr(C)]
#[derive(Debug)]
pub struct Board {
    words: [AtomicU32; WORDS],
}

impl Board {
    fn new() -> Self {
        Board {
            words: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The words' memory: `WORDS` aligned u32s, valid while the board
    /// lives, which other threads move atomically (never written through
    /// this pointer).
    pub fn as_ptr(&self) -> *mut u32 {
        self.words.as_ptr() as *mut u32
    }

    /// Word `i` now.
    pub fn word(&self, i: usize) -> u32 {
        self.words[i].load(Ordering::Acquire)
    }
}

/// The words of a board an L1 hit was judged with (read before judging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub(crate) slot: u32,
    pub(crate) global: u32,
    pub(crate) word: u32,
}

/// How long an L1 hit holds: the binding may serve it again while both
/// words are unchanged (the global one moves once `until_ms` has passed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The stripe's word's index on the board.
    pub slot: u32,
    /// The global word when the hit was judged.
    pub global: u32,
    /// The stripe's word when the hit was judged.
    pub word: u32,
    /// Unix ms (the clock of [`crate::clock::now_ms`]) from which the hit
    /// must be judged again: the global word moves then.
    pub until_ms: u64,
}

/// Every live board of one shared state.
pub(crate) struct Watchers {
    any: AtomicBool,
    boards: RwLock<Vec<Weak<Board>>>,
    /// The earliest deadline of a hold given out since the global word
    /// last moved (`u64::MAX`: none): the [`Ticker`] moves it then.
    due: AtomicU64,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            any: AtomicBool::new(false),
            boards: RwLock::default(),
            due: AtomicU64::new(u64::MAX),
        }
    }
}

impl Watchers {
    /// A hold until `until_ms` was given out: the global word moves by
    /// then (see [`Ticker`]).
    pub(crate) fn hold_until(self: &Arc<Self>, until_ms: u64) {
        if until_ms == u64::MAX {
            return;
        }
        if self.due.load(Ordering::Acquire) > until_ms
            && self.due.fetch_min(until_ms, Ordering::AcqRel) > until_ms
        {
            ticker().schedule(until_ms, Arc::downgrade(self));
        }
    }

    /// A new board, moved from now on with every other.
    pub(crate) fn board(&self) -> Arc<Board> {
        let b = Arc::new(Board::new());
        let mut boards = self.boards.write().unwrap_or_else(|e| e.into_inner());
        boards.retain(|w| w.strong_count() > 0);
        boards.push(Arc::downgrade(&b));
        // SeqCst with the load in `bump`: a change made with a plain atomic
        // as a board registers either sees the board or is seen by it.
        self.any.store(true, Ordering::SeqCst);
        b
    }

    fn bump(&self, i: usize) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        for b in self
            .boards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
        {
            b.words[i].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A key of stripe `stripe` was written, deleted or invalidated (call
    /// after the change is visible to readers).
    pub(crate) fn key_changed(&self, stripe: usize) {
        self.bump(1 + stripe % STRIPES);
    }

    /// Any answer may have changed (call after the change is visible).
    pub(crate) fn all_changed(&self) {
        self.bump(GLOBAL);
    }
}

/// Moves the global word of a state's boards when the earliest hold it
/// gave out ends, so a binding compares words and never reads the clock:
/// a clock read costs about as much as the rest of a Node shared hit. A
/// hold may so be served for as long after its deadline as this thread
/// takes to wake (well under a millisecond on an idle machine; the OS's
/// scheduling delay on a busy one), as clock skew between processes
/// already moves every deadline (crate::clock). One thread per process,
/// started with the first hold that has a deadline, asleep while none is
/// due. Deadlines are wall-clock ms (an entry's freshness is); a clock
/// stepped back delays the move by the step. Not restarted in a forked
/// child (no binding that holds forks).
struct Ticker {
    due: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Condvar,
}

/// A state to look at when its earliest deadline passes.
struct Due(u64, Weak<Watchers>);

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn ticker() -> &'static Ticker {
    static T: OnceLock<&'static Ticker> = OnceLock::new();
    T.get_or_init(|| {
        let t: &'static Ticker = Box::leak(Box::new(Ticker {
            due: Mutex::default(),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("stratacache-watch".into())
            .spawn(move || t.run())
            .expect("spawn the watch ticker");
        t
    })
}

impl Ticker {
    fn schedule(&self, at: u64, w: Weak<Watchers>) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let first = due.peek().is_none_or(|Reverse(d)| at < d.0);
        due.push(Reverse(Due(at, w)));
        drop(due);
        if first {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = now_ms();
            match due.peek() {
                None => {
                    due = self.wake.wait(due).unwrap_or_else(|e| e.into_inner());
                }
                Some(Reverse(d)) if d.0 > now => {
                    // To the microsecond: waiting whole ms from a truncated
                    // `now` woke up to a ms late.
                    let wait = Duration::from_millis(d.0).saturating_sub(since_epoch());
                    due = self
                        .wake
                        .wait_timeout(due, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                Some(_) => {
                    let Some(Reverse(Due(_, w))) = due.pop() else {
                        continue;
                    };
                    drop(due);
                    if let Some(w) = w.upgrade()
                        && w.due.load(Ordering::Acquire) <= now
                    {
                        w.due.store(u64::MAX, Ordering::Release);
                        w.all_changed();
                    }
                    due = self.due.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_board_moves_and_dropped_ones_are_let_go() {
        let w = Watchers::default();
        w.key_changed(3); // no board yet: nothing to move
        let a = w.board();
        let b = w.board();
        w.key_changed(3);
        w.key_changed(3 + STRIPES);
        w.all_changed();
        for x in [&a, &b] {
            assert_eq!(x.word(4), 2);
            assert_eq!(x.word(GLOBAL), 1);
            assert_eq!(x.word(5), 0);
        }
        drop(b);
        let _c = w.board();
        assert_eq!(
            w.boards.read().expect("boards").len(),
            2,
            "the dropped board is let go"
        );
        // The memory a binding hands its engine is the words, in order.
        // SAFETY: `a` lives; index 4 is within WORDS.
        assert_eq!(unsafe { *a.as_ptr().add(4) }, 2);
    }
}
