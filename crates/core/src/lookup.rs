//! The read-through state machine: [`Cache::lookup`] answers a fresh or
//! stale value or a [`Lease`] to load, joining this process's flight and
//! the fleet's lease; early refresh; warm-up leases (`try_leases`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::Cache;
use crate::clock::now_ms;
use crate::engine::Judged;
use crate::envelope::Entry;
use crate::error::{Error, Result};
use crate::flight::{self, FlightState, Joined, StaleKind};
use crate::key::{RedisKeys, validate_tag};
use crate::l2::Acquire;
use crate::lease::{self, FleetLease, Lease, LoadOutcome, Terms};
use crate::metrics::Metrics;
use crate::options::{LookupPolicy, OnWaitTimeout, WriteOptions};
use crate::read::{Served, Source};

/// What a read-through lookup tells the caller to do.
#[derive(Debug)]
pub enum Lookup {
    /// Serve this value, which came from `Source`.
    Fresh(Arc<Entry>, Source),
    /// Serve this fresh value (an L1 hit) and refresh it in the background
    /// with the lease: it is due for an early refresh and this caller is
    /// the one to run it (run the loader, then [`Lease::complete`]).
    Refresh(Arc<Entry>, Lease),
    /// Serve this stale value. With a lease, refresh it in the background
    /// (run the loader, then [`Lease::complete`]); without one, someone
    /// else already is.
    Stale(Arc<Entry>, Option<Lease>),
    /// You are the one loader for this key: run the loader, then
    /// [`Lease::complete`] or [`Lease::abandon`].
    Lead(Lease),
}
impl Lookup {
    /// How this answer serves the caller, for traces: a fresh value's
    /// source, an early refresh's L1 hit, a stale value, or a lead.
    pub fn served(&self) -> Served {
        match self {
            Lookup::Fresh(_, s) => Served::from(*s),
            Lookup::Refresh(..) => Served::L1,
            Lookup::Stale(..) => Served::Stale,
            Lookup::Lead(_) => Served::Loaded,
        }
    }
}

/// What [`Cache::lookup_many`] found for one key.
#[derive(Debug)]
#[non_exhaustive]
// A lease inline, as in `Lookup`: these live a moment in one Vec; boxing
// would cost an allocation per key led.
#[allow(clippy::large_enum_variant)]
pub enum ManyLookup {
    /// A fresh value.
    Fresh(Arc<Entry>),
    /// Nobody is loading it: load it and complete (or settle) the lease.
    Lead(Lease),
    /// Being loaded elsewhere now: read it with [`Cache::lookup`] once
    /// this caller's leases are completed.
    Busy,
}

impl Cache {
    /// Read-through lookup: the core of `get_or_set`.
    ///
    /// Concurrent lookups of one key in one process yield exactly one
    /// [`Lookup::Lead`] (or one `Stale` with a lease); the others wait inside
    /// this call, without polling, and receive the completed value, or the
    /// error the leader abandoned with. With Redis, the leader of this
    /// process takes the key's fleet lease first: if another process holds
    /// it, the leader waits for that process's fill (woken by the bus) and
    /// takes over if the holder goes away. A leader that goes away before it
    /// holds a lease hands leadership to a waiter; a dropped lease releases
    /// the waiters with [`Error::LeaseDropped`].
    ///
    /// Waiting on another process's lease and waiting on this process's load
    /// are each bounded by the wait timeout (then [`OnWaitTimeout`]
    /// applies); the policy's hard timeout bounds the whole call.
    ///
    /// Redis trouble during a lookup is counted and treated as a miss: the
    /// caller loads, which is what a read-through cache is for.
    pub async fn lookup(&self, key: &str, policy: &LookupPolicy) -> Result<Lookup> {
        self.check(key)?;
        for t in &policy.tags {
            validate_tag(t)?;
        }
        let sh = &self.shared;
        if self.bypass {
            return Ok(Lookup::Lead(Lease::bypassed(sh, key, policy)));
        }
        let start = tokio::time::Instant::now();
        'outer: loop {
            let mut stale = None;
            if sh.l1.is_some() {
                match sh.l1_judged(key, self.accepted).await {
                    Judged::Fresh(e) => {
                        Metrics::inc(&sh.metrics.l1_hits);
                        // Due for an early refresh: one caller (whoever
                        // finds no load in progress) tries to refresh in the
                        // background; everyone is served the value.
                        if policy.due(&e.meta, now_ms())
                            && let Some(guard) = flight::try_lead(&sh.flights, key)
                        {
                            return Ok(self.refresh_early(guard, e, policy).await);
                        }
                        return Ok(Lookup::Fresh(e, Source::L1));
                    }
                    Judged::Stale(e) if policy.keeps_stale() => stale = Some(e),
                    _ => {}
                }
                Metrics::inc(&sh.metrics.l1_misses);
            }
            let mut rx = match flight::join(&sh.flights, key) {
                Joined::Leader(guard) => return self.lead(guard, stale, policy, start).await,
                Joined::Waiter(rx) => rx,
            };
            if policy.allow_stale
                && let Some(s) = stale
            {
                Metrics::inc(&sh.metrics.stale_served);
                return Ok(Lookup::Stale(s, None));
            }
            Metrics::inc(&sh.metrics.coalesced_waits);
            let wait = policy.wait_timeout.unwrap_or(self.wait_timeout);
            let hard = policy.hard_timeout.map(|h| start + h);
            let mut deadline = start + wait;
            let mut loading_seen = false;
            let mut redis_read = false;
            let mut closed = false;
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    FlightState::Pending => {}
                    FlightState::Refreshing if !redis_read => {
                        redis_read = true;
                        if let Some(e) = self.read_beside_refresh(key).await {
                            return Ok(Lookup::Fresh(e, Source::L2));
                        }
                        continue;
                    }
                    FlightState::Loading | FlightState::Refreshing => {
                        if !loading_seen {
                            // The wait for the fleet is over; the load
                            // itself gets a wait budget of its own.
                            loading_seen = true;
                            Metrics::inc(&sh.metrics.load_waits);
                            deadline = tokio::time::Instant::now() + wait;
                        }
                    }
                    FlightState::Stale(e, kind) => {
                        if policy.allow_stale || (kind == StaleKind::FailSafe && policy.fail_safe) {
                            Metrics::inc(&sh.metrics.stale_served);
                            if kind == StaleKind::FailSafe {
                                Metrics::inc(&sh.metrics.fail_safe_served);
                            }
                            return Ok(Lookup::Stale(e, None));
                        }
                    }
                    FlightState::Value(e) => return Ok(Lookup::Fresh(e, Source::Waited)),
                    FlightState::Failed(e) => return Err(e),
                    FlightState::Retry => continue 'outer,
                }
                if closed {
                    // The flight is gone without an answer for us.
                    continue 'outer;
                }
                let until = hard.map_or(deadline, |h| h.min(deadline));
                tokio::select! {
                    r = rx.changed() => closed = r.is_err(),
                    _ = tokio::time::sleep_until(until) => {
                        return self.waited_too_long(key, stale, policy, hard).await;
                    }
                }
            }
        }
    }

    /// Redis's fresh value of `key`, for a caller that found the key's
    /// flight refreshing early: the entry that was being refreshed left L1
    /// meanwhile, and waiting for the refresh would make every such caller
    /// wait for a load while a newer value is in Redis. `None`: nothing
    /// fresh there (or Redis failed): wait for the refresh.
    pub(crate) async fn read_beside_refresh(&self, key: &str) -> Option<Arc<Entry>> {
        let sh = &self.shared;
        let l2 = self.l2()?;
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
        match l2.get(&sh.rkeys(key)).await {
            Ok(bytes) => self.accept_l2(key, bytes, epoch).await,
            Err(e) => {
                sh.l2_err(e);
                None
            }
        }
    }

    /// A wait for someone else's load ran out of time: the hard timeout
    /// (fail-safe stale value or [`Error::LoaderTimeout`]) or the wait
    /// timeout ([`OnWaitTimeout`]).
    pub(crate) async fn waited_too_long(
        &self,
        key: &str,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        hard: Option<tokio::time::Instant>,
    ) -> Result<Lookup> {
        let sh = &self.shared;
        if hard.is_some_and(|h| tokio::time::Instant::now() >= h) {
            Metrics::inc(&sh.metrics.hard_timeouts);
            return self.hard_timeout_answer(stale, policy);
        }
        Metrics::inc(&sh.metrics.wait_timeouts);
        match policy.on_wait_timeout {
            OnWaitTimeout::Fail => Err(Error::WaitTimeout(
                policy.wait_timeout.unwrap_or(self.wait_timeout),
            )),
            OnWaitTimeout::Load => {
                let guard = flight::detached(&sh.flights, key);
                let (rk, fence) = match &sh.l2 {
                    Some(_) => {
                        let rk = sh.rkeys(key);
                        let fence = self.fence(&rk).await;
                        (Some(rk), fence)
                    }
                    None => (None, None),
                };
                let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
                let snapshot = sh.stamp(&policy.tags, &[]).await?;
                Ok(Lookup::Lead(Lease::new(
                    sh.clone(),
                    guard,
                    rk,
                    fence,
                    epoch,
                    None,
                    Terms::of(policy, stale, snapshot),
                )))
            }
        }
    }

    pub(crate) fn hard_timeout_answer(
        &self,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
    ) -> Result<Lookup> {
        match stale {
            Some(s) if policy.fail_safe && s.meta.is_live(now_ms()) => {
                Metrics::inc(&self.shared.metrics.fail_safe_served);
                Metrics::inc(&self.shared.metrics.stale_served);
                Ok(Lookup::Stale(s, None))
            }
            _ => Err(Error::LoaderTimeout(
                policy.hard_timeout.unwrap_or_default(),
            )),
        }
    }

    /// Load without the fleet lease (it is off, Redis failed to answer the
    /// acquire, or the wait for its holder timed out): fenced against
    /// deletes by the tombstone read now.
    pub(crate) async fn lead_without_fleet_lease(
        &self,
        guard: flight::FlightGuard,
        rk: RedisKeys,
        epoch: u64,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        snapshot: Vec<(String, u64)>,
    ) -> Lookup {
        let fence = self.fence(&rk).await;
        self.leased(guard, Some(rk), fence, epoch, None, stale, policy, snapshot)
    }

    /// Hand out a lease for a flight this caller leads: `Stale` with the
    /// lease when stale values are allowed and one exists, else `Lead`.
    // The arguments are the lease's parts, passed straight to `Lease::new`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn leased(
        &self,
        guard: flight::FlightGuard,
        rk: Option<RedisKeys>,
        fence: Option<Vec<u8>>,
        epoch: u64,
        fleet: Option<FleetLease>,
        stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        snapshot: Vec<(String, u64)>,
    ) -> Lookup {
        let sh = &self.shared;
        match stale {
            Some(s) if policy.allow_stale => {
                guard.offer_stale(s.clone(), StaleKind::Swr);
                Metrics::inc(&sh.metrics.stale_served);
                let fallback = Terms::of(policy, Some(s.clone()), snapshot);
                Lookup::Stale(
                    s,
                    Some(Lease::new(
                        sh.clone(),
                        guard,
                        rk,
                        fence,
                        epoch,
                        fleet,
                        fallback,
                    )),
                )
            }
            stale => Lookup::Lead(Lease::new(
                sh.clone(),
                guard,
                rk,
                fence,
                epoch,
                fleet,
                Terms::of(policy, stale, snapshot),
            )),
        }
    }

    pub(crate) fn new_token() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Lead `key`'s flight: read Redis, then take the fleet's lease or
    /// hand out a local one.
    pub(crate) async fn lead(
        &self,
        mut guard: flight::FlightGuard,
        mut stale: Option<Arc<Entry>>,
        policy: &LookupPolicy,
        start: tokio::time::Instant,
    ) -> Result<Lookup> {
        let sh = &self.shared;
        let key = guard.key.clone();
        let mut epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key));
        // A flight that finished between our L1 miss and joining left its
        // value in L1: take it rather than loading again.
        if let Judged::Fresh(e) = sh.l1_judged(&key, self.accepted).await {
            Metrics::inc(&sh.metrics.l1_hits);
            guard.resolve(FlightState::Value(e.clone()));
            return Ok(Lookup::Fresh(e, Source::L1));
        }
        // The versions the loaded value will record, taken before the load
        // starts: an invalidation during the load makes its result stale.
        let snapshot = sh.stamp(&policy.tags, &[]).await?;
        let (Some(l2), Some(bus)) = (self.l2(), &sh.bus) else {
            return Ok(self.leased(guard, None, None, epoch, None, stale, policy, snapshot));
        };
        let rk = sh.rkeys(&key);
        let keep_stale = policy.keeps_stale();
        // The bytes last judged not fresh: the lease script returns the
        // value again, and the same bytes need no second decode (nor a
        // second count as garbage).
        let mut seen: Option<Vec<u8>>;
        match l2.get(&rk).await {
            Ok(bytes) => {
                seen = bytes.clone();
                let judged = match bytes.and_then(|b| sh.decode(&b)) {
                    Some(e) => sh.judge(Arc::new(e), self.accepted).await,
                    None => Judged::Miss,
                };
                match judged {
                    Judged::Fresh(e) => {
                        Metrics::inc(&sh.metrics.l2_hits);
                        if let Some(l1) = &sh.l1
                            && sh.l1_may_hold(&e)
                        {
                            l1.fill(&key, e.clone(), epoch);
                        }
                        guard.resolve(FlightState::Value(e.clone()));
                        return Ok(Lookup::Fresh(e, Source::L2));
                    }
                    Judged::Stale(e) if keep_stale => {
                        Metrics::inc(&sh.metrics.l2_misses);
                        stale = Some(e);
                    }
                    _ => Metrics::inc(&sh.metrics.l2_misses),
                }
            }
            Err(e) => {
                // Redis trouble: L1's copy if the bus outage made us skip it,
                // else load without touching L2 (no fence).
                Metrics::inc(&sh.metrics.l2_errors);
                if crate::l2::unreachable(&e) {
                    match sh.l1_fallback(&key, self.accepted).await {
                        Judged::Fresh(local) => {
                            guard.resolve(FlightState::Value(local.clone()));
                            return Ok(Lookup::Fresh(local, Source::L1));
                        }
                        Judged::Stale(local) if keep_stale => stale = Some(local),
                        _ => {}
                    }
                }
                return Ok(self.leased(
                    guard,
                    None,
                    None,
                    epoch,
                    None,
                    stale,
                    policy,
                    snapshot.clone(),
                ));
            }
        }
        if !sh.fleet_lease {
            return Ok(self
                .lead_without_fleet_lease(guard, rk, epoch, stale, policy, snapshot.clone())
                .await);
        }

        let wait = policy.wait_timeout.unwrap_or(self.wait_timeout);
        let deadline = start + wait;
        let hard = policy.hard_timeout.map(|h| start + h);
        let lease_px = sh.lease_ttl.as_millis() as u64;
        let mut waited = false;
        loop {
            // Register for the wake-up before looking, so a fill published
            // between the look and the wait is not missed.
            let handle = bus.register(&key);
            let notified = handle.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key));
            let token = Self::new_token();
            let acquired = l2.acquire(&rk, &token, lease_px).await;
            let (pttl_ms, value) = match acquired {
                Ok(Acquire::Taken { value, fence }) => {
                    let value = if value == seen { None } else { value };
                    if let Some(e) = sh.fresh(value.clone(), self.accepted).await {
                        // Filled between our miss and the lease.
                        lease::spawn_release(sh, &rk, &key, token);
                        if waited {
                            Metrics::inc(&sh.metrics.lease_fills_received);
                        }
                        return Ok(self.filled(guard, &key, e, epoch, waited).await);
                    }
                    if waited {
                        Metrics::inc(&sh.metrics.lease_takeovers);
                    }
                    if keep_stale && let Some(e) = sh.stale(value, self.accepted).await {
                        stale = Some(e);
                    }
                    let fleet = FleetLease::hold(sh, &rk, token);
                    return Ok(self.leased(
                        guard,
                        Some(rk),
                        Some(fence),
                        epoch,
                        Some(fleet),
                        stale,
                        policy,
                        snapshot.clone(),
                    ));
                }
                Ok(Acquire::Held { pttl_ms, value }) => {
                    if value == seen {
                        (pttl_ms, None)
                    } else {
                        seen = value.clone();
                        (pttl_ms, value)
                    }
                }
                Err(_) => {
                    Metrics::inc(&sh.metrics.l2_errors);
                    return Ok(self
                        .lead_without_fleet_lease(guard, rk, epoch, stale, policy, snapshot.clone())
                        .await);
                }
            };
            // Another process is loading.
            if let Some(e) = sh.fresh(value.clone(), self.accepted).await {
                if waited {
                    Metrics::inc(&sh.metrics.lease_fills_received);
                }
                return Ok(self.filled(guard, &key, e, epoch, waited).await);
            }
            if keep_stale && let Some(e) = sh.stale(value, self.accepted).await {
                stale = Some(e);
            }
            if policy.allow_stale
                && let Some(s) = stale
            {
                // Stale-while-revalidate: the holder is refreshing it.
                Metrics::inc(&sh.metrics.stale_served);
                guard.resolve(FlightState::Stale(s.clone(), StaleKind::Swr));
                return Ok(Lookup::Stale(s, None));
            }
            if !waited {
                waited = true;
                Metrics::inc(&sh.metrics.lease_waits);
            }
            let now = tokio::time::Instant::now();
            let soft = policy
                .soft_timeout
                .filter(|_| policy.fail_safe && stale.is_some())
                .map(|d| start + d);
            if hard.is_some_and(|h| now >= h) {
                Metrics::inc(&sh.metrics.hard_timeouts);
                let r = self.hard_timeout_answer(stale, policy);
                match &r {
                    Ok(Lookup::Stale(s, _)) => {
                        guard.resolve(FlightState::Stale(s.clone(), StaleKind::FailSafe))
                    }
                    Err(e) => guard.resolve(FlightState::Failed(e.clone())),
                    _ => {}
                }
                return r;
            }
            if let (Some(s), Some(at)) = (&stale, soft)
                && now >= at
            {
                Metrics::inc(&sh.metrics.soft_timeouts);
                Metrics::inc(&sh.metrics.fail_safe_served);
                Metrics::inc(&sh.metrics.stale_served);
                guard.resolve(FlightState::Stale(s.clone(), StaleKind::FailSafe));
                return Ok(Lookup::Stale(s.clone(), None));
            }
            if now >= deadline {
                Metrics::inc(&sh.metrics.wait_timeouts);
                return match policy.on_wait_timeout {
                    OnWaitTimeout::Fail => {
                        let e = Error::WaitTimeout(wait);
                        guard.resolve(FlightState::Failed(e.clone()));
                        Err(e)
                    }
                    OnWaitTimeout::Load => Ok(self
                        .lead_without_fleet_lease(guard, rk, epoch, stale, policy, snapshot.clone())
                        .await),
                };
            }
            // Sleep until the fill's notification, or the holder's lease
            // expires (it crashed: take over), or a deadline. Only while
            // the bus is down or late is there a short re-check interval.
            let mut next = now + Duration::from_millis(pttl_ms.saturating_add(2));
            for d in [Some(deadline), hard, soft].into_iter().flatten() {
                next = next.min(d);
            }
            if !bus.is_connected() || !bus.is_current() {
                next = next.min(now + Duration::from_millis(50));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Another process filled `key`: keep its value in L1 and answer
    /// (`waited`: this caller waited for that fill).
    pub(crate) async fn filled(
        &self,
        mut guard: flight::FlightGuard,
        key: &Arc<str>,
        e: Arc<Entry>,
        epoch: u64,
        waited: bool,
    ) -> Lookup {
        let sh = &self.shared;
        Metrics::inc(&sh.metrics.l2_hits);
        if let Some(l1) = &sh.l1
            && sh.l1_may_hold(&e)
        {
            l1.fill(key, e.clone(), epoch);
        }
        guard.resolve(FlightState::Value(e.clone()));
        Lookup::Fresh(e, if waited { Source::Waited } else { Source::L2 })
    }

    /// A fresh L1 hit `e` is due for an early refresh and this caller leads
    /// the key's flight: take the fleet lease without waiting. If another
    /// process refreshed it already, take that value; if one is refreshing
    /// it, serve `e`.
    pub(crate) async fn refresh_early(
        &self,
        mut guard: flight::FlightGuard,
        e: Arc<Entry>,
        policy: &LookupPolicy,
    ) -> Lookup {
        let sh = &self.shared;
        guard.refreshing();
        let key = guard.key.clone();
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(&key));
        let snapshot = match sh.stamp(&policy.tags, &[]).await {
            Ok(s) => s,
            Err(_) => {
                // Tag names were checked by `lookup`; nothing to refresh.
                guard.resolve(FlightState::Value(e.clone()));
                return Lookup::Fresh(e, Source::L1);
            }
        };
        let fallback = Terms::of(policy, Some(e.clone()), snapshot);
        let (Some(l2), true) = (self.l2(), sh.fleet_lease) else {
            let rk = sh.l2.as_ref().map(|_| sh.rkeys(&key));
            let fence = match &rk {
                Some(rk) => self.fence(rk).await,
                None => None,
            };
            Metrics::inc(&sh.metrics.early_refreshes);
            return Lookup::Refresh(
                e,
                Lease::new(sh.clone(), guard, rk, fence, epoch, None, fallback),
            );
        };
        let rk = sh.rkeys(&key);
        let token = Self::new_token();
        let newer = async |v: Option<Vec<u8>>| {
            sh.fresh(v, self.accepted)
                .await
                .filter(|n| n.meta.created_at_ms > e.meta.created_at_ms)
        };
        match l2
            .acquire(&rk, &token, sh.lease_ttl.as_millis() as u64)
            .await
        {
            Ok(Acquire::Taken { value, fence }) => {
                if let Some(n) = newer(value).await {
                    lease::spawn_release(sh, &rk, &key, token);
                    return self.filled(guard, &key, n, epoch, false).await;
                }
                Metrics::inc(&sh.metrics.early_refreshes);
                let fleet = FleetLease::hold(sh, &rk, token);
                Lookup::Refresh(
                    e,
                    Lease::new(
                        sh.clone(),
                        guard,
                        Some(rk),
                        Some(fence),
                        epoch,
                        Some(fleet),
                        fallback,
                    ),
                )
            }
            Ok(Acquire::Held { value, .. }) => match newer(value).await {
                Some(n) => self.filled(guard, &key, n, epoch, false).await,
                None => {
                    guard.resolve(FlightState::Value(e.clone()));
                    Lookup::Fresh(e, Source::L1)
                }
            },
            Err(_) => {
                Metrics::inc(&sh.metrics.l2_errors);
                guard.resolve(FlightState::Value(e.clone()));
                Lookup::Fresh(e, Source::L1)
            }
        }
    }

    /// A lease to load `key` ahead of traffic, without waiting: `None` when
    /// it has a fresh value (unless `force`) or is being loaded already, in
    /// this process or (through the fleet lease) in another one. Used by
    /// `warm`: complete the leases with the loaded values.
    pub async fn try_lease(&self, key: &str, force: bool) -> Result<Option<Lease>> {
        Ok(self.try_lease_inner(key, force).await?.map(Lease::warming))
    }

    pub(crate) async fn try_lease_inner(&self, key: &str, force: bool) -> Result<Option<Lease>> {
        self.check(key)?;
        let sh = &self.shared;
        if self.bypass {
            return Ok(Some(Lease::bypassed(sh, key, &LookupPolicy::default())));
        }
        if !force && let Judged::Fresh(_) = sh.l1_judged(key, self.accepted).await {
            return Ok(None);
        }
        let Some(mut guard) = flight::try_lead(&sh.flights, key) else {
            return Ok(None);
        };
        let epoch = sh.l1.as_ref().map_or(0, |l1| l1.epoch(key));
        let policy = LookupPolicy::default();
        let snapshot = sh.stamp(&[], &[]).await?;
        let Some(l2) = self.l2() else {
            return Ok(Some(Lease::new(
                sh.clone(),
                guard,
                None,
                None,
                epoch,
                None,
                Terms::of(&policy, None, snapshot.clone()),
            )));
        };
        let rk = sh.rkeys(key);
        let k = guard.key.clone();
        if !sh.fleet_lease {
            if !force
                && let Ok(v) = l2.get(&rk).await
                && let Some(e) = sh.fresh(v, self.accepted).await
            {
                self.filled(guard, &k, e, epoch, false).await;
                return Ok(None);
            }
            let fence = self.fence(&rk).await;
            return Ok(Some(Lease::new(
                sh.clone(),
                guard,
                Some(rk),
                fence,
                epoch,
                None,
                Terms::of(&policy, None, snapshot.clone()),
            )));
        }
        let token = Self::new_token();
        match l2
            .acquire(&rk, &token, sh.lease_ttl.as_millis() as u64)
            .await
        {
            Ok(Acquire::Taken { value, fence }) => {
                if !force && let Some(e) = sh.fresh(value, self.accepted).await {
                    lease::spawn_release(sh, &rk, &k, token);
                    self.filled(guard, &k, e, epoch, false).await;
                    return Ok(None);
                }
                let fleet = FleetLease::hold(sh, &rk, token);
                Ok(Some(Lease::new(
                    sh.clone(),
                    guard,
                    Some(rk),
                    Some(fence),
                    epoch,
                    Some(fleet),
                    Terms::of(&policy, None, snapshot.clone()),
                )))
            }
            Ok(Acquire::Held { .. }) => {
                guard.resolve(FlightState::Retry);
                Ok(None)
            }
            Err(e) => {
                guard.resolve(FlightState::Retry);
                Err(sh.l2_err(e))
            }
        }
    }

    /// Several keys at once, for a read-through of many keys loaded in one
    /// call (`get_or_set_many`): the fresh values (one pipelined read),
    /// a lease for each key nobody is loading (take them all, load them
    /// together, complete them), and [`ManyLookup::Busy`] for a key being
    /// loaded elsewhere right now: read it with [`Cache::lookup`] *after*
    /// completing the leases (it waits for that load, and holding leases
    /// while waiting on another process's could make two processes wait on
    /// each other). A key given twice is `Busy` the second time.
    pub async fn lookup_many(&self, keys: &[&str]) -> Result<Vec<ManyLookup>> {
        let found = self.get_many(keys).await?;
        let leases: Vec<Result<Option<Lease>>> =
            crate::runtime::join_all(keys.iter().zip(&found).map(|(k, f)| async move {
                match f {
                    Some(_) => Ok(None),
                    None => self.try_lease_inner(k, false).await,
                }
            }))
            .await;
        let mut out = Vec::with_capacity(keys.len());
        for (f, l) in found.into_iter().zip(leases) {
            out.push(match (f, l?) {
                (Some(e), _) => ManyLookup::Fresh(e),
                (None, Some(lease)) => ManyLookup::Lead(lease),
                (None, None) => ManyLookup::Busy,
            });
        }
        Ok(out)
    }

    /// [`Cache::try_lease`] for several keys at once (concurrently, so the
    /// Redis round trips are pipelined): the leases of the keys to load.
    pub async fn try_leases(&self, keys: &[&str], force: bool) -> Result<Vec<Lease>> {
        let found = crate::runtime::join_all(keys.iter().map(|k| self.try_lease(k, force))).await;
        let mut out = Vec::new();
        for r in found {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Complete several leases (from [`Cache::try_lease`]) concurrently, the
    /// L2 writes pipelined on the multiplexed connection. Returns how many
    /// were completed to be stored (by [`Lease::stores`]: not those taken
    /// with caching off, nor any under a zero TTL).
    pub async fn complete_many(
        &self,
        items: Vec<(Lease, Bytes)>,
        opts: &WriteOptions,
    ) -> Result<usize> {
        let results = crate::runtime::join_all(items.into_iter().map(|(lease, payload)| {
            let stores = lease.stores(&LoadOutcome::Value(Bytes::new()), opts);
            async move { lease.complete(payload, opts).await.map(|_| stores) }
        }))
        .await;
        let mut n = 0;
        for r in results {
            if r? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The tombstone token a load must present when it completes; `None`
    /// (counted) when Redis cannot be read: the load then skips L2.
    pub(crate) async fn fence(&self, rk: &RedisKeys) -> Option<Vec<u8>> {
        let l2 = self.shared.l2.as_ref()?;
        match l2.fence(rk).await {
            Ok(f) => Some(f),
            Err(_) => {
                Metrics::inc(&self.shared.metrics.l2_errors);
                None
            }
        }
    }
}
