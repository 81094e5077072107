//! Dependencies tracked while a loader runs.
//!
//! A binding runs every loader with a [`Deps`] collector as its current
//! scope (Python: a `contextvars` variable, Node: `AsyncLocalStorage`).
//! Reads made inside it go through the tracked reads below, which record
//! in the collector what the value being built depends on:
//!
//! - every key read (found or not): its *key dependency*, a version kept
//!   in Redis beside the key's entry (`sc:<ns>:{<k>}:ver`, envelope tag
//!   name [`KEY_DEP_PREFIX`] + the key's slot name). It is resolved (read,
//!   or created) *before* the key is read, and every write of the key
//!   (`set`, `add`, `delete`, `incr`) deletes it in the same script that
//!   writes, so a write after the read always changes the version the
//!   dependent recorded. Loads filling a key (read-throughs) do not touch
//!   it: they store what the source says, they do not change it.
//! - every tag of every entry read, with the version the entry recorded:
//!   invalidating a tag of an input invalidates what was built from it,
//!   transitively (the built entry carries those tags in turn);
//! - tags named by the loader ([`Cache::track_tags`], `depends_on`), with
//!   their current versions.
//!
//! The settled entry records the union as tags of its envelope, so it is
//! judged like any tagged entry: current while every recorded version is.
//! A load whose inputs changed while it ran (a recorded version is no
//! longer current when it settles, or two reads saw two versions of one
//! dependency) is handed to its callers but not stored; so is one that
//! depends on more than [`MAX_DEPENDENCIES`] names (counted in
//! `deps_refused`). Dependencies on another Redis location or namespace
//! than the entry's are not recorded (their versions are not this
//! namespace's).

use std::sync::{Arc, Mutex};

use crate::cache::Cache;
use crate::envelope::{Entry, GENERATION_TAG, LOCAL_TAG};
use crate::error::Result;
use crate::key::{KEY_DEP_PREFIX, key_dep_name, validate_tag};
use crate::lookup::Lookup;
use crate::options::LookupPolicy;

/// Most names (tags and keys) one entry may depend on; past it the value is
/// served but not stored.
pub const MAX_DEPENDENCIES: usize = 256;

/// What one load's value depends on so far. Shared by everything the
/// loader runs (concurrent reads included); cheap to clone behind an
/// `Arc`.
#[derive(Debug, Default)]
pub struct Deps {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    items: Vec<(Arc<str>, String, u64)>,
    /// The value must not be stored: too many dependencies, or one
    /// dependency seen at two versions.
    spoiled: bool,
}

impl Inner {
    fn add(&mut self, scope: &Arc<str>, name: &str, v: u64) {
        if let Some((_, _, seen)) = self
            .items
            .iter()
            .find(|(s, n, _)| n == name && **s == **scope)
        {
            if *seen != v {
                self.spoiled = true;
            }
            return;
        }
        if self.items.len() >= MAX_DEPENDENCIES {
            self.spoiled = true;
            return;
        }
        self.items.push((scope.clone(), name.to_owned(), v));
    }
}

impl Deps {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many names are recorded.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add everything recorded here to `parent` (a nested load's
    /// dependencies are its caller's too).
    pub fn merge_into(&self, parent: &Deps) {
        if std::ptr::eq(self, parent) {
            return;
        }
        let (items, spoiled) = {
            let g = self.lock();
            (g.items.clone(), g.spoiled)
        };
        let mut p = parent.lock();
        for (s, n, v) in &items {
            p.add(s, n, *v);
        }
        p.spoiled |= spoiled;
    }

    #[cfg(test)]
    fn add(&self, scope: &Arc<str>, name: &str, v: u64) {
        self.lock().add(scope, name, v);
    }

    /// Record the tags `e` carries (its own and its inputs'), at the
    /// versions it recorded.
    pub(crate) fn record(&self, scope: &Arc<str>, e: &Entry) {
        if e.meta.tags.is_empty() {
            return;
        }
        let mut g = self.lock();
        for (n, v) in &e.meta.tags {
            if n != GENERATION_TAG && n != LOCAL_TAG {
                g.add(scope, n, *v);
            }
        }
    }

    /// Add this scope's dependencies to `tags` (an entry's stamped tags);
    /// true when the entry must not be stored (see the module docs).
    pub(crate) fn stamp_into(&self, scope: &Arc<str>, tags: &mut Vec<(String, u64)>) -> bool {
        let g = self.lock();
        let mut spoiled = g.spoiled;
        for (s, n, v) in &g.items {
            if **s != **scope {
                continue;
            }
            match tags.iter().find(|(t, _)| t == n) {
                Some((_, seen)) => spoiled |= seen != v,
                None => tags.push((n.clone(), *v)),
            }
        }
        // Envelope tag names are at most 255 bytes and key dependency
        // names are shorter; the count is bounded here.
        spoiled || tags.len() > MAX_DEPENDENCIES + 1
    }

    /// The tag names recorded (not key dependencies), every scope's.
    pub fn tag_names(&self) -> Vec<String> {
        let g = self.lock();
        let mut out: Vec<String> = Vec::new();
        for (_, n, _) in &g.items {
            if !is_key_dep(n) && !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Every dependency's name, tags and keys (`\0k:{<key>}`), every
    /// scope's: what a response built here is tagged with at the edge, a
    /// key's name purged when the key is written.
    pub fn names(&self) -> Vec<String> {
        let g = self.lock();
        let mut out: Vec<String> = Vec::new();
        for (_, n, _) in &g.items {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Whether this scope recorded any dependency.
    pub(crate) fn has_scope(&self, scope: &Arc<str>) -> bool {
        self.lock().items.iter().any(|(s, _, _)| **s == **scope)
    }
}

/// Whether an envelope tag name is a key dependency.
pub(crate) fn is_key_dep(name: &str) -> bool {
    name.starts_with(KEY_DEP_PREFIX)
}

impl Cache {
    /// Record in `deps` that the value being built reads `keys`: resolve
    /// each key's dependency version (from what this process knows, else
    /// read or created in Redis). Call it *before* reading the keys; the
    /// tracked reads below do.
    pub async fn track_keys(&self, deps: &Deps, keys: &[&str]) -> Result<()> {
        for k in keys {
            self.check(k)?;
        }
        if self.bypass {
            return Ok(());
        }
        let sh = &self.shared;
        let names: Vec<String> = keys.iter().map(|k| key_dep_name(k)).collect();
        let versions = crate::runtime::join_all(names.iter().map(|n| sh.tag_version(n))).await;
        let mut g = deps.lock();
        for (n, v) in names.iter().zip(versions) {
            g.add(&sh.scope, n, v);
        }
        Ok(())
    }

    /// Record in `deps` that the value being built depends on `tags`
    /// (`depends_on`): at their current versions.
    pub async fn track_tags(&self, deps: &Deps, tags: &[&str]) -> Result<()> {
        for t in tags {
            validate_tag(t)?;
        }
        if self.bypass {
            return Ok(());
        }
        let sh = &self.shared;
        let versions = crate::runtime::join_all(tags.iter().map(|t| sh.tag_version(t))).await;
        let mut g = deps.lock();
        for (t, v) in tags.iter().zip(versions) {
            g.add(&sh.scope, t, v);
        }
        Ok(())
    }

    /// Record the tags of an entry read outside the tracked reads (a
    /// binding's own read path).
    pub fn track_entry(&self, deps: &Deps, e: &Entry) {
        deps.record(&self.shared.scope, e);
    }

    /// [`Cache::get`] inside a load: the key and the tags of what was
    /// found become dependencies of the value being built.
    pub async fn get_tracked(&self, key: &str, deps: &Deps) -> Result<Option<Arc<Entry>>> {
        self.track_keys(deps, &[key]).await?;
        let found = self.get(key).await?;
        if let Some(e) = &found {
            deps.record(&self.shared.scope, e);
        }
        Ok(found)
    }

    /// [`Cache::get_many`] inside a load (see [`Cache::get_tracked`]).
    pub async fn get_many_tracked(
        &self,
        keys: &[&str],
        deps: &Deps,
    ) -> Result<Vec<Option<Arc<Entry>>>> {
        self.track_keys(deps, keys).await?;
        let found = self.get_many(keys).await?;
        for e in found.iter().flatten() {
            deps.record(&self.shared.scope, e);
        }
        Ok(found)
    }

    /// [`Cache::lookup`] inside a load: the key and the tags of the value
    /// answered become dependencies of the value being built; a
    /// [`Lookup::Lead`] lease hands its own load's dependencies and the
    /// settled value's tags to `deps` when it settles (give its load its
    /// own collector as `WriteOptions::deps`).
    pub async fn lookup_tracked(
        &self,
        key: &str,
        policy: &LookupPolicy,
        deps: &Arc<Deps>,
    ) -> Result<Lookup> {
        self.track_keys(deps, &[key]).await?;
        let found = self.lookup(key, policy).await?;
        Ok(match found {
            Lookup::Fresh(e, source) => {
                deps.record(&self.shared.scope, &e);
                Lookup::Fresh(e, source)
            }
            Lookup::Refresh(e, lease) => {
                deps.record(&self.shared.scope, &e);
                Lookup::Refresh(e, lease)
            }
            Lookup::Stale(e, lease) => {
                deps.record(&self.shared.scope, &e);
                Lookup::Stale(e, lease)
            }
            Lookup::Lead(lease) => Lookup::Lead(lease.feeding(deps.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_bounded_and_conflicts_spoil() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let d = Deps::new();
        d.add(&a, "t", 1);
        d.add(&a, "t", 1);
        d.add(&b, "t", 2); // another scope's "t" is another name
        assert_eq!(d.len(), 2);
        let mut tags = vec![("own".to_owned(), 5)];
        assert!(!d.stamp_into(&a, &mut tags));
        assert_eq!(tags, vec![("own".to_owned(), 5), ("t".to_owned(), 1)]);
        // The entry's own tag recorded at another version than an input's.
        let mut tags = vec![("t".to_owned(), 9)];
        assert!(d.stamp_into(&a, &mut tags));
        d.add(&a, "t", 3);
        assert!(d.stamp_into(&a, &mut Vec::new()));

        let big = Deps::new();
        for i in 0..MAX_DEPENDENCIES {
            big.add(&a, &format!("t{i}"), 1);
        }
        assert!(!big.stamp_into(&a, &mut Vec::new()));
        big.add(&a, "one-more", 1);
        assert!(big.stamp_into(&a, &mut Vec::new()));

        // Merging carries names and the spoiled mark.
        let parent = Deps::new();
        big.merge_into(&parent);
        assert_eq!(parent.len(), MAX_DEPENDENCIES);
        assert!(parent.stamp_into(&a, &mut Vec::new()));
    }
}
