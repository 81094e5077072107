//! Single-flight proofs: N concurrent lookups of a cold key behind a barrier
//! yield exactly one `Lead`; everybody gets the value (or the error).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use stratacache::{Cache, Error, Lookup, LookupPolicy, OnWaitTimeout, Ttl, WriteOptions};
use tokio::sync::Barrier;

const N: usize = 1000;

/// What a binding's `get_or_set` does: lookup, and on `Lead` run the loader.
async fn get_or_load(
    cache: &Cache,
    key: &str,
    loads: &AtomicUsize,
    fail: bool,
) -> Result<Bytes, Error> {
    match cache.lookup(key, &LookupPolicy::default()).await? {
        Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => Ok(e.payload.clone()),
        Lookup::Lead(lease) => {
            loads.fetch_add(1, Ordering::SeqCst);
            // Let every other caller pile up behind us.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if fail {
                lease.abandon(Arc::new(std::io::Error::other("database is down")));
                Err(Error::Loader(Arc::new(std::io::Error::other(
                    "database is down",
                ))))
            } else {
                let e = lease
                    .complete(Bytes::from_static(b"loaded"), &WriteOptions::default())
                    .await?;
                Ok(e.payload.clone())
            }
        }
    }
}

async fn stampede(cache: Cache, fail: bool) -> (usize, Vec<Result<Bytes, Error>>, String) {
    let key = format!("cold-{}", common::rand_u64());
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let (cache, key, loads, barrier) =
            (cache.clone(), key.clone(), loads.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            get_or_load(&cache, &key, &loads, fail).await
        }));
    }
    let mut results = Vec::with_capacity(N);
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    (loads.load(Ordering::SeqCst), results, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_loader_for_1000_callers_l1_only() {
    let cache = Cache::builder()
        .namespace(common::unique_ns("sf"))
        .build()
        .expect("cache");
    let (loads, results, _) = stampede(cache.clone(), false).await;
    assert_eq!(loads, 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(b) if &b[..] == b"loaded"))
    );
    let s = cache.stats().await;
    assert_eq!(s.leads, 1);
    assert_eq!(s.loads_completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_loader_for_1000_callers_tiered() {
    let cache = common::redis_builder(&common::unique_ns("sf"))
        .build()
        .expect("cache");
    let (loads, results, key) = stampede(cache.clone(), false).await;
    assert_eq!(loads, 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(b) if &b[..] == b"loaded"))
    );
    // The value reached L2: a handle without L1 sees it.
    let l2_only = common::redis_builder(cache.namespace())
        .l1_enabled(false)
        .build()
        .expect("cache");
    let seen = l2_only.get(&key).await.expect("get").expect("value in L2");
    assert_eq!(&seen.payload[..], b"loaded");
    let s = cache.stats().await;
    assert_eq!(s.leads, 1);
    assert_eq!(s.l1_hits + s.coalesced_waits + s.leads, N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_lease_fails_every_waiter_with_the_loader_error() {
    let cache = common::redis_builder(&common::unique_ns("sf-fail"))
        .build()
        .expect("cache");
    let (loads, results, _) = stampede(cache.clone(), true).await;
    assert_eq!(loads, 1);
    for r in &results {
        match r {
            Err(Error::Loader(e)) => assert_eq!(e.to_string(), "database is down"),
            other => panic!("expected the loader error, got {other:?}"),
        }
    }
    let s = cache.stats().await;
    assert_eq!(s.loader_errors, 1);
    // Nothing was cached: the next caller leads again.
    assert!(matches!(
        cache.lookup("whatever-new", &LookupPolicy::default()).await,
        Ok(Lookup::Lead(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_lease_releases_waiters_with_lease_dropped() {
    let cache = Cache::builder()
        .namespace(common::unique_ns("sf-drop"))
        .build()
        .expect("cache");
    let Lookup::Lead(lease) = cache
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("first lookup leads");
    };
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.lookup("k", &LookupPolicy::default()).await })
        })
        .collect();
    // Wait until all 50 are parked on the flight (counted as coalesced).
    while cache.stats().await.coalesced_waits < 50 {
        tokio::task::yield_now().await;
    }
    drop(lease);
    for w in waiters {
        assert!(matches!(w.await.expect("task"), Err(Error::LeaseDropped)));
    }
    assert_eq!(cache.stats().await.leases_dropped, 1);
    // The key is free again.
    assert!(matches!(
        cache.lookup("k", &LookupPolicy::default()).await,
        Ok(Lookup::Lead(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_bounded_by_the_wait_timeout() {
    let cache = Cache::builder()
        .namespace(common::unique_ns("sf-wait"))
        .build()
        .expect("cache");
    let Lookup::Lead(_lease) = cache
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("first lookup leads");
    };
    let policy = LookupPolicy::default()
        .wait_timeout(Duration::from_millis(30))
        .on_wait_timeout(OnWaitTimeout::Fail);
    let r = cache.lookup("k", &policy).await;
    assert!(matches!(r, Err(Error::WaitTimeout(_))), "{r:?}");
    assert_eq!(cache.stats().await.wait_timeouts, 1);
    // The default action: the caller loads on its own after the wait.
    let policy = LookupPolicy::default().wait_timeout(Duration::from_millis(30));
    let r = cache.lookup("k", &policy).await;
    assert!(matches!(r, Ok(Lookup::Lead(_))), "{r:?}");
    assert_eq!(cache.stats().await.wait_timeouts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_value_is_served_while_exactly_one_caller_refreshes() {
    let cache = common::redis_builder(&common::unique_ns("sf-stale"))
        .build()
        .expect("cache");
    let opts = WriteOptions::new(Ttl::After(Duration::from_millis(50)), Default::default())
        .with_grace(Duration::from_secs(60));
    cache
        .set("k", Bytes::from_static(b"old"), &opts)
        .await
        .expect("set");
    // Let it go stale (the fresh deadline is absolute; after it passes,
    // the assertions below hold whatever the scheduling).
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        cache.get("k").await.expect("get").is_none(),
        "plain get serves fresh only"
    );

    let policy = LookupPolicy::default().allow_stale(true);
    let mut leases = Vec::new();
    for _ in 0..20 {
        match cache.lookup("k", &policy).await.expect("lookup") {
            Lookup::Stale(e, lease) => {
                assert_eq!(&e.payload[..], b"old");
                leases.extend(lease);
            }
            other => panic!("expected stale, got {other:?}"),
        }
    }
    assert_eq!(leases.len(), 1, "exactly one refresher");
    let lease = leases.pop().expect("lease");
    lease
        .complete(
            Bytes::from_static(b"new"),
            &WriteOptions::new(Ttl::After(Duration::from_secs(60)), Default::default()),
        )
        .await
        .expect("complete");
    match cache.lookup("k", &policy).await.expect("lookup") {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"new"),
        other => panic!("expected fresh, got {other:?}"),
    }
    assert_eq!(cache.stats().await.stale_served, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_values_written_elsewhere_in_l2() {
    let ns = common::unique_ns("sf-l2");
    let writer = common::redis_builder(&ns)
        .l1_enabled(false)
        .build()
        .expect("cache");
    let reader = common::redis_builder(&ns).build().expect("cache");
    writer
        .set("k", Bytes::from_static(b"v"), &WriteOptions::default())
        .await
        .expect("set");
    match reader
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v"),
        other => panic!("expected an L2 hit, got {other:?}"),
    }
    // ... and the L2 hit filled L1.
    reader.get("k").await.expect("get");
    let s = reader.stats().await;
    assert_eq!((s.l2_hits, s.l1_hits), (1, 1));
}

/// `lookup_many`: fresh values, a lease for each key nobody loads, and
/// `Busy` for a key another process (an isolated handle) is loading or
/// for a key given twice; after the other's fill, `lookup` finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_many_sorts_fresh_lead_and_busy() {
    use stratacache::ManyLookup;
    let ns = common::unique_ns("many");
    let a = common::redis_builder(&ns)
        .isolated(true)
        .build()
        .expect("a");
    let b = common::redis_builder(&ns)
        .isolated(true)
        .build()
        .expect("b");
    let opts = WriteOptions::new(
        Ttl::After(Duration::from_secs(60)),
        stratacache::Format::RAW,
    );
    a.set("fresh", Bytes::from_static(b"f"), &opts)
        .await
        .expect("set");
    let held = match b
        .lookup("held", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Lead(lease) => lease,
        other => panic!("expected to lead: {other:?}"),
    };
    let got = a
        .lookup_many(&["fresh", "cold", "held", "cold"])
        .await
        .expect("lookup_many");
    assert!(matches!(&got[0], ManyLookup::Fresh(e) if &e.payload[..] == b"f"));
    let ManyLookup::Lead(lease) = &got[1] else {
        panic!("cold: expected a lease, got {:?}", got[1]);
    };
    assert_eq!(lease.key(), "cold");
    assert!(matches!(got[2], ManyLookup::Busy), "{:?}", got[2]);
    assert!(matches!(got[3], ManyLookup::Busy), "{:?}", got[3]);
    held.complete(Bytes::from_static(b"h"), &opts)
        .await
        .expect("fill");
    match a
        .lookup("held", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"h"),
        other => panic!("expected b's fill: {other:?}"),
    }
}
