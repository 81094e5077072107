//! Redis Sentinel: `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`
//! (`rediss+sentinel://` for TLS to the sentinels and the master). The
//! master is asked of the sentinels (the `redis` crate's `Sentinel`, which
//! also checks that the node it names calls itself master) when the first
//! command needs it and again after any command fails as a lost master
//! does (no connection, dropped, refused, timed out, `READONLY` from a
//! demoted one): a failover costs the commands in flight at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};

use crate::error::{Error, Result};
use crate::runtime::runtime;

/// Default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` URL.
#[derive(Clone)]
pub(crate) struct SentinelSpec {
    /// `redis://host:port` (or `rediss://`) of each sentinel.
    pub(crate) sentinels: Vec<String>,
    pub(crate) service: String,
    tls: bool,
    /// `#insecure`: TLS without certificate verification.
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl std::fmt::Debug for SentinelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSpec")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("tls", &self.tls)
            .field("insecure", &self.insecure)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Whether `url` names a Sentinel deployment.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

fn bad(url_hint: &str, why: &str) -> Error {
    // Never the URL itself: it may hold a password.
    Error::Config(format!(
        "{url_hint}: {why} (expected redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db])"
    ))
}

/// Percent-decoding of URL user info (`%40` -> `@`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(hex) = std::str::from_utf8(&b[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SentinelSpec {
    /// Parse a `redis+sentinel://` URL; errors never repeat the password.
    pub(crate) fn parse(url: &str) -> Result<SentinelSpec> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else {
            return Err(bad("redis URL", "not a redis+sentinel:// URL"));
        };
        let hint = if tls {
            "rediss+sentinel URL"
        } else {
            "redis+sentinel URL"
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| unescape(user)),
                    Some(unescape(pass)),
                ),
                None => (Some(unescape(u)), None),
            },
        };
        let mut sentinels = Vec::new();
        for h in hosts.split(',').map(str::trim) {
            if h.is_empty() {
                return Err(bad(hint, "an empty sentinel address"));
            }
            let port_of = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| bad(hint, &format!("sentinel port {p:?} is not a port number")))
            };
            // `[v6]`, `[v6]:port`, `host`, `host:port`.
            let (host, port) = if let Some(v6) = h.strip_prefix('[') {
                let (addr, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad(hint, "an IPv6 sentinel address without its ']'"))?;
                let port = match after.strip_prefix(':') {
                    Some(p) => port_of(p)?,
                    None if after.is_empty() => SENTINEL_PORT,
                    None => return Err(bad(hint, "text after an IPv6 sentinel address")),
                };
                (format!("[{addr}]"), port)
            } else {
                match h.rsplit_once(':') {
                    Some((host, p)) => (host.to_owned(), port_of(p)?),
                    None => (h.to_owned(), SENTINEL_PORT),
                }
            };
            if host.is_empty() {
                return Err(bad(hint, "a sentinel address without a host"));
            }
            let scheme = if tls { "rediss" } else { "redis" };
            sentinels.push(format!("{scheme}://{host}:{port}"));
        }
        let (path, fragment) = path.split_once('#').unwrap_or((path, ""));
        let insecure = match fragment {
            "" => false,
            "insecure" if tls => true,
            _ => {
                return Err(bad(
                    hint,
                    "the only fragment is #insecure, with rediss+sentinel://",
                ));
            }
        };
        let mut parts = path
            .split('?')
            .next()
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty());
        let service = parts
            .next()
            .ok_or_else(|| bad(hint, "no service (master) name after the hosts"))?
            .to_owned();
        let db = match parts.next() {
            None => 0,
            Some(d) => d
                .parse()
                .map_err(|_| bad(hint, &format!("database {d:?} is not a number")))?,
        };
        if parts.next().is_some() {
            return Err(bad(hint, "too many path segments"));
        }
        if insecure {
            for u in &mut sentinels {
                u.push_str("/#insecure");
            }
        }
        Ok(SentinelSpec {
            sentinels,
            service,
            tls,
            insecure,
            username,
            password,
            db,
        })
    }

    fn master_info(&self) -> SentinelNodeConnectionInfo {
        let mut rci = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(u) = &self.username {
            rci = rci.set_username(u);
        }
        if let Some(p) = &self.password {
            rci = rci.set_password(p);
        }
        let info = SentinelNodeConnectionInfo::default().set_redis_connection_info(rci);
        if self.insecure {
            info.set_tls_mode(redis::TlsMode::Insecure)
        } else if self.tls {
            info.set_tls_mode(redis::TlsMode::Secure)
        } else {
            info
        }
    }
}

/// A client for the master the sentinels name now (the bus subscribes
/// there, and asks again each time it reconnects).
pub(crate) async fn master_client(spec: &SentinelSpec) -> RedisResult<redis::Client> {
    let mut s = Sentinel::build(spec.sentinels.clone())?;
    s.async_master_for(&spec.service, Some(&spec.master_info()))
        .await
}

/// The connection to a Sentinel deployment's current master.
///
/// Asking the sentinels runs as a task of its own on the core runtime, one
/// at a time: a command waits for it at most its own `op_timeout` (a
/// sentinel that does not answer may hold the lookup longer), and the
/// lookup goes on and serves the next commands when it ends.
pub(crate) struct SentinelConn {
    spec: SentinelSpec,
    sentinel: tokio::sync::Mutex<Sentinel>,
    state: Mutex<State>,
    config: ConnectionManagerConfig,
    /// A check that the master has not moved (after a timeout) is running.
    checking: AtomicBool,
}

type Lookup = Shared<BoxFuture<'static, std::result::Result<(u64, ConnectionManager), String>>>;

#[derive(Default)]
struct State {
    /// The master in use: a generation, its address, the connection.
    master: Option<(u64, String, ConnectionManager)>,
    /// The lookup in progress, shared by every command waiting for it.
    pending: Option<Lookup>,
    generation: u64,
}

impl SentinelConn {
    pub(crate) fn new(
        spec: SentinelSpec,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self> {
        let sentinel = Sentinel::build(spec.sentinels.clone())
            .map_err(|e| Error::Config(format!("redis+sentinel URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        Ok(SentinelConn {
            spec,
            sentinel: tokio::sync::Mutex::new(sentinel),
            state: Mutex::new(State::default()),
            config,
            checking: AtomicBool::new(false),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sentinels' master now: its address and a client for it.
    async fn ask(&self) -> RedisResult<(String, redis::Client)> {
        let mut s = self.sentinel.lock().await;
        let c = s
            .async_master_for(&self.spec.service, Some(&self.spec.master_info()))
            .await?;
        Ok((c.get_connection_info().addr().to_string(), c))
    }

    /// The master's connection and its generation: the one in use, or the
    /// (single, shared) lookup's.
    async fn master(self: &Arc<Self>) -> RedisResult<(u64, ConnectionManager)> {
        let lookup = {
            let mut st = self.state();
            if let Some((g, _, m)) = &st.master {
                return Ok((*g, m.clone()));
            }
            match &st.pending {
                Some(p) => p.clone(),
                None => {
                    let this = self.clone();
                    let task = runtime().spawn(async move { this.resolve().await });
                    let p: Lookup = async move { task.await.map_err(|e| e.to_string())? }
                        .boxed()
                        .shared();
                    st.pending = Some(p.clone());
                    p
                }
            }
        };
        lookup.await.map_err(|msg| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("no master from the sentinels: {msg}"),
            ))
        })
    }

    async fn resolve(&self) -> std::result::Result<(u64, ConnectionManager), String> {
        let found = async {
            let (addr, client) = self.ask().await?;
            let m = ConnectionManager::new_with_config(client, self.config.clone()).await?;
            Ok::<_, RedisError>((addr, m))
        }
        .await;
        let mut st = self.state();
        st.pending = None;
        let (addr, m) = found.map_err(|e| e.to_string())?;
        st.generation += 1;
        let g = st.generation;
        st.master = Some((g, addr, m.clone()));
        Ok((g, m))
    }

    /// Ask the sentinels again on the next command, unless the master in
    /// use is already a newer one than `generation`'s.
    fn forget(&self, generation: u64) {
        let mut st = self.state();
        if st.master.as_ref().is_some_and(|(g, _, _)| *g == generation) {
            st.master = None;
        }
    }

    /// A command timed out: a slow master, or a frozen one the sentinels
    /// replaced. Check in the background; only a moved master is dropped.
    pub(crate) fn check_master(self: &Arc<Self>) {
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        runtime().spawn(async move {
            if let Ok((addr, _)) = this.ask().await {
                let mut st = this.state();
                if st.master.as_ref().is_some_and(|(_, a, _)| *a != addr) {
                    st.master = None;
                }
            }
            this.checking.store(false, Ordering::Release);
        });
    }

    /// Whether `e` is how a lost or demoted master answers.
    fn lost_master(e: &RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            )
    }

    /// The master's address, for `doctor` and listing cursors.
    pub(crate) async fn master_addr(self: &Arc<Self>) -> RedisResult<String> {
        self.master().await?;
        let st = self.state();
        Ok(st
            .master
            .as_ref()
            .map(|(_, a, _)| a.clone())
            .unwrap_or_default())
    }
}

/// `ConnectionLike` over whichever node is master now.
#[derive(Clone)]
pub(crate) struct SentinelHandle(pub(crate) Arc<SentinelConn>);

impl ConnectionLike for SentinelHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let s = self.0.clone();
        Box::pin(async move {
            let (g, mut m) = s.master().await?;
            let r = m.req_packed_command(cmd).await;
            if let Err(e) = &r
                && SentinelConn::lost_master(e)
            {
                s.forget(g);
            }
            r
        })
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let s = self.0.clone();
        Box::pin(async move {
            let (g, mut m) = s.master().await?;
            let r = m.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &r
                && SentinelConn::lost_master(e)
            {
                s.forget(g);
            }
            r
        })
    }
    fn get_db(&self) -> i64 {
        self.0.spec.db
    }
}

#[cfg(test)]
mod tests {
    use super::SentinelSpec;

    #[test]
    fn urls_parse() {
        let s = SentinelSpec::parse("redis+sentinel://u:p%40ss@h1,h2:26380,[::1],[::2]:7/shop/3")
            .expect("parses");
        assert_eq!(
            s.sentinels,
            [
                "redis://h1:26379",
                "redis://h2:26380",
                "redis://[::1]:26379",
                "redis://[::2]:7"
            ]
        );
        assert_eq!((s.service.as_str(), s.db), ("shop", 3));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.username.as_deref(), Some("u"));
        let t = SentinelSpec::parse("rediss+sentinel://h/shop#insecure").expect("parses");
        assert!(t.tls && t.insecure);
        assert_eq!(t.sentinels, ["rediss://h:26379/#insecure"]);
        // Not a panic: '%' before a multi-byte character.
        let odd = SentinelSpec::parse("redis+sentinel://:%é@h/shop").expect("parses");
        assert!(odd.password.is_some());
        for bad in [
            "redis+sentinel://h/shop#insecure",
            "redis+sentinel://[::1/shop",
            "redis+sentinel://h:x/shop",
            "redis+sentinel://h",
        ] {
            assert!(SentinelSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
