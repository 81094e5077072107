//! Invalidation that reaches every instance: writes, deletes, tags and
//! clears through the bus, race-free deletes, and a bus outage. Each
//! `isolated` handle stands in for a separate process (own L1, flights,
//! metrics, bus subscription).

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Target;
use redis::aio::MultiplexedConnection;
use stratacache::key::generation_key;
use stratacache::{Cache, Format, Lookup, LookupPolicy, Ttl, WriteOptions};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn tagged(tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
        .with_grace(Duration::from_secs(60))
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..5000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn connected(c: &Cache) {
    c.get("bus-probe").await.expect("get");
    until("the bus subscription", || async {
        c.stats().await.bus_connects > 0
    })
    .await;
}

async fn pair(t: Target, prefix: &str) -> (Cache, Cache) {
    let ns = common::unique_ns(prefix);
    let a = t.builder(&ns).isolated(true).build().expect("cache");
    let bb = t.builder(&ns).isolated(true).build().expect("cache");
    connected(&a).await;
    connected(&bb).await;
    (a, bb)
}

/// `c` holds `key` in L1 (asserted by its hit counter). The writer's own
/// bus message for the write may still be on its way and evict the first
/// copy, so this reads until a read is an L1 hit (bounded).
async fn held_in_l1(c: &Cache, key: &str) {
    until("the key is held in L1", || async {
        c.get(key).await.expect("get").expect("value");
        let before = c.stats().await.l1_hits;
        c.get(key).await.expect("get").expect("value");
        c.stats().await.l1_hits == before + 1
    })
    .await;
}

async fn writes_and_deletes_reach_every_l1(t: Target) {
    let (a, bb) = pair(t, "inv-writes").await;
    a.set("k", b("v1"), &WriteOptions::default())
        .await
        .expect("set");
    held_in_l1(&bb, "k").await;
    a.set("k", b("v2"), &WriteOptions::default())
        .await
        .expect("set");
    until("b sees the new value", || async {
        bb.get("k")
            .await
            .expect("get")
            .is_some_and(|e| &e.payload[..] == b"v2")
    })
    .await;
    held_in_l1(&bb, "k").await;
    a.delete("k").await.expect("delete");
    until("b's copy is evicted", || async {
        bb.get("k").await.expect("get").is_none()
    })
    .await;
}

async fn tags_invalidate_everywhere_in_o1(t: Target) {
    let (a, bb) = pair(t, "inv-tags").await;
    // Keys in different Cluster slots, two tags.
    for (k, tags) in [
        ("k1", &["t"][..]),
        ("k2", &["t", "u"][..]),
        ("k3", &["u"][..]),
    ] {
        a.set(k, b(k), &tagged(tags)).await.expect("set");
        held_in_l1(&bb, k).await;
    }
    a.invalidate_tags(&["t"]).await.expect("invalidate");
    // The invalidating instance itself: at once.
    assert!(a.get("k1").await.expect("get").is_none());
    assert!(a.get("k2").await.expect("get").is_none());
    assert!(
        a.get("k3").await.expect("get").is_some(),
        "other tags untouched"
    );
    until("b learns the new tag version", || async {
        bb.get("k1").await.expect("get").is_none()
    })
    .await;
    assert!(bb.get("k2").await.expect("get").is_none());
    assert!(bb.get("k3").await.expect("get").is_some());
    // Invalidated means stale, not gone: servable by callers that accept
    // stale values (within the grace), and one of them refreshes it.
    match bb
        .lookup("k1", &LookupPolicy::default().allow_stale(true))
        .await
        .expect("lookup")
    {
        Lookup::Stale(e, Some(lease)) => {
            assert_eq!(&e.payload[..], b"k1");
            lease
                .complete(b("k1-new"), &tagged(&["t"]))
                .await
                .expect("complete");
        }
        other => panic!("expected a stale value and a refresh, got {other:?}"),
    }
    assert_eq!(
        &a.get("k1").await.expect("get").expect("value").payload[..],
        b"k1-new",
        "the refreshed entry records the new version"
    );
    assert!(bb.stats().await.stale_by_tag > 0);
}

async fn invalidation_during_a_load_makes_its_result_stale(t: Target) {
    let (a, bb) = pair(t, "inv-race-tag").await;
    let policy = LookupPolicy::default().tags(vec!["t".into()]);
    let Lookup::Lead(lease) = a.lookup("k", &policy).await.expect("lookup") else {
        panic!("leads");
    };
    // The origin changed while the loader was reading it.
    bb.invalidate_tags(&["t"]).await.expect("invalidate");
    lease
        .complete(b("old"), &tagged(&["t"]))
        .await
        .expect("complete");
    until(
        "a sees the version the load started under is gone",
        || async { a.get("k").await.expect("get").is_none() },
    )
    .await;
    assert!(bb.get("k").await.expect("get").is_none());
}

async fn clear_reaches_every_instance(t: Target) {
    let (a, bb) = pair(t, "inv-clear").await;
    a.set("k", b("v"), &WriteOptions::default())
        .await
        .expect("set");
    held_in_l1(&bb, "k").await;
    a.clear().await.expect("clear");
    assert!(a.get("k").await.expect("get").is_none());
    until("b's L1 is cleared", || async {
        bb.get("k").await.expect("get").is_none()
    })
    .await;
    // The namespace works as before afterwards.
    bb.set("k", b("again"), &WriteOptions::default())
        .await
        .expect("set");
    until("a sees the new entry", || async {
        a.get("k").await.expect("get").is_some()
    })
    .await;
}

async fn set_wins_over_a_background_refresh(t: Target) {
    let (a, bb) = pair(t, "inv-race-set").await;
    a.set(
        "k",
        b("v1"),
        &WriteOptions::new(Ttl::After(Duration::from_millis(1)), Format::RAW)
            .with_grace(Duration::from_secs(60)),
    )
    .await
    .expect("set");
    tokio::time::sleep(Duration::from_millis(3)).await;
    let Lookup::Stale(_, Some(refresh)) = a
        .lookup("k", &LookupPolicy::default().allow_stale(true))
        .await
        .expect("lookup")
    else {
        panic!("a refreshes in the background");
    };
    // A write lands while the refresh is loading...
    bb.set("k", b("written"), &WriteOptions::default())
        .await
        .expect("set");
    // ...and the refresh, computed from older data, must not overwrite it.
    refresh
        .complete(b("refreshed-from-old-data"), &WriteOptions::default())
        .await
        .expect("complete");
    for c in [&a, &bb] {
        until("every instance serves the write", || async {
            c.get("k")
                .await
                .expect("get")
                .is_some_and(|e| &e.payload[..] == b"written")
        })
        .await;
    }
}

async fn delete_racing_a_slow_loader(t: Target) {
    let (a, bb) = pair(t, "inv-race-del").await;
    for i in 0..40u64 {
        let key = format!("k{i}");
        let Lookup::Lead(lease) = a
            .lookup(&key, &LookupPolicy::default())
            .await
            .expect("lookup")
        else {
            panic!("leads");
        };
        // Randomized interleaving of the delete and the loader's completion.
        let d1 = Duration::from_micros(common::rand_u64() % 3000);
        let d2 = Duration::from_micros(common::rand_u64() % 3000);
        let del = async {
            tokio::time::sleep(d1).await;
            bb.delete(&key).await.expect("delete");
        };
        let load = async {
            tokio::time::sleep(d2).await;
            lease
                .complete(b("old"), &WriteOptions::default())
                .await
                .expect("complete");
        };
        tokio::join!(del, load);
        // The load began before the delete: its value is never served after
        // the delete, by anyone.
        for c in [&a, &bb] {
            until("the old value is gone", || async {
                c.get(&key).await.expect("get").is_none()
            })
            .await;
        }
    }
}

on_both!(
    writes_and_deletes_reach_every_l1,
    tags_invalidate_everywhere_in_o1,
    invalidation_during_a_load_makes_its_result_stale,
    clear_reaches_every_instance,
    set_wins_over_a_background_refresh,
    delete_racing_a_slow_loader,
);

/// A redis-server of the test's own (its pub/sub clients are killed) with
/// a raw connection to it, and two instances on one namespace there.
async fn own_pair(
    prefix: &str,
) -> (
    common::OwnRedis,
    MultiplexedConnection,
    String,
    Cache,
    Cache,
) {
    let redis = common::OwnRedis::start();
    let mut raw = None;
    for _ in 0..500 {
        if let Ok(c) = redis::Client::open(redis.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
        {
            raw = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let raw = raw.expect("own redis-server answers");
    let ns = common::unique_ns(prefix);
    let mk = || {
        Cache::builder()
            .redis_url(redis.url.clone())
            .namespace(&ns)
            .isolated(true)
            .build()
            .expect("cache")
    };
    let (a, bb) = (mk(), mk());
    connected(&a).await;
    connected(&bb).await;
    (redis, raw, ns, a, bb)
}

/// Cut every subscription of the server (ours only: it is ours).
async fn kill_subscriptions(raw: &mut MultiplexedConnection) {
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(raw)
        .await
        .expect("CLIENT KILL");
}

/// Redis lost the generation key (a restart without persistence, an
/// eviction) while entries written with it are there: once the bus is back
/// and the versions are reset, the same generation is re-created, so those
/// entries stay readable and both instances agree; `clear()` still clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_generation_is_recreated_not_replaced() {
    let (_redis, mut raw, ns, a, bb) = own_pair("inv-gen-lost").await;
    a.set("k", b("v"), &WriteOptions::default())
        .await
        .expect("set");
    let _: i64 = redis::cmd("DEL")
        .arg(generation_key(&ns))
        .query_async(&mut raw)
        .await
        .expect("DEL");
    kill_subscriptions(&mut raw).await;
    for c in [&a, &bb] {
        until("the bus is back", || async {
            c.stats().await.bus_connects >= 2
        })
        .await;
    }
    for c in [&a, &bb] {
        let e = c.get("k").await.expect("get").expect("still readable");
        assert_eq!(&e.payload[..], b"v");
    }
    assert_eq!(a.stats().await.stale_by_generation, 0);
    a.clear().await.expect("clear");
    assert!(a.get("k").await.expect("get").is_none());
    until("the clear reaches b", || async {
        bb.get("k").await.expect("get").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_outage_stops_l1_until_the_subscription_is_back() {
    let (_redis, mut raw, _ns, a, bb) = own_pair("inv-outage").await;
    a.set("k", b("old"), &WriteOptions::default())
        .await
        .expect("set");
    held_in_l1(&bb, "k").await;
    kill_subscriptions(&mut raw).await;
    until("b notices", || async { bb.stats().await.bus_outages >= 1 }).await;
    // A delete whose message b may never see.
    a.delete("k").await.expect("delete");
    // Once it noticed, b never serves the old value again.
    assert!(bb.get("k").await.expect("get").is_none());
    until("b resubscribes", || async {
        bb.stats().await.bus_connects >= 2
    })
    .await;
    assert!(bb.get("k").await.expect("get").is_none());
    // And serves from L1 again.
    bb.set("k2", b("new"), &WriteOptions::default())
        .await
        .expect("set");
    held_in_l1(&bb, "k2").await;
}
