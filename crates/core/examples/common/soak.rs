//! The L1 memory soak's workloads, shared by `l1_memory` (the system
//! allocator) and `l1_memory_mimalloc` (mimalloc, as the bindings use).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stratacache::{Cache, WriteOptions};

const BOUND: u64 = 64 << 20;
const SAMPLES: u64 = 20;
/// The per-entry charge stratacache's weigher adds (`l1::ENTRY_OVERHEAD`,
/// with a quarter of the payload again, `l1::PAYLOAD_SLACK`,
/// which is crate-private), so the raw caches hold as many entries.
const CHARGE: usize = 200;

/// Raw quick_cache's weigher: the same charge as the core's.
#[derive(Clone)]
struct Charge;

impl quick_cache::Weighter<Arc<str>, Bytes> for Charge {
    fn weight(&self, k: &Arc<str>, v: &Bytes) -> u64 {
        (k.len() + v.len() + v.len() / 4 + CHARGE) as u64
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The soak's value size for write `i`: fixed, or log-uniform over
/// 64 B..10 KiB along the golden-ratio sequence (the same sizes in every
/// language's workload).
fn size_of(fixed: Option<usize>, i: u64) -> usize {
    fixed.unwrap_or_else(|| {
        let u = (i as f64 * 0.618_033_988_749_894_9).fract();
        (64.0 * 160f64.powf(u)) as usize
    })
}

/// The key read after write `i`: one of the last 64 written.
fn back(i: u64) -> u64 {
    i.saturating_sub((i * 7) % 64)
}

/// Run the soak with this process's arguments.
pub fn main() {
    let mut args = std::env::args().skip(1);
    let api = args.next().unwrap_or_else(|| "rust".into());
    let writes: u64 = args
        .next()
        .map(|s| s.parse().expect("writes"))
        .unwrap_or(20_000_000);
    let size = args.next().unwrap_or_else(|| "64".into());
    let fixed: Option<usize> =
        (size != "mixed").then(|| size.parse().expect("value size in bytes"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = rss_bytes();
    let filler = vec![b'v'; 10 << 10];
    let every = (writes / SAMPLES).max(1);
    match api.as_str() {
        "rust" => {
            let cache = Cache::builder()
                .namespace("soak")
                .l1_max_bytes(BOUND)
                .build()
                .expect("cache");
            rt.block_on(async {
                for i in 0..writes {
                    let v = Bytes::copy_from_slice(&filler[..size_of(fixed, i)]);
                    cache
                        .set(&format!("key:{i}"), v, &WriteOptions::default())
                        .await
                        .expect("set");
                    let read = cache.get(&format!("key:{}", back(i))).await;
                    std::hint::black_box(read.expect("get"));
                    if (i + 1) % every == 0 {
                        let s = cache.stats().await;
                        let grown = rss_bytes().saturating_sub(before);
                        println!("sample {} {grown} {} {}", i + 1, s.l1_entries, s.l1_bytes);
                    }
                }
            });
        }
        "moka" => {
            let cache: moka::sync::Cache<Arc<str>, Bytes> = moka::sync::Cache::builder()
                .max_capacity(BOUND)
                .weigher(|k: &Arc<str>, v: &Bytes| {
                    u32::try_from(k.len() + v.len() + v.len() / 4 + CHARGE).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(300))
                .build();
            rt.block_on(async {
                for i in 0..writes {
                    let v = Bytes::copy_from_slice(&filler[..size_of(fixed, i)]);
                    cache.insert(format!("key:{i}").into(), v);
                    let read = cache.get(format!("key:{}", back(i)).as_str());
                    std::hint::black_box(read);
                    if (i + 1) % every == 0 {
                        cache.run_pending_tasks();
                        let grown = rss_bytes().saturating_sub(before);
                        println!(
                            "sample {} {grown} {} {}",
                            i + 1,
                            cache.entry_count(),
                            cache.weighted_size()
                        );
                    }
                }
            });
        }
        "quick_cache" => {
            let cache =
                quick_cache::sync::Cache::with_weighter((BOUND / 1024) as usize, BOUND, Charge);
            rt.block_on(async {
                for i in 0..writes {
                    let v = Bytes::copy_from_slice(&filler[..size_of(fixed, i)]);
                    cache.insert(Arc::<str>::from(format!("key:{i}")), v);
                    let read = cache.get(format!("key:{}", back(i)).as_str());
                    std::hint::black_box(read);
                    if (i + 1) % every == 0 {
                        let grown = rss_bytes().saturating_sub(before);
                        println!(
                            "sample {} {grown} {} {}",
                            i + 1,
                            cache.len(),
                            cache.weight()
                        );
                    }
                }
            });
        }
        other => panic!("unknown api {other:?}: rust, moka or quick_cache"),
    }
}
