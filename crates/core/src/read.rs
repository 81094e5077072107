//! Plain reads: `get`, `get_many`, `get_local`, `has_key`, and how a read
//! was served (`Source`, `Served`).

use std::sync::Arc;

use crate::cache::Cache;
use crate::clock::now_ms;
use crate::engine::{Judged, readable};
use crate::envelope::Entry;
use crate::envelope::LOCAL_TAG;
use crate::error::Result;
use crate::key::KEY_DEP_PREFIX;
use crate::key::RedisKeys;
use crate::metrics::Metrics;
use crate::versions::Validity;
use crate::watch::{Board, GLOBAL, Seen, Watched};

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

    /// The Redis half of a read, once the key is checked and the bus
    /// started (by `l1_first`), with the tier that answered (L1 when Redis
    /// is unreachable and L1's copy is served).
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

    /// [`Cache::get_local`], and how long its hit holds ([`crate::watch`]):
    /// [`Cache::get_local_seen`] and [`Cache::hold`] in one.
    pub fn get_local_watched(
        &self,
        key: &str,
        board: &Board,
    ) -> Result<Option<(Arc<Entry>, Option<Watched>)>> {
        Ok(self.get_local_seen(key, board)?.map(|(e, seen)| {
            let held = seen.and_then(|s| self.hold(s, &e));
            (e, held)
        }))
    }

    /// [`Cache::get_local`], and the words of `board` its hit was judged
    /// with (read before judging; `None` without L1), for [`Cache::hold`]
    /// if the binding keeps the answer.
    pub fn get_local_seen(
        &self,
        key: &str,
        board: &Board,
    ) -> Result<Option<(Arc<Entry>, Option<Seen>)>> {
        let Some(l1) = &self.shared.l1 else {
            return self.get_local(key).map(|e| e.map(|e| (e, None)));
        };
        // The words before the judgement (see crate::watch).
        let slot = 1 + l1.stripe_of(key);
        let seen = Seen {
            slot: slot as u32,
            global: board.word(GLOBAL),
            word: board.word(slot),
        };
        Ok(self.get_local(key)?.map(|e| (e, Some(seen))))
    }

    /// How long the hit `e`, judged with `seen`, holds ([`crate::watch`]):
    /// `None` for an entry whose hits must be judged each time (one that
    /// records a key dependency or is a local copy of a write Redis did
    /// not take: those go stale by the clock or by Redis's recovery, which
    /// no word follows). The board's global word moves once the hold's
    /// deadline has passed.
    pub fn hold(&self, seen: Seen, e: &Entry) -> Option<Watched> {
        if e.meta
            .tags
            .iter()
            .any(|(n, _)| n == LOCAL_TAG || n.starts_with(KEY_DEP_PREFIX))
        {
            return None;
        }
        let now = now_ms();
        let trusted = match &self.shared.bus {
            Some(bus) => now.saturating_add(bus.current_for_ms()),
            None => u64::MAX,
        };
        let fresh = match e.meta.fresh_until_ms {
            0 => u64::MAX,
            t => t,
        };
        let until_ms = trusted.min(fresh);
        if until_ms <= now {
            return None;
        }
        self.shared.versions.watchers().hold_until(until_ms);
        Some(Watched {
            slot: seen.slot,
            global: seen.global,
            word: seen.word,
            until_ms,
        })
    }

    /// A new watch board for [`Cache::get_local_watched`], moved with every
    /// change to what this cache's L1 answers ([`crate::watch`]).
    pub fn watch_board(&self) -> Arc<Board> {
        self.shared.versions.watchers().board()
    }

    /// Count `n` L1 hits a binding served itself ([`crate::watch`]).
    pub fn note_l1_hits(&self, n: u64) {
        Metrics::add(&self.shared.metrics.l1_hits, n);
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
                    l1.fill(key, e.clone(), epoch);
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
