//! Redis going away and coming back, on a server of the test's own (started
//! and SIGKILLed by PID): the circuit breaker stops paying a timeout per
//! call, and the cache uses Redis again once it is back, without a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::OwnRedis;
use stratacache::{Cache, Error, Lookup, LookupPolicy, WriteOptions};

async fn answers(url: &str) {
    for _ in 0..500 {
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("redis-server at {url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_while_redis_is_down_and_closes_when_it_is_back() {
    let mut server = OwnRedis::start();
    answers(&server.url).await;
    let cache = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(common::unique_ns("faults"))
        .op_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .breaker(3, Duration::from_millis(300))
        .build()
        .expect("cache");
    cache
        .set("k", Bytes::from_static(b"v"), &WriteOptions::default())
        .await
        .expect("set while up");

    server.kill();
    // Each call fails (typed, bounded by the op timeout) until the breaker
    // opens; then calls are refused at once.
    let mut failures = 0;
    while cache.stats().await.breaker_opens == 0 {
        let r = cache.get("other").await;
        assert!(
            matches!(r, Err(ref e) if e.is_l2()),
            "a Redis error, typed: {r:?}"
        );
        failures += 1;
        assert!(failures <= 10, "the breaker never opened");
    }
    let r = cache.get("other").await;
    assert!(matches!(r, Err(Error::L2Unavailable(_))), "{r:?}");
    assert!(cache.stats().await.breaker_short_circuits >= 1);
    // A read-through still works: Redis trouble means "load it yourself".
    match cache
        .lookup("cold", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Lead(lease) => {
            lease
                .complete(Bytes::from_static(b"loaded"), &WriteOptions::default())
                .await
                .expect("complete");
        }
        other => panic!("expected to load, got {other:?}"),
    }

    // Redis comes back on the same address: the breaker's probe finds it
    // and the cache uses it again, without being rebuilt.
    let server = OwnRedis::on_port(server.port);
    answers(&server.url).await;
    let mut back = false;
    for _ in 0..500 {
        if cache
            .set("k2", Bytes::from_static(b"v2"), &WriteOptions::default())
            .await
            .is_ok()
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "the cache never used Redis again");
    let other = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(cache.namespace())
        .isolated(true)
        .build()
        .expect("cache");
    assert_eq!(
        &other
            .get("k2")
            .await
            .expect("get")
            .expect("in Redis")
            .payload[..],
        b"v2",
        "the write went to the restarted Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_noticed_by_the_bus_heartbeat() {
    let server = OwnRedis::start();
    answers(&server.url).await;
    let cache = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(common::unique_ns("frozen"))
        .op_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .isolated(true)
        .build()
        .expect("cache");
    cache.get("probe").await.expect("get");
    let until = |what: &'static str, f: fn(&stratacache::Stats) -> bool| {
        let cache = cache.clone();
        async move {
            for _ in 0..1000 {
                if f(&cache.stats().await) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("timed out waiting for: {what}");
        }
    };
    until("the subscription", |s| s.bus_connects >= 1).await;
    // The server hangs with every connection still open: no FIN, no RST.
    server.signal("-STOP");
    until("the heartbeat notices", |s| s.bus_outages >= 1).await;
    server.signal("-CONT");
    until("the subscription is back", |s| s.bus_connects >= 2).await;
}
