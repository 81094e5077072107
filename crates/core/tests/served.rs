//! How a read was served (`Source`, `Served`: what the bindings' spans and
//! channel events say): the tier of a hit, a wait on another caller's
//! load, a stale answer, a lead. Standalone Redis and a Redis Cluster.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::{Cache, Format, Lookup, LookupPolicy, Served, Source, Stats, Ttl, WriteOptions};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn minute() -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
}

fn served(r: &Lookup) -> (&'static str, Option<&'static str>) {
    (r.served().outcome(), r.served().tier())
}

/// Two processes' views of one namespace, each with its own L1.
async fn two(t: Target, prefix: &str) -> (Cache, Cache) {
    let ns = common::unique_ns(prefix);
    let build = || {
        t.builder(&ns)
            .isolated(true)
            .lease_ttl(Duration::from_secs(5))
            .build()
            .expect("cache")
    };
    let (a, bb) = (build(), build());
    for c in [&a, &bb] {
        c.get("bus-probe").await.expect("get");
        let mut up = false;
        for _ in 0..1000 {
            if c.stats().await.bus_connects > 0 {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(up, "the bus never connected");
    }
    (a, bb)
}

async fn plain_reads_name_their_tier(t: Target) {
    let (a, bb) = two(t, "served-get").await;
    a.set("k", b("v"), &minute()).await.expect("set");
    let (e, s) = a.get_sourced("k").await.expect("get").expect("hit");
    assert_eq!((&e.payload[..], s), (&b"v"[..], Source::L1));
    // b has never read it: Redis answers, and then b's L1 (once the bus
    // messages of a's write, which evict b's copy, have all come).
    let (_, s) = bb.get_sourced("k").await.expect("get").expect("hit");
    assert_eq!(s, Source::L2);
    let mut from_l1 = false;
    for _ in 0..2000 {
        let (_, s) = bb.get_sourced("k").await.expect("get").expect("hit");
        if s == Source::L1 {
            from_l1 = true;
            break;
        }
        assert_eq!(s, Source::L2);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(from_l1, "b's L1 never answered");
    assert!(bb.get_sourced("missing").await.expect("get").is_none());
}

async fn read_throughs_name_how_they_were_served(t: Target) {
    let (a, bb) = two(t, "served-lookup").await;
    let p = LookupPolicy::default();
    let lead = a.lookup("k", &p).await.expect("lookup");
    assert_eq!(served(&lead), ("loaded", None));
    let Lookup::Lead(lease) = lead else {
        panic!("a leads");
    };
    lease.complete(b("v"), &minute()).await.expect("complete");
    let hit = a.lookup("k", &p).await.expect("lookup");
    assert!(matches!(hit, Lookup::Fresh(_, Source::L1)), "{hit:?}");
    assert_eq!(served(&hit), ("hit", Some("l1")));
    let hit = bb.lookup("k", &p).await.expect("lookup");
    assert!(matches!(hit, Lookup::Fresh(_, Source::L2)), "{hit:?}");
    assert_eq!(served(&hit), ("hit", Some("l2")));

    // Always due: the L1 hit that starts an early refresh is an L1 hit.
    let due = LookupPolicy::default().refresh_ahead(1.0);
    let r = a.lookup("k", &due).await.expect("lookup");
    assert_eq!(served(&r), ("hit", Some("l1")));
    let Lookup::Refresh(e, lease) = r else {
        panic!("a refreshes early: {r:?}");
    };
    assert_eq!(&e.payload[..], b"v");
    lease.complete(b("v2"), &minute()).await.expect("complete");

    // Stale within its grace: served as stale.
    let brief = WriteOptions::new(Ttl::After(Duration::from_millis(1)), Format::RAW)
        .with_grace(Duration::from_secs(60));
    a.set("s", b("old"), &brief).await.expect("set");
    tokio::time::sleep(Duration::from_millis(3)).await;
    let r = a
        .lookup("s", &LookupPolicy::default().allow_stale(true))
        .await
        .expect("lookup");
    assert!(matches!(r, Lookup::Stale(..)), "{r:?}");
    assert_eq!(served(&r), ("stale", None));
}

/// `leader` leads `k`'s load; `waiter` looks it up meanwhile and, once
/// `waits` counts it waiting, the load completes: it gets it as waited.
async fn waits_for_the_load(leader: &Cache, waiter: &Cache, waits: fn(&Stats) -> u64) {
    let p = LookupPolicy::default();
    let Lookup::Lead(lease) = leader.lookup("k", &p).await.expect("lookup") else {
        panic!("leads");
    };
    let task = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.lookup("k", &LookupPolicy::default()).await })
    };
    for _ in 0..2000 {
        if waits(&waiter.stats().await) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(waits(&waiter.stats().await), 1);
    lease.complete(b("v"), &minute()).await.expect("complete");
    let r = task.await.expect("task").expect("lookup");
    assert!(matches!(r, Lookup::Fresh(_, Source::Waited)), "{r:?}");
    assert_eq!(served(&r), ("waited", None));
}

/// A caller that joins this process's load of the key (its flight).
async fn a_waiter_in_the_process_waited(t: Target) {
    let (a, _) = two(t, "served-wait").await;
    waits_for_the_load(&a, &a, |s| s.coalesced_waits).await;
}

/// A process that waits on another process's fleet lease.
async fn a_waiter_in_the_fleet_waited(t: Target) {
    let (a, bb) = two(t, "served-fleet").await;
    waits_for_the_load(&a, &bb, |s| s.lease_waits).await;
}

#[test]
fn codes_round_trip() {
    for s in [
        Served::L1,
        Served::L2,
        Served::Waited,
        Served::Stale,
        Served::Loaded,
    ] {
        assert_ne!(s.code(), 0);
        assert_eq!(Served::from_code(s.code()), Some(s));
    }
    assert_eq!(Served::from_code(0), None);
    assert_eq!(Served::from_code(6), None);
    assert_eq!(Source::Waited.as_str(), "waited");
}

on_both!(
    plain_reads_name_their_tier,
    read_throughs_name_how_they_were_served,
    a_waiter_in_the_process_waited,
    a_waiter_in_the_fleet_waited,
);
