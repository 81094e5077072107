//! `Cache::scan_page`: a namespace's live entries, page by page, on a
//! standalone server, a Cluster (every master) and L1 alone.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::Target;
use stratacache::{Cache, Format, Ttl, WriteOptions};

fn opts(tags: &[&str]) -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
        .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

/// Every key of a full listing, and how many entries had no key (hashed).
async fn list(c: &Cache) -> (Vec<String>, usize) {
    let (mut keys, mut hashed, mut cursor, mut pages) = (Vec::new(), 0, String::new(), 0);
    loop {
        let page = c.scan_page(&cursor).await.expect("scan");
        for (k, e) in page.entries {
            assert!(!e.payload.is_empty());
            match k {
                Some(k) => keys.push(k),
                None => hashed += 1,
            }
        }
        pages += 1;
        assert!(pages < 10_000, "the cursor never ends");
        cursor = page.cursor;
        if cursor.is_empty() {
            return (keys, hashed);
        }
    }
}

async fn lists_live_entries_once(t: Target) {
    let ns = common::unique_ns("scan");
    let c = t.builder(&ns).build().expect("cache");
    for i in 0..2500 {
        let tag = if i % 5 == 0 { "gone" } else { "kept" };
        c.set(
            &format!("k{i}"),
            Bytes::from(format!("v{i}")),
            &opts(&[tag]),
        )
        .await
        .expect("set");
    }
    c.set("{braced}", Bytes::from_static(b"b"), &opts(&[]))
        .await
        .expect("set");
    for i in 1..=10 {
        c.delete(&format!("k{i}")).await.expect("delete");
    }
    c.invalidate_tags(&["gone"]).await.expect("invalidate");
    let (keys, hashed) = list(&c).await;
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key listed twice");
    // 2,500 - 500 invalidated - 8 deleted that were not invalidated already.
    assert_eq!(keys.len(), 2500 - 500 - 8);
    assert!(unique.contains(&"k11".to_owned()) && !unique.contains(&"k10".to_owned()));
    assert_eq!(hashed, 1);
    assert!(c.scan_page("junk").await.is_err());
}

on_both!(lists_live_entries_once);

#[tokio::test]
async fn l1_alone_lists_this_processes_entries() {
    let c = Cache::builder()
        .namespace(common::unique_ns("scan-l1"))
        .build()
        .expect("cache");
    for k in ["a", "{b}", "c"] {
        c.set(k, Bytes::from_static(b"v"), &opts(&[]))
            .await
            .expect("set");
    }
    c.delete("c").await.expect("delete");
    let (mut keys, hashed) = list(&c).await;
    keys.sort();
    assert_eq!(keys, ["a", "{b}"]);
    assert_eq!(hashed, 0);
}
