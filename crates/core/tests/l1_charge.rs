//! The L1 charge per entry (`l1::ENTRY_OVERHEAD`) is what an entry costs.
//!
//! One test in its own binary, so that nothing else allocates while it
//! measures: an L1-only cache with a 16 MiB bound is written with distinct
//! keys of 64-byte values until it has been filled three times over; the
//! process's resident memory then grew by less than the bound, and by more
//! than two thirds of it. More would mean the charge is too low (the
//! bound is broken), much less that it is too high (the bound holds fewer
//! entries than it could). The allocator is the bindings' (mimalloc, set up
//! as they set it up); the charge also covers glibc's malloc (see
//! `l1::ENTRY_OVERHEAD`).

use bytes::Bytes;
use stratacache::{Cache, WriteOptions};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BOUND: u64 = 16 << 20;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("rss");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_costs_what_it_is_charged() {
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // As the bindings set mimalloc up.
    for (option, value) in stratacache::alloc::MIMALLOC_OPTIONS {
        unsafe { mi_option_set(option, value) };
    }
    let cache = Cache::builder()
        .namespace("charge")
        .l1_max_bytes(BOUND)
        .build()
        .expect("cache");
    let opts = WriteOptions::default();
    cache
        .set("warm", Bytes::from_static(b"x"), &opts)
        .await
        .expect("set");
    let before = rss_bytes();
    let value = [b'v'; 64];
    // Three times as many writes as the bound holds even at the smallest
    // charge (each entry is charged at least 200 bytes).
    for i in 0..3 * BOUND / 200 {
        cache
            .set(
                &format!("key:{i:08}"),
                Bytes::copy_from_slice(&value),
                &opts,
            )
            .await
            .expect("set");
        // As the soak does: each write followed by a read of a recent key.
        let recent = i.saturating_sub((i * 7) % 64);
        let read = cache.get(&format!("key:{recent:08}")).await.expect("get");
        std::hint::black_box(read);
    }
    let s = cache.stats().await;
    let grown = rss_bytes().saturating_sub(before);
    let per_entry = grown as f64 / s.l1_entries as f64;
    let charged = s.l1_bytes as f64 / s.l1_entries as f64;
    println!(
        "entries {} bytes {} grown {grown} per entry {per_entry:.0} charged {charged:.0}",
        s.l1_entries, s.l1_bytes
    );
    assert!(
        grown <= BOUND,
        "resident growth {grown} is over the {BOUND} bound"
    );
    assert!(
        grown >= BOUND * 2 / 3,
        "resident growth {grown} is far under the bound: the charge is too high"
    );
}
