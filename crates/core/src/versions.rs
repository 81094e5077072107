//! Tag versions and the namespace generation: invalidation in O(1) Redis
//! work, without scanning keys and without comparing clocks.
//!
//! Every tag has a current *version* in Redis (`sc:<ns>:t:{<tag>}`), a
//! random non-zero u64; the namespace has a *generation*
//! (`sc:<ns>:gen`), also random. An entry records, when it is built, the
//! version of each of its tags and (with Redis) the generation, as tags of
//! its envelope (the generation under the reserved name [`GENERATION_TAG`]).
//! An entry is usable only while every recorded value equals the current
//! one:
//!
//! - `invalidate_tags` gives each tag a new random version (one `SET` per
//!   tag) and announces it on the bus: every entry carrying an older version
//!   anywhere in the fleet is stale from then on (servable only as a stale
//!   value, within its grace, by callers that accept stale values);
//! - `clear()` gives the namespace a new generation: every older entry is
//!   gone.
//!
//! Versions are compared for equality, never ordered, so no clock is
//! involved, and a version that disappears from Redis (eviction) is
//! replaced by a *new* random one (the `ensure` script), which invalidates
//! rather than resurrects. Each process caches the versions it has seen;
//! the bus keeps that cache current, and it is dropped whenever the bus
//! subscription was interrupted (messages may have been missed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::envelope::{Entry, GENERATION_TAG, LOCAL_TAG};
use crate::key::KEY_DEP_PREFIX;
use crate::watch::Watchers;

/// Bound on cached tag versions per namespace; past it the cache starts
/// over (versions are re-read from Redis on demand).
const MAX_CACHED_TAGS: usize = 100_000;

/// A new random version (never 0, which means "unknown").
pub(crate) fn new_version() -> u64 {
    rand::random::<u64>() | 1
}

/// Whether an entry may be used, judged by the versions it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validity {
    /// Every recorded version is current.
    Current,
    /// A tag was invalidated since: the entry is stale (servable only as a
    /// stale value, within its grace).
    TagStale,
    /// The namespace was cleared since: the entry does not exist.
    Gone,
    /// A recorded version is not known here yet: resolve and check again.
    Unknown,
}

pub(crate) struct Versions {
    tags: RwLock<HashMap<String, u64>>,
    generation: AtomicU64,
    /// The generation known before the last [`Versions::reset`]: what this
    /// process proposes when Redis has none (see `generation_candidate`).
    previous_generation: AtomicU64,
    /// Times Redis answered again after failing (shared with the circuit
    /// breaker, which counts them).
    recoveries: Arc<AtomicU64>,
    /// Whether a key dependency's version was ever resolved here.
    any_key_deps: AtomicBool,
    /// Forget counters, one per stripe of names, and one for the forgets
    /// of everything ([`Versions::reset`], [`Versions::forget_key_deps`]):
    /// a version read from Redis while its name was forgotten may be the
    /// forgotten one and is not cached (see [`Versions::adopt`]).
    forgets: [AtomicU64; FORGET_STRIPES],
    forgets_all: AtomicU64,
    /// When the key dependency versions known here are dropped next (unix
    /// ms; 0 until one is known).
    key_deps_until: AtomicU64,
    /// Moved after every change that can make a current entry stale or
    /// gone (crate::watch).
    watchers: Arc<Watchers>,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            tags: Default::default(),
            generation: Default::default(),
            previous_generation: Default::default(),
            recoveries: Default::default(),
            any_key_deps: Default::default(),
            forgets: [(); FORGET_STRIPES].map(|()| AtomicU64::new(0)),
            forgets_all: Default::default(),
            key_deps_until: Default::default(),
            watchers: Default::default(),
        }
    }
}

const FORGET_STRIPES: usize = 64;

/// How long this process keeps key dependency versions before it reads
/// them again: well within the records' lifetime in Redis (each read
/// renews it), so a record never expires while a process still holds its
/// version (an `incr` only announces itself when the record exists).
pub(crate) const KEY_DEP_LOCAL_MS: u64 = 6 * 60 * 60 * 1000;

fn stripe(t: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    (BuildHasherDefault::<DefaultHasher>::default().hash_one(t) as usize) % FORGET_STRIPES
}

impl Versions {
    /// The boards this state's changes move (L1 moves them too).
    pub(crate) fn watchers(&self) -> &Arc<Watchers> {
        &self.watchers
    }

    /// The recovery counter, for the circuit breaker to bump.
    pub(crate) fn recoveries(&self) -> Arc<AtomicU64> {
        self.recoveries.clone()
    }

    /// The [`LOCAL_TAG`] value for a local copy of a write about to be
    /// tried on Redis (read it before trying).
    pub(crate) fn local_mark(&self) -> u64 {
        self.recoveries.load(Ordering::Acquire) + 1
    }

    pub(crate) fn tag(&self, t: &str) -> Option<u64> {
        self.tags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .copied()
    }

    pub(crate) fn set_tag(&self, t: &str, v: u64) {
        self.note_if_key_dep(t);
        let mut g = self.tags.write().unwrap_or_else(|e| e.into_inner());
        let full = g.len() >= MAX_CACHED_TAGS && !g.contains_key(t);
        if full {
            g.clear();
        }
        let old = g.insert(t.to_owned(), v);
        drop(g);
        if full || old.is_some_and(|o| o != v) {
            self.watchers.all_changed();
        }
    }

    /// Forget the version of `t` (a key dependency whose key was written:
    /// its version record is gone from Redis, the next use reads or
    /// creates the new one).
    pub(crate) fn forget(&self, t: &str) {
        self.forgets[stripe(t)].fetch_add(1, Ordering::AcqRel);
        if self.tag(t).is_some() {
            self.tags
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(t);
            self.watchers.all_changed();
        }
    }

    /// A stamp of the forgets that concern `t`, taken before reading its
    /// version from Redis, for [`Versions::adopt`].
    pub(crate) fn forget_stamp(&self, t: &str) -> (u64, u64) {
        (
            self.forgets[stripe(t)].load(Ordering::Acquire),
            self.forgets_all.load(Ordering::Acquire),
        )
    }

    /// Cache `v`, read from Redis after `stamp` was taken, as `t`'s version
    /// if none is known, unless `t` was forgotten meanwhile (the reply may
    /// predate the write that made it forget). The version to use, or
    /// `None`: read it again.
    pub(crate) fn adopt(&self, t: &str, v: u64, stamp: (u64, u64)) -> Option<u64> {
        self.note_if_key_dep(t);
        let mut g = self.tags.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = g.get(t) {
            return Some(*known);
        }
        if self.forget_stamp(t) != stamp {
            return None;
        }
        let full = g.len() >= MAX_CACHED_TAGS;
        if full {
            g.clear();
        }
        g.insert(t.to_owned(), v);
        drop(g);
        if full {
            self.watchers.all_changed();
        }
        Some(v)
    }

    /// Forget every key dependency's version (the namespace was cleared,
    /// which removed their records).
    pub(crate) fn forget_key_deps(&self) {
        if !self.uses_key_deps() {
            return;
        }
        self.forgets_all.fetch_add(1, Ordering::AcqRel);
        self.tags
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t, _| !t.starts_with(KEY_DEP_PREFIX));
        self.watchers.all_changed();
    }

    /// Drop the key dependency versions known here once they are
    /// [`KEY_DEP_LOCAL_MS`] old.
    fn expire_key_deps(&self) {
        let now = crate::clock::now_ms();
        let until = self.key_deps_until.load(Ordering::Acquire);
        if until == 0 {
            let _ = self.key_deps_until.compare_exchange(
                0,
                now + KEY_DEP_LOCAL_MS,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else if now >= until
            && self
                .key_deps_until
                .compare_exchange(
                    until,
                    now + KEY_DEP_LOCAL_MS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.forget_key_deps();
        }
    }

    /// Whether a key dependency's version was ever resolved here.
    #[inline]
    pub(crate) fn uses_key_deps(&self) -> bool {
        self.any_key_deps.load(Ordering::Acquire)
    }

    /// Record that key dependencies are in use here when `t` is one.
    #[inline]
    fn note_if_key_dep(&self, t: &str) {
        if t.starts_with(KEY_DEP_PREFIX) && !self.any_key_deps.load(Ordering::Relaxed) {
            self.any_key_deps.store(true, Ordering::Release);
        }
    }

    pub(crate) fn set_tag_if_absent(&self, t: &str, v: u64) {
        self.note_if_key_dep(t);
        let mut g = self.tags.write().unwrap_or_else(|e| e.into_inner());
        if !g.contains_key(t) {
            let full = g.len() >= MAX_CACHED_TAGS;
            if full {
                g.clear();
            }
            g.insert(t.to_owned(), v);
            drop(g);
            if full {
                self.watchers.all_changed();
            }
        }
    }

    pub(crate) fn set_generation_if_absent(&self, g: u64) {
        let _ = self
            .generation
            .compare_exchange(0, g, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn generation(&self) -> Option<u64> {
        match self.generation.load(Ordering::Acquire) {
            0 => None,
            g => Some(g),
        }
    }

    pub(crate) fn set_generation(&self, g: u64) {
        if self.generation.swap(g, Ordering::AcqRel) != g {
            self.watchers.all_changed();
        }
    }

    /// Forget everything (the bus was interrupted: messages may be lost).
    pub(crate) fn reset(&self) {
        self.forgets_all.fetch_add(1, Ordering::AcqRel);
        self.tags.write().unwrap_or_else(|e| e.into_inner()).clear();
        let g = self.generation.swap(0, Ordering::AcqRel);
        if g != 0 {
            self.previous_generation.store(g, Ordering::Release);
        }
        self.watchers.all_changed();
    }

    /// The generation to create in Redis when it has none: the one this
    /// process knew before its last reset, else a new one. Redis without a
    /// generation key lost it (a restart without persistence, an eviction):
    /// entries written meanwhile carry the old one, and a new random one
    /// would turn every such write into a miss for its whole TTL (and leave
    /// processes that have not reset on another generation than the rest).
    /// A `clear()` never goes through here: it sets a new generation.
    pub(crate) fn generation_candidate(&self) -> u64 {
        match self.previous_generation.load(Ordering::Acquire) {
            0 => new_version(),
            g => g,
        }
    }

    /// Judge `e` by the versions known here.
    #[inline]
    pub(crate) fn check(&self, e: &Entry) -> Validity {
        if e.meta.tags.is_empty() {
            return Validity::Current;
        }
        if self.uses_key_deps() {
            self.expire_key_deps();
        }
        let mut out = Validity::Current;
        let mut tags = None;
        for (name, v) in &e.meta.tags {
            if name == LOCAL_TAG {
                if *v != self.local_mark() {
                    return Validity::Gone;
                }
                continue;
            }
            if name == GENERATION_TAG {
                match self.generation() {
                    None => out = Validity::Unknown,
                    Some(g) if g != *v => return Validity::Gone,
                    Some(_) => {}
                }
                continue;
            }
            let t = tags.get_or_insert_with(|| self.tags.read().unwrap_or_else(|e| e.into_inner()));
            match t.get(name.as_str()) {
                None => out = Validity::Unknown,
                Some(cur) if cur != v => {
                    if out != Validity::Unknown {
                        out = Validity::TagStale;
                    }
                }
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Format, Meta};

    fn entry(tags: Vec<(String, u64)>) -> Entry {
        Entry {
            meta: Meta {
                format: Format::RAW,
                created_at_ms: 1,
                fresh_until_ms: 0,
                stale_until_ms: 0,
                load_us: 0,
                tags: tags.into(),
            },
            payload: bytes::Bytes::new(),
            memo: Default::default(),
        }
    }

    #[test]
    fn equality_not_order() {
        let v = Versions::default();
        let e = entry(vec![("a".into(), 5), (GENERATION_TAG.into(), 9)]);
        assert_eq!(v.check(&e), Validity::Unknown);
        v.set_tag("a", 5);
        v.set_generation(9);
        assert_eq!(v.check(&e), Validity::Current);
        v.set_tag("a", 3); // a *smaller* new version still invalidates
        assert_eq!(v.check(&e), Validity::TagStale);
        v.set_generation(2);
        assert_eq!(v.check(&e), Validity::Gone);
        v.reset();
        assert_eq!(v.check(&e), Validity::Unknown);
        assert_eq!(v.check(&entry(vec![])), Validity::Current);
        // What it knew is what it proposes again.
        assert_eq!(v.generation_candidate(), 2);
        v.reset(); // nothing known: the remembered one stays
        assert_eq!(v.generation_candidate(), 2);
    }

    #[test]
    fn a_version_read_while_its_name_was_forgotten_is_not_cached() {
        let v = Versions::default();
        let name = format!("{KEY_DEP_PREFIX}{{k}}");
        let stamp = v.forget_stamp(&name);
        v.forget(&name); // the key was written while its version was read
        assert_eq!(v.adopt(&name, 7, stamp), None);
        assert_eq!(v.tag(&name), None);
        let stamp = v.forget_stamp(&name);
        assert_eq!(v.adopt(&name, 8, stamp), Some(8));
        // A known version wins over a late reply.
        assert_eq!(v.adopt(&name, 9, stamp), Some(8));
        let stamp = v.forget_stamp("other");
        v.reset();
        assert_eq!(v.adopt("other", 1, stamp), None);
        // A clear drops the key dependencies only.
        v.set_tag(&name, 3);
        v.set_tag("t", 4);
        v.forget_key_deps();
        assert_eq!((v.tag(&name), v.tag("t")), (None, Some(4)));
    }

    #[test]
    fn versions_are_never_zero() {
        assert_ne!(new_version(), 0);
    }
}
