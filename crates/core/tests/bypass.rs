//! `Cache::bypassing`: the one table of what each operation does with
//! caching off, on L1 alone, a standalone server and a Cluster. Reads find
//! nothing and touch no tier (their counters stay put), read-throughs lead
//! every call and store nothing, value writes store nothing, invalidations
//! and counters work as usual.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::http::{Bypass, Exchange, Route, RouteOptions, Start, Step};
use stratacache::{
    Cache, Format, LoadOutcome, Lookup, LookupPolicy, ManyLookup, Ttl, WriteOptions,
};

fn opts(tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

async fn value(c: &Cache, key: &str) -> Option<Bytes> {
    c.get(key).await.expect("get").map(|e| e.payload.clone())
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// The tier counters a read moves.
async fn reads(c: &Cache) -> [u64; 4] {
    let s = c.stats().await;
    [s.l1_hits, s.l1_misses, s.l2_hits, s.l2_misses]
}

async fn the_table(c: Cache) {
    c.set("k", b("old"), &opts(&["t"])).await.expect("set");
    c.set("tagged", b("x"), &opts(&["t"])).await.expect("set");
    c.set("n", b("1"), &WriteOptions::new(Ttl::Default, Format::INT))
        .await
        .expect("set n");
    let off = c.bypassing();
    assert!(off.is_bypassing() && !c.is_bypassing());

    // Reads: nothing found, no tier asked.
    let before = reads(&c).await;
    assert!(off.get("k").await.expect("get").is_none());
    assert!(off.get_local("k").expect("get_local").is_none());
    assert!(!off.has_key("k").await.expect("has"));
    assert_eq!(
        off.get_many(&["k", "tagged"])
            .await
            .expect("get_many")
            .iter()
            .filter(|e| e.is_some())
            .count(),
        0
    );
    assert!(off.scan_page("").await.expect("scan").entries.is_empty());
    assert_eq!(
        reads(&c).await,
        before,
        "a read with caching off asked a tier"
    );

    // Read-throughs: every caller leads, nothing joins, nothing is stored.
    let policy = LookupPolicy::default();
    let (l1, l2) = tokio::join!(off.lookup("k", &policy), off.lookup("k", &policy));
    let (Ok(Lookup::Lead(a)), Ok(Lookup::Lead(second))) = (l1, l2) else {
        panic!("both callers lead with caching off");
    };
    assert!(!a.is_fleet() && !a.tracks_dependencies());
    assert!(!a.stores(&LoadOutcome::Value(b("new")), &opts(&[])));
    let settled = a
        .settle(LoadOutcome::Value(b("new")), &opts(&["t"]))
        .await
        .expect("settle");
    assert_eq!(
        settled.entry().payload,
        b("new"),
        "the caller gets its value"
    );
    second
        .complete(b("other"), &opts(&[]))
        .await
        .expect("complete");
    assert_eq!(
        value(&c, "k").await,
        Some(b("old")),
        "a bypassed load stored"
    );
    let s = c.stats().await;
    assert_eq!(
        [s.leads, s.not_cached, s.loads_completed],
        [0, 0, 0],
        "a bypassed read-through moved the counters"
    );
    let many = off.lookup_many(&["k", "w"]).await.expect("lookup_many");
    assert!(many.iter().all(|m| matches!(m, ManyLookup::Lead(_))));
    let leases = off.try_leases(&["w"], false).await.expect("try_leases");
    let items = leases.into_iter().map(|l| (l, b("warm"))).collect();
    assert_eq!(
        off.complete_many(items, &opts(&[])).await.expect("warm"),
        0,
        "nothing stored, none counted"
    );
    assert_eq!(value(&c, "w").await, None);

    // Value writes: checked, not stored.
    off.set("k", b("new"), &opts(&[])).await.expect("set");
    assert!(off.add("fresh", b("v"), &opts(&[])).await.expect("add"));
    assert!(!off.touch("k", Ttl::Never).await.expect("touch"));
    assert!(
        off.set_many(&[("k", b("new")), ("m", b("v"))], &opts(&[]))
            .await
            .expect("set_many")
            .is_empty()
    );
    assert_eq!(value(&c, "k").await, Some(b("old")));
    assert_eq!(value(&c, "fresh").await, None);
    assert_eq!(value(&c, "m").await, None);
    assert!(off.set("k", b("v"), &opts(&[""])).await.is_err());
    let int = WriteOptions::new(Ttl::Default, Format::INT);
    assert!(
        off.set("k", b("01"), &int).await.is_err(),
        "a bad INT is refused as ever"
    );

    // Counters and invalidations work as usual.
    assert_eq!(off.incr("n", 1).await.expect("incr"), 2);
    assert_eq!(value(&c, "n").await, Some(b("2")));
    off.invalidate_tags(&["t"]).await.expect("invalidate");
    assert_eq!(value(&c, "tagged").await, None);
    c.set("k", b("again"), &opts(&[])).await.expect("set");
    assert!(off.delete("k").await.expect("delete"));
    assert_eq!(value(&c, "k").await, None);
    c.set("k", b("again"), &opts(&[])).await.expect("set");
    off.set(
        "k",
        b("zero"),
        &WriteOptions::new(Ttl::After(Duration::ZERO), Format::RAW),
    )
    .await
    .expect("a zero TTL deletes");
    assert_eq!(value(&c, "k").await, None);
    c.set("k", b("again"), &opts(&[])).await.expect("set");
    off.clear().await.expect("clear");
    assert_eq!(value(&c, "k").await, None);

    // HTTP: a read passes through uncached; an unsafe request is unchanged.
    let route = Arc::new(
        Route::new(RouteOptions {
            ttl: Duration::from_secs(60),
            ..RouteOptions::default()
        })
        .expect("route"),
    );
    let exchange =
        |method: &str| Exchange::new(route.clone(), method, "/p", Vec::new(), Vec::new());
    assert_eq!(
        exchange("GET").start_local(&off, 0.0),
        Start::Step(Step::Pass(Bypass::Disabled))
    );
    assert_eq!(Bypass::Disabled.detail(), "disabled");
    assert_eq!(
        exchange("HEAD").start_local(&off, 0.0),
        Start::Step(Step::Pass(Bypass::Disabled)),
        "a HEAD's peek is a read too"
    );
    assert!(!c.identity().contains("redis"), "a digest, never the URL");
    assert_eq!(c.identity(), off.identity());
    assert_eq!(
        exchange("POST").start_local(&off, 0.0),
        Start::Step(Step::Unsafe)
    );
    assert!(matches!(
        exchange("GET").start_local(&c, 0.0),
        Start::Step(Step::Lookup(_))
    ));
}

#[tokio::test]
async fn l1_alone() {
    the_table(
        Cache::builder()
            .namespace(common::unique_ns("bypass-l1"))
            .build()
            .expect("cache"),
    )
    .await;
}

async fn on_redis(t: Target) {
    the_table(
        t.builder(&common::unique_ns("bypass"))
            .build()
            .expect("cache"),
    )
    .await;
}

on_both!(on_redis);

#[test]
fn identity_names_the_data_not_the_handle() {
    let ns = common::unique_ns("bypass-id");
    let mut seeds = common::cluster_seeds();
    let a = Cache::builder()
        .redis_cluster(seeds.clone())
        .namespace(&ns)
        .isolated(true)
        .build()
        .expect("cache");
    seeds.reverse();
    let b = Cache::builder()
        .redis_cluster(seeds)
        .namespace(&ns)
        .isolated(true)
        .build()
        .expect("cache");
    assert_eq!(
        a.identity(),
        b.identity(),
        "seeds in another order, same Cluster"
    );
    let other = Cache::builder()
        .redis_cluster(common::cluster_seeds())
        .namespace(common::unique_ns("bypass-id"))
        .build()
        .expect("cache");
    assert_ne!(a.identity(), other.identity(), "another namespace");
}
