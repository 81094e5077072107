//! Redis going away and coming back, on a server of the test's own (started
//! and SIGKILLed by PID): the circuit breaker stops paying a timeout per
//! call, and the cache uses Redis again once it is back, without a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::OwnRedis;
use stratacache::{Cache, Error, Lookup, LookupPolicy, Stats, WriteOptions};

/// A cache on `url` that notices trouble quickly (200 ms timeouts, a
/// breaker of 3 failures / 100 ms), with state of its own.
fn quick(url: &str, ns: &str) -> Cache {
    Cache::builder()
        .redis_url(url)
        .namespace(ns)
        .op_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .breaker(3, Duration::from_millis(100))
        .isolated(true)
        .build()
        .expect("cache")
}

/// Wait (at most 10 s) until `cache`'s counters satisfy `f`.
async fn until_stats(cache: &Cache, what: &str, f: impl Fn(&Stats) -> bool) {
    common::eventually(what, Duration::from_secs(10), || async {
        f(&cache.stats().await)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_while_redis_is_down_and_closes_when_it_is_back() {
    let mut server = OwnRedis::start();
    common::answers(&server.url).await;
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
    assert_eq!(cache.stats().await.breaker_open, 1, "the gauge says so");
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
    common::answers(&server.url).await;
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
    assert_eq!(cache.stats().await.breaker_open, 0);
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
    common::answers(&server.url).await;
    let cache = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(common::unique_ns("frozen"))
        .op_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .isolated(true)
        .build()
        .expect("cache");
    cache.get("probe").await.expect("get");
    until_stats(&cache, "the subscription", |s| s.bus_connects >= 1).await;
    // The server hangs with every connection still open: no FIN, no RST.
    server.signal("-STOP");
    until_stats(&cache, "the heartbeat notices", |s| s.bus_outages >= 1).await;
    server.signal("-CONT");
    until_stats(&cache, "the subscription is back", |s| s.bus_connects >= 2).await;
}

fn payload(e: Option<std::sync::Arc<stratacache::Entry>>) -> Option<Vec<u8>> {
    e.map(|e| e.payload.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_serves_while_redis_is_away_and_forgets_local_writes_once_back() {
    let mut server = OwnRedis::start();
    common::answers(&server.url).await;
    let ns = common::unique_ns("outage");
    let cache = quick(&server.url, &ns);
    let opts = WriteOptions::default();
    cache
        .set("kept", Bytes::from_static(b"v1"), &opts)
        .await
        .expect("set while up");
    until_stats(&cache, "the subscription", |s| s.bus_connects >= 1).await;

    server.kill();
    until_stats(&cache, "the bus notices", |s| s.bus_outages >= 1).await;
    // Neither Redis nor the bus: L1 is what is left, and it is served.
    assert_eq!(
        payload(cache.get("kept").await.expect("get")),
        Some(b"v1".to_vec())
    );
    match cache
        .lookup("kept", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Fresh(e, _) => assert_eq!(&e.payload[..], b"v1"),
        other => panic!("expected L1's value, got {other:?}"),
    }
    // A write Redis cannot take is kept by this process (and reported).
    let r = cache.set("local", Bytes::from_static(b"w"), &opts).await;
    assert!(matches!(r, Err(ref e) if e.is_l2()), "{r:?}");
    assert_eq!(
        payload(cache.get("local").await.expect("get")),
        Some(b"w".to_vec())
    );
    // So is a value loaded by a read-through.
    match cache
        .lookup("cold", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Lead(lease) => {
            lease
                .complete(Bytes::from_static(b"c"), &opts)
                .await
                .expect("complete");
        }
        other => panic!("expected to load, got {other:?}"),
    }
    assert_eq!(
        payload(cache.get("cold").await.expect("get")),
        Some(b"c".to_vec())
    );
    let s = cache.stats().await;
    assert_eq!(s.bus_connected, 0, "{s:?}");
    assert!(s.l1_outage_hits >= 3, "{s:?}");
    assert!(s.local_writes >= 2, "{s:?}");

    // Redis comes back empty on the same address, and another instance
    // writes `kept` there: an invalidation this one could not hear.
    let server = OwnRedis::on_port(server.port);
    common::answers(&server.url).await;
    let other = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(ns)
        .isolated(true)
        .build()
        .expect("cache");
    other
        .set("kept", Bytes::from_static(b"v2"), &opts)
        .await
        .expect("set on the restarted server");
    let back = tokio::time::Instant::now();
    common::eventually(
        "the new value, from Redis",
        Duration::from_secs(5),
        || async { payload(cache.get("kept").await.unwrap_or(None)) == Some(b"v2".to_vec()) },
    )
    .await;
    until_stats(&cache, "the subscription again", |s| s.bus_connects >= 2).await;
    let recovered = back.elapsed();
    assert_eq!(cache.stats().await.bus_connected, 1);
    // What Redis never took is not replayed, and no longer served.
    assert_eq!(payload(cache.get("local").await.expect("get")), None);
    assert_eq!(payload(cache.get("cold").await.expect("get")), None);
    assert_eq!(
        payload(cache.get("kept").await.expect("get")),
        Some(b"v2".to_vec())
    );
    assert!(
        recovered < Duration::from_secs(1),
        "back on Redis (commands and bus) {recovered:?} after it answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_while_cut_off_is_not_served_afterwards() {
    let server = OwnRedis::start();
    common::answers(&server.url).await;
    let proxy = common::Proxy::start(server.port).await;
    let ns = common::unique_ns("cutoff");
    let cut_off = quick(&proxy.url, &ns);
    let peer = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(ns)
        .isolated(true)
        .build()
        .expect("cache");
    let plain = WriteOptions::default();
    let tagged = WriteOptions::default().with_tags(vec!["T".into()]);
    cut_off
        .set("k", Bytes::from_static(b"old"), &plain)
        .await
        .expect("set");
    cut_off
        .set("t", Bytes::from_static(b"tagged"), &tagged)
        .await
        .expect("set");
    until_stats(&cut_off, "the subscription", |s| s.bus_connects >= 1).await;
    // Reads while Redis answers: the versions the first subscription made
    // this process forget (the generation, T's) are known again.
    cut_off.get("k").await.expect("get");
    cut_off.get("t").await.expect("get");

    proxy.cut();
    until_stats(&cut_off, "the bus notices", |s| s.bus_outages >= 1).await;
    peer.delete("k").await.expect("delete");
    peer.invalidate_tags(&["T"]).await.expect("invalidate");
    // Cut off, it serves what it has (the cache is an optimisation; the
    // alternative is sending every read to the loaders).
    assert_eq!(
        payload(cut_off.get("k").await.expect("get")),
        Some(b"old".to_vec())
    );

    proxy.restore();
    common::eventually(
        "the delete seen once Redis is reachable",
        Duration::from_secs(5),
        || async { matches!(cut_off.get("k").await, Ok(None)) },
    )
    .await;
    until_stats(&cut_off, "the subscription again", |s| s.bus_connects >= 2).await;
    assert_eq!(payload(cut_off.get("k").await.expect("get")), None);
    assert_eq!(
        payload(cut_off.get("t").await.expect("get")),
        None,
        "the tag was invalidated while it was cut off"
    );
    match cut_off
        .lookup("t", &LookupPolicy::default())
        .await
        .expect("lookup")
    {
        Lookup::Lead(lease) => {
            lease.abandon(std::sync::Arc::new(std::io::Error::other("test done")))
        }
        other => panic!("a tag-invalidated entry served as fresh: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_costs_callers_at_most_the_timeout_and_opens_the_breaker() {
    let server = OwnRedis::start();
    common::answers(&server.url).await;
    let proxy = common::Proxy::start(server.port).await;
    let op_timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .redis_url(proxy.url.clone())
        .namespace(common::unique_ns("slow"))
        .op_timeout(op_timeout)
        .connect_timeout(Duration::from_secs(2))
        .breaker(5, Duration::from_millis(200))
        .isolated(true)
        .build()
        .expect("cache");
    cache
        .set("k", Bytes::from_static(b"v"), &WriteOptions::default())
        .await
        .expect("set while fast");

    proxy.set_delay(Duration::from_millis(200));
    let mut took = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    for i in 0..300 {
        ticks.tick().await;
        let t = tokio::time::Instant::now();
        let r = cache.get(&format!("miss{i}")).await;
        took.push(t.elapsed());
        assert!(matches!(r, Err(ref e) if e.is_l2()), "{r:?}");
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(
        p99 <= op_timeout + Duration::from_millis(100),
        "p99 {p99:?} with a {op_timeout:?} timeout"
    );
    let s = cache.stats().await;
    assert!(s.breaker_opens >= 1, "{s:?}");
    assert!(
        s.breaker_short_circuits >= 200,
        "most calls skipped Redis: {s:?}"
    );

    proxy.set_delay(Duration::ZERO);
    // (A key L1 does not hold, so the call has to reach Redis.)
    common::eventually("the breaker closes", Duration::from_secs(5), || async {
        cache.get("probe").await.is_ok()
    })
    .await;
    let before = cache.stats().await.breaker_short_circuits;
    for i in 0..20 {
        cache.get(&format!("again{i}")).await.expect("Redis again");
    }
    assert_eq!(cache.stats().await.breaker_short_circuits, before);
}

/// L2 reads so far (every call that reached Redis for a value).
fn l2_reads(s: &Stats) -> u64 {
    s.l2_hits + s.l2_misses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_keeps_l1_serving_and_invalidations_arriving() {
    let server = OwnRedis::start();
    common::answers(&server.url).await;
    let proxy = common::Proxy::start(server.port).await;
    let ns = common::unique_ns("slow-l1");
    // PINGs will take longer than connect_timeout: the bus is late, not
    // down, and L1 keeps serving within its lag bound (2 s here).
    let slow = Cache::builder()
        .redis_url(proxy.url.clone())
        .namespace(&ns)
        .connect_timeout(Duration::from_millis(150))
        .isolated(true)
        .build()
        .expect("cache");
    let writer = Cache::builder()
        .redis_url(server.url.clone())
        .namespace(&ns)
        .isolated(true)
        .build()
        .expect("cache");
    let opts = WriteOptions::default();
    slow.set("hot", Bytes::from_static(b"v1"), &opts)
        .await
        .expect("set");
    until_stats(&slow, "the subscription", |s| s.bus_connects >= 1).await;
    // Versions known again after the first subscription (see above).
    slow.get("hot").await.expect("get while fast");

    proxy.set_delay(Duration::from_millis(300));
    // Several heartbeats' worth of hits, every one from L1: none reaches
    // the slow server, the bus is never given up on.
    let before = slow.stats().await;
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..300 {
        ticks.tick().await;
        assert_eq!(
            payload(slow.get("hot").await.expect("get")),
            Some(b"v1".to_vec())
        );
    }
    let s = slow.stats().await;
    assert_eq!(
        l2_reads(&s),
        l2_reads(&before),
        "an L1 hit went to Redis: {s:?}"
    );
    assert_eq!(s.l1_distrusted, 0, "{s:?}");
    assert_eq!(s.bus_outages, 0, "{s:?}");
    assert_eq!(s.bus_connected, 1, "{s:?}");

    // A change made elsewhere still reaches the slow instance's L1 (the
    // bus is slow to answer PINGs, not to deliver), and no old value is
    // served once it has.
    writer
        .set("hot", Bytes::from_static(b"v2"), &opts)
        .await
        .expect("set elsewhere");
    common::eventually("the change arrives", Duration::from_secs(10), || async {
        payload(slow.get("hot").await.expect("get")) == Some(b"v2".to_vec())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            payload(slow.get("hot").await.expect("get")),
            Some(b"v2".to_vec())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bus_stops_l1_after_its_lag_bound() {
    let server = OwnRedis::start();
    common::answers(&server.url).await;
    let cache = quick(&server.url, &common::unique_ns("silent"));
    cache
        .set("hot", Bytes::from_static(b"v1"), &WriteOptions::default())
        .await
        .expect("set");
    until_stats(&cache, "the subscription", |s| s.bus_connects >= 1).await;
    // A read while Redis answers: the versions the first subscription made
    // this process forget are known again.
    assert_eq!(
        payload(cache.get("hot").await.expect("get")),
        Some(b"v1".to_vec())
    );
    // The server hangs with its connections open: the bus can no longer
    // prove it delivers invalidations. Within the lag bound (2 s) L1 still
    // serves...
    server.signal("-STOP");
    assert_eq!(
        payload(cache.get("hot").await.expect("get")),
        Some(b"v1".to_vec())
    );
    assert_eq!(cache.stats().await.l1_distrusted, 0);
    // ...after it, L1 is no longer trusted (the value is then served only
    // as the last resort of an unreachable Redis, counted apart).
    common::eventually("L1 is distrusted", Duration::from_secs(10), || async {
        let _ = cache.get("hot").await;
        cache.stats().await.l1_distrusted >= 1
    })
    .await;
    until_stats(&cache, "the heartbeat gives up", |s| s.bus_outages >= 1).await;
    server.signal("-CONT");
    until_stats(&cache, "the subscription is back", |s| s.bus_connects >= 2).await;
}

/// `fut` as a binding's sync method runs it (Python's `run`): polled once,
/// then blocked on by this thread, which carries its own Redis commands.
fn sync_call<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match stratacache::runtime::poll_once_sync(Box::pin(fut)) {
        Ok(r) => r,
        Err(fut) => stratacache::runtime::block_on_sync(fut),
    }
}

/// A sync caller's command carried on its own thread (a binding's sync
/// method: `poll_once_sync`, then `block_on_sync`) that times out leaves
/// its answer unread on that connection: the next command must not get
/// it. Redis is slowed behind a proxy that keeps commands in order, so a
/// connection used again would read `a`'s late answer for `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_sync_command_never_answers_the_next() {
    let server = OwnRedis::start();
    common::answers(&server.url).await;
    let proxy = common::Proxy::start(server.port).await;
    let op_timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .redis_url(proxy.url.clone())
        .namespace(common::unique_ns("synctimeout"))
        .l1_enabled(false)
        .op_timeout(op_timeout)
        .breaker(100, Duration::from_millis(100))
        .isolated(true)
        .build()
        .expect("cache");
    for (k, v) in [("a", b"va"), ("b", b"vb")] {
        cache
            .set(k, Bytes::from_static(v), &WriteOptions::default())
            .await
            .expect("set");
    }
    let proxy = std::sync::Arc::new(proxy);
    let (c, p) = (cache.clone(), proxy.clone());
    // A thread of its own, as a Python thread calling the sync API.
    let (first, second) = std::thread::spawn(move || {
        let sync_get = |k: &str| sync_call(c.get(k));
        p.set_delay(Duration::from_millis(400));
        let first = sync_get("a");
        p.set_delay(Duration::ZERO);
        (first, sync_get("b"))
    })
    .join()
    .expect("the sync caller");
    assert!(
        matches!(first, Err(Error::L2Timeout(d)) if d == op_timeout),
        "{first:?}"
    );
    let second = second.expect("b, on a fresh connection");
    assert_eq!(payload(second), Some(b"vb".to_vec()));
}

/// A sync call that has to open a connection is still bounded by
/// `op_timeout`, not `connect_timeout`: here a server that accepts and
/// never answers the connection's handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_call_waits_for_a_connection_only_as_long_as_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}", silent.local_addr().expect("addr"));
    // Every connection (the bus's too) held open, never answered; the
    // thread ends with the test process.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept() {
            held.push(s);
        }
    });
    let (op_timeout, connect_timeout) = (Duration::from_millis(100), Duration::from_secs(5));
    let cache = Cache::builder()
        .redis_url(url)
        .namespace(common::unique_ns("syncconnect"))
        .l1_enabled(false)
        .op_timeout(op_timeout)
        .connect_timeout(connect_timeout)
        .isolated(true)
        .build()
        .expect("cache");
    let c = cache.clone();
    let (r, took) = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = sync_call(c.get("k"));
        (r, t.elapsed())
    })
    .join()
    .expect("the sync caller");
    assert!(
        matches!(r, Err(Error::L2Timeout(d)) if d == op_timeout),
        "{r:?}"
    );
    assert!(
        took < connect_timeout / 2,
        "waited {took:?} for the connection"
    );
}
