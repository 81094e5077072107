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
//! unread (I/O, timeout): then it is closed, and when it was found
//! dropped (Redis restarted or closed it) the idle ones are closed too.
//! Each read and write waits at most for what is left of the command's
//! `op_timeout`. The pool holds at most [`MAX_IDLE`] idle connections,
//! starts empty after `fork` (the parent's sockets are not the child's to
//! use), and closes them when the cache is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

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
    /// The fork generation the idle list belongs to, and the list.
    idle: Mutex<(u64, Vec<Pooled>)>,
    /// `idle`'s generation, readable without its lock (see [`Pool::idle`]).
    generation: AtomicU64,
}

/// An idle connection and the socket timeout it has now.
struct Pooled {
    conn: redis::Connection,
    timeout: Duration,
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
            generation: AtomicU64::new(fork_generation()),
        }))
    }

    /// The idle list of this process, emptied first in a forked child;
    /// `None` in a child whose parent forked while a thread (gone in the
    /// child) held the lock: then connections are opened per command and
    /// not kept, rather than waiting forever.
    fn idle(&self, generation: u64) -> Option<MutexGuard<'_, (u64, Vec<Pooled>)>> {
        let mut g = match self.idle.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.generation.load(Ordering::Acquire) != generation {
                    return None;
                }
                self.idle.lock().unwrap_or_else(|e| e.into_inner())
            }
        };
        if g.0 != generation {
            // A forked child: closing the copies of the parent's sockets
            // here leaves the parent's own open.
            g.1.clear();
            g.0 = generation;
            self.generation.store(generation, Ordering::Release);
        }
        Some(g)
    }

    /// A connection for one command, due by `op_timeout` from now: an idle
    /// one, else one connected when the command is sent (see
    /// [`Taken::run`]).
    pub(super) fn take(self: &Arc<Self>) -> Taken<'_> {
        let generation = fork_generation();
        let conn = self.idle(generation).and_then(|mut g| g.1.pop());
        Taken {
            pool: self,
            conn,
            generation,
            due: Instant::now() + self.op_timeout,
            reusable: true,
        }
    }

    fn connect(&self) -> RedisResult<Pooled> {
        if self.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let conn = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(self.op_timeout))?;
        conn.set_write_timeout(Some(self.op_timeout))?;
        Ok(Pooled {
            conn,
            timeout: self.op_timeout,
        })
    }

    /// Give back a connection in step with the server.
    fn give_back(&self, c: Pooled, generation: u64) {
        if let Some(mut g) = self.idle(generation)
            && g.0 == generation
            && g.1.len() < MAX_IDLE
        {
            g.1.push(c);
        }
    }

    /// A connection was found dropped: Redis restarted, failed over or
    /// closed it. The idle ones were opened to the same server and are
    /// most likely dropped too; close them, so that each costs no caller
    /// a failed command (the multiplexed connection fails once as well).
    fn forget_idle(&self, generation: u64) {
        if let Some(mut g) = self.idle(generation) {
            g.1.clear();
        }
    }
}

/// A connection taken from the [`Pool`], given back when dropped if it is
/// still in step with the server.
pub(super) struct Taken<'a> {
    pool: &'a Arc<Pool>,
    conn: Option<Pooled>,
    generation: u64,
    /// When the command's `op_timeout` runs out: each read and write of
    /// it waits at most until then.
    due: Instant,
    reusable: bool,
}

impl Taken<'_> {
    /// `f` on the connection, opened first if there is none. Opening is
    /// done on a runtime thread, as the multiplexed connection's is: the
    /// command waits for it only as long as its own timeout lets it, and
    /// a connection that opens after the command gave up is pooled for
    /// the next one. The socket's timeouts are what is left until `due`
    /// (`op_timeout` itself on a connection taken idle, set again only
    /// when a connect or a `NOSCRIPT` retry used part of it).
    async fn run<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let c = match &mut self.conn {
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
        let left = self.due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.reusable = false;
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        }
        // A millisecond of slack: a connection taken idle is sent with the
        // timeout it has, without two system calls per command.
        if left + Duration::from_millis(1) < c.timeout || left > c.timeout {
            c.conn.set_read_timeout(Some(left))?;
            c.conn.set_write_timeout(Some(left))?;
            c.timeout = left;
        }
        let r = f(&mut c.conn);
        if let Err(e) = &r
            && !answered_in_step(e)
        {
            self.reusable = false;
            if e.is_connection_dropped() || e.is_unrecoverable_error() {
                self.pool.forget_idle(self.generation);
            }
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
        if self.reusable && redis::ConnectionLike::is_open(&c.conn) {
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

    /// Connections found dropped (Redis restarted, or closed them) cost
    /// one failed command, not one per idle connection.
    #[test]
    fn a_dropped_connection_closes_the_idle_ones() {
        let l2 = l2();
        let pool = l2.pool.clone().expect("a standalone pool");
        // Two connections in use at once, then both idle.
        let ids: Vec<i64> = block_on_sync(async {
            let (mut a, mut b) = (pool.take(), pool.take());
            let a: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut a)
                .await
                .expect("id");
            let b: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut b)
                .await
                .expect("id");
            vec![a, b]
        });
        assert_eq!(idle(&l2), 2);
        for id in &ids {
            let killed: i64 =
                block_on(l2.query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(*id)))
                    .expect("kill");
            assert_eq!(killed, 1);
        }
        let first = block_on_sync(get(&l2, "blocking-test-absent"));
        assert!(
            matches!(first, Err(crate::Error::L2Unavailable(_))),
            "{first:?}"
        );
        assert_eq!(idle(&l2), 0, "the other dropped connection was closed too");
        assert_eq!(
            block_on_sync(get(&l2, "blocking-test-absent")).expect("a fresh connection"),
            None
        );
        assert_eq!(idle(&l2), 1);
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
