//! Redis Sentinel: `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`
//! (`rediss+sentinel://` for TLS to the sentinels and the master). The
//! master is asked of the sentinels (the `redis` crate's `Sentinel`, which
//! also checks that the node it names calls itself master) when the first
//! command needs it and again after any command fails as a lost master
//! does (no connection, dropped, refused, timed out, `READONLY` from a
//! demoted one): a failover costs the commands in flight at that moment.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};

use crate::error::{Error, Result};

/// Default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// A parsed `redis+sentinel://` URL.
#[derive(Clone)]
pub(crate) struct SentinelSpec {
    /// `redis://host:port` (or `rediss://`) of each sentinel.
    pub(crate) sentinels: Vec<String>,
    pub(crate) service: String,
    tls: bool,
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
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
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
            let (host, port) = match h.rsplit_once(':') {
                Some((host, p)) if !host.ends_with(']') || h.starts_with('[') => {
                    let port = p.parse::<u16>().map_err(|_| {
                        bad(hint, &format!("sentinel port {p:?} is not a port number"))
                    })?;
                    (host, port)
                }
                _ => (h, SENTINEL_PORT),
            };
            if host.is_empty() {
                return Err(bad(hint, "a sentinel address without a host"));
            }
            let scheme = if tls { "rediss" } else { "redis" };
            sentinels.push(format!("{scheme}://{host}:{port}"));
        }
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
        Ok(SentinelSpec {
            sentinels,
            service,
            tls,
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
        if self.tls {
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
pub(crate) struct SentinelConn {
    spec: SentinelSpec,
    sentinel: tokio::sync::Mutex<Sentinel>,
    master: Mutex<Option<ConnectionManager>>,
    config: ConnectionManagerConfig,
}

impl SentinelConn {
    pub(crate) fn new(
        spec: SentinelSpec,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self> {
        let sentinel =
            Sentinel::build(spec.sentinels.clone()).map_err(|e| Error::Config(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        Ok(SentinelConn {
            spec,
            sentinel: tokio::sync::Mutex::new(sentinel),
            master: Mutex::new(None),
            config,
        })
    }

    async fn master(&self) -> RedisResult<ConnectionManager> {
        if let Some(m) = self
            .master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(m);
        }
        let client = {
            let mut s = self.sentinel.lock().await;
            s.async_master_for(&self.spec.service, Some(&self.spec.master_info()))
                .await?
        };
        let m = ConnectionManager::new_with_config(client, self.config.clone()).await?;
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
        Ok(m)
    }

    /// Ask the sentinels again on the next command.
    pub(crate) fn forget_master(&self) {
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether `e` is how a lost or demoted master answers.
    fn lost_master(e: &RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            )
    }

    /// The current master's address, for `doctor`.
    pub(crate) async fn master_addr(&self) -> RedisResult<String> {
        let mut s = self.sentinel.lock().await;
        let c = s
            .async_master_for(&self.spec.service, Some(&self.spec.master_info()))
            .await?;
        Ok(c.get_connection_info().addr().to_string())
    }
}

/// `ConnectionLike` over whichever node is master now.
#[derive(Clone)]
pub(crate) struct SentinelHandle(pub(crate) Arc<SentinelConn>);

impl ConnectionLike for SentinelHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let s = self.0.clone();
        Box::pin(async move {
            let mut m = s.master().await.inspect_err(|_| s.forget_master())?;
            let r = m.req_packed_command(cmd).await;
            if let Err(e) = &r
                && SentinelConn::lost_master(e)
            {
                s.forget_master();
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
            let mut m = s.master().await?;
            let r = m.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &r
                && SentinelConn::lost_master(e)
            {
                s.forget_master();
            }
            r
        })
    }
    fn get_db(&self) -> i64 {
        self.0.spec.db
    }
}
