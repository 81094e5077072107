//! How much memory L1 really holds against its configured byte bound
//! (`make bench-memory`): a write-heavy workload with key reuse and values
//! changing size, per value size; the process's resident set growth is
//! compared with `l1_max_bytes` and with L1's own weighted size.

use std::time::Duration;

use bytes::Bytes;
use stratacache::{Cache, WriteOptions};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let limit: u64 = 64 << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // One value size per process (RSS never shrinks back): `l1_memory
    // <size>`; without an argument, every size in a child process each.
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(s) => vec![s.parse().expect("value size in bytes")],
        None => {
            println!(
                "| glibc arenas | value size | writes | distinct keys | L1 entries | L1 weighted | RSS growth | RSS growth / bound |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            // glibc's default (one arena per thread: memory freed by one
            // thread is not reused by another) and a single arena.
            for arenas in ["default", "1"] {
                for size in [64, 1024, 4096] {
                    let exe = std::env::current_exe().expect("exe");
                    let mut cmd = std::process::Command::new(exe);
                    cmd.arg(size.to_string());
                    if arenas != "default" {
                        cmd.env("MALLOC_ARENA_MAX", arenas);
                    }
                    let out = cmd.output().expect("child");
                    print!("| {arenas} {}", String::from_utf8_lossy(&out.stdout));
                }
            }
            return;
        }
    };
    for size in sizes {
        // Four times as many keys as fit, so the workload evicts throughout.
        let keys = 4 * limit / (size as u64 + 200);
        let before = rss_bytes();
        let cache = Cache::builder()
            .namespace(format!("mem{size}"))
            .l1_max_bytes(limit)
            .isolated(true)
            .build()
            .expect("cache");
        let writes = keys * 3;
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..4u64 {
                let cache = cache.clone();
                tasks.push(tokio::spawn(async move {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..writes / 4 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = size / 2 + (x >> 40) as usize % size;
                        cache
                            .set(
                                &format!("key:{}", x % keys),
                                Bytes::from(vec![b'v'; len]),
                                &WriteOptions::default(),
                            )
                            .await
                            .expect("set");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("writer");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let stats = rt.block_on(cache.stats());
        let grown = rss_bytes().saturating_sub(before);
        println!(
            "| {}-{} B | {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.2} |",
            size / 2,
            size / 2 + size,
            writes,
            keys,
            stats.l1_entries,
            stats.l1_bytes as f64 / (1 << 20) as f64,
            grown as f64 / (1 << 20) as f64,
            grown as f64 / limit as f64
        );
        drop(cache);
    }
}
