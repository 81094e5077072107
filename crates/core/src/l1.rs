//! L1: the in-process tier, on `quick_cache`'s sharded synchronous cache.
//! Every L1 operation completes on the calling thread without suspending
//! (locks are held for a map update only), so an L1 hit or an L1-only
//! write needs no runtime: bindings answer them on their own thread.
//!
//! - Bounded by bytes: the weigher counts key, payload, tags and a fixed
//!   per-entry overhead ([`ENTRY_OVERHEAD`], pinned by a test that counts
//!   the allocations). Eviction is quick_cache's S3-FIFO (a small queue for
//!   new keys, a main queue for keys read again, ghosts of recently evicted
//!   keys), which keeps a one-off scan from flushing the keys in use.
//! - quick_cache keeps its entries in slabs (no allocation per node), and
//!   a key of up to 23 bytes lives in its slot ([`SmolStr`]), so an entry
//!   with a short key is two allocations (its [`Entry`] and its payload)
//!   and about 60 bytes of the cache's own.
//! - Each entry is live until its own `stale_until` (also its Redis TTL, so
//!   L1 never outlives L2). An entry past it is a miss to every reader
//!   (they judge liveness), is absent to `add`, `update` and `incr`, and is
//!   removed when read through [`L1::get`], written over, evicted, or
//!   swept by [`L1::size`].
//! - **Write ordering.** A value read from L2 (or produced by a loader) must
//!   not land in L1 *after* a newer `set`/`delete` of the same key has been
//!   applied, or L1 would serve an old value until it expires. Every
//!   authoritative write bumps an epoch (64 stripes, by key hash) while
//!   holding the stripe's lock; every fill records the epoch before it
//!   started reading and stores only if the epoch is unchanged, checked
//!   under the same lock. A stripe collision only costs a skipped fill,
//!   never a stale value. After a write or a fill, still under the lock,
//!   the stripe's word on every watch board moves ([`crate::watch`]).
//! - **Nothing is dropped under a lock.** A value an operation replaces,
//!   removes or evicts may hold a binding's memo (a Python object whose
//!   destructor runs code that may call the cache again), so it is handed
//!   back and dropped after every lock is released.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use smol_str::SmolStr;

use crate::clock::now_ms;
use crate::envelope::Entry;
use crate::metrics::Metrics;
use crate::watch::Watchers;

/// Stripes of write ordering, also the stripes of watch boards.
const STRIPES: usize = crate::watch::STRIPES;
/// Bytes charged per entry on top of key, payload and tags: the `Arc`'d
/// [`Entry`] (80 bytes: metadata, payload handle, memo slot; 96 with the
/// `Arc`'s counts, one of mimalloc's size classes), quick_cache's slab
/// slot (the key inline when short) and map index, its share of ghost
/// slots, the allocator's headers and rounding, and the pages churn
/// leaves partly used. Measured with 64-byte values under churn
/// (docs/benchmarks.md, "Denser L1 entries"): resident growth stays within
/// the bound under both mimalloc (the bindings' allocator, set up as
/// [`crate::alloc`] says) and glibc's malloc. Pinned by
/// `tests/l1_charge.rs`.
pub(crate) const ENTRY_OVERHEAD: usize = 200;
/// A payload is also charged a quarter of its length again: the
/// allocator's size classes and the pages that eviction leaves partly
/// used cost resident memory in proportion to the values' sizes when
/// they vary (64 B to 10 KiB in the soak).
pub(crate) const PAYLOAD_SLACK: usize = 4;
/// The smallest share of the bound one shard holds: quick_cache bounds each
/// shard separately and does not keep a value charged more than 97 % of
/// its shard (so with 4 MiB shards, values over ~3.9 MiB skip L1).
const MIN_SHARD_BYTES: u64 = 4 << 20;

/// The longest key `SmolStr` keeps inline (pinned by a unit test).
#[cfg(test)]
const INLINE_KEY: usize = 23;

/// What the cache let go of during one operation, to be dropped after the
/// locks are released. An operation lets go of one value at most (a store
/// that evicts, more): that one is kept without a `Vec`.
#[derive(Default)]
struct Dropped {
    first: Option<Arc<Entry>>,
    more: Vec<Arc<Entry>>,
    /// The key a store writes and the address of its new value: the value
    /// it writes over comes through the eviction hook too (under the same
    /// key, another address), and is not an eviction.
    storing: Option<(SmolStr, usize)>,
}

impl Dropped {
    fn push(&mut self, v: Arc<Entry>) {
        match self.first {
            None => self.first = Some(v),
            Some(_) => self.more.push(v),
        }
    }
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<SmolStr, Arc<Entry>> for Weigh {
    fn weight(&self, k: &SmolStr, v: &Arc<Entry>) -> u64 {
        charge(k, v) as u64
    }
}

fn charge(k: &str, v: &Entry) -> usize {
    let tags: usize = v.meta.tags.iter().map(|(n, _)| n.len() + 32).sum();
    k.len() + v.payload.len() + v.payload.len() / PAYLOAD_SLACK + tags + ENTRY_OVERHEAD
}

/// Counts evictions and collects what was evicted, so it is dropped by
/// the caller outside every lock.
#[derive(Clone)]
struct Evictions(Arc<Metrics>);

impl quick_cache::Lifecycle<SmolStr, Arc<Entry>> for Evictions {
    type RequestState = Dropped;

    fn on_evict(&self, dropped: &mut Dropped, k: SmolStr, v: Arc<Entry>) {
        let replaced = dropped
            .storing
            .as_ref()
            .is_some_and(|(key, new)| *key == k && Arc::as_ptr(&v) as usize != *new);
        if !replaced {
            Metrics::inc(&self.0.l1_evictions);
        }
        // What `held` already kept (the value `update`, `incr` and `add`
        // write over): dropping this handle here frees nothing.
        if dropped.first.as_ref().is_some_and(|f| Arc::ptr_eq(f, &v)) {
            return;
        }
        dropped.push(v);
    }
}

type Map = quick_cache::sync::Cache<
    SmolStr,
    Arc<Entry>,
    Weigh,
    quick_cache::DefaultHashBuilder,
    Evictions,
>;

/// One stripe: the lock every authoritative write and fill of its keys
/// holds, and the epoch fills compare.
#[derive(Default)]
struct Stripe {
    lock: Mutex<()>,
    epoch: AtomicU64,
}

impl Stripe {
    fn lock(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data; a panic while holding it leaves nothing torn.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct L1 {
    cache: Map,
    stripes: Box<[Stripe]>,
    /// quick_cache's own (foldhash, seeded per process): a stripe costs
    /// every write, fill and watched hit a hash of its key.
    hasher: quick_cache::DefaultHashBuilder,
    /// Moved after every authoritative change (crate::watch).
    watchers: Arc<Watchers>,
}

/// Outcome of an in-L1 integer update.
pub(crate) enum L1Incr {
    Missing,
    NotInteger,
    Value(i64),
}

fn live(e: &Entry) -> bool {
    e.meta.is_live(now_ms())
}

/// Shards for a bound: as many as quick_cache would pick for this machine,
/// fewer when that would make a shard smaller than [`MIN_SHARD_BYTES`].
fn shards(max_bytes: u64) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = (cpus * 4).next_power_of_two();
    let fit = (max_bytes / MIN_SHARD_BYTES).clamp(1, 1 << 16);
    // The largest power of two not above `fit`.
    let fit = 1u64 << (63 - fit.leading_zeros());
    wanted.min(fit as usize)
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, metrics: Arc<Metrics>, watchers: Arc<Watchers>) -> Self {
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards(max_bytes))
            .weight_capacity(max_bytes)
            // An estimate for sizing the ghost list and the first tables;
            // the tables grow to what the bound actually holds.
            .estimated_items_capacity((max_bytes / 1024).clamp(64, 1 << 22) as usize)
            .build()
            .expect("valid quick_cache options");
        let cache = Map::with_options(options, Weigh, Default::default(), Evictions(metrics));
        L1 {
            cache,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: Default::default(),
            watchers,
        }
    }

    /// `key`'s stripe (its index on watch boards too).
    pub(crate) fn stripe_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    fn stripe(&self, key: &str) -> (usize, &Stripe) {
        let i = self.stripe_of(key);
        (i, &self.stripes[i])
    }

    /// The write epoch of `key`'s stripe; pass it to [`L1::fill`].
    pub(crate) fn epoch(&self, key: &str) -> u64 {
        self.stripe(key).1.epoch.load(Ordering::Acquire)
    }

    /// The entry under `key`, fresh or stale (readers judge freshness);
    /// one past its `stale_until` at `now` (the caller's clock reading,
    /// unix ms) is removed on the way.
    #[inline]
    pub(crate) fn get(&self, key: &str, now: u64) -> Option<Arc<Entry>> {
        let e = self.cache.get(key)?;
        if !e.meta.is_live(now) {
            let gone = self.cache.remove_if(key, |v| Arc::ptr_eq(v, &e));
            drop(gone);
            return None;
        }
        Some(e)
    }

    /// The entry under `key`, with a second handle kept in `dropped`: once
    /// the stripe's lock is taken, dropping the one returned never frees an
    /// entry (another path may remove it from the cache meanwhile).
    fn held(&self, key: &str, dropped: &mut Dropped) -> Option<Arc<Entry>> {
        let e = self.cache.peek(key)?;
        dropped.push(e.clone());
        Some(e)
    }

    /// Store `entry` with the stripe's lock held; what it replaces or
    /// evicts comes back to be dropped by the caller.
    fn store(&self, key: &str, entry: Arc<Entry>, dropped: &mut Dropped) {
        // Short keys live inline in the slot, longer ones in one `Arc`.
        let key = SmolStr::new(key);
        dropped.storing = Some((key.clone(), Arc::as_ptr(&entry) as usize));
        self.cache.insert_with_lifecycle(key, entry, dropped);
    }

    /// Store a value read from L2 or loaded, unless an authoritative write
    /// to the key's stripe happened since `epoch` was read.
    pub(crate) fn fill(&self, key: &str, entry: Arc<Entry>, epoch: u64) {
        let mut dropped = Dropped::default();
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        if stripe.epoch.load(Ordering::Acquire) == epoch {
            self.store(key, entry, &mut dropped);
            // A refresh fills over a fresh copy that a watcher may hold.
            self.watchers.key_changed(i);
        }
        drop(guard);
    }

    /// Authoritative write (`set`, `touch`): store and fence older fills.
    pub(crate) fn put(&self, key: &str, entry: Arc<Entry>) {
        let mut dropped = Dropped::default();
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        stripe.epoch.fetch_add(1, Ordering::AcqRel);
        self.store(key, entry, &mut dropped);
        self.watchers.key_changed(i);
        drop(guard);
    }

    /// Authoritative removal (`delete`, counters): remove and fence older
    /// fills. Returns whether a live entry was there.
    pub(crate) fn remove(&self, key: &str) -> bool {
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        stripe.epoch.fetch_add(1, Ordering::AcqRel);
        let gone = self.cache.remove(key);
        self.watchers.key_changed(i);
        drop(guard);
        gone.is_some_and(|(_, e)| live(&e))
    }

    /// Insert only if no live entry is there; true when inserted.
    pub(crate) fn add(&self, key: &str, entry: Arc<Entry>) -> bool {
        let mut dropped = Dropped::default();
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        let taken = self.held(key, &mut dropped).is_some_and(|e| live(&e));
        if !taken {
            stripe.epoch.fetch_add(1, Ordering::AcqRel);
            self.store(key, entry, &mut dropped);
            self.watchers.key_changed(i);
        }
        drop(guard);
        !taken
    }

    /// Replace a live entry with `f(old)`; false when absent.
    pub(crate) fn update<F>(&self, key: &str, f: F) -> bool
    where
        F: FnOnce(&Entry) -> Entry + Send,
    {
        let mut dropped = Dropped::default();
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        let Some(old) = self.held(key, &mut dropped).filter(|e| live(e)) else {
            return false;
        };
        stripe.epoch.fetch_add(1, Ordering::AcqRel);
        self.store(key, Arc::new(f(&old)), &mut dropped);
        self.watchers.key_changed(i);
        drop(guard);
        true
    }

    /// Atomic add on an integer entry (L1-only mode).
    pub(crate) fn incr(&self, key: &str, delta: i64) -> L1Incr {
        let mut dropped = Dropped::default();
        let (i, stripe) = self.stripe(key);
        let guard = stripe.lock();
        let Some(old) = self.held(key, &mut dropped).filter(|e| live(e)) else {
            return L1Incr::Missing;
        };
        let parsed = (old.meta.format == crate::Format::INT)
            .then(|| std::str::from_utf8(&old.payload).ok()?.parse::<i64>().ok())
            .flatten()
            .and_then(|v| v.checked_add(delta));
        let Some(n) = parsed else {
            return L1Incr::NotInteger;
        };
        stripe.epoch.fetch_add(1, Ordering::AcqRel);
        let entry = Arc::new(Entry {
            meta: old.meta.clone(),
            payload: n.to_string().into(),
            memo: Default::default(),
        });
        self.store(key, entry, &mut dropped);
        self.watchers.key_changed(i);
        drop(guard);
        L1Incr::Value(n)
    }

    /// Every live entry held now (a copy of the handles, for listing).
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, Arc<Entry>)> {
        self.cache
            .iter()
            .filter(|(_, e)| live(e))
            .map(|(k, e)| (Arc::<str>::from(k), e))
            .collect()
    }

    /// Drop everything and fence every in-progress fill.
    pub(crate) fn clear(&self) {
        let guards: Vec<_> = self.stripes.iter().map(Stripe::lock).collect();
        for s in self.stripes.iter() {
            s.epoch.fetch_add(1, Ordering::AcqRel);
        }
        let dropped: Vec<_> = self.cache.drain().collect();
        self.watchers.all_changed();
        drop(guards);
        drop(dropped);
    }

    /// Entries and charged bytes, after removing the expired ones.
    pub(crate) fn size(&self) -> (u64, u64) {
        let expired: Vec<_> = self.cache.iter().filter(|(_, e)| !live(e)).collect();
        let gone: Vec<_> = expired
            .iter()
            .filter_map(|(k, e)| self.cache.remove_if(k.as_str(), |v| Arc::ptr_eq(v, e)))
            .collect();
        drop((expired, gone));
        (self.cache.len() as u64, self.cache.weight())
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

    /// The charge counts on an `Arc`'d entry fitting mimalloc's 96-byte
    /// size class and a short key living in quick_cache's slot.
    #[test]
    fn entries_and_short_keys_are_compact() {
        assert!(std::mem::size_of::<Entry>() + 2 * std::mem::size_of::<usize>() <= 96);
        let short = SmolStr::new("user:1234567890:profile");
        assert_eq!(short.len(), INLINE_KEY);
        assert!(!short.is_heap_allocated(), "a 23-byte key is inline");
        let long = SmolStr::new("user:1234567890:profile!");
        assert!(long.is_heap_allocated(), "a 24-byte key is not");
    }

    /// Writing over a key is not an eviction (quick_cache reports the
    /// value it replaces through the eviction hook).
    #[test]
    fn fills_move_the_stripe_word_when_they_store() {
        let watchers = Arc::new(Watchers::default());
        let board = watchers.board();
        let l1 = L1::new(4 << 20, Arc::new(Metrics::default()), watchers);
        let slot = 1 + l1.stripe_of("k");
        let epoch = l1.epoch("k");
        l1.put("k", entry(8)); // the fill below read its epoch before this write
        let word = board.word(slot);
        l1.fill("k", entry(9), epoch);
        assert_eq!(board.word(slot), word, "a refused fill changes nothing");
        // A refresh's fill over a fresh copy: what a watcher holds ends.
        l1.fill("k", entry(9), l1.epoch("k"));
        assert_eq!(board.word(slot), word + 1);
        assert_eq!(l1.get("k", 0).map(|e| e.payload.len()), Some(9));
    }

    #[test]
    fn overwrites_are_not_counted_as_evictions() {
        let metrics = Arc::new(Metrics::default());
        let l1 = L1::new(4 << 20, metrics.clone(), Default::default());
        for _ in 0..3 {
            l1.put("k", entry(64));
        }
        assert!(l1.update("k", |e| e.clone()));
        assert_eq!(metrics.l1_evictions.load(Ordering::Relaxed), 0);
        for i in 0..20_000 {
            l1.put(&format!("k{i}"), entry(1024));
        }
        assert!(
            metrics.l1_evictions.load(Ordering::Relaxed) > 0,
            "a full L1 evicts"
        );
    }

    /// Write-heavy, key reuse, values changing size: sampled *during* the
    /// load, the weighted size stays within 10 % of the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn weighted_size_stays_within_ten_percent_under_write_heavy_reuse() {
        const LIMIT: u64 = 4 << 20;
        let l1 = Arc::new(L1::new(
            LIMIT,
            Arc::new(Metrics::default()),
            Default::default(),
        ));
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
                        worst = worst.max(l1.cache.weight());
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
