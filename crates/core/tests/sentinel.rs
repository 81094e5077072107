//! Redis Sentinel (`redis+sentinel://`): a master, a replica and three
//! real sentinels of this test's own on loopback; a forced failover and a
//! killed master, after which the cache writes to and reads from the new
//! master without being rebuilt, and the bus keeps evicting another
//! process's L1 copies.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stratacache::{Cache, Format, Ttl, WriteOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A process of this test's own, killed (by PID) when dropped.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis(port: u16, replica_of: Option<u16>) -> Proc {
    let mut c = Command::new("redis-server");
    c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"]);
    if let Some(m) = replica_of {
        c.args(["--replicaof", "127.0.0.1", &m.to_string()]);
    }
    Proc(
        c.stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH"),
    )
}

async fn query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let c = redis::Client::open(url)?;
    let mut conn = c.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

async fn until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A master, a replica and three sentinels monitoring them as `shop`.
struct Deployment {
    dir: PathBuf,
    nodes: Vec<(u16, Proc)>,
    sentinels: Vec<(u16, Proc)>,
}

impl Deployment {
    async fn start() -> Deployment {
        let dir = std::env::temp_dir().join(format!("stratacache-sentinel-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (m, r) = (free_port(), free_port());
        let nodes = vec![(m, redis(m, None)), (r, redis(r, Some(m)))];
        for (p, _) in &nodes {
            let url = format!("redis://127.0.0.1:{p}");
            until("a node answers", Duration::from_secs(10), || async {
                query::<String>(&url, &redis::cmd("PING")).await.is_ok()
            })
            .await;
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor shop 127.0.0.1 {m} 2\n\
                     sentinel down-after-milliseconds shop 1000\n\
                     sentinel failover-timeout shop 5000\n"
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            sentinels.push((port, Proc(child)));
        }
        let d = Deployment {
            dir,
            nodes,
            sentinels,
        };
        // Every sentinel knows the replica (and each other) before a
        // failover is asked for.
        for (p, _) in &d.sentinels {
            let url = format!("redis://127.0.0.1:{p}");
            until(
                "the sentinels see the replica",
                Duration::from_secs(20),
                || async {
                    let r: redis::RedisResult<Vec<redis::Value>> =
                        query(&url, redis::cmd("SENTINEL").arg("replicas").arg("shop")).await;
                    r.is_ok_and(|v| !v.is_empty())
                },
            )
            .await;
        }
        d
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/shop", hosts.join(","))
    }

    async fn master(&self) -> Option<u16> {
        let url = format!("redis://127.0.0.1:{}", self.sentinels[0].0);
        let r: redis::RedisResult<(String, String)> = query(
            &url,
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg("shop"),
        )
        .await;
        r.ok().and_then(|(_, p)| p.parse().ok())
    }

    /// Wait until the sentinels name another master than `old` and it
    /// calls itself master.
    async fn moved_from(&self, old: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = self.master().await
                && p != old
            {
                let role: redis::RedisResult<Vec<redis::Value>> =
                    query(&format!("redis://127.0.0.1:{p}"), &redis::cmd("ROLE")).await;
                if matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"master")
                {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the failover"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn opts() -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
}

fn cache(url: &str, ns: &str, l1_bytes: u64) -> Cache {
    Cache::builder()
        .redis_url(url)
        .namespace(ns)
        .l1_max_bytes(l1_bytes)
        .build()
        .expect("cache")
}

/// Retry a write until it lands (the commands in flight at a failover
/// fail; the next ones go to the new master).
async fn set_eventually(c: &Cache, key: &str, v: &'static [u8]) {
    until(
        "a write after the failover",
        Duration::from_secs(20),
        || async { c.set(key, Bytes::from_static(v), &opts()).await.is_ok() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_master_through_failovers() {
    let d = Deployment::start().await;
    let ns = format!("sentinel-{}", free_port());
    // Two states: two processes of the fleet.
    let a = cache(&d.url(), &ns, 1 << 20);
    let b = cache(&d.url(), &ns, 2 << 20);
    a.set("k", Bytes::from_static(b"v1"), &opts())
        .await
        .expect("set");
    let first = d.master().await.expect("a master");
    assert!(
        b.get("k")
            .await
            .expect("get")
            .is_some_and(|e| e.payload == "v1")
    );

    // 1. A forced failover: the old master is demoted to a replica.
    let s = format!("redis://127.0.0.1:{}", d.sentinels[0].0);
    // Refused (NOGOODSLAVE) until a sentinel has seen the replica in sync.
    until(
        "SENTINEL FAILOVER accepted",
        Duration::from_secs(30),
        || async {
            query::<String>(&s, redis::cmd("SENTINEL").arg("failover").arg("shop"))
                .await
                .is_ok()
        },
    )
    .await;
    let second = d.moved_from(first).await;
    // Once the old master is demoted, a write there is refused (READONLY)
    // and the cache asks the sentinels again. (Between the promotion and
    // the demotion, writes to the old master are lost: Sentinel's own
    // window, the same for every client.)
    until(
        "the old master is demoted",
        Duration::from_secs(30),
        || async {
            let role: redis::RedisResult<Vec<redis::Value>> =
                query(&format!("redis://127.0.0.1:{first}"), &redis::cmd("ROLE")).await;
            matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"slave")
        },
    )
    .await;
    set_eventually(&a, "k", b"v2").await;
    let v: Option<Vec<u8>> = query(
        &format!("redis://127.0.0.1:{second}"),
        redis::cmd("GET").arg(format!("sc:{ns}:{{k}}")),
    )
    .await
    .expect("GET on the new master");
    let v = v.expect("the entry is on the new master");
    assert!(
        v.windows(2).any(|w| w == b"v2"),
        "the write went to the new master"
    );
    // b's L1 copy of v1 was evicted by the bus: it reads v2.
    until("b sees v2", Duration::from_secs(10), || async {
        b.get("k")
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.payload == "v2")
    })
    .await;

    // 2. The master is killed: the sentinels promote the other node.
    let i = d
        .nodes
        .iter()
        .position(|(p, _)| *p == second)
        .expect("node");
    let mut d = d;
    d.nodes[i].1.kill();
    let third = d.moved_from(second).await;
    assert_eq!(third, first);
    set_eventually(&a, "k", b"v3").await;
    until("b sees v3", Duration::from_secs(10), || async {
        b.get("k")
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.payload == "v3")
    })
    .await;
    // b's bus followed the master too (it resubscribed after the kill).
    until("b's bus is back", Duration::from_secs(10), || async {
        b.stats().await.bus_connected == 1
    })
    .await;
    assert!(
        b.stats().await.bus_connects >= 2,
        "b's bus never reconnected"
    );
    let doctor = a.doctor().await;
    assert_eq!(doctor.exit_code(), 0, "{}", doctor.text());
    assert!(
        doctor.text().contains(&format!("127.0.0.1:{third}")),
        "{}",
        doctor.text()
    );
}

#[test]
fn sentinel_urls_are_checked_without_echoing_the_password() {
    for bad in [
        "redis+sentinel://s3cret@127.0.0.1:26379",
        "redis+sentinel://:s3cret@127.0.0.1:notaport/shop",
        "redis+sentinel://:s3cret@/shop",
        "redis+sentinel://:s3cret@127.0.0.1/shop/zero",
    ] {
        let e = Cache::builder().redis_url(bad).build().expect_err(bad);
        let msg = e.to_string();
        assert!(msg.contains("redis+sentinel://"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
    assert!(
        Cache::builder()
            .redis_url("redis+sentinel://u:p@h1,h2:26380/shop/2")
            .build()
            .is_ok()
    );
}
