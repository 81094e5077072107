//! The cache API against real Redis: every scenario runs on a standalone
//! server and on a 3-master Redis Cluster.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::key::redis_keys;
use stratacache::{Cache, Error, Format, Lookup, LookupPolicy, Ttl, WriteOptions};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ttl(ms: u64) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_millis(ms)), Format::RAW)
}

fn int() -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::INT)
}

/// Two caches on the same data: `a` with its own L1, `l2` without L1 (the
/// view of another process).
fn pair(t: Target, prefix: &str) -> (Cache, Cache) {
    let ns = common::unique_ns(prefix);
    let a = t.builder(&ns).build().expect("cache");
    let l2 = t.builder(&ns).l1_enabled(false).build().expect("cache");
    (a, l2)
}

async fn basic_ops(t: Target) {
    let (a, other) = pair(t, "ops");
    let d = WriteOptions::default();
    a.set("user:1", b("ada"), &d).await.expect("set");
    assert_eq!(
        &other
            .get("user:1")
            .await
            .expect("get")
            .expect("hit")
            .payload[..],
        b"ada"
    );
    assert!(other.has_key("user:1").await.expect("has"));
    assert!(!other.has_key("user:2").await.expect("has"));

    // add: only when absent
    assert!(!a.add("user:1", b("x"), &d).await.expect("add"));
    assert!(a.add("user:2", b("grace"), &d).await.expect("add"));
    assert_eq!(
        &other
            .get("user:2")
            .await
            .expect("get")
            .expect("hit")
            .payload[..],
        b"grace"
    );

    // many: across slots on Cluster
    let items: Vec<(String, Bytes)> = (0..50)
        .map(|i| (format!("m:{i}"), b(&format!("v{i}"))))
        .collect();
    let refs: Vec<(&str, Bytes)> = items.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    assert!(a.set_many(&refs, &d).await.expect("set_many").is_empty());
    let mut keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    keys.push("missing");
    let got = other.get_many(&keys).await.expect("get_many");
    for (i, g) in got.iter().enumerate().take(50) {
        assert_eq!(
            &g.as_ref().expect("hit").payload[..],
            format!("v{i}").as_bytes()
        );
    }
    assert!(got[50].is_none());
    assert_eq!(a.delete_many(&keys[..10]).await.expect("delete_many"), 10);
    assert!(other.get("m:0").await.expect("get").is_none());
    assert!(
        a.get("m:0").await.expect("get").is_none(),
        "L1 copy gone too"
    );

    assert!(a.delete("user:1").await.expect("delete"));
    assert!(!a.delete("user:1").await.expect("delete"));
    assert!(other.get("user:1").await.expect("get").is_none());

    // keys that need hashing round-trip and stay distinct
    a.set("a{b}", b("braces"), &d).await.expect("set");
    a.set(&"k".repeat(500), b("long"), &d).await.expect("set");
    assert_eq!(
        &other.get("a{b}").await.expect("get").expect("hit").payload[..],
        b"braces"
    );
    assert_eq!(
        &other
            .get(&"k".repeat(500))
            .await
            .expect("get")
            .expect("hit")
            .payload[..],
        b"long"
    );
    assert!(matches!(a.get("").await, Err(Error::InvalidKey(_))));
}

async fn counters(t: Target) {
    let (a, other) = pair(t, "ctr");
    assert!(matches!(a.incr("n", 1).await, Err(Error::NotFound)));
    a.set("n", b("10"), &int()).await.expect("set");
    // 8 handles x 50 increments, concurrently: atomic across "processes".
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 { a.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                c.incr("n", 1).await.expect("incr");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(a.incr("n", 0).await.expect("incr"), 410);
    assert_eq!(other.decr("n", 20).await.expect("decr"), 390);
    let e = a.get("n").await.expect("get").expect("hit");
    assert_eq!((e.meta.format, &e.payload[..]), (Format::INT, &b"390"[..]));
    // The counter keeps its TTL through increments.
    let mut raw = t.raw().await;
    let ttl_left = raw.pttl(&redis_keys(a.namespace(), "n").value).await;
    assert!(ttl_left > 0 && ttl_left <= 60_000, "{ttl_left}");
    // Exact past 2^53 (Redis scripts see numbers as doubles).
    let big = (1_i64 << 53) - 1;
    a.set("n", b(&big.to_string()), &int()).await.expect("set");
    for i in 1..=3 {
        assert_eq!(a.incr("n", 1).await.expect("incr"), big + i);
    }
    assert_eq!(
        a.incr("n", i64::MAX - big - 3).await.expect("incr"),
        i64::MAX
    );
    a.set("n", b(&i64::MAX.to_string()), &int())
        .await
        .expect("set");
    assert!(matches!(a.incr("n", 1).await, Err(Error::NotAnInteger)));
    a.set("s", b("text"), &WriteOptions::default())
        .await
        .expect("set");
    assert!(matches!(a.incr("s", 1).await, Err(Error::NotAnInteger)));
}

async fn ttl_semantics(t: Target) {
    let (a, other) = pair(t, "ttl");
    let mut raw = t.raw().await;
    let rk = |k: &str| redis_keys(a.namespace(), k).value;

    a.set(
        "forever",
        b("v"),
        &WriteOptions::new(Ttl::Never, Format::RAW),
    )
    .await
    .expect("set");
    assert_eq!(raw.pttl(&rk("forever")).await, -1);

    a.set("short", b("v"), &ttl(300)).await.expect("set");
    let left = raw.pttl(&rk("short")).await;
    assert!(
        left > 0 && left <= 300,
        "Redis TTL is the entry's lifetime: {left}"
    );
    a.set(
        "graced",
        b("v"),
        &ttl(300).with_grace(Duration::from_secs(5)),
    )
    .await
    .expect("set");
    let left = raw.pttl(&rk("graced")).await;
    assert!(
        left > 300 && left <= 5_300,
        "Redis keeps it through the grace: {left}"
    );

    // Zero TTL means "do not cache": the key is removed.
    a.set("forever", b("v"), &ttl(0)).await.expect("set");
    assert!(other.get("forever").await.expect("get").is_none());

    // touch extends a live key and reports a missing one.
    a.set("touched", b("v"), &ttl(300)).await.expect("set");
    assert!(
        a.touch("touched", Ttl::After(Duration::from_secs(60)))
            .await
            .expect("touch")
    );
    let left = raw.pttl(&rk("touched")).await;
    assert!(left > 50_000, "{left}");
    assert!(!a.touch("nope", Ttl::Never).await.expect("touch"));
    a.set("cnt", b("1"), &int()).await.expect("set");
    assert!(a.touch("cnt", Ttl::Never).await.expect("touch"));
    assert_eq!(raw.pttl(&rk("cnt")).await, -1);

    // After the deadline passes, neither tier serves it: L1 never outlives L2.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(a.get("short").await.expect("get").is_none());
    assert!(other.get("short").await.expect("get").is_none());
    assert!(
        a.get("graced").await.expect("get").is_none(),
        "stale is not served by get"
    );
    assert!(
        a.get("touched").await.expect("get").is_some(),
        "touch moved the deadline"
    );
}

async fn clear_is_scoped(t: Target) {
    let (a, other) = pair(t, "clr");
    let neighbour = t
        .builder(&common::unique_ns("clr-other"))
        .build()
        .expect("cache");
    let mut raw = t.raw().await;
    for i in 0..300 {
        a.set(&format!("k{i}"), b("v"), &WriteOptions::default())
            .await
            .expect("set");
    }
    a.delete("k0").await.expect("delete"); // leaves a tombstone record too
    neighbour
        .set("k1", b("mine"), &WriteOptions::default())
        .await
        .expect("set");
    raw.set("foreign:key", b"untouched").await;
    a.clear().await.expect("clear");
    for i in [1, 150, 299] {
        assert!(a.get(&format!("k{i}")).await.expect("get").is_none());
        assert!(other.get(&format!("k{i}")).await.expect("get").is_none());
    }
    assert!(
        raw.get(&format!("{}:tomb", redis_keys(a.namespace(), "k0").value))
            .await
            .is_none()
    );
    assert_eq!(
        &neighbour
            .get("k1")
            .await
            .expect("get")
            .expect("hit")
            .payload[..],
        b"mine"
    );
    assert_eq!(
        raw.get("foreign:key").await.as_deref(),
        Some(&b"untouched"[..])
    );
}

async fn hostile_bytes_are_counted_misses(t: Target) {
    let ns = common::unique_ns("bad");
    let signed = t.builder(&ns).signing_key("k1").build().expect("cache");
    let mut raw = t.raw().await;
    let rk = |k: &str| redis_keys(&ns, k).value;
    raw.set(&rk("garbage"), b"\xc5\x01 definitely not an envelope")
        .await;
    raw.set(&rk("text"), b"hello").await;
    assert!(signed.get("garbage").await.expect("get").is_none());
    assert!(signed.get("text").await.expect("get").is_none());
    // Unsigned and wrongly signed entries are rejected by a signing reader.
    let unsigned = t
        .builder(&common::unique_ns("bad-u"))
        .l1_enabled(false)
        .build()
        .expect("cache");
    unsigned
        .set("x", b("payload"), &WriteOptions::default())
        .await
        .expect("set");
    let envelope = raw
        .get(&redis_keys(unsigned.namespace(), "x").value)
        .await
        .expect("written");
    raw.set(&rk("unsigned"), &envelope).await;
    let other_key = t
        .builder(&ns)
        .signing_key("k2")
        .l1_enabled(false)
        .build()
        .expect("cache");
    other_key
        .set("forged", b("payload"), &WriteOptions::default())
        .await
        .expect("set");
    assert!(signed.get("unsigned").await.expect("get").is_none());
    assert!(signed.get("forged").await.expect("get").is_none());
    // get_many and lookup count them the same way.
    let many = signed
        .get_many(&["garbage", "forged"])
        .await
        .expect("get_many");
    assert!(many.iter().all(Option::is_none));
    assert!(matches!(
        signed
            .lookup("garbage", &LookupPolicy::default())
            .await
            .expect("lookup"),
        Lookup::Lead(_)
    ));
    assert_eq!(signed.stats().await.decode_errors, 7);
    // A correctly signed entry is served.
    signed
        .set("good", b("ok"), &WriteOptions::default())
        .await
        .expect("set");
    let fresh = t
        .builder(&ns)
        .signing_key("k1")
        .l1_enabled(false)
        .build()
        .expect("cache");
    assert_eq!(
        &fresh.get("good").await.expect("get").expect("hit").payload[..],
        b"ok"
    );
}

async fn compression_round_trip(t: Target) {
    let (a, other) = pair(t, "zstd");
    let big = "{\"rows\":[".to_owned() + &"{\"id\":1,\"name\":\"same\"},".repeat(2000) + "]}";
    a.set("big", b(&big), &WriteOptions::default())
        .await
        .expect("set");
    let mut raw = t.raw().await;
    let stored = raw
        .get(&redis_keys(a.namespace(), "big").value)
        .await
        .expect("stored");
    assert!(
        stored.len() < big.len() / 10,
        "{} vs {}",
        stored.len(),
        big.len()
    );
    assert_eq!(
        &other.get("big").await.expect("get").expect("hit").payload[..],
        big.as_bytes()
    );
    let too_big = t
        .builder(&common::unique_ns("zstd-max"))
        .max_value_bytes(1000)
        .build()
        .expect("cache");
    assert!(matches!(
        too_big.set("big", b(&big), &WriteOptions::default()).await,
        Err(Error::ValueTooLarge { .. })
    ));
}

/// A loader that started before a delete must not store its (old) result.
async fn late_loader_loses_to_delete(t: Target) {
    let (a, other) = pair(t, "late");
    let Lookup::Lead(lease) = a
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("cold key leads");
    };
    // Another process deletes the key while we load.
    other.delete("k").await.expect("delete");
    let e = lease
        .complete(b("old"), &WriteOptions::default())
        .await
        .expect("complete");
    assert_eq!(
        &e.payload[..],
        b"old",
        "the caller still gets what it loaded"
    );
    assert!(
        other.get("k").await.expect("get").is_none(),
        "not stored in L2"
    );
    assert!(a.get("k").await.expect("get").is_none(), "not stored in L1");
    assert_eq!(a.stats().await.late_writes_refused, 1);

    // Same process: a set during the load wins in both tiers.
    let Lookup::Lead(lease) = a
        .lookup("j", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("cold key leads");
    };
    a.delete("j").await.expect("delete");
    a.set("j", b("new"), &WriteOptions::default())
        .await
        .expect("set");
    lease
        .complete(b("old"), &WriteOptions::default())
        .await
        .expect("complete");
    assert_eq!(
        &a.get("j").await.expect("get").expect("hit").payload[..],
        b"new"
    );
    assert_eq!(
        &other.get("j").await.expect("get").expect("hit").payload[..],
        b"new"
    );

    // Without interference the load is stored.
    let Lookup::Lead(lease) = a
        .lookup("m", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("cold key leads");
    };
    lease
        .complete(b("loaded"), &WriteOptions::default())
        .await
        .expect("complete");
    assert_eq!(
        &other.get("m").await.expect("get").expect("hit").payload[..],
        b"loaded"
    );
}

on_both!(
    basic_ops,
    counters,
    ttl_semantics,
    clear_is_scoped,
    hostile_bytes_are_counted_misses,
    compression_round_trip,
    late_loader_loses_to_delete,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_only_mode_supports_the_whole_api() {
    let c = Cache::builder()
        .namespace(common::unique_ns("l1"))
        .build()
        .expect("cache");
    let d = WriteOptions::default();
    c.set("a", b("1"), &d).await.expect("set");
    assert!(!c.add("a", b("2"), &d).await.expect("add"));
    assert!(c.add("b", b("2"), &d).await.expect("add"));
    assert!(
        c.set_many(&[("c", b("3")), ("d", b("4"))], &d)
            .await
            .expect("set_many")
            .is_empty()
    );
    let got = c
        .get_many(&["a", "b", "c", "d", "e"])
        .await
        .expect("get_many");
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 4);
    assert!(
        c.touch("a", Ttl::After(Duration::from_secs(5)))
            .await
            .expect("touch")
    );
    assert!(!c.touch("zz", Ttl::Never).await.expect("touch"));
    c.set("n", b("5"), &int()).await.expect("set");
    assert_eq!(c.incr("n", 2).await.expect("incr"), 7);
    assert_eq!(c.decr("n", 10).await.expect("decr"), -3);
    assert!(matches!(c.incr("a", 1).await, Err(Error::NotAnInteger)));
    assert!(matches!(c.incr("none", 1).await, Err(Error::NotFound)));
    assert!(c.has_key("a").await.expect("has"));
    assert!(c.delete("a").await.expect("delete"));
    assert!(!c.delete("a").await.expect("delete"));
    assert_eq!(
        c.delete_many(&["b", "c", "x"]).await.expect("delete_many"),
        2
    );
    c.clear().await.expect("clear");
    assert!(c.get("d").await.expect("get").is_none());
    let Lookup::Lead(lease) = c
        .lookup("l", &LookupPolicy::default())
        .await
        .expect("lookup")
    else {
        panic!("lead");
    };
    c.delete("l").await.expect("delete");
    lease.complete(b("late"), &d).await.expect("complete");
    assert!(
        c.get("l").await.expect("get").is_none(),
        "in-process delete fences the load"
    );
    c.set("short", b("v"), &ttl(100)).await.expect("set");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(c.get("short").await.expect("get").is_none());
    assert!(
        c.metrics_text()
            .await
            .contains("stratacache_l1_hits_total{namespace=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stays_within_its_byte_bound() {
    let c = Cache::builder()
        .namespace(common::unique_ns("bound"))
        .l1_max_bytes(1 << 20)
        .build()
        .expect("cache");
    let payload = Bytes::from(vec![7u8; 10_000]);
    for i in 0..1000 {
        c.set(&format!("k{i}"), payload.clone(), &WriteOptions::default())
            .await
            .expect("set");
    }
    let s = c.stats().await;
    assert!(s.l1_bytes <= 1 << 20, "{} bytes", s.l1_bytes);
    assert!(s.l1_evictions > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_a_bounded_typed_error_and_lookups_still_lead() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let c = Cache::builder()
        .redis_url(format!("redis://127.0.0.1:{port}"))
        .namespace(common::unique_ns("down"))
        .connect_timeout(Duration::from_millis(200))
        .op_timeout(Duration::from_millis(300))
        .build()
        .expect("building never needs Redis");
    let t0 = std::time::Instant::now();
    let err = c.get("k").await.expect_err("Redis is down");
    assert!(err.is_l2(), "{err:?}");
    assert!(matches!(err.code(), "E_L2_UNAVAILABLE" | "E_L2_TIMEOUT"));
    let lease = match c
        .lookup("k", &LookupPolicy::default())
        .await
        .expect("lookup fails open")
    {
        Lookup::Lead(l) => l,
        other => panic!("expected lead, got {other:?}"),
    };
    let e = lease
        .complete(b("from the database"), &WriteOptions::default())
        .await
        .expect("complete");
    assert_eq!(&e.payload[..], b"from the database");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded by the timeouts: {:?}",
        t0.elapsed()
    );
    assert!(c.stats().await.l2_errors >= 2);
}

#[tokio::test]
async fn bad_config_is_a_typed_error() {
    for b in [
        Cache::builder().namespace("a:b"),
        Cache::builder().redis_url("http://nope"),
        Cache::builder().l1_enabled(false),
        Cache::builder().max_value_bytes(0),
        Cache::builder().redis_cluster(Vec::<String>::new()),
    ] {
        let err = b.build().expect_err("invalid");
        assert_eq!(err.code(), "E_CONFIG", "{err}");
    }
}
