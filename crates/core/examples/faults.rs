//! `make bench-faults`: a steady read-through + write load on a cache whose
//! Redis is SIGKILLed and restarted, then made slow (200 ms per command by
//! a delaying proxy) and fast again. Per phase: calls, errors surfaced to
//! callers, wrong values, latency p50/p99/max; and the time back on Redis.
//! The redis-server and the proxy are the test suite's (tests/common).

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use stratacache::{Cache, Lookup, LookupPolicy, Ttl, WriteOptions};
use tokio::sync::Mutex;
use tokio::time::Instant;

const KEYS: u64 = 5_000;
const WORKERS: u64 = 8;

fn value_of(k: u64) -> Bytes {
    Bytes::from(format!("value-of-{k}"))
}

#[derive(Default)]
struct Phase {
    latencies_us: Vec<u64>,
    errors: u64,
    write_errors: u64,
    wrong: u64,
}

async fn worker(cache: Cache, n: u64, stop: Arc<AtomicBool>, phase: Arc<Mutex<Phase>>) {
    let opts = WriteOptions::new(Ttl::After(Duration::from_secs(1)), Default::default());
    let policy = LookupPolicy::default();
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = x % KEYS;
        let key = format!("k{k}");
        let t = Instant::now();
        let (mut err, mut wrong, mut werr) = (false, false, false);
        if x.is_multiple_of(10) {
            // A write of the key's one possible value: fail-open callers
            // would swallow its error; it is counted apart.
            werr = cache.set(&key, value_of(k), &opts).await.is_err();
        } else {
            match cache.lookup(&key, &policy).await {
                Ok(Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _)) => {
                    wrong = e.payload != value_of(k)
                }
                Ok(Lookup::Lead(lease)) => {
                    // The "database": 1 ms.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    match lease.complete(value_of(k), &opts).await {
                        Ok(e) => wrong = e.payload != value_of(k),
                        Err(_) => err = true,
                    }
                }
                Err(_) => err = true,
            }
        }
        let us = t.elapsed().as_micros() as u64;
        let mut p = phase.lock().await;
        p.latencies_us.push(us);
        p.errors += u64::from(err);
        p.wrong += u64::from(wrong);
        p.write_errors += u64::from(werr);
    }
}

fn row(name: &str, p: &Phase, secs: f64) {
    let mut l = p.latencies_us.clone();
    l.sort_unstable();
    let q = |f: f64| {
        l.get(((l.len() as f64 * f) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "| {name} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.1} |",
        l.len() as f64 / secs,
        p.errors,
        p.wrong,
        p.write_errors,
        q(0.5) as f64 / 1000.0,
        q(0.99) as f64 / 1000.0,
        l.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// Time until a call through `cache` reaches Redis again.
async fn time_back(cache: &Cache, from: Instant) -> Duration {
    let mut i = 0u64;
    loop {
        i += 1;
        // A key L1 does not hold: the call has to reach Redis.
        if cache.get(&format!("probe{i}")).await.is_ok() {
            return from.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut server = common::OwnRedis::start();
    common::answers(&server.url).await;
    let proxy = common::Proxy::start(server.port).await;
    let op_timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .redis_url(proxy.url.clone())
        .namespace(common::unique_ns("bench-faults"))
        .op_timeout(op_timeout)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("cache");
    let phase = Arc::new(Mutex::new(Phase::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| tokio::spawn(worker(cache.clone(), n, stop.clone(), phase.clone())))
        .collect();
    let take = |phase: &Arc<Mutex<Phase>>| {
        let phase = phase.clone();
        async move { std::mem::take(&mut *phase.lock().await) }
    };
    let secs = 2.0;
    let span = Duration::from_secs(2);
    println!(
        "{WORKERS} workers, {KEYS} keys (1 s TTL, 1 ms loader, 1 write in 10), op timeout {op_timeout:?}, breaker 5 failures / 250 ms\n"
    );
    println!(
        "| phase | calls/s | errors | wrong values | write errors | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    tokio::time::sleep(span).await;
    let _ = take(&phase).await; // warm-up
    tokio::time::sleep(span).await;
    row("steady", &take(&phase).await, secs);

    server.kill();
    tokio::time::sleep(span).await;
    row("Redis SIGKILLed", &take(&phase).await, secs);
    let server = common::OwnRedis::on_port(server.port);
    common::answers(&server.url).await;
    let back_kill = time_back(&cache, Instant::now()).await;
    tokio::time::sleep(span).await;
    row(
        "restarted (until back, then 2 s)",
        &take(&phase).await,
        secs + back_kill.as_secs_f64(),
    );

    proxy.set_delay(Duration::from_millis(200));
    tokio::time::sleep(span).await;
    row("200 ms per command", &take(&phase).await, secs);
    proxy.set_delay(Duration::ZERO);
    let back_slow = time_back(&cache, Instant::now()).await;
    tokio::time::sleep(span).await;
    row(
        "delay removed (until back, then 2 s)",
        &take(&phase).await,
        secs + back_slow.as_secs_f64(),
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let s = cache.stats().await;
    println!(
        "\nback on Redis: {:.0} ms after the restarted server answered; {:.0} ms after the delay was removed",
        back_kill.as_secs_f64() * 1000.0,
        back_slow.as_secs_f64() * 1000.0
    );
    println!(
        "breaker opened {} times, {} calls short-circuited; {} L1 values served while Redis and the bus were away; {} local writes",
        s.breaker_opens, s.breaker_short_circuits, s.l1_outage_hits, s.local_writes
    );
    drop(server);
}
