//! Writes: `set`, `set_many`, `add`, `delete`, `touch`, `incr`, `clear`,
//! `invalidate_tags`. Each writes L2 first (fenced and published to the
//! fleet by one Lua script), then L1.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::Cache;
use crate::clock::now_ms;
use crate::engine::Wrote;
use crate::envelope::{Entry, Format};
use crate::error::{Error, Result};
use crate::key::{generation_key, namespace_pattern, tag_key, validate_tag};
use crate::l1::L1Incr;
use crate::l2::{IncrOutcome, Publish};
use crate::metrics::Metrics;
use crate::options::{Ttl, WriteOptions};
use crate::versions::new_version;

impl Cache {
    /// A write with caching off ([`Cache::bypassing`]): the value and tags
    /// are checked as a stored one would be, and nothing is stored.
    fn bypassed_write(&self, payload: Bytes, opts: &WriteOptions) -> Result<()> {
        for t in &opts.tags {
            crate::key::validate_tag(t)?;
        }
        self.shared.build_entry(payload, opts, Vec::new()).map(drop)
    }

    /// Store `payload` under `key` (L2, then L1). A zero TTL removes the key.
    pub async fn set(&self, key: &str, payload: Bytes, opts: &WriteOptions) -> Result<()> {
        self.check(key)?;
        if opts.ttl == Ttl::After(Duration::ZERO) {
            self.delete(key).await?;
            return Ok(());
        }
        if self.bypass {
            return self.bypassed_write(payload, opts);
        }
        let sh = &self.shared;
        let l2 = self.l2();
        let mark = sh.versions.local_mark();
        let (mut tags, unsure) = sh.stamp_for_write(&opts.tags).await?;
        let spoiled = opts
            .deps
            .as_ref()
            .is_some_and(|d| d.stamp_into(&sh.scope, &mut tags));
        let entry = Arc::new(sh.build_entry(payload, opts, tags)?);
        if opts.deps.as_ref().is_some_and(|d| d.has_scope(&sh.scope))
            && (spoiled || sh.validity(&entry).await != crate::versions::Validity::Current)
        {
            // Built from inputs that changed meanwhile, seen at two
            // versions, or too many: not stored (see `deps`).
            Metrics::inc(&sh.metrics.deps_refused);
            return Ok(());
        }
        if let (Some(l2), Some(bus)) = (l2, &sh.bus) {
            let r = match unsure {
                Some(e) => Err(e),
                None => {
                    let bytes = sh.codec.encode(&entry);
                    let msg = bus.keys_message(&[key]);
                    let publish = Publish {
                        channel: &bus.channel,
                        msg: &msg,
                    };
                    let tomb_px = sh.tombstone_ttl.as_millis() as u64;
                    l2.set(&sh.rkeys(key), &bytes, sh.px_for(&entry), tomb_px, &publish)
                        .await
                }
            };
            sh.after_l2_write(key, &entry, Wrote::of(&r), mark, None)
                .await;
            if r.map_err(|e| sh.l2_err(e))? {
                sh.purge_key(key);
            }
        } else {
            let depended = sh.depended_here(key);
            sh.after_l2_write(key, &entry, Wrote::Stored, 0, None).await;
            if depended {
                sh.purge_key(key);
            }
        }
        Metrics::inc(&sh.metrics.writes);
        Ok(())
    }

    /// Store several entries with the same options; L2 writes are issued
    /// concurrently on the multiplexed connection. Returns the keys that
    /// failed with their errors (empty when all succeeded). Input errors
    /// (bad key, oversized value) fail the whole call before any write.
    pub async fn set_many(
        &self,
        items: &[(&str, Bytes)],
        opts: &WriteOptions,
    ) -> Result<Vec<(String, Error)>> {
        for (k, _) in items {
            self.check(k)?;
        }
        if opts.ttl == Ttl::After(Duration::ZERO) {
            let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
            self.delete_many(&keys).await?;
            return Ok(Vec::new());
        }
        if self.bypass {
            for (_, payload) in items {
                self.bypassed_write(payload.clone(), opts)?;
            }
            return Ok(Vec::new());
        }
        let sh = &self.shared;
        let l2 = self.l2();
        let mark = sh.versions.local_mark();
        let (tags, unsure) = sh.stamp_for_write(&opts.tags).await?;
        let entries: Vec<Arc<Entry>> = items
            .iter()
            .map(|(_, p)| sh.build_entry(p.clone(), opts, tags.clone()).map(Arc::new))
            .collect::<Result<_>>()?;
        let mut failed = Vec::new();
        let mut ok = vec![true; items.len()];
        let mut wrote = vec![Wrote::Stored; items.len()];
        if let (Some(_), Some(_), Some(e)) = (l2, &sh.bus, &unsure) {
            // Nothing goes to Redis: every key failed as a write it could
            // not take.
            let e = sh.l2_err(e.clone());
            for (i, (k, _)) in items.iter().enumerate() {
                wrote[i] = Wrote::of(&Err::<(), _>(e.clone()));
                ok[i] = false;
                failed.push(((*k).to_owned(), e.clone()));
            }
        } else if let (Some(l2), Some(bus)) = (l2, &sh.bus) {
            let batch: Vec<_> = items
                .iter()
                .zip(&entries)
                .map(|((k, _), e)| {
                    (
                        sh.rkeys(k),
                        sh.codec.encode(e),
                        sh.px_for(e),
                        bus.keys_message(&[k]),
                    )
                })
                .collect();
            let tomb_px = sh.tombstone_ttl.as_millis() as u64;
            for (i, r) in l2
                .set_many(&batch, tomb_px, &bus.channel)
                .await
                .into_iter()
                .enumerate()
            {
                wrote[i] = Wrote::of(&r);
                match r {
                    Ok(true) => sh.purge_key(items[i].0),
                    Ok(false) => {}
                    Err(e) => {
                        ok[i] = false;
                        failed.push((items[i].0.to_owned(), sh.l2_err(e)));
                    }
                }
            }
        }
        for (i, ((k, _), e)) in items.iter().zip(entries).enumerate() {
            if ok[i] {
                Metrics::inc(&sh.metrics.writes);
            }
            // Without Redis, this process's versions say who depended on it.
            let depended = sh.bus.is_none() && sh.depended_here(k);
            sh.after_l2_write(k, &e, wrote[i], mark, None).await;
            if depended {
                sh.purge_key(k);
            }
        }
        Ok(failed)
    }

    /// [`Cache::set_many`] for items each in its own format (`opts.format`
    /// is ignored): one `set_many` per format present. Returns the keys
    /// that failed with their errors.
    pub async fn set_many_formats(
        &self,
        items: &[(&str, Bytes, Format)],
        opts: &WriteOptions,
    ) -> Result<Vec<(String, Error)>> {
        let mut formats: Vec<Format> = Vec::new();
        for (_, _, f) in items {
            if !formats.contains(f) {
                formats.push(*f);
            }
        }
        let mut failed = Vec::new();
        for f in formats {
            let group: Vec<(&str, Bytes)> = items
                .iter()
                .filter(|(_, _, g)| *g == f)
                .map(|(k, d, _)| (*k, d.clone()))
                .collect();
            let o = WriteOptions {
                format: f,
                ..opts.clone()
            };
            failed.extend(self.set_many(&group, &o).await?);
        }
        Ok(failed)
    }

    /// Store only if `key` holds no live value; true when stored.
    pub async fn add(&self, key: &str, payload: Bytes, opts: &WriteOptions) -> Result<bool> {
        self.check(key)?;
        if self.bypass {
            return self.bypassed_write(payload, opts).map(|()| true);
        }
        let sh = &self.shared;
        let l2 = self.l2();
        let (tags, unsure) = sh.stamp_for_write(&opts.tags).await?;
        if let Some(e) = unsure {
            // Redis may have come back without the generation known here:
            // an entry stored with it would be read by nobody.
            return Err(sh.l2_err(e));
        }
        let entry = Arc::new(sh.build_entry(payload, opts, tags)?);
        if entry.meta.stale_until_ms != 0 && !entry.meta.is_live(now_ms()) {
            return Ok(false);
        }
        let stored = if let (Some(l2), Some(bus)) = (l2, &sh.bus) {
            let bytes = sh.codec.encode(&entry);
            let msg = bus.keys_message(&[key]);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let (stored, depended) = l2
                .set_nx(&sh.rkeys(key), &bytes, sh.px_for(&entry), &publish)
                .await
                .map_err(|e| sh.l2_err(e))?;
            if stored {
                sh.after_l2_write(key, &entry, Wrote::Stored, 0, None).await;
            }
            if depended {
                sh.purge_key(key);
            }
            stored
        } else {
            let stored = match &sh.l1 {
                Some(l1) => l1.add(key, entry),
                None => false,
            };
            if stored {
                if sh.depended_here(key) {
                    sh.purge_key(key);
                }
                sh.forget_key_dep(key);
            }
            stored
        };
        if stored {
            Metrics::inc(&sh.metrics.writes);
        }
        Ok(stored)
    }

    /// Remove `key` everywhere; true when it existed. In Redis a short-lived
    /// tombstone fences loads that began before the delete.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.check(key)?;
        let sh = &self.shared;
        Metrics::inc(&sh.metrics.deletes);
        let l2_result = match (self.l2(), &sh.bus) {
            (Some(l2), Some(bus)) => {
                let msg = bus.keys_message(&[key]);
                let publish = Publish {
                    channel: &bus.channel,
                    msg: &msg,
                };
                Some(
                    l2.delete(
                        &sh.rkeys(key),
                        sh.tombstone_ttl.as_millis() as u64,
                        &publish,
                    )
                    .await
                    .map_err(|e| sh.l2_err(e)),
                )
            }
            _ => None,
        };
        let in_l1 = match &sh.l1 {
            Some(l1) => l1.remove(key),
            None => false,
        };
        let depended = match &l2_result {
            Some(r) => matches!(r, Ok((_, true))),
            None => sh.depended_here(key),
        };
        sh.forget_key_dep(key);
        if depended {
            sh.purge_key(key);
        }
        match l2_result {
            Some(r) => r.map(|(existed, _)| existed),
            None => Ok(in_l1),
        }
    }

    /// Remove several keys; returns how many existed.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        for k in keys {
            self.check(k)?;
        }
        let results = crate::runtime::join_all(keys.iter().map(|k| self.delete(k))).await;
        let mut n = 0;
        for r in results {
            n += u64::from(r?);
        }
        Ok(n)
    }

    /// Give a live `key` a new TTL from now (keeping its grace length);
    /// false when there is no live value.
    pub async fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        self.check(key)?;
        if self.bypass {
            return Ok(false);
        }
        let sh = &self.shared;
        let retime = |e: &Entry| -> Entry {
            let grace = if e.meta.fresh_until_ms != 0 && e.meta.stale_until_ms != 0 {
                Duration::from_millis(e.meta.stale_until_ms.saturating_sub(e.meta.fresh_until_ms))
            } else {
                Duration::ZERO
            };
            let opts = WriteOptions {
                ttl,
                grace,
                format: e.meta.format,
                load_duration: Some(Duration::from_micros(u64::from(e.meta.load_us))),
                ..Default::default()
            };
            // build_entry only fails on size/format, which `e` already passed.
            let mut fresh = sh
                .build_entry(e.payload.clone(), &opts, e.meta.tags.to_vec())
                .unwrap_or_else(|_| e.clone());
            fresh.meta.created_at_ms = e.meta.created_at_ms;
            fresh
        };
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            return Ok(match &sh.l1 {
                Some(l1) => l1.update(key, retime),
                None => false,
            });
        };
        let rk = sh.rkeys(key);
        // Compare-and-set so a concurrent write is never overwritten with
        // the older value; a few rounds settle any realistic contention.
        for _ in 0..4 {
            let Some(old) = l2.get(&rk).await.map_err(|e| sh.l2_err(e))? else {
                return Ok(false);
            };
            let Some(entry) = sh.decode(&old) else {
                return Ok(false);
            };
            if entry.meta.format == Format::INT {
                let px = match ttl {
                    Ttl::Never => None,
                    Ttl::Default => sh.default_ttl.map(|d| d.as_millis() as u64),
                    Ttl::After(d) => Some(d.as_millis() as u64),
                };
                return l2.expire(&rk, px).await.map_err(|e| sh.l2_err(e));
            }
            let new = Arc::new(retime(&entry));
            let bytes = sh.codec.encode(&new);
            if l2
                .compare_and_set(
                    &rk,
                    &old,
                    &bytes,
                    sh.px_for(&new),
                    &Publish {
                        channel: &bus.channel,
                        msg: &bus.keys_message(&[key]),
                    },
                )
                .await
                .map_err(|e| sh.l2_err(e))?
            {
                if let Some(l1) = &sh.l1 {
                    l1.put(key, new);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Add `delta` to the integer at `key` atomically (across processes
    /// with Redis) and return the new value. The TTL is kept.
    ///
    /// Errors: [`Error::NotFound`] when the key is missing,
    /// [`Error::NotAnInteger`] when it holds something else or the result
    /// overflows `i64`.
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.check(key)?;
        let sh = &self.shared;
        if let (Some(l2), Some(bus)) = (&sh.l2, &sh.bus) {
            let msg = bus.keys_message(&[key]);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let r = l2
                .incr(&sh.rkeys(key), delta, &publish)
                .await
                .map_err(|e| sh.l2_err(e))?;
            sh.forget_key_dep(key);
            if let Some(l1) = &sh.l1 {
                l1.remove(key);
            }
            return match r {
                IncrOutcome::Value(n, depended) => {
                    if depended {
                        sh.purge_key(key);
                    }
                    Ok(n)
                }
                IncrOutcome::Missing => Err(Error::NotFound),
                IncrOutcome::NotInteger => Err(Error::NotAnInteger),
            };
        }
        let r = match &sh.l1 {
            Some(l1) => match l1.incr(key, delta) {
                L1Incr::Value(n) => Ok(n),
                L1Incr::Missing => Err(Error::NotFound),
                L1Incr::NotInteger => Err(Error::NotAnInteger),
            },
            None => Err(Error::NotFound),
        };
        if r.is_ok() && sh.depended_here(key) {
            sh.purge_key(key);
        }
        sh.forget_key_dep(key);
        r
    }

    /// Subtract `delta`; see [`Cache::incr`].
    pub async fn decr(&self, key: &str, delta: i64) -> Result<i64> {
        let neg = delta.checked_neg().ok_or(Error::NotAnInteger)?;
        self.incr(key, neg).await
    }

    /// Remove every entry of this namespace (L1, and in Redis by `SCAN` of
    /// this namespace's keys only: never `FLUSHDB`).
    pub async fn clear(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let sh = &self.shared;
        let r = match (self.l2(), &sh.bus) {
            (Some(l2), Some(bus)) => {
                // A new generation first: from this moment every entry of
                // the namespace is gone for every instance (the bus tells
                // them; an instance that missed it re-reads the generation
                // after its reconnect). Then the scan frees the memory.
                let g = new_version();
                let msg = bus.generation_message(g);
                let publish = Publish {
                    channel: &bus.channel,
                    msg: &msg,
                };
                match l2
                    .bump_version(&generation_key(&sh.namespace), g, &publish)
                    .await
                {
                    Ok(()) => {
                        sh.versions.set_generation(g);
                        sh.versions.forget_key_deps();
                        l2.clear(&sh.namespace, &namespace_pattern(&sh.namespace))
                            .await
                            .map(|_| ())
                            .map_err(|e| sh.l2_err(e))
                    }
                    Err(e) => Err(sh.l2_err(e)),
                }
            }
            _ => Ok(()),
        };
        if let Some(l1) = &sh.l1 {
            l1.clear();
        }
        r
    }

    /// Invalidate every entry carrying any of `tags`, in every instance:
    /// one `SET` per tag in Redis (a new random version, announced on the
    /// bus), no matter how many entries carry it. Those entries become
    /// stale: servable as stale values within their grace (by callers that
    /// accept stale values, or as a fail-safe fallback), otherwise reloaded.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        for t in tags {
            validate_tag(t)?;
        }
        let sh = &self.shared;
        Metrics::add(&sh.metrics.tag_invalidations, tags.len() as u64);
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            for t in tags {
                sh.versions.set_tag(t, new_version());
            }
            if let Some(p) = &sh.purger {
                p.enqueue(tags);
            }
            return Ok(());
        };
        let bumps = tags.iter().map(|t| async move {
            let v = new_version();
            let msg = bus.tags_message(&[(t, v)]);
            let publish = Publish {
                channel: &bus.channel,
                msg: &msg,
            };
            let r = l2
                .bump_version(&tag_key(&sh.namespace, t), v, &publish)
                .await;
            // Locally at once, whatever Redis said: never serve what the
            // caller just invalidated.
            sh.versions.set_tag(t, v);
            r
        });
        let results = crate::runtime::join_all(bumps).await;
        if let Some(p) = &sh.purger {
            // The edges are purged of what the fleet now knows is invalid:
            // a tag Redis did not take could still be served by another
            // process, and an edge asking it again would keep the old
            // response. The caller, told of the error, invalidates again.
            let done: Vec<&str> = tags
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| *t)
                .collect();
            p.enqueue(&done);
        }
        for r in results {
            r.map_err(|e| sh.l2_err(e))?;
        }
        Ok(())
    }
}
