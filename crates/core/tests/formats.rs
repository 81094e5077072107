//! An entry another serializer wrote (a format this handle's serializer
//! cannot read) is a counted miss for every read, read-throughs included:
//! one loader run overwrites it, whoever asks concurrently.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::{Cache, CacheBuilder, Format, Lookup, LookupPolicy, Ttl, WriteOptions};

const JSON_READER: [u8; 4] = [0, 2, 5, 6];

async fn refused_entries_are_misses(old: Cache, new: Cache) {
    // The old deploy (pickle) wrote this; the new one (json) cannot read it.
    old.set(
        "k",
        Bytes::from_static(b"pickled"),
        &WriteOptions::new(Ttl::Default, Format::PICKLE),
    )
    .await
    .expect("set");
    assert!(new.get("k").await.expect("get").is_none(), "get: a miss");
    assert!(new.get_local("k").expect("get_local").is_none());
    assert_eq!(new.get_many(&["k"]).await.expect("get_many"), vec![None]);
    assert!(
        new.stats()
            .await
            .counters()
            .iter()
            .any(|(n, _, v)| *n == "format_refusals" && *v >= 1)
    );

    // 16 concurrent read-throughs: one leads, the rest wait for its value.
    let loads = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, loads) = (new.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            match c
                .lookup("k", &LookupPolicy::default())
                .await
                .expect("lookup")
            {
                Lookup::Lead(lease) => {
                    loads.fetch_add(1, Ordering::SeqCst);
                    let opts = WriteOptions::new(Ttl::Default, Format::JSON);
                    lease
                        .complete(Bytes::from_static(b"\"json\""), &opts)
                        .await
                        .expect("complete")
                        .payload
                        .clone()
                }
                Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => {
                    e.payload.clone()
                }
            }
        }));
    }
    for t in tasks {
        assert_eq!(&t.await.expect("task")[..], b"\"json\"");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one loader run overwrote it"
    );
    // Overwritten: the old handle reads the new entry too, once the bus
    // has evicted its own L1 copy.
    common::eventually(
        "the old handle reads the new entry",
        Duration::from_secs(5),
        || {
            let old = old.clone();
            async move {
                old.get("k")
                    .await
                    .expect("get")
                    .is_some_and(|e| e.meta.format == Format::JSON && &e.payload[..] == b"\"json\"")
            }
        },
    )
    .await;
}

fn pair(b: impl Fn() -> CacheBuilder) -> (Cache, Cache) {
    let old = b().build().expect("cache");
    let new = b()
        .accepted_formats(Some(JSON_READER.to_vec()))
        .build()
        .expect("cache");
    (old, new)
}

async fn with_redis(t: Target) {
    let ns = common::unique_ns("formats");
    let (old, new) = pair(|| t.builder(&ns));
    refused_entries_are_misses(old, new).await;
}

on_both!(with_redis);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process() {
    // Handles reading different formats share one L1: the refusal is the
    // handle's, the entry is shared.
    let ns = common::unique_ns("formats-l1");
    let (old, new) = pair(|| Cache::builder().namespace(ns.clone()));
    refused_entries_are_misses(old, new).await;
}
