//! Commands carried on a binding's event loop (`stratacache::evloop`): a
//! thread that gives the core its loop and polls with `poll_on_loop` has
//! its single commands sent and answered over its own connection, watched
//! by that loop. Driven here by a small `poll(2)` loop, as Node's libuv
//! loop drives it.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::OwnRedis;
use stratacache::evloop::{EventLoop, Watch, poll_on_loop, set_event_loop};
use stratacache::{Cache, Error, Format, Ttl, WriteOptions};

/// What the core asks to be called when a socket is ready.
type Ready = Rc<dyn Fn(bool)>;

/// One watched socket.
struct Watched {
    fd: RawFd,
    ready: Ready,
    writable: Rc<Cell<bool>>,
    open: Rc<Cell<bool>>,
}

#[derive(Default)]
struct TestLoop {
    watched: RefCell<Vec<Watched>>,
    /// Sockets ever watched, and readiness callbacks made.
    watches: Cell<usize>,
    readies: Cell<usize>,
}

struct TestWatch {
    writable: Rc<Cell<bool>>,
    open: Rc<Cell<bool>>,
}

impl Watch for TestWatch {
    fn writable(&self, on: bool) {
        self.writable.set(on);
    }
}

impl Drop for TestWatch {
    fn drop(&mut self) {
        self.open.set(false);
    }
}

/// The loop as the core holds it (the test keeps the `Rc<TestLoop>`).
struct Shared(Rc<TestLoop>);

impl EventLoop for Shared {
    fn watch(&self, fd: RawFd, ready: Rc<dyn Fn(bool)>) -> Option<Box<dyn Watch>> {
        let (writable, open) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(true)));
        self.0.watched.borrow_mut().push(Watched {
            fd,
            ready,
            writable: writable.clone(),
            open: open.clone(),
        });
        self.0.watches.set(self.0.watches.get() + 1);
        Some(Box::new(TestWatch { writable, open }))
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl TestLoop {
    fn install() -> Rc<TestLoop> {
        let lp = Rc::new(TestLoop::default());
        set_event_loop(Some(Rc::new(Shared(lp.clone()))));
        lp
    }

    /// Wait up to `ms` for the watched sockets; call back the ready ones.
    fn turn(&self, ms: i32) -> bool {
        self.watched.borrow_mut().retain(|w| w.open.get());
        let mut fds: Vec<libc::pollfd> = self
            .watched
            .borrow()
            .iter()
            .map(|w| libc::pollfd {
                fd: w.fd,
                events: libc::POLLIN | if w.writable.get() { libc::POLLOUT } else { 0 },
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return false;
        }
        let ready: Vec<(Ready, bool)> = self
            .watched
            .borrow()
            .iter()
            .zip(&fds)
            .filter(|(_, p)| p.revents != 0)
            .map(|(w, p)| {
                (
                    w.ready.clone(),
                    p.revents & (libc::POLLERR | libc::POLLNVAL) != 0,
                )
            })
            .collect();
        for (r, error) in ready {
            self.readies.set(self.readies.get() + 1);
            r(error);
        }
        true
    }

    /// Drive `fut` on this thread to its end, as a binding's loop does.
    fn run<F: Future>(&self, fut: F) -> F::Output {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = poll_on_loop(fut.as_mut(), &mut cx) {
                return v;
            }
            // Until the loop's socket answers or another thread wakes us.
            while !flag.0.swap(false, Ordering::SeqCst) {
                if self.turn(2) && flag.0.swap(false, Ordering::SeqCst) {
                    break;
                }
            }
        }
    }

    /// Run commands until the loop watches `n` sockets (a connection opens
    /// on a runtime thread; commands go over the multiplexed one meanwhile).
    fn until_watching(&self, c: &Cache, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.watches.get() < n {
            assert!(Instant::now() < until, "no loop connection opened");
            let _ = self.run(c.get("until-watching"));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn opts() -> WriteOptions {
    WriteOptions::new(Ttl::After(Duration::from_secs(60)), Format::RAW)
}

fn cache(url: &str, op_timeout: Duration) -> Cache {
    Cache::builder()
        .redis_url(url)
        .namespace(common::unique_ns("evloop"))
        .l1_enabled(false)
        .op_timeout(op_timeout)
        .breaker(100, Duration::from_millis(50))
        .build()
        .expect("cache")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn payload(c: &Cache, lp: &TestLoop, key: &str) -> Option<Vec<u8>> {
    lp.run(c.get(key)).expect("get").map(|e| e.payload.to_vec())
}

#[test]
fn single_commands_go_over_the_loops_connection() {
    let lp = TestLoop::install();
    let c = cache(&common::redis_url(), Duration::from_secs(5));
    lp.until_watching(&c, 1);
    let before = lp.readies.get();
    for i in 0..20 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        lp.run(c.set(&k, b(&v), &opts())).expect("set");
        assert_eq!(payload(&c, &lp, &k), Some(v.into_bytes()));
    }
    // Each of the 40 answers was read when the loop said so, over the one
    // connection opened.
    assert!(
        lp.readies.get() - before >= 40,
        "{}",
        lp.readies.get() - before
    );
    assert_eq!(lp.watches.get(), 1);
    set_event_loop(None);
    assert!(
        lp.watched.borrow().iter().all(|w| !w.open.get()),
        "closed with the loop"
    );
}

#[test]
fn commands_issued_together_get_their_own_answers() {
    let lp = TestLoop::install();
    let c = cache(&common::redis_url(), Duration::from_secs(5));
    lp.until_watching(&c, 1);
    for i in 0..200 {
        lp.run(c.set(&format!("p{i}"), b(&format!("v{i}")), &opts()))
            .expect("set");
    }
    // 200 reads written before any answer is read: pipelined on the one
    // socket in one write, each answered with its own key's value.
    let keys: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
    #[allow(clippy::disallowed_methods)] // issued together on purpose
    let mut reads = Box::pin(futures_util::future::join_all(
        keys.iter().map(|k| c.get(k)),
    ));
    // Issued in one batch: written together when it ends.
    let waker = Waker::from(Arc::new(Flag(AtomicBool::new(false))));
    let first = stratacache::evloop::batch(|| {
        poll_on_loop(reads.as_mut(), &mut Context::from_waker(&waker))
    });
    assert!(first.is_pending());
    let reads = lp.run(reads);
    for (i, r) in reads.into_iter().enumerate() {
        let e = r.expect("get").expect("a value");
        assert_eq!(&e.payload[..], format!("v{i}").as_bytes());
    }
    assert_eq!(lp.watches.get(), 1);
    set_event_loop(None);
}

#[test]
fn a_command_given_up_leaves_the_connection_in_step() {
    let lp = TestLoop::install();
    let redis = OwnRedis::start();
    let c = cache(&redis.url, Duration::from_millis(300));
    stratacache::runtime::block_on(common::answers(&redis.url));
    lp.until_watching(&c, 1);
    lp.run(c.set("a", b("A"), &opts())).expect("set a");
    lp.run(c.set("b", b("B"), &opts())).expect("set b");
    redis.signal("-STOP");
    let r = lp.run(c.get("a"));
    assert!(matches!(r, Err(Error::L2Timeout(_))), "{r:?}");
    redis.signal("-CONT");
    // The answer to the read given up comes first and is dropped: `b`
    // reads its own value, not `a`'s.
    assert_eq!(payload(&c, &lp, "b"), Some(b"B".to_vec()));
    assert_eq!(payload(&c, &lp, "a"), Some(b"A".to_vec()));
    assert_eq!(lp.watches.get(), 1, "the same connection throughout");
    set_event_loop(None);
}

#[test]
fn a_closed_connection_fails_its_commands_and_another_opens() {
    let lp = TestLoop::install();
    let mut redis = OwnRedis::start();
    let port = redis.port;
    let c = cache(&redis.url, Duration::from_secs(2));
    stratacache::runtime::block_on(common::answers(&redis.url));
    lp.until_watching(&c, 1);
    lp.run(c.set("a", b("A"), &opts())).expect("set a");
    redis.kill();
    let r = lp.run(c.get("a"));
    assert!(matches!(r, Err(Error::L2Unavailable(_))), "{r:?}");
    assert!(
        lp.watched.borrow().iter().all(|w| !w.open.get()),
        "the broken connection is closed"
    );
    let _redis = OwnRedis::on_port(port);
    stratacache::runtime::block_on(common::answers(&format!("redis://127.0.0.1:{port}")));
    lp.until_watching(&c, 2);
    lp.run(c.set("a", b("A2"), &opts())).expect("set a again");
    assert_eq!(payload(&c, &lp, "a"), Some(b"A2".to_vec()));
    set_event_loop(None);
}

#[test]
fn commands_follow_earlier_ones_still_on_the_multiplexed_connection() {
    let lp = TestLoop::install();
    let redis = OwnRedis::start();
    stratacache::runtime::block_on(common::answers(&redis.url));
    let c = cache(&redis.url, Duration::from_secs(5));
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag);
    let mut cx = Context::from_waker(&waker);
    // A frozen server: the first write goes over the multiplexed
    // connection (no loop connection is open yet) and waits there, while
    // the loop's connection opens (it has no handshake to wait for).
    let o = opts();
    redis.signal("-STOP");
    let mut first = Box::pin(c.set("k", b("1"), &o));
    assert!(poll_on_loop(first.as_mut(), &mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(200));
    // A later write must not overtake it over another socket.
    let mut second = Box::pin(c.set("k", b("2"), &o));
    assert!(poll_on_loop(second.as_mut(), &mut cx).is_pending());
    assert_eq!(lp.watches.get(), 0, "the second write followed the first");
    redis.signal("-CONT");
    let (a, b2) = lp.run(async { (first.await, second.await) });
    a.expect("first");
    b2.expect("second");
    assert_eq!(payload(&c, &lp, "k"), Some(b"2".to_vec()));
    // With nothing left in flight there, the loop's connection is used.
    lp.until_watching(&c, 1);
    set_event_loop(None);
}

#[test]
fn a_write_given_up_on_the_multiplexed_connection_is_still_followed() {
    let lp = TestLoop::install();
    let redis = OwnRedis::start();
    stratacache::runtime::block_on(common::answers(&redis.url));
    let c = cache(&redis.url, Duration::from_millis(300));
    let o = opts();
    // Frozen: the first write goes over the multiplexed connection (no
    // loop connection yet) and is given up, though it is still queued.
    redis.signal("-STOP");
    let r = lp.run(c.set("k", b("1"), &o));
    assert!(matches!(r, Err(Error::L2Timeout(_))), "{r:?}");
    // The loop's connection has opened meanwhile; a later write still
    // follows the given-up one until that connection has answered.
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag);
    let mut second = Box::pin(c.set("k", b("2"), &o));
    assert!(poll_on_loop(second.as_mut(), &mut Context::from_waker(&waker)).is_pending());
    assert_eq!(lp.watches.get(), 0, "the second write followed the first");
    redis.signal("-CONT");
    lp.run(second).expect("second");
    assert_eq!(payload(&c, &lp, "k"), Some(b"2".to_vec()));
    lp.until_watching(&c, 1);
    set_event_loop(None);
}

#[test]
fn a_cache_dropped_on_another_thread_has_its_connection_closed() {
    let lp = TestLoop::install();
    let a = cache(&common::redis_url(), Duration::from_secs(5));
    lp.until_watching(&a, 1);
    let open = lp.watched.borrow()[0].open.clone();
    assert!(open.get());
    std::thread::spawn(move || drop(a)).join().expect("dropped");
    // The next command of any cache on this thread closes it.
    let b2 = cache(&common::redis_url(), Duration::from_secs(5));
    let _ = lp.run(b2.get("x"));
    assert!(!open.get(), "closed");
    set_event_loop(None);
}

#[test]
fn commands_always_in_flight_still_move_to_the_loops_connection() {
    let lp = TestLoop::install();
    let redis = OwnRedis::start();
    stratacache::runtime::block_on(common::answers(&redis.url));
    // Every command takes 20 ms through the proxy, and one is issued
    // every 4 ms: from the first on, several are always in flight over
    // the multiplexed connection. Once the loop's connection is open, new
    // ones wait for those instead of joining them, so it is taken into use.
    let proxy = stratacache::runtime::block_on(common::Proxy::start(redis.port));
    proxy.set_delay(Duration::from_millis(20));
    let c = cache(&proxy.url, Duration::from_secs(5));
    let (reads, loop_answers) = lp.run(async {
        let mut reads = futures_util::stream::FuturesUnordered::new();
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        let (mut issued, mut done) = (0, 0);
        use futures_util::StreamExt;
        while done < 300 && lp.readies.get() < 20 {
            tokio::select! {
                _ = tick.tick(), if issued < 300 => {
                    reads.push(c.get("absent"));
                    issued += 1;
                }
                Some(r) = reads.next() => {
                    assert_eq!(r.expect("get"), None);
                    done += 1;
                }
            }
        }
        (done, lp.readies.get())
    });
    assert!(
        loop_answers >= 20,
        "the loop's connection carried reads: {loop_answers} answers read there in {reads} reads"
    );
    assert_eq!(lp.watches.get(), 1);
    set_event_loop(None);
}
