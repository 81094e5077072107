//! Fleet-wide stampede protection and fail-safe, against real Redis and a
//! real Redis Cluster. Each `isolated` cache handle has its own L1, flights
//! and metrics, exactly like a separate process of the fleet; they meet
//! only in Redis (the lease, the value and the bus).

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::key::redis_keys;
use stratacache::{
    Cache, Error, Format, LoaderError, Lookup, LookupPolicy, OnWaitTimeout, Ttl, WriteOptions,
};
use tokio::sync::Barrier;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn opts(ttl: Duration, grace: Duration) -> WriteOptions {
    WriteOptions::new(Ttl::After(ttl), Format::RAW).with_grace(grace)
}

/// `n` handles on one namespace, each standing in for a process.
async fn fleet(t: Target, prefix: &str, n: usize, lease_ttl: Duration) -> Vec<Cache> {
    let ns = common::unique_ns(prefix);
    let caches: Vec<Cache> = (0..n)
        .map(|_| {
            t.builder(&ns)
                .isolated(true)
                .lease_ttl(lease_ttl)
                .build()
                .expect("cache")
        })
        .collect();
    for c in &caches {
        wait_for_bus(c).await;
    }
    caches
}

/// Until the handle's bus subscription is up (bounded). The first Redis
/// operation starts it.
async fn wait_for_bus(c: &Cache) {
    c.get("bus-probe").await.expect("get");
    for _ in 0..1000 {
        if c.stats().await.bus_connects > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the bus never connected");
}

fn loader_error(msg: &str) -> LoaderError {
    Arc::new(std::io::Error::other(msg.to_owned()))
}

/// Make `key` stale (within grace) in Redis: written with a 1 ms TTL, then
/// wait until that millisecond has passed.
async fn stale_entry(c: &Cache, key: &str, v: &str) {
    c.set(
        key,
        b(v),
        &opts(Duration::from_millis(1), Duration::from_secs(60)),
    )
    .await
    .expect("set");
    tokio::time::sleep(Duration::from_millis(3)).await;
}

async fn cold_key_one_loader_for_the_fleet(t: Target) {
    let caches = fleet(t, "fleet-cold", 4, Duration::from_secs(5)).await;
    let per_process = 50;
    let barrier = Arc::new(Barrier::new(caches.len() * per_process));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in &caches {
        for _ in 0..per_process {
            let (c, barrier, calls) = (c.clone(), barrier.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match c.lookup("hot", &LookupPolicy::default()).await? {
                    Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => {
                        Ok(e.payload.clone())
                    }
                    Lookup::Lead(lease) => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // The loader takes a while, so every other caller
                        // of the fleet arrives while it runs.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let e = lease
                            .complete(b("loaded"), &WriteOptions::default())
                            .await?;
                        Ok::<_, Error>(e.payload.clone())
                    }
                }
            }));
        }
    }
    for t in tasks {
        assert_eq!(&t.await.expect("join").expect("lookup")[..], b"loaded");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader call fleet-wide"
    );
    let mut waits = 0;
    let mut fills = 0;
    for c in &caches {
        let s = c.stats().await;
        waits += s.lease_waits;
        fills += s.lease_fills_received;
    }
    // Every process but the loader's waited on the lease and was woken by
    // the fill (unless it arrived after the fill and read it directly).
    assert!(waits <= 3 && fills <= waits, "waits {waits}, fills {fills}");
}

async fn waiter_is_woken_by_the_fill(t: Target) {
    let caches = fleet(t, "fleet-wake", 2, Duration::from_secs(30)).await;
    let (a, bb) = (caches[0].clone(), caches[1].clone());
    let Lookup::Lead(lease) = a.lookup("k", &LookupPolicy::default()).await.expect("a") else {
        panic!("a leads");
    };
    assert!(lease.is_fleet());
    let waiter = tokio::spawn(async move { bb.lookup("k", &LookupPolicy::default()).await });
    // Complete only once b is known to be waiting on the lease.
    for _ in 0..2000 {
        if caches[1].stats().await.lease_waits == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(caches[1].stats().await.lease_waits, 1);
    lease
        .complete(b("v"), &WriteOptions::default())
        .await
        .expect("complete");
    // The lease lives 30 s: only the bus can have woken b this early.
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken well before the lease would expire")
        .expect("join");
    match r.expect("lookup") {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v"),
        other => panic!("expected the fill, got {other:?}"),
    }
    let s = caches[1].stats().await;
    assert_eq!((s.leads, s.lease_fills_received), (0, 1));
}

/// A fleet lease on `rk` held by another process (`holder`), for `px` ms.
async fn foreign_lease(
    raw: &mut common::Raw,
    rk: &stratacache::key::RedisKeys,
    holder: &str,
    px: u64,
) {
    raw.query::<()>(
        redis::cmd("SET")
            .arg(rk.lease())
            .arg(holder)
            .arg("PX")
            .arg(px),
    )
    .await;
}

async fn crashed_holder_is_taken_over(t: Target) {
    let caches = fleet(t, "fleet-crash", 1, Duration::from_secs(5)).await;
    let c = &caches[0];
    // A lease left by a process that died mid-load: nobody extends or
    // releases it; it expires after its 300 ms.
    let rk = redis_keys(c.namespace(), "k");
    let mut raw = t.raw().await;
    foreign_lease(&mut raw, &rk, "dead-process", 300).await;
    let started = std::time::Instant::now();
    let r = c
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup");
    let Lookup::Lead(lease) = r else {
        panic!("expected to take over, got {r:?}")
    };
    assert!(lease.is_fleet(), "the expired lease is ours now");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the expiry"
    );
    let s = c.stats().await;
    assert_eq!((s.lease_waits, s.lease_takeovers), (1, 1));
    lease
        .complete(b("v"), &WriteOptions::default())
        .await
        .expect("complete");
    // Completing released the lease.
    assert_eq!(raw.get(&rk.lease()).await, None);
}

async fn stuck_holder_bounded_by_wait_timeout(t: Target) {
    let caches = fleet(t, "fleet-stuck", 1, Duration::from_secs(5)).await;
    let c = &caches[0];
    let rk = redis_keys(c.namespace(), "k");
    let mut raw = t.raw().await;
    foreign_lease(&mut raw, &rk, "slow-process", 60_000).await;
    let fail = LookupPolicy::default()
        .wait_timeout(Duration::from_millis(50))
        .on_wait_timeout(OnWaitTimeout::Fail);
    let r = c.lookup("k", &fail).await;
    assert!(matches!(r, Err(Error::WaitTimeout(_))), "{r:?}");
    let load = LookupPolicy::default().wait_timeout(Duration::from_millis(50));
    match c.lookup("k", &load).await.expect("lookup") {
        Lookup::Lead(lease) => {
            assert!(!lease.is_fleet(), "the other process still holds the lease");
            lease
                .complete(b("mine"), &WriteOptions::default())
                .await
                .expect("complete");
        }
        other => panic!("expected to load after the wait, got {other:?}"),
    }
    assert_eq!(c.stats().await.wait_timeouts, 2);
    assert_eq!(
        raw.get(&rk.lease()).await.as_deref(),
        Some(&b"slow-process"[..]),
        "someone else's lease is never released by us"
    );
}

async fn abandoned_lease_hands_over_at_once(t: Target) {
    let caches = fleet(t, "fleet-abandon", 2, Duration::from_secs(30)).await;
    let Lookup::Lead(lease) = caches[0]
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("a")
    else {
        panic!("a leads");
    };
    let bb = caches[1].clone();
    let waiter = tokio::spawn(async move { bb.lookup("k", &LookupPolicy::default()).await });
    for _ in 0..2000 {
        if caches[1].stats().await.lease_waits == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    lease.abandon(loader_error("origin down"));
    // The release is published: b takes over long before the 30 s expiry.
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("b takes over promptly")
        .expect("join")
        .expect("lookup");
    assert!(matches!(r, Lookup::Lead(ref l) if l.is_fleet()), "{r:?}");
}

async fn stale_refreshed_once_fleet_wide(t: Target) {
    let caches = fleet(t, "fleet-swr", 3, Duration::from_secs(5)).await;
    stale_entry(&caches[0], "k", "old").await;
    let swr = LookupPolicy::default().allow_stale(true);
    let mut leases = Vec::new();
    for c in &caches {
        match c.lookup("k", &swr).await.expect("lookup") {
            Lookup::Stale(e, lease) => {
                assert_eq!(&e.payload[..], b"old", "served at once");
                leases.extend(lease);
            }
            other => panic!("expected the stale value, got {other:?}"),
        }
    }
    assert_eq!(
        leases.len(),
        1,
        "exactly one background refresh in the fleet"
    );
    leases
        .pop()
        .expect("lease")
        .complete(b("new"), &WriteOptions::default())
        .await
        .expect("complete");
    for c in &caches {
        match c.lookup("k", &swr).await.expect("lookup") {
            Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"new"),
            other => panic!("expected the refreshed value, got {other:?}"),
        }
    }
}

async fn early_refresh_once_fleet_wide(t: Target) {
    let caches = fleet(t, "fleet-early", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    a.set("k", b("v1"), &opts(Duration::from_secs(60), Duration::ZERO))
        .await
        .expect("set");
    assert!(matches!(
        bb.lookup("k", &LookupPolicy::default()).await.expect("b"),
        Lookup::Fresh(_, _)
    ));
    // Always due: both processes hold v1 in L1 and want to refresh it.
    let due = LookupPolicy::default().refresh_ahead(1.0);
    let Lookup::Refresh(_, lease) = a.lookup("k", &due).await.expect("a") else {
        panic!("a refreshes");
    };
    // While a refreshes, b is served v1 and does not load.
    assert!(matches!(
        bb.lookup("k", &due).await.expect("b"),
        Lookup::Fresh(_, _)
    ));
    lease
        .complete(b("v2"), &opts(Duration::from_secs(60), Duration::ZERO))
        .await
        .expect("complete");
    // After it, b takes a's newer value (from the bus eviction or, if the
    // message is still on its way, from the lease script's read) rather
    // than loading again.
    match bb.lookup("k", &due).await.expect("b") {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v2"),
        Lookup::Refresh(e, _) => panic!("b refreshed again over {:?}", e.payload),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bb.stats().await.early_refreshes, 0);
}

/// A caller that finds no L1 entry while its process refreshes the key
/// early (the entry was dropped by another process's newer write) reads
/// the newer value from Redis at once instead of waiting for the refresh.
async fn early_refresh_does_not_hold_callers_whose_entry_left(t: Target) {
    let caches = fleet(t, "fleet-early-left", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    let ttl = opts(Duration::from_secs(60), Duration::ZERO);
    a.set("k", b("v1"), &ttl).await.expect("set");
    let due = LookupPolicy::default().refresh_ahead(1.0);
    let Lookup::Refresh(_, lease) = a.lookup("k", &due).await.expect("a") else {
        panic!("a refreshes");
    };
    let received = a.stats().await.bus_received;
    bb.set("k", b("v2"), &ttl).await.expect("b writes");
    for _ in 0..5000 {
        if a.stats().await.bus_received > received {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        a.stats().await.bus_received > received,
        "b's write reached a"
    );
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        a.lookup("k", &LookupPolicy::default()),
    )
    .await
    .expect("not held until the refresh ends")
    .expect("lookup");
    match got {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v2"),
        other => panic!("expected b's value, got {other:?}"),
    }
    assert_eq!(a.stats().await.load_waits, 0);
    drop(lease);
}

async fn fail_safe_serves_stale_and_throttles(t: Target) {
    let caches = fleet(t, "fleet-failsafe", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    stale_entry(a, "k", "old").await;
    let fs = LookupPolicy::default()
        .fail_safe(true)
        .fail_safe_throttle(Duration::from_secs(60));
    let Lookup::Lead(lease) = a.lookup("k", &fs).await.expect("a") else {
        panic!("a leads (fail-safe alone does not serve stale at once)");
    };
    assert_eq!(&lease.fallback().expect("fallback").payload[..], b"old");
    let served = lease
        .fail(loader_error("origin down"))
        .await
        .expect("fail-safe");
    assert_eq!(&served.entry().payload[..], b"old");
    // Throttled: the whole fleet is served the old value as fresh, and
    // nobody calls the failing origin again.
    for c in [a, bb] {
        match c.lookup("k", &fs).await.expect("lookup") {
            Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"old"),
            other => panic!("expected the throttled value, got {other:?}"),
        }
    }
    assert_eq!(a.stats().await.fail_safe_served, 1);
    // Without a stale value, fail-safe has nothing to serve: the error.
    let Lookup::Lead(lease) = a.lookup("cold", &fs).await.expect("a") else {
        panic!("leads");
    };
    assert!(lease.fallback().is_none());
    assert!(matches!(
        lease.fail(loader_error("x")).await,
        Err(Error::Loader(_))
    ));
}

async fn soft_timeout_serves_stale_while_the_load_goes_on(t: Target) {
    let caches = fleet(t, "fleet-soft", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    stale_entry(a, "k", "old").await;
    let fs = LookupPolicy::default()
        .fail_safe(true)
        .soft_timeout(Duration::from_millis(50));
    let Lookup::Lead(lease) = a.lookup("k", &fs).await.expect("a") else {
        panic!("a leads");
    };
    // The caller running the loader hit its soft timeout: it and every
    // caller of this process waiting on the key get the stale value.
    let e = lease
        .clock()
        .passed(false)
        .expect("soft deadline")
        .expect("a stale value to serve");
    assert_eq!(&e.payload[..], b"old");
    match a.lookup("k", &fs).await.expect("a again") {
        Lookup::Stale(e, None) => assert_eq!(&e.payload[..], b"old"),
        other => panic!("expected the fail-safe value, got {other:?}"),
    }
    // Another process waiting on the fleet lease: stale after its own
    // soft timeout.
    match bb.lookup("k", &fs).await.expect("b") {
        Lookup::Stale(e, None) => assert_eq!(&e.payload[..], b"old"),
        other => panic!("expected the fail-safe value, got {other:?}"),
    }
    // The slow load finishes in the background and fills the cache.
    lease
        .complete(b("new"), &WriteOptions::default())
        .await
        .expect("complete");
    match a.lookup("k", &fs).await.expect("a") {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"new"),
        other => panic!("expected the new value, got {other:?}"),
    }
    let s = a.stats().await;
    assert_eq!((s.soft_timeouts, s.fail_safe_served), (1, 2));
}

async fn hard_timeout_bounds_every_wait(t: Target) {
    let caches = fleet(t, "fleet-hard", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    let hard = LookupPolicy::default().hard_timeout(Duration::from_millis(80));
    let Lookup::Lead(lease) = a.lookup("k", &hard).await.expect("a") else {
        panic!("a leads");
    };
    // A waiter in the same process and one in another process: both get
    // the typed timeout, not a hang.
    let r = a.lookup("k", &hard).await;
    assert!(matches!(r, Err(Error::LoaderTimeout(_))), "{r:?}");
    let r = bb.lookup("k", &hard).await;
    assert!(matches!(r, Err(Error::LoaderTimeout(_))), "{r:?}");
    assert!(
        matches!(lease.clock().passed(true), Err(Error::LoaderTimeout(_))),
        "no stale value to fall back on"
    );
    // The load still lands.
    lease
        .complete(b("late"), &WriteOptions::default())
        .await
        .expect("complete");
    assert_eq!(
        &bb.get("k").await.expect("get").expect("hit").payload[..],
        b"late"
    );
}

async fn warm_fills_ahead_and_respects_leases(t: Target) {
    let caches = fleet(t, "fleet-warm", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    a.set("k0", b("have"), &WriteOptions::default())
        .await
        .expect("set");
    let mut leases = Vec::new();
    for k in ["k0", "k1", "k2"] {
        leases.extend(a.try_lease(k, false).await.expect("try_lease"));
    }
    let keys: Vec<String> = leases.iter().map(|l| l.key().to_owned()).collect();
    assert_eq!(keys, ["k1", "k2"], "a fresh key is not reloaded");
    // While a warms, another process neither warms nor loads those keys.
    assert!(bb.try_lease("k1", false).await.expect("b").is_none());
    let items = leases
        .into_iter()
        .map(|l| {
            let v = format!("warm-{}", l.key());
            (l, Bytes::from(v))
        })
        .collect();
    assert_eq!(
        a.complete_many(items, &WriteOptions::default())
            .await
            .expect("complete_many"),
        2
    );
    assert_eq!(
        &bb.get("k2").await.expect("get").expect("hit").payload[..],
        b"warm-k2"
    );
    assert_eq!(a.stats().await.warmed, 2);
    // force reloads even a fresh key.
    assert!(a.try_lease("k0", true).await.expect("force").is_some());
}

async fn fill_evicts_other_l1_copies(t: Target) {
    let caches = fleet(t, "fleet-bus", 2, Duration::from_secs(5)).await;
    let (a, bb) = (&caches[0], &caches[1]);
    a.set("k", b("v1"), &WriteOptions::default())
        .await
        .expect("set");
    assert_eq!(
        &bb.get("k").await.expect("get").expect("hit").payload[..],
        b"v1"
    );
    // a reloads the key; b's L1 copy must not outlive that.
    let lease = a.try_lease("k", true).await.expect("try").expect("lease");
    lease
        .complete(b("v2"), &WriteOptions::default())
        .await
        .expect("complete");
    // Until b's copy is evicted by the fill's bus message (bounded).
    for _ in 0..5000 {
        if bb
            .get("k")
            .await
            .expect("get")
            .is_some_and(|e| &e.payload[..] == b"v2")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("b kept serving its old L1 copy");
}

on_both!(
    cold_key_one_loader_for_the_fleet,
    waiter_is_woken_by_the_fill,
    crashed_holder_is_taken_over,
    stuck_holder_bounded_by_wait_timeout,
    abandoned_lease_hands_over_at_once,
    stale_refreshed_once_fleet_wide,
    early_refresh_once_fleet_wide,
    early_refresh_does_not_hold_callers_whose_entry_left,
    fail_safe_serves_stale_and_throttles,
    soft_timeout_serves_stale_while_the_load_goes_on,
    hard_timeout_bounds_every_wait,
    warm_fills_ahead_and_respects_leases,
    fill_evicts_other_l1_copies,
);
