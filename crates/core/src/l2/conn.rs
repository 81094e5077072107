//! The connection: one multiplexed `ConnectionManager` or cluster client,
//! built lazily on the core runtime and rebuilt after `fork`; every command
//! goes through the breaker and `op_timeout`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, Script, Value};

use super::looped::Pick;
use super::sentinel::{SentinelConn, SentinelHandle, SentinelSpec, is_sentinel_url};
use super::{L2, unreachable};
use crate::config::RedisLocation;
use crate::error::{Error, Result};
use crate::runtime::{Carry, carry, fork_generation, runtime};

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// Whichever node the sentinels name as master (see `sentinel`).
    Sentinel(SentinelHandle),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

impl L2 {
    pub(super) fn build(&self) -> Result<Conn> {
        if self.tls {
            // Pick the crypto provider explicitly: harmless if one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // Connection drivers are spawned on the core runtime (module docs).
        let _enter = runtime().enter();
        let conn = match &self.location {
            RedisLocation::Standalone(url) if is_sentinel_url(url) => {
                let spec = SentinelSpec::parse(url)?;
                Conn::Sentinel(SentinelHandle(Arc::new(SentinelConn::new(
                    spec,
                    self.connect_timeout,
                    self.op_timeout,
                )?)))
            }
            RedisLocation::Standalone(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| Error::Config(e.to_string()))?;
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.op_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(100));
                Conn::Single(ConnectionManager::new_lazy_with_config(client, cfg)?)
            }
            RedisLocation::Cluster(seeds) => {
                let client =
                    redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(self.op_timeout)
                        .retries(2)
                        .build()
                        .map_err(|e| Error::Config(e.to_string()))?;
                Conn::Cluster(client.get_pending_async_connection_with_config(Default::default()))
            }
        };
        Ok(conn)
    }

    pub(super) fn conn(&self) -> Result<Conn> {
        let generation = fork_generation();
        if let Ok(g) = self.conn.read()
            && let Some((cg, c)) = &*g
            && *cg == generation
        {
            return Ok(c.clone());
        }
        let mut g = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if let Some((cg, c)) = &*g
            && *cg == generation
        {
            return Ok(c.clone());
        }
        let c = self.build()?;
        if let Some(old) = g.replace((generation, c.clone())) {
            // The parent's connection, in a forked child: dropping it would
            // wake the parent's driver task through the parent's scheduler,
            // whose locks a thread that no longer exists may have held at
            // the fork. Leak it, as the parent's runtime is leaked.
            std::mem::forget(old);
        }
        Ok(c)
    }

    pub(super) async fn timed<T, F>(&self, f: F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if self.in_outage() {
            // Not recorded by the breaker: the outage ends when the test says.
            return Err(Error::L2Unavailable(
                "simulated outage (Cache.simulate_outage / stratacache.testing)".into(),
            ));
        }
        let probe = self.breaker.admit()?;
        let r = match tokio::time::timeout(self.op_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(match Error::from(e) {
                Error::L2Timeout(_) => Error::L2Timeout(self.op_timeout),
                other => other,
            }),
            Err(_) => Err(Error::L2Timeout(self.op_timeout)),
        };
        self.breaker.record(&r, probe);
        if let Err(Error::L2Timeout(_)) = &r {
            self.check_master();
        }
        match r {
            Ok(v) => {
                if !self.answered.load(Ordering::Relaxed) {
                    self.answered.store(true, Ordering::Relaxed);
                }
                Ok(v)
            }
            Err(e) if self.tls && unreachable(&e) && !self.answered.load(Ordering::Relaxed) => {
                Err(Error::L2Unavailable(format!(
                    "no answer over TLS ({e}): is the server at this rediss:// URL speaking TLS? \
                     A plaintext Redis never completes the TLS handshake; use redis:// for it"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// A command timed out: with Sentinel, check in the background that
    /// the master has not moved (the connection sees other errors itself;
    /// a timeout drops its future first).
    fn check_master(&self) {
        if let Ok(g) = self.conn.read()
            && let Some((_, Conn::Sentinel(h))) = &*g
        {
            h.0.check_master();
        }
    }

    /// This thread's own carrier when it carries its own commands
    /// (`runtime::Carry`): the pool's connection on a thread that blocks
    /// (on the first, lock-held poll of a sync call, after yielding once,
    /// so that the command is sent from `block_on_sync`), or its event
    /// loop's connection.
    async fn here(&self) -> Option<Carried<'_>> {
        match carry() {
            Carry::Shared => None,
            Carry::Loop => {
                let spec = self.looped.as_ref()?;
                match spec.carrier() {
                    Pick::Loop(c) => Some(Carried::Loop(c)),
                    Pick::Shared => None,
                    // Bounded: a command still in flight there after
                    // `op_timeout` lets this one join it there.
                    Pick::Wait => {
                        spec.settled(self.op_timeout).await;
                        match spec.carrier() {
                            Pick::Loop(c) => Some(Carried::Loop(c)),
                            Pick::Shared | Pick::Wait => None,
                        }
                    }
                }
            }
            Carry::Defer | Carry::Here => {
                let pool = self.pool.as_ref()?;
                if carry() == Carry::Defer {
                    YieldOnce(false).await;
                }
                (carry() == Carry::Here).then(|| Carried::Pool(pool.take()))
            }
        }
    }

    /// On a loop thread whose command goes over the multiplexed
    /// connection, the count that keeps later ones there until it is
    /// answered (`looped::Spec::behind`).
    fn behind(&self) -> Option<super::looped::Behind> {
        (carry() == Carry::Loop)
            .then(|| self.looped.as_ref().map(super::looped::Spec::behind))
            .flatten()
    }

    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        if let Some(mut c) = self.here().await {
            return self.timed(cmd.query_async(&mut c)).await;
        }
        let behind = self.behind();
        let mut c = self.conn()?;
        let r = self.timed(cmd.query_async(&mut c)).await;
        after_behind(behind, &r, c);
        r
    }

    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        if let Some(mut c) = self.here().await {
            return self.timed(inv.invoke_async(&mut c)).await;
        }
        let behind = self.behind();
        let mut c = self.conn()?;
        let r = self.timed(inv.invoke_async(&mut c)).await;
        after_behind(behind, &r, c);
        r
    }
}

/// A loop thread's command over the multiplexed connection has ended. If
/// it was given up (`op_timeout`), it may still be sent or run after this:
/// later commands keep waiting for it until the connection answers a
/// `PING` sent after it (commands on it are answered in order; each PING
/// is itself bounded by the response timeout, so it is sent again), for
/// at most a minute, or until the connection is found dropped.
fn after_behind<T>(behind: Option<super::looped::Behind>, r: &Result<T>, mut c: Conn) {
    let Some(b) = behind else { return };
    if !matches!(r, Err(Error::L2Timeout(_))) {
        return;
    }
    runtime().spawn(async move {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < until {
            let ping = redis::cmd("PING");
            match tokio::time::timeout_at(until, ping.query_async::<()>(&mut c)).await {
                Ok(Err(e)) if e.is_timeout() => continue,
                _ => break,
            }
        }
        drop(b);
    });
}

/// A command carried by the calling thread (see [`L2::here`]).
pub(super) enum Carried<'a> {
    Pool(super::blocking::Taken<'a>),
    Loop(super::looped::Carrier),
}

impl ConnectionLike for Carried<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Carried::Pool(c) => c.req_packed_command(cmd),
            Carried::Loop(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Carried::Pool(c) => c.req_packed_commands(cmd, offset, count),
            Carried::Loop(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Carried::Pool(c) => c.get_db(),
            Carried::Loop(c) => c.get_db(),
        }
    }
}

/// Pending once, without asking to be woken: only for the first poll of
/// `runtime::poll_once_sync`, which `block_on_sync` always polls again.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        std::task::Poll::Pending
    }
}
