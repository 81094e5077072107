//! Plain reads: `get`, `get_many`, `get_local`, `has_key`, and the split
//! read a binding with a Redis connection of its own drives
//! (`start_read` / `finish_read`).

use std::sync::Arc;

use crate::cache::Cache;
use crate::clock::now_ms;
use crate::engine::{Judged, readable};
use crate::envelope::Entry;
use crate::error::Result;
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::versions::Validity;

/// What the caller of [`Cache::lookup_after`] did before it: a binding
/// that reads Redis over a connection of its own (see
/// [`Cache::start_read`]) tries a read-through lookup's Redis read itself
/// first, and calls the lookup only when that read found nothing fresh.
#[derive(Debug)]
pub enum Prior {
    /// It began with [`Cache::start_read`] (its L1 miss is counted) and
    /// another caller's read of the key, which it joined, found nothing
    /// fresh. The lookup goes as usual, without counting the L1 miss again.
    Joined,
    /// It began with [`Cache::start_read`], sent the `GET` itself and
    /// [`Cache::finish_read`] (which counted it) found nothing fresh in
    /// `bytes`. If this caller leads the key's flight, these bytes stand for
    /// the flight's Redis read: not read again, not counted again.
    Read {
        /// Redis's reply to the `GET`.
        bytes: Option<Vec<u8>>,
        /// The epoch `start_read` gave.
        epoch: u64,
    },
}

/// Where a read's answer came from: the tier that held it, or another
/// caller's load that this caller waited for. Bindings put it on their
/// traces ([`Source::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This process's L1 (also when Redis is unreachable and L1's copy is
    /// served through the outage).
    L1,
    /// Redis.
    L2,
    /// Another caller's read or load of the key, which this caller waited
    /// for: this process's flight (whatever its leader found: Redis's
    /// value or its load) or, through the fleet lease, another process's
    /// load. Only read-throughs wait ([`crate::Lookup::Fresh`]).
    Waited,
}

impl Source {
    /// `"l1"`, `"l2"` or `"waited"`: the label traces carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::L2 => "l2",
            Source::Waited => "waited",
        }
    }
}

/// How a read or read-through was served, in the vocabulary traces use
/// (the bindings' spans and channel events): an outcome (`"hit"`,
/// `"waited"`, `"stale"`, `"loaded"`) and, for a hit, its tier (`"l1"`,
/// `"l2"`). `code` / `from_code` carry it across a binding compactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// A hit in this process's L1.
    L1,
    /// A hit in Redis.
    L2,
    /// Another caller's read or load, waited for ([`Source::Waited`]).
    Waited,
    /// A stale value (stale-while-revalidate or fail-safe).
    Stale,
    /// This caller leads the load: it runs the loader (a binding says
    /// [`Served::Stale`] instead when the load failed or ran late and a
    /// stale value answered).
    Loaded,
}

impl Served {
    const ALL: [Served; 5] = [
        Served::L1,
        Served::L2,
        Served::Waited,
        Served::Stale,
        Served::Loaded,
    ];

    /// `"hit"`, `"waited"`, `"stale"` or `"loaded"`.
    pub fn outcome(self) -> &'static str {
        match self {
            Served::L1 | Served::L2 => "hit",
            Served::Waited => "waited",
            Served::Stale => "stale",
            Served::Loaded => "loaded",
        }
    }

    /// The tier of a hit (`"l1"`, `"l2"`), else `None`.
    pub fn tier(self) -> Option<&'static str> {
        match self {
            Served::L1 => Some("l1"),
            Served::L2 => Some("l2"),
            _ => None,
        }
    }

    /// A small number standing for it (1..=5; 0 is never one).
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|s| *s == self)
            .map_or(0, |i| i as u8 + 1)
    }

    /// The `Served` of a [`Served::code`], or `None`.
    pub fn from_code(code: u8) -> Option<Served> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl From<Source> for Served {
    fn from(s: Source) -> Served {
        match s {
            Source::L1 => Served::L1,
            Source::L2 => Served::L2,
            Source::Waited => Served::Waited,
        }
    }
}

/// Where a read stands before Redis is asked ([`Cache::start_read`]).
#[derive(Debug)]
pub enum ReadStart {
    /// Answered without Redis: L1's fresh value, or a miss when no Redis
    /// is configured.
    Done(Option<Arc<Entry>>),
    /// `GET redis_key`, then [`Cache::finish_read`] with the reply and `epoch`.
    Fetch {
        /// The Redis key holding the entry.
        redis_key: String,
        /// L1's epoch for the key, fencing the fill.
        epoch: u64,
    },
}
impl Cache {
    /// The fresh value of `key`, or `None`.
    #[inline]
    pub async fn get(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        Ok(self.get_sourced(key).await?.map(|(e, _)| e))
    }

    /// [`Cache::get`], with the tier that answered ([`Source::L1`] or
    /// [`Source::L2`]).
    #[inline]
    pub async fn get_sourced(&self, key: &str) -> Result<Option<(Arc<Entry>, Source)>> {
        match self.l1_first(key).await? {
            Ok(r) => Ok(r.map(|e| (e, Source::L1))),
            Err(epoch) => self.read_l2(key, epoch).await,
        }
    }

    /// L1's answer to a read (`Ok`), or the epoch to fence the L2 read's
    /// fill with (`Err`).
    #[inline]
    pub(crate) async fn l1_first(
        &self,
        key: &str,
    ) -> Result<std::result::Result<Option<Arc<Entry>>, u64>> {
        self.check(key)?;
        if self.bypass {
            return Ok(Ok(None));
        }
        let sh = &self.shared;
        if sh.l1.is_some() {
            if let Judged::Fresh(e) = sh.l1_judged(key, self.accepted).await {
                Metrics::inc(&sh.metrics.l1_hits);
                return Ok(Ok(Some(e)));
            }
            Metrics::inc(&sh.metrics.l1_misses);
        }
        if self.l2().is_none() {
            return Ok(Ok(None));
        }
        Ok(Err(sh.l1.as_ref().map_or(0, |l1| l1.epoch(key))))
    }

    /// The Redis half of [`Cache::get`], after [`Cache::start_read`]
    /// answered `Fetch` with `epoch`: what a binding whose own connection
    /// failed falls back to (with the breaker, outage fallback and errors
    /// of `get`, and without counting the L1 miss again).
    /// The tier that answered comes with the value: L1 when Redis is
    /// unreachable and L1's copy is served through the outage.
    pub async fn fetch(&self, key: &str, epoch: u64) -> Result<Option<(Arc<Entry>, Source)>> {
        self.check(key)?;
        if self.bypass || self.l2().is_none() {
            return Ok(None);
        }
        self.read_l2(key, epoch).await
    }

    /// `fetch` once the key is checked and the bus started (by
    /// `l1_first`, or by `fetch` itself), with the tier that answered (L1
    /// when Redis is unreachable and L1's copy is served).
    pub(crate) async fn read_l2(
        &self,
        key: &str,
        epoch: u64,
    ) -> Result<Option<(Arc<Entry>, Source)>> {
        let sh = &self.shared;
        let Some(l2) = sh.l2.as_ref() else {
            return Ok(None);
        };
        let bytes = match l2.get(&sh.rkeys(key)).await {
            Ok(b) => b,
            Err(e) => {
                if crate::l2::unreachable(&e)
                    && let Judged::Fresh(local) = sh.l1_fallback(key, self.accepted).await
                {
                    Metrics::inc(&sh.metrics.l2_errors);
                    return Ok(Some((local, Source::L1)));
                }
                return Err(sh.l2_err(e));
            }
        };
        Ok(self
            .accept_l2(key, bytes, epoch)
            .await
            .map(|e| (e, Source::L2)))
    }

    /// The first half of [`Cache::get`], for a binding that reads Redis
    /// over a connection of its own (the Node package does, to receive the
    /// reply on the JS thread): L1 is consulted and counted as `get` does,
    /// and on a miss the caller is told which Redis key to `GET` and the L1
    /// epoch to hand to [`Cache::finish_read`] with the reply, which fences
    /// the L1 fill against a write or invalidation that lands meanwhile.
    /// Errors, timeouts and an open breaker are not the caller's to judge:
    /// when its own GET fails it calls [`Cache::fetch`] with the epoch, and
    /// while [`Cache::l2_ready`] is false it leaves reads to [`Cache::get`].
    pub async fn start_read(&self, key: &str) -> Result<ReadStart> {
        Ok(match self.l1_first(key).await? {
            Ok(r) => ReadStart::Done(r),
            Err(epoch) => ReadStart::Fetch {
                redis_key: self.shared.rkeys(key).value,
                epoch,
            },
        })
    }

    /// [`Cache::start_read`] for several keys (the first half of
    /// [`Cache::get_many`]): every key is checked before anything is
    /// counted; the caller sends one `MGET` of the `Fetch` keys and
    /// finishes each with [`Cache::finish_read`] (or [`Cache::fetch`]).
    pub async fn start_read_many(&self, keys: &[&str]) -> Result<Vec<ReadStart>> {
        for k in keys {
            self.check(k)?;
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.start_read(k).await?);
        }
        Ok(out)
    }

    /// The second half of a read begun with [`Cache::start_read`]: `bytes`
    /// is Redis's reply to the `GET`. Decoded, verified and judged exactly
    /// as [`Cache::get`] does (garbage is a counted miss), and kept in L1
    /// unless the key was written or invalidated since `epoch`.
    pub async fn finish_read(
        &self,
        key: &str,
        bytes: Option<Vec<u8>>,
        epoch: u64,
    ) -> Option<Arc<Entry>> {
        if self.bypass {
            return None;
        }
        self.accept_l2(key, bytes, epoch).await
    }

    /// Count `n` callers that shared another caller's `start_read` /
    /// `finish_read` of a key instead of reading it themselves (a
    /// binding's own coalescing of read-throughs): they are coalesced
    /// waits, as callers waiting on a lookup's flight are.
    pub fn count_joined_reads(&self, n: u64) {
        Metrics::add(&self.shared.metrics.coalesced_waits, n);
    }

    /// Whether Redis is configured and the circuit breaker lets calls
    /// through: when false, a binding with its own read connection should
    /// leave reads to [`Cache::get`], which knows how to fail fast and
    /// when to serve L1 through an outage.
    pub fn l2_ready(&self) -> bool {
        self.shared
            .l2
            .as_ref()
            .is_some_and(|l2| !l2.breaker_open() && !l2.in_outage())
    }

    /// A binding's own Redis read connection stalled (no reply for
    /// `op_timeout` with reads pending): counted as an L2 error and the
    /// circuit breaker opens, so falling back to the core's reads does not
    /// wait a second timeout.
    pub fn read_stalled(&self) {
        if let Some(l2) = &self.shared.l2 {
            Metrics::inc(&self.shared.metrics.l2_errors);
            l2.stalled();
        }
    }

    /// L1 only: the fresh L1 value of `key`, or `None` (which does not
    /// mean a miss when Redis is configured: call [`Cache::get`] then).
    /// Never waits on anything (it is not `async`), so a binding calls it
    /// on its own thread for the hit path and goes asynchronous only when
    /// it returns `None`.
    pub fn get_local(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        self.check(key)?;
        let sh = &self.shared;
        let now = now_ms();
        if let Some(l1) = &sh.l1
            && !self.bypass
            && sh.l1_trusted()
            && let Some(e) = l1.get(key, now)
            && e.meta.is_fresh(now)
            && readable(self.accepted, &e)
            && sh.versions.check(&e) == Validity::Current
        {
            Metrics::inc(&sh.metrics.l1_hits);
            return Ok(Some(e));
        }
        Ok(None)
    }

    /// Decode an L2 read, fill L1, and return it if fresh.
    pub(crate) async fn accept_l2(
        &self,
        key: &str,
        bytes: Option<Vec<u8>>,
        epoch: u64,
    ) -> Option<Arc<Entry>> {
        let sh = &self.shared;
        match sh.fresh(bytes, self.accepted).await {
            Some(e) => {
                Metrics::inc(&sh.metrics.l2_hits);
                if let Some(l1) = &sh.l1
                    && sh.l1_may_hold(&e)
                {
                    l1.fill(&Arc::from(key), e.clone(), epoch);
                }
                Some(e)
            }
            None => {
                Metrics::inc(&sh.metrics.l2_misses);
                None
            }
        }
    }

    /// Fresh values of several keys, in the order given (`None` for misses).
    /// L1 first, then one `MGET` for the rest.
    pub async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Arc<Entry>>>> {
        for k in keys {
            self.check(k)?;
        }
        let sh = &self.shared;
        let mut out: Vec<Option<Arc<Entry>>> = vec![None; keys.len()];
        if self.bypass {
            return Ok(out);
        }
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if sh.l1.is_some() {
                if let Judged::Fresh(e) = sh.l1_judged(k, self.accepted).await {
                    Metrics::inc(&sh.metrics.l1_hits);
                    out[i] = Some(e);
                    continue;
                }
                Metrics::inc(&sh.metrics.l1_misses);
            }
            missing.push(i);
        }
        let Some(l2) = self.l2() else { return Ok(out) };
        if missing.is_empty() {
            return Ok(out);
        }
        let epochs: Vec<u64> = missing
            .iter()
            .map(|&i| sh.l1.as_ref().map_or(0, |l1| l1.epoch(keys[i])))
            .collect();
        let rks: Vec<RedisKeys> = missing.iter().map(|&i| sh.rkeys(keys[i])).collect();
        let found = match l2.mget(&rks).await {
            Ok(f) => f,
            Err(e) => {
                // Redis away and L1 skipped (bus down): L1 is what is left;
                // the call succeeds only if it answers every key.
                let e = sh.l2_err(e);
                if !crate::l2::unreachable(&e) || sh.l1_trusted() {
                    return Err(e);
                }
                for &i in &missing {
                    match sh.l1_fallback(keys[i], self.accepted).await {
                        Judged::Fresh(local) => out[i] = Some(local),
                        _ => return Err(e),
                    }
                }
                return Ok(out);
            }
        };
        for ((&i, bytes), epoch) in missing.iter().zip(found).zip(epochs) {
            out[i] = self.accept_l2(keys[i], bytes, epoch).await;
        }
        Ok(out)
    }

    /// Whether `key` has a fresh value.
    pub async fn has_key(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }
}
