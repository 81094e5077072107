//! Shared helpers for the integration tests. They talk to real Redis:
//! `REDIS_URL` (default `redis://127.0.0.1:6379`) and, for cluster tests,
//! `STRATACACHE_CLUSTER` (seed URLs, set by `scripts/with-redis.sh`).
#![allow(dead_code)]

use std::time::Duration;

use stratacache::{Cache, CacheBuilder};

/// Run each scenario `async fn name(t: Target)` as two tests, on the
/// standalone server and on the Cluster (`mod standalone`, `mod cluster`).
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod standalone {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Target::Standalone).await } )*
        }
        mod cluster {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Target::Cluster).await } )*
        }
    };
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn cluster_seeds() -> Vec<String> {
    let seeds = std::env::var("STRATACACHE_CLUSTER").unwrap_or_else(|_| {
        panic!("STRATACACHE_CLUSTER is not set: run the tests with `make test` (scripts/with-redis.sh starts a cluster)")
    });
    seeds.split(',').map(str::to_owned).collect()
}

/// A namespace no other test (or run) uses.
pub fn unique_ns(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand_u64())
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Builder on the standalone test Redis with generous timeouts (CI is a
/// loaded 2-core machine; timeouts are not what these tests are about).
pub fn redis_builder(ns: &str) -> CacheBuilder {
    Cache::builder()
        .redis_url(redis_url())
        .namespace(ns)
        .op_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
}

pub fn cluster_builder(ns: &str) -> CacheBuilder {
    Cache::builder()
        .redis_cluster(cluster_seeds())
        .namespace(ns)
        .op_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
}

/// A plain redis connection to inspect what the cache wrote.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to test Redis")
}

pub async fn raw_cluster() -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster_seeds())
        .expect("seeds")
        .get_async_connection()
        .await
        .expect("connect to test cluster")
}

/// Which Redis a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Standalone,
    Cluster,
}

impl Target {
    pub fn builder(self, ns: &str) -> CacheBuilder {
        match self {
            Target::Standalone => redis_builder(ns),
            Target::Cluster => cluster_builder(ns),
        }
    }

    /// A raw connection to inspect and tamper with what the cache wrote.
    pub async fn raw(self) -> Raw {
        match self {
            Target::Standalone => Raw::Single(raw(&redis_url()).await),
            Target::Cluster => Raw::Cluster(raw_cluster().await),
        }
    }
}

pub enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        match self {
            Raw::Single(c) => cmd.query_async(c).await,
            Raw::Cluster(c) => cmd.query_async(c).await,
        }
        .expect("raw redis command")
    }
    pub async fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.query(redis::cmd("GET").arg(key)).await
    }
    pub async fn set(&mut self, key: &str, v: &[u8]) {
        self.query::<()>(redis::cmd("SET").arg(key).arg(v)).await
    }
    pub async fn pttl(&mut self, key: &str) -> i64 {
        self.query(redis::cmd("PTTL").arg(key)).await
    }
}

/// Whether the Redis at `url` answers a PING now.
async fn pings(url: &str) -> bool {
    match redis::Client::open(url) {
        Ok(c) => match c.get_multiplexed_async_connection().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// Wait until the Redis at `url` answers a PING (a server just started).
pub async fn answers(url: &str) {
    eventually(&format!("{url} answers"), Duration::from_secs(10), || {
        pings(url)
    })
    .await;
}

/// A Redis server of this test's own, stopped (by PID) when dropped.
pub struct OwnRedis {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        Self::on_port(
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("free port")
                .local_addr()
                .expect("addr")
                .port(),
        )
    }

    /// Start (or restart) a server on `port`.
    pub fn on_port(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            port,
        }
    }
}

impl OwnRedis {
    /// Freeze (`SIGSTOP`) or resume (`SIGCONT`) the server: a hung peer
    /// whose connections stay open.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGKILL the server (by PID) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on loopback in front of a Redis, written for the fault
/// tests: it can hold every chunk a client sends for a set delay (each
/// command is then answered that much later, in order) and can cut every
/// connection, refusing new ones, until restored. Runs on the test's
/// runtime; stops when dropped.
pub struct Proxy {
    pub url: String,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let delay = delay.clone();
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let (tx, mut rx) =
                        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                    let read_client = async move {
                        use tokio::io::AsyncReadExt;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    let d = Duration::from_millis(delay.load(Ordering::Relaxed));
                                    let due = tokio::time::Instant::now() + d;
                                    if tx.send((due, buf[..n].to_vec())).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    };
                    let to_server = async move {
                        use tokio::io::AsyncWriteExt;
                        while let Some((due, chunk)) = rx.recv().await {
                            // (No timer when there is no delay: a timer
                            // costs a millisecond tick per command.)
                            if due > tokio::time::Instant::now() {
                                tokio::time::sleep_until(due).await;
                            }
                            if sw.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    };
                    let to_client = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    let cut = async move {
                        let _ = cut_rx.wait_for(|c| *c).await;
                    };
                    // Whichever ends first (a side closed, or a cut) drops
                    // both sockets.
                    tokio::select! {
                        _ = async { tokio::join!(read_client, to_server) } => {}
                        _ = to_client => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Proxy {
            url: format!("redis://127.0.0.1:{port}"),
            delay_ms,
            cut,
            task,
        }
    }

    /// Hold every client chunk for `d` from now on.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Close every connection and refuse new ones.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    /// Accept connections again.
    pub fn restore(&self) {
        let _ = self.cut.send(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.cut.send(true);
        self.task.abort();
    }
}

/// Wait (polling every 10 ms, at most `limit`) until `f` holds; panics
/// with `what` otherwise. For effects that have no event to wait on
/// (another process, a server restart).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A Redis Cluster of this test's own (`masters` masters with `replicas`
/// replicas each), on free loopback ports; every server is stopped by PID
/// when dropped.
pub struct OwnCluster {
    servers: Vec<OwnRedis>,
    dir: std::path::PathBuf,
}

impl OwnCluster {
    /// One cluster-enabled server on a free port, answering. A port found
    /// free can be taken by another test's server before this one binds it
    /// (the server then exits): such a start is retried on another port.
    async fn node(dir: &std::path::Path) -> OwnRedis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .expect("free port")
                .local_addr()
                .expect("addr")
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            let mut server = OwnRedis {
                child,
                url: format!("redis://127.0.0.1:{port}"),
                port,
            };
            let until = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < until {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // exited: the port was taken meanwhile
                }
                if pings(&server.url).await {
                    return server;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("no cluster node could be started in 5 tries");
    }

    pub async fn start(masters: usize, replicas: usize) -> OwnCluster {
        let dir = std::env::temp_dir().join(format!("stratacache-cluster-{:016x}", rand_u64()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut servers = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            servers.push(Self::node(&dir).await);
        }
        let ok = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli on PATH")
            .success();
        assert!(ok, "redis-cli --cluster create");
        let cluster = OwnCluster { servers, dir };
        eventually(
            "every replica attached",
            Duration::from_secs(20),
            || async {
                let nodes = cluster.nodes().await;
                nodes.iter().filter(|n| n.master_of.is_some()).count() == masters * replicas
                    && nodes.iter().filter(|n| n.is_master).count() == masters
            },
        )
        .await;
        for s in &cluster.servers {
            eventually("the cluster is ok", Duration::from_secs(20), || async {
                let mut c = raw(&s.url).await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            })
            .await;
        }
        cluster
    }

    pub fn seeds(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }

    /// Every node as (id, url, master id or None for a master, slots).
    pub async fn nodes(&self) -> Vec<ClusterNode> {
        let mut c = raw(&self.servers[0].url).await;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .expect("CLUSTER NODES");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let addr = f[1].split('@').next().unwrap_or_default();
                let mut slots = Vec::new();
                for r in &f[8.min(f.len())..] {
                    if r.starts_with('[') {
                        continue;
                    }
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                        slots.push((a, b));
                    }
                }
                ClusterNode {
                    id: f[0].to_owned(),
                    url: format!("redis://{addr}"),
                    master_of: (f[3] != "-").then(|| f[3].to_owned()),
                    is_master: f[2].contains("master"),
                    slots,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub url: String,
    pub master_of: Option<String>,
    pub is_master: bool,
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn owns(&self, slot: u16) -> bool {
        self.is_master && self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A handle standing in for another process (its own L1, flights and bus
/// subscription) on the standalone test Redis.
pub fn process_cache(ns: &str) -> Cache {
    redis_builder(ns).isolated(true).build().expect("cache")
}

/// Write options of a raw entry with `tags`, alive for five minutes.
pub fn tagged_for_5m(tags: &[&str]) -> stratacache::WriteOptions {
    stratacache::WriteOptions::new(
        stratacache::Ttl::After(Duration::from_secs(300)),
        stratacache::Format::RAW,
    )
    .with_tags(tags.iter().map(|t| (*t).to_owned()).collect())
}

/// Wait until `f` holds, polling every 5 ms; panics naming `what` after
/// `limit`.
pub async fn until_within<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`until_within`] twenty seconds (a broker or a database on a loaded
/// machine).
pub async fn until<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_within(what, Duration::from_secs(20), f).await;
}
