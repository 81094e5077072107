//! Early refresh (refresh-ahead and XFetch) and TTL jitter. Deterministic:
//! the policies are pushed to their extremes (always / never due), no
//! timing assumptions.

mod common;

use std::time::Duration;

use bytes::Bytes;
use stratacache::{Cache, Format, Lookup, LookupPolicy, Ttl, WriteOptions};

fn opts(ttl: Duration, load: Duration) -> WriteOptions {
    let mut o = WriteOptions::new(Ttl::After(ttl), Format::RAW);
    o.load_duration = Some(load);
    o
}

async fn check_early_refresh(cache: Cache, due: LookupPolicy, not_due: LookupPolicy) {
    cache
        .set(
            "k",
            Bytes::from_static(b"v1"),
            &opts(Duration::from_secs(60), Duration::from_secs(30)),
        )
        .await
        .expect("set");
    assert!(matches!(
        cache.lookup("k", &not_due).await.expect("lookup"),
        Lookup::Fresh(_, _)
    ));
    // Due: the first caller is served the value *and* gets a lease...
    let lease = match cache.lookup("k", &due).await.expect("lookup") {
        Lookup::Refresh(e, lease) => {
            assert_eq!(&e.payload[..], b"v1", "the fresh value is served");
            lease
        }
        other => panic!("expected a refresh lease, got {other:?}"),
    };
    // ...while the refresh runs, everyone else just gets the fresh value.
    for _ in 0..10 {
        assert!(matches!(
            cache.lookup("k", &due).await.expect("lookup"),
            Lookup::Fresh(_, _)
        ));
    }
    lease
        .complete(
            Bytes::from_static(b"v2"),
            &opts(Duration::from_secs(60), Duration::from_millis(1)),
        )
        .await
        .expect("complete");
    match cache.lookup("k", &not_due).await.expect("lookup") {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v2"),
        other => panic!("expected the refreshed value, got {other:?}"),
    }
    assert_eq!(cache.stats().await.early_refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_l1_only() {
    let cache = Cache::builder()
        .namespace(common::unique_ns("ahead"))
        .build()
        .expect("cache");
    // 100 % of the TTL is "ahead": always due. 0 %: never while fresh.
    check_early_refresh(
        cache,
        LookupPolicy::default().refresh_ahead(1.0),
        LookupPolicy::default().refresh_ahead(0.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfetch_tiered() {
    let cache = common::redis_builder(&common::unique_ns("xfetch"))
        .build()
        .expect("cache");
    // The load took 30 s and 60 s are left: beta 1e9 makes the gap dwarf
    // the time left (due unless rand hits exactly 0); beta 0 never is.
    check_early_refresh(
        cache,
        LookupPolicy::default().early_refresh(1e9),
        LookupPolicy::default().early_refresh(0.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_expiry_are_never_refreshed_early() {
    let cache = Cache::builder()
        .namespace(common::unique_ns("forever"))
        .build()
        .expect("cache");
    cache
        .set(
            "k",
            Bytes::from_static(b"v"),
            &WriteOptions::new(Ttl::Never, Format::RAW),
        )
        .await
        .expect("set");
    let policy = LookupPolicy::default()
        .refresh_ahead(1.0)
        .early_refresh(1e9);
    assert!(matches!(
        cache.lookup("k", &policy).await.expect("lookup"),
        Lookup::Fresh(_, _)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_only_shortens_and_spreads() {
    let ns = common::unique_ns("jitter");
    let cache = common::redis_builder(&ns)
        .ttl_jitter(0.5)
        .build()
        .expect("cache");
    let mut raw = common::Target::Standalone.raw().await;
    let mut ttls = Vec::new();
    for i in 0..100 {
        let key = format!("k{i}");
        cache
            .set(
                &key,
                Bytes::from_static(b"v"),
                &WriteOptions::new(Ttl::After(Duration::from_secs(100)), Format::RAW),
            )
            .await
            .expect("set");
        ttls.push(
            raw.pttl(&stratacache::key::redis_keys(&ns, &key).value)
                .await,
        );
    }
    assert!(ttls.iter().all(|&t| t > 49_000 && t <= 100_000), "{ttls:?}");
    let spread = ttls.iter().max().copied().unwrap_or(0) - ttls.iter().min().copied().unwrap_or(0);
    assert!(spread > 10_000, "TTLs spread out: {spread} ms");
    assert!(Cache::builder().ttl_jitter(1.5).build().is_err());
}
