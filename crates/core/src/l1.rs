//! L1: the in-process tier, on `moka`'s synchronous cache. Every L1
//! operation completes on the calling thread without suspending (moka's
//! per-key locks are held for a map update only), so an L1 hit or an
//! L1-only write needs no runtime: bindings answer them on their own
//! thread.
//!
//! - Bounded by bytes: the weigher counts key, payload, tags and a fixed
//!   per-entry overhead; admission is moka's W-TinyLFU.
//! - Each entry expires at its own `stale_until` (moka's per-entry
//!   [`Expiry`]), which is also its Redis TTL, so L1 never outlives L2.
//! - **Write ordering.** A value read from L2 (or produced by a loader) must
//!   not land in L1 *after* a newer `set`/`delete` of the same key has been
//!   applied, or L1 would serve an old value until it expires. Every
//!   authoritative write bumps an epoch (64 stripes, by key hash) inside
//!   moka's per-key `and_compute_with` lock; every fill records the epoch
//!   before it started reading and stores only if the epoch is unchanged,
//!   checked under the same lock. A stripe collision only costs a skipped
//!   fill, never a stale value.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};

use crate::clock::now_ms;
use crate::envelope::Entry;
use crate::metrics::Metrics;

const STRIPES: usize = 64;
/// Bytes charged per entry on top of key and payload (moka node, Arc, meta):
/// 640 measured with `make bench-memory` before entries had a memo slot,
/// plus the slot's 16 bytes.
pub(crate) const ENTRY_OVERHEAD: usize = 656;

struct EntryExpiry;

fn time_left(e: &Entry) -> Option<Duration> {
    match e.meta.stale_until_ms {
        0 => None,
        t => Some(Duration::from_millis(t.saturating_sub(now_ms()))),
    }
}

impl Expiry<Arc<str>, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _k: &Arc<str>,
        v: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        time_left(v)
    }
    fn expire_after_update(
        &self,
        _k: &Arc<str>,
        v: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        time_left(v)
    }
}

pub(crate) struct L1 {
    cache: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    epochs: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

/// Outcome of an in-L1 integer update.
pub(crate) enum L1Incr {
    Missing,
    NotInteger,
    Value(i64),
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<Entry>| {
                let tags: usize = v.meta.tags.iter().map(|(n, _)| n.len() + 32).sum();
                u32::try_from(k.len() + v.payload.len() + tags + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    Metrics::inc(&metrics.l1_evictions);
                }
            })
            .build();
        L1 {
            cache,
            epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        &self.epochs[(h.finish() as usize) % STRIPES]
    }

    /// The write epoch of `key`'s stripe; pass it to [`L1::fill`].
    pub(crate) fn epoch(&self, key: &str) -> u64 {
        self.stripe(key).load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// Store a value read from L2 or loaded, unless an authoritative write
    /// to the key's stripe happened since `epoch` was read.
    pub(crate) fn fill(&self, key: &Arc<str>, entry: Arc<Entry>, epoch: u64) {
        let stripe = self.stripe(key);
        self.cache.entry(key.clone()).and_compute_with(|_| {
            let unchanged = stripe.load(Ordering::Acquire) == epoch;
            if unchanged { Op::Put(entry) } else { Op::Nop }
        });
    }

    /// Authoritative write (`set`, `touch`): store and fence older fills.
    pub(crate) fn put(&self, key: &Arc<str>, entry: Arc<Entry>) {
        let stripe = self.stripe(key);
        self.cache.entry(key.clone()).and_compute_with(|_| {
            stripe.fetch_add(1, Ordering::AcqRel);
            Op::Put(entry)
        });
    }

    /// Authoritative removal (`delete`, counters): remove and fence older
    /// fills. Returns whether a live entry was there.
    pub(crate) fn remove(&self, key: &str) -> bool {
        let stripe = self.stripe(key);
        let key: Arc<str> = Arc::from(key);
        let r = self.cache.entry(key).and_compute_with(|cur| {
            stripe.fetch_add(1, Ordering::AcqRel);
            if cur.is_some() { Op::Remove } else { Op::Nop }
        });
        matches!(r, CompResult::Removed(_))
    }

    /// Insert only if absent; true when inserted.
    pub(crate) fn add(&self, key: &Arc<str>, entry: Arc<Entry>) -> bool {
        let stripe = self.stripe(key);
        let r = self.cache.entry(key.clone()).and_compute_with(|cur| {
            if cur.is_none() {
                stripe.fetch_add(1, Ordering::AcqRel);
                Op::Put(entry)
            } else {
                Op::Nop
            }
        });
        matches!(r, CompResult::Inserted(_))
    }

    /// Replace an existing entry with `f(old)`; false when absent.
    pub(crate) fn update<F>(&self, key: &str, f: F) -> bool
    where
        F: FnOnce(&Entry) -> Entry + Send,
    {
        let stripe = self.stripe(key);
        let key: Arc<str> = Arc::from(key);
        let r = self.cache.entry(key).and_compute_with(|cur| match cur {
            Some(e) => {
                stripe.fetch_add(1, Ordering::AcqRel);
                Op::Put(Arc::new(f(e.value())))
            }
            None => Op::Nop,
        });
        matches!(r, CompResult::ReplacedWith(_))
    }

    /// Atomic add on an integer entry (L1-only mode).
    pub(crate) fn incr(&self, key: &str, delta: i64) -> L1Incr {
        let stripe = self.stripe(key);
        let key: Arc<str> = Arc::from(key);
        let mut outcome = L1Incr::Missing;
        self.cache.entry(key).and_compute_with(|cur| match cur {
            None => Op::Nop,
            Some(e) => {
                let old = e.value();
                let parsed = (old.meta.format == crate::Format::INT)
                    .then(|| std::str::from_utf8(&old.payload).ok()?.parse::<i64>().ok())
                    .flatten()
                    .and_then(|v| v.checked_add(delta));
                match parsed {
                    Some(n) => {
                        stripe.fetch_add(1, Ordering::AcqRel);
                        outcome = L1Incr::Value(n);
                        Op::Put(Arc::new(Entry {
                            meta: old.meta.clone(),
                            payload: n.to_string().into(),
                            memo: Default::default(),
                        }))
                    }
                    None => {
                        outcome = L1Incr::NotInteger;
                        Op::Nop
                    }
                }
            }
        });
        outcome
    }

    /// Drop everything and fence every in-progress fill.
    /// Every entry held now (a copy of the handles, for listing).
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, Arc<Entry>)> {
        self.cache.iter().map(|(k, e)| ((*k).clone(), e)).collect()
    }

    pub(crate) fn clear(&self) {
        for e in self.epochs.iter() {
            e.fetch_add(1, Ordering::AcqRel);
        }
        self.cache.invalidate_all();
    }

    pub(crate) fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Format, Meta};

    fn entry(len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            meta: Meta {
                format: Format::RAW,
                ..Meta::default()
            },
            payload: bytes::Bytes::from(vec![0u8; len]),
            memo: Default::default(),
        })
    }

    /// Write-heavy, key reuse, values changing size: moka applies writes
    /// (and so evictions) in batches, and has reports of overshooting with
    /// weighers. Sampled *during* the load, without running its pending
    /// maintenance first, the weighted size stays within 10 % of the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn weighted_size_stays_within_ten_percent_under_write_heavy_reuse() {
        const LIMIT: u64 = 4 << 20;
        let l1 = Arc::new(L1::new(LIMIT, Arc::new(Metrics::default())));
        let keys: Vec<Arc<str>> = (0..20_000).map(|i| Arc::from(format!("k{i}"))).collect();
        let keys = Arc::new(keys);
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let (l1, keys) = (l1.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                let mut worst = 0u64;
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..25_000u64 {
                    // xorshift: a cheap, deterministic key and size stream.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = &keys[(x % keys.len() as u64) as usize];
                    l1.put(k, entry(1024 + (x >> 40) as usize % 3072));
                    if i % 64 == 0 {
                        worst = worst.max(l1.cache.weighted_size());
                    }
                }
                worst
            }));
        }
        let mut worst = 0;
        for t in tasks {
            worst = worst.max(t.await.expect("writer"));
        }
        let (_, settled) = l1.size();
        assert!(settled <= LIMIT, "settled {settled} > {LIMIT}");
        assert!(
            worst <= LIMIT + LIMIT / 10,
            "peak weighted size {worst} is over {LIMIT} + 10 %"
        );
    }
}
