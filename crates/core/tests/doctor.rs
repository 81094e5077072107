//! `Cache::doctor` and `Cache::census` (what the command-line tools print)
//! against real Redis and a real Cluster.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::doctor::{Census, Status};
use stratacache::{Cache, Format, Ttl, WriteOptions};

fn opts(tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

fn status(r: &stratacache::doctor::Report, name: &str) -> (Status, String) {
    let c = r
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {}", r.text()));
    (c.status, c.detail.clone())
}

async fn healthy_fleet_passes(t: Target) {
    let ns = common::unique_ns("doctor");
    let a = t
        .builder(&ns)
        .signing_key(b"k1".to_vec())
        .build()
        .expect("real Redis answers");
    for i in 0..5 {
        a.set(&format!("k{i}"), Bytes::from_static(b"v"), &opts(&[]))
            .await
            .expect("real Redis answers");
    }
    let r = a.doctor().await;
    assert_eq!(r.exit_code(), 0, "{}", r.text());
    let (signing, detail) = status(&r, "signing");
    assert_eq!(signing, Status::Ok, "{detail}");
    assert!(detail.starts_with("5 of 5 sampled"), "{detail}");
    assert_eq!(status(&r, "redis").0, Status::Ok);
    let (server, detail) = status(&r, "server");
    assert_eq!(server, Status::Ok, "{detail}");
    let mode = if t == Target::Cluster {
        "(cluster)"
    } else {
        "(standalone)"
    };
    assert!(
        detail.starts_with("Redis ") && detail.ends_with(mode),
        "{detail}"
    );
    assert_eq!(status(&r, "clock").0, Status::Ok);
    assert_eq!(status(&r, "bus").0, Status::Ok);
    assert_eq!(
        r.checks.iter().any(|c| c.name == "cluster"),
        t == Target::Cluster,
        "{}",
        r.text()
    );
}

async fn another_signing_key_fails(t: Target) {
    let ns = common::unique_ns("doctor");
    let a = t
        .builder(&ns)
        .signing_key(b"k1".to_vec())
        .build()
        .expect("real Redis answers");
    a.set("k", Bytes::from_static(b"v"), &opts(&[]))
        .await
        .expect("real Redis answers");
    let b = t
        .builder(&ns)
        .signing_key(b"k2".to_vec())
        .build()
        .expect("real Redis answers");
    let r = b.doctor().await;
    assert_eq!(r.exit_code(), 1, "{}", r.text());
    let (s, detail) = status(&r, "signing");
    assert_eq!(s, Status::Fail);
    assert!(
        detail.contains("1 of 1 sampled entries were signed with another key"),
        "{detail}"
    );
    // An unkeyed process writing into a keyed fleet.
    let c = t.builder(&ns).build().expect("real Redis answers");
    c.set("u", Bytes::from_static(b"v"), &opts(&[]))
        .await
        .expect("real Redis answers");
    let r = a.doctor().await;
    let (s, detail) = status(&r, "signing");
    assert_eq!(s, Status::Fail);
    assert!(
        detail.contains("1 of 2 sampled entries are unsigned"),
        "{detail}"
    );
    // And the unkeyed one is warned that it reads signed entries unchecked.
    c.delete("u").await.expect("real Redis answers");
    let (s, detail) = status(&c.doctor().await, "signing");
    assert_eq!(s, Status::Warn);
    assert!(
        detail.contains("this process has no signing key"),
        "{detail}"
    );
}

async fn census_counts_records(t: Target) {
    let ns = common::unique_ns("census");
    let a = t.builder(&ns).build().expect("real Redis answers");
    for i in 0..3 {
        a.set(&format!("k{i}"), Bytes::from_static(b"v"), &opts(&["t"]))
            .await
            .expect("real Redis answers");
    }
    a.set("{braced}", Bytes::from_static(b"v"), &opts(&[]))
        .await
        .expect("real Redis answers");
    a.delete("k0").await.expect("real Redis answers");
    a.invalidate_tags(&["t", "u"])
        .await
        .expect("real Redis answers");
    let c = a.census().await.expect("real Redis answers");
    let want = Census {
        entries: 3,
        tags: 2,
        tombstones: 1,
        subscribers: c.subscribers,
        ..Census::default()
    };
    assert_eq!(c, want, "{}", c.text());
    // Another process on the bus is counted; this one is not.
    let b = t
        .builder(&ns)
        .isolated(true)
        .build()
        .expect("real Redis answers");
    b.set("k9", Bytes::from_static(b"v"), &opts(&[]))
        .await
        .expect("real Redis answers");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = a.census().await.expect("real Redis answers");
    while seen.subscribers != c.subscribers + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = a.census().await.expect("real Redis answers");
    }
    assert_eq!(seen.subscribers, c.subscribers + 1);
    a.clear().await.expect("real Redis answers");
    let c = a.census().await.expect("real Redis answers");
    assert_eq!((c.entries, c.tombstones, c.tags), (0, 0, 2));
}

on_both!(
    healthy_fleet_passes,
    another_signing_key_fails,
    census_counts_records
);

#[tokio::test]
async fn without_redis_it_says_l1_only() {
    let c = Cache::builder()
        .namespace("doctor-l1")
        .build()
        .expect("real Redis answers");
    let r = c.doctor().await;
    assert_eq!(r.checks.len(), 1);
    assert_eq!(r.checks[0].name, "redis");
    assert!(r.checks[0].detail.contains("L1 only"));
    assert_eq!(
        c.census().await.expect("real Redis answers"),
        Census::default()
    );
}

#[tokio::test]
async fn unreachable_redis_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("real Redis answers")
        .local_addr()
        .expect("real Redis answers")
        .port();
    let c = Cache::builder()
        .redis_url(format!("redis://127.0.0.1:{port}"))
        .namespace("doctor-down")
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("real Redis answers");
    let r = c.doctor().await;
    assert_eq!(r.exit_code(), 1);
    assert_eq!(status(&r, "redis").0, Status::Fail);
}

#[tokio::test]
async fn standalone_url_on_a_cluster_node_fails() {
    let seed = common::cluster_seeds().remove(0);
    let c = Cache::builder()
        .redis_url(seed)
        .namespace("doctor-misconf")
        .build()
        .expect("real Redis answers");
    let (s, detail) = status(&c.doctor().await, "server");
    assert_eq!(s, Status::Fail, "{detail}");
    assert!(detail.contains("is a Cluster node"), "{detail}");
}
