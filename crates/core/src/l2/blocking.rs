//! Blocking connections, for a synchronous caller's single commands.
//!
//! A binding's sync method blocks its thread on the core future anyway
//! ([`crate::runtime::block_on_sync`]). Over the multiplexed connection
//! its command would be handed to a runtime worker to send and the answer
//! handed back: two thread wake-ups per round trip, a third of a `GET` on
//! loopback. On such a thread (`Carry::Here`) a single command is instead
//! sent and read by the caller itself, over a connection from this pool,
//! as a synchronous client (redis-py, django-redis) does.
//!
//! Only the carrying differs: the command, `op_timeout` (the socket's read
//! and write timeouts, and the same `timed` wrapper as every command), the
//! breaker and the error mapping are the multiplexed path's. Standalone
//! servers only (`redis://`, `rediss://`, `unix://`): Cluster and Sentinel
//! keep the multiplexed connection, which follows their topology.
//!
//! A connection is taken for one command (with its `NOSCRIPT` retry),
//! opened on a runtime thread when none is idle (see [`Taken::run`]), and
//! given back unless the command failed in a way that can leave an answer
//! unread (I/O, timeout): then it is closed. The pool holds at most
//! [`MAX_IDLE`] idle connections, starts empty after `fork` (the parent's
//! sockets are not the child's to use), and closes them when the cache is
//! dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::runtime::{fork_generation, runtime};

/// Idle connections kept: as many threads blocking on Redis at once as a
/// busy threaded server runs; more are closed when given back.
pub(super) const MAX_IDLE: usize = 64;

pub(super) struct Pool {
    client: redis::Client,
    connect_timeout: Duration,
    op_timeout: Duration,
    tls: bool,
    idle: Mutex<(u64, Vec<redis::Connection>)>,
}

impl Pool {
    /// A pool for `url`, or `None` when the location is not one server.
    pub(super) fn new(
        url: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
        tls: bool,
    ) -> Option<Arc<Pool>> {
        Some(Arc::new(Pool {
            client: redis::Client::open(url).ok()?,
            connect_timeout,
            op_timeout,
            tls,
            idle: Mutex::new((fork_generation(), Vec::new())),
        }))
    }

    /// A connection for one command: an idle one, else one connected when
    /// the command is sent (see [`Taken::run`]).
    pub(super) fn take(self: &Arc<Self>) -> Taken<'_> {
        let generation = fork_generation();
        let mut g = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != generation {
            // A forked child: closing the copies of the parent's sockets
            // here leaves the parent's own open.
            g.1.clear();
            g.0 = generation;
        }
        Taken {
            pool: self,
            conn: g.1.pop(),
            generation,
            reusable: true,
        }
    }

    fn connect(&self) -> RedisResult<redis::Connection> {
        if self.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let c = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        c.set_read_timeout(Some(self.op_timeout))?;
        c.set_write_timeout(Some(self.op_timeout))?;
        Ok(c)
    }

    /// Give back a connection in step with the server.
    fn give_back(&self, c: redis::Connection, generation: u64) {
        let mut g = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == generation && g.1.len() < MAX_IDLE {
            g.1.push(c);
        }
    }
}

/// A connection taken from the [`Pool`], given back when dropped if it is
/// still in step with the server.
pub(super) struct Taken<'a> {
    pool: &'a Arc<Pool>,
    conn: Option<redis::Connection>,
    generation: u64,
    reusable: bool,
}

impl Taken<'_> {
    /// `f` on the connection, opened first if there is none. Opening is
    /// done on a runtime thread, as the multiplexed connection's is: the
    /// command waits for it only as long as its own timeout lets it, and
    /// a connection that opens after the command gave up is pooled for
    /// the next one (each call stays bounded by `op_timeout`, however
    /// long connecting takes within `connect_timeout`).
    async fn run<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (pool, generation) = (self.pool.clone(), self.generation);
                runtime().spawn_blocking(move || {
                    let r = pool.connect();
                    if let Err(Ok(c)) = tx.send(r) {
                        pool.give_back(c, generation);
                    }
                });
                let c = rx.await.map_err(|_| {
                    RedisError::from(std::io::Error::other("the connecting thread stopped"))
                })??;
                self.conn.insert(c)
            }
        };
        let r = f(conn);
        if let Err(e) = &r
            && !answered_in_step(e)
        {
            self.reusable = false;
        }
        r
    }
}

/// An error after which the connection still reads the next command's
/// answer next: the server's own error reply.
fn answered_in_step(e: &RedisError) -> bool {
    !(e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error())
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else { return };
        if self.reusable && redis::ConnectionLike::is_open(&c) {
            self.pool.give_back(c, self.generation);
        }
    }
}

/// The command runs inside `poll`, on the polling thread: only ever polled
/// on a thread that blocks for it anyway (`Carry::Here`).
impl redis::aio::ConnectionLike for Taken<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.run(|c| redis::ConnectionLike::req_command(c, cmd))
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let packed = cmd.get_packed_pipeline();
            self.run(|c| redis::ConnectionLike::req_packed_commands(c, &packed, offset, count))
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.pool.client.get_connection_info().redis_settings().db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisLocation;
    use crate::l2::{Breaker, L2};
    use crate::metrics::Metrics;
    use crate::runtime::{block_on, block_on_sync, join_all, poll_once_sync};

    fn l2() -> L2 {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let breaker = Breaker::new(
            5,
            Duration::from_secs(1),
            Arc::default(),
            Arc::new(Metrics::default()),
        );
        L2::new(
            RedisLocation::Standalone(url),
            Duration::from_secs(2),
            Duration::from_secs(2),
            breaker,
        )
    }

    fn idle(l2: &L2) -> usize {
        l2.pool
            .as_ref()
            .expect("a standalone pool")
            .idle
            .lock()
            .expect("lock")
            .1
            .len()
    }

    async fn get(l2: &L2, key: &str) -> crate::Result<Option<Vec<u8>>> {
        l2.query(redis::cmd("GET").arg(key)).await
    }

    /// On a thread of its own, a sync call's single command goes over a
    /// pooled connection (given back after); anywhere else, and for
    /// commands issued together, over the multiplexed one.
    #[test]
    fn only_a_sync_callers_single_commands_are_carried_here() {
        let l2 = l2();
        let key = format!("blocking-test-{}", rand::random::<u64>());
        block_on(l2.query::<()>(redis::cmd("SET").arg(&key).arg("v").arg("PX").arg(60_000)))
            .expect("set");
        assert_eq!(idle(&l2), 0, "block_on: the multiplexed connection");

        // poll_once_sync then block_on_sync, as a binding's sync method.
        let fut = match poll_once_sync(Box::pin(get(&l2, &key))) {
            Ok(_) => panic!("a Redis read cannot answer on the first poll"),
            Err(f) => f,
        };
        assert_eq!(idle(&l2), 0, "the first poll sends nothing");
        assert_eq!(block_on_sync(fut).expect("get"), Some(b"v".to_vec()));
        assert_eq!(idle(&l2), 1, "carried here, the connection given back");

        // Issued together: pipelined on the multiplexed connection, and
        // the one idle connection stays where it was.
        let both = block_on_sync(join_all([get(&l2, &key), get(&l2, &key)]));
        assert!(both.iter().all(|r| matches!(r, Ok(Some(v)) if v == b"v")));
        assert_eq!(idle(&l2), 1);

        // A server error reply leaves the connection in step: kept.
        let r = block_on_sync(l2.query::<i64>(redis::cmd("LLEN").arg(&key)));
        assert!(
            matches!(r, Err(crate::Error::L2(ref m)) if m.contains("WRONGTYPE")),
            "{r:?}"
        );
        assert_eq!(idle(&l2), 1);

        // From inside a runtime (a worker must never block): multiplexed.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            tokio::task::block_in_place(|| {
                assert_eq!(
                    block_on_sync(get(&l2, &key)).expect("get"),
                    Some(b"v".to_vec())
                );
            });
        });
        assert_eq!(idle(&l2), 1);
        block_on(l2.query::<()>(redis::cmd("DEL").arg(&key))).expect("del");
    }

    #[test]
    fn server_errors_keep_the_connection_io_errors_close_it() {
        let reply = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(answered_in_step(&reply));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        assert!(!answered_in_step(&io));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!answered_in_step(&reset));
    }
}
