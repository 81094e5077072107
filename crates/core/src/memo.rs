//! Decoded values kept beside L1 entries.
//!
//! A binding that turns payload bytes into its own values (Python objects)
//! pays that decode on every L1 hit. [`Memo`] lets it keep the decoded
//! value on the entry itself, so it lives and dies with the entry: an
//! invalidation, expiry, eviction or overwrite that drops the entry drops
//! the memo with it, and the core's freshness and version checks run on
//! every hit as before. Memory is bounded: a memo is charged (by the
//! binding's estimate) against a budget carved out of `l1_max_bytes`
//! (`Config::l1_memo_bytes`), and refused when the budget is spent.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use once_cell::race::OnceBox;

/// A slot on an [`Entry`](crate::Entry) for one decoded value, set at most
/// once through [`Cache::memoize`](crate::Cache::memoize).
/// One pointer, set by compare-and-swap, so that an entry without a memo
/// (every entry of a binding that keeps none) pays 8 bytes for the slot.
#[derive(Default)]
pub struct Memo(OnceBox<Slot>);

struct Slot {
    value: Box<dyn Any + Send + Sync>,
    /// What the slot holds against the budget now (it can grow, see
    /// [`MemoBudget::grow`]).
    charge: AtomicU64,
    used: Arc<AtomicU64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used
            .fetch_sub(*self.charge.get_mut(), Ordering::Relaxed);
    }
}

impl Memo {
    /// The memoized value, if one of type `T` was set.
    #[inline]
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.get()?.value.downcast_ref()
    }

    /// Whether a value was set.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }
}

/// A copy of an entry starts without a memo (it may be re-timed or
/// re-tagged, and the memo's budget charge belongs to one entry).
impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

/// A cache of the payload, not part of the entry's value.
impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Memo {}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Memo(set)"
        } else {
            "Memo(-)"
        })
    }
}

/// The memo budget of one shared L1.
#[derive(Debug, Default)]
pub(crate) struct MemoBudget {
    limit: u64,
    used: Arc<AtomicU64>,
}

impl MemoBudget {
    pub(crate) fn new(limit: u64) -> Self {
        MemoBudget {
            limit,
            used: Arc::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The budget in bytes (0: memos are off).
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged by the memos alive now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes left in the budget now (0 when memos are off).
    pub(crate) fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Set `memo` to `value` if it is unset and `charge` fits the budget.
    pub(crate) fn attach<T: Any + Send + Sync>(&self, memo: &Memo, value: T, charge: u64) -> bool {
        if !self.enabled() || charge > self.limit || memo.is_set() {
            return false;
        }
        let before = self.used.fetch_add(charge, Ordering::Relaxed);
        let slot = Box::new(Slot {
            value: Box::new(value),
            charge: AtomicU64::new(charge),
            used: self.used.clone(),
        });
        // Dropping the slot (over budget, or another thread set the memo
        // first) returns its charge.
        before + charge <= self.limit && memo.0.set(slot).is_ok()
    }

    /// Charge `more` bytes to `memo`, set before, if they fit the budget:
    /// for a binding that sets a small memo first and keeps more against
    /// it later. The slot returns its whole charge when it drops.
    pub(crate) fn grow(&self, memo: &Memo, more: u64) -> bool {
        let Some(slot) = memo.0.get() else {
            return false;
        };
        let before = self.used.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > self.limit {
            self.used.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        slot.charge.fetch_add(more, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_returned_when_memos_drop() {
        let budget = MemoBudget::new(100);
        let a = Memo::default();
        let b = Memo::default();
        assert!(budget.attach(&a, 1u32, 60));
        assert!(!budget.attach(&a, 2u32, 10), "set at most once");
        assert_eq!(a.get::<u32>(), Some(&1));
        assert_eq!(a.get::<u64>(), None, "another type is not this memo");
        assert!(!budget.attach(&b, 3u32, 50), "over budget");
        assert!(!b.is_set());
        assert_eq!(budget.used(), 60);
        drop(a);
        assert_eq!(budget.used(), 0);
        assert!(budget.attach(&b, 3u32, 50));
        assert!(!b.clone().is_set(), "a copy starts empty");
        assert_eq!(budget.used(), 50);
        assert_eq!(budget.room(), 50);
    }

    #[test]
    fn a_memo_grows_within_the_budget_and_returns_it_all() {
        let budget = MemoBudget::new(100);
        let a = Memo::default();
        let unset = Memo::default();
        assert!(!budget.grow(&unset, 10), "no memo to charge");
        assert!(budget.attach(&a, 1u32, 10));
        assert!(budget.grow(&a, 50));
        assert_eq!(budget.used(), 60);
        assert!(!budget.grow(&a, 41), "over budget");
        assert_eq!(budget.used(), 60, "a refused charge is not kept");
        assert!(budget.grow(&a, 40));
        assert_eq!(budget.room(), 0);
        drop(a);
        assert_eq!(budget.used(), 0, "the whole charge is returned");
    }

    #[test]
    fn an_empty_slot_is_small() {
        // Charged per L1 entry in l1::ENTRY_OVERHEAD.
        assert_eq!(std::mem::size_of::<Memo>(), 8);
    }

    #[test]
    fn a_zero_budget_memoizes_nothing() {
        let budget = MemoBudget::new(0);
        let m = Memo::default();
        assert!(!budget.enabled());
        assert_eq!(budget.room(), 0);
        assert!(!budget.attach(&m, 1u8, 0));
        assert!(!m.is_set());
    }
}
