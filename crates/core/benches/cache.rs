//! `make bench`: stratacache beside the raw libraries it is built on, in one
//! run, so the ratios are what matter (docs/benchmarks.md).
//!
//! - L1 hit `get` (200 B, 10 KB) vs raw `quick_cache::sync::Cache::get`
//!   (the structure L1 is built on) and raw `moka::sync::Cache::get`
//! - L2 hit `get` with L1 disabled vs a raw `redis` GET (ConnectionManager)
//! - `get_many` x100 from L2 vs a raw `MGET` of the same 100 keys
//! - 1,000-way contended cold lookup (one loader) in L1-only mode

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stratacache::{Cache, Lookup, LookupPolicy, Ttl, WriteOptions};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn opts() -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(3600)), Default::default())
}

fn l1_hit(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("l1_hit_get");
    for size in [200usize, 10_240] {
        let payload = Bytes::from(vec![b'x'; size]);
        let cache = Cache::builder()
            .namespace(format!("bench-l1-{size}"))
            .build()
            .expect("cache");
        rt.block_on(cache.set("key:1", payload.clone(), &opts()))
            .expect("set");
        let raw: moka::sync::Cache<Arc<str>, Arc<Bytes>> = moka::sync::Cache::builder()
            .max_capacity(64 << 20)
            .weigher(|k: &Arc<str>, v: &Arc<Bytes>| (k.len() + v.len()) as u32)
            .build();
        raw.insert(Arc::from("key:1"), Arc::new(payload.clone()));
        let quick: quick_cache::sync::Cache<Arc<str>, Arc<Bytes>> =
            quick_cache::sync::Cache::new(1024);
        quick.insert(Arc::from("key:1"), Arc::new(payload));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("stratacache", size), |b| {
            b.to_async(&rt).iter(|| async {
                let e = cache.get("key:1").await.expect("get").expect("hit");
                std::hint::black_box(e);
            })
        });
        g.bench_function(BenchmarkId::new("raw_quick_cache", size), |b| {
            b.to_async(&rt).iter(|| async {
                let e = quick.get("key:1").expect("hit");
                std::hint::black_box(e);
            })
        });
        g.bench_function(BenchmarkId::new("raw_moka", size), |b| {
            b.to_async(&rt).iter(|| async {
                let e = raw.get("key:1").expect("hit");
                std::hint::black_box(e);
            })
        });
    }
    g.finish();
}

fn l2_hit(c: &mut Criterion) {
    let rt = rt();
    let ns = "bench-l2";
    let cache = Cache::builder()
        .redis_url(redis_url())
        .namespace(ns)
        .l1_enabled(false)
        .build()
        .expect("cache");
    let payload = Bytes::from(vec![b'x'; 200]);
    rt.block_on(cache.set("key:1", payload.clone(), &opts()))
        .expect("set");
    let raw_key = stratacache::key::redis_keys(ns, "key:1").value;
    let mut raw = rt.block_on(async {
        let client = redis::Client::open(redis_url()).expect("url");
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("connect")
    });
    let mut g = c.benchmark_group("l2_hit_get_200B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("stratacache_l1_disabled", |b| {
        b.to_async(&rt).iter(|| async {
            let e = cache.get("key:1").await.expect("get").expect("hit");
            std::hint::black_box(e);
        })
    });
    g.bench_function("raw_redis_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = raw.clone();
            let k = raw_key.clone();
            async move {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                std::hint::black_box(v.expect("hit"));
            }
        })
    });
    g.finish();

    // get_many x100 from L2 vs raw MGET.
    let keys: Vec<String> = (0..100).map(|i| format!("many:{i}")).collect();
    for k in &keys {
        rt.block_on(cache.set(k, payload.clone(), &opts()))
            .expect("set");
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let raw_keys: Vec<String> = keys
        .iter()
        .map(|k| stratacache::key::redis_keys(ns, k).value)
        .collect();
    let mut g = c.benchmark_group("get_many_x100_200B");
    g.throughput(Throughput::Elements(100));
    g.bench_function("stratacache_l1_disabled", |b| {
        b.to_async(&rt).iter(|| async {
            let v = cache.get_many(&key_refs).await.expect("get_many");
            std::hint::black_box(v);
        })
    });
    g.bench_function("raw_redis_mget", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = raw.clone();
            let ks = raw_keys.clone();
            async move {
                let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&ks)
                    .query_async(&mut conn)
                    .await
                    .expect("mget");
                std::hint::black_box(v);
            }
        })
    });
    g.finish();
    rt.block_on(cache.clear()).expect("clear");
    let _ = &mut raw;
}

fn contended_cold(c: &mut Criterion) {
    let rt = rt();
    let cache = Cache::builder()
        .namespace("bench-cold")
        .build()
        .expect("cache");
    let mut g = c.benchmark_group("contended_cold_lookup");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1000));
    let mut round = 0u64;
    g.bench_function("1000_callers_one_loader", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let key = format!("cold:{round}");
            let cache = cache.clone();
            async move {
                let tasks: Vec<_> = (0..1000)
                    .map(|_| {
                        let (cache, key) = (cache.clone(), key.clone());
                        tokio::spawn(async move {
                            match cache
                                .lookup(&key, &LookupPolicy::default())
                                .await
                                .expect("lookup")
                            {
                                Lookup::Fresh(e, _)
                                | Lookup::Refresh(e, _)
                                | Lookup::Stale(e, _) => e.payload.len(),
                                Lookup::Lead(lease) => lease
                                    .complete(
                                        Bytes::from_static(b"value"),
                                        &WriteOptions::default(),
                                    )
                                    .await
                                    .expect("complete")
                                    .payload
                                    .len(),
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    std::hint::black_box(t.await.expect("task"));
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = l1_hit, l2_hit, contended_cold
}
criterion_main!(benches);
