//! `make demo`: the embedded default (L1 only, no Redis) under a burst.
//!
//! 2,000 concurrent requests hit a cold key whose loader takes 50 ms (a slow
//! database query). Single-flight turns that into one loader call; then a
//! second burst is served from L1. Prints loader calls, hit ratio and
//! per-request latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stratacache::{Cache, Lookup, LookupPolicy, Ttl, WriteOptions};
use tokio::sync::Barrier;

const REQUESTS: usize = 2_000;

async fn handle_request(cache: &Cache, loads: &AtomicUsize) -> stratacache::Result<Bytes> {
    match cache.lookup("product:42", &LookupPolicy::default()).await? {
        Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => Ok(e.payload.clone()),
        Lookup::Lead(lease) => {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await; // the "database"
            let body = Bytes::from_static(br#"{"id":42,"name":"Espresso machine","price":499}"#);
            let opts = WriteOptions::new(
                Ttl::After(Duration::from_secs(60)),
                stratacache::Format::JSON,
            );
            Ok(lease.complete(body, &opts).await?.payload.clone())
        }
    }
}

async fn burst(cache: &Cache, loads: &Arc<AtomicUsize>) -> Vec<Duration> {
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (cache, loads, barrier) = (cache.clone(), loads.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let t = Instant::now();
                let body = handle_request(&cache, &loads).await.expect("request");
                assert!(body.starts_with(b"{\"id\":42"));
                t.elapsed()
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(REQUESTS);
    for t in tasks {
        lat.push(t.await.expect("task"));
    }
    lat.sort();
    lat
}

fn pct(lat: &[Duration], p: f64) -> Duration {
    lat[((lat.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() -> stratacache::Result<()> {
    let cache = Cache::builder().namespace("demo").build()?;
    let loads = Arc::new(AtomicUsize::new(0));
    println!(
        "stratacache demo: embedded L1-only cache, {REQUESTS} concurrent requests per burst, 50 ms loader\n"
    );
    for (name, label) in [("cold key", "burst 1"), ("warm key", "burst 2")] {
        let before = loads.load(Ordering::SeqCst);
        let lat = burst(&cache, &loads).await;
        println!(
            "{label} ({name}): loader calls {:>4}   p50 {:>9.3?}   p99 {:>9.3?}   max {:>9.3?}",
            loads.load(Ordering::SeqCst) - before,
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat[lat.len() - 1]
        );
    }
    let s = cache.stats().await;
    let served = s.l1_hits + s.coalesced_waits;
    println!(
        "\nstats: leads {}  coalesced waits {}  L1 hits {}  hit ratio {:.2}%  L1 {} entries / {} bytes",
        s.leads,
        s.coalesced_waits,
        s.l1_hits,
        100.0 * served as f64 / (2 * REQUESTS) as f64,
        s.l1_entries,
        s.l1_bytes
    );
    println!("without single-flight the cold burst would have run the loader {REQUESTS} times.");
    Ok(())
}
