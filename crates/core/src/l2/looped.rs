//! Commands carried on a binding's event loop ([`crate::evloop`]).
//!
//! On a thread that runs an event loop (`Carry::Loop`), single commands to
//! one server go over a non-blocking connection of that thread: written
//! from the thread when issued, their answers read when the loop says the
//! socket is readable, in order (commands issued before an answer arrives
//! are pipelined). No thread is woken on the way, where the multiplexed
//! connection hands each command to a runtime worker and the answer back.
//!
//! A connection is opened on a runtime thread (with the handshake: `AUTH`,
//! `SELECT`), and until it is ready, or after it broke, commands go over
//! the multiplexed connection, so a call waits on no connect but its own.
//! A command given up (`op_timeout`) keeps its place: its answer is
//! dropped when it comes, and the connection stays in step. A read or
//! write error, the server closing the connection, or bytes that are not
//! RESP fail every command waiting on it (unavailable) and close it; the
//! next command reopens one. `redis://` and `unix://` locations in RESP2:
//! TLS, RESP3, Cluster and Sentinel keep the multiplexed connection.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionAddr, Pipeline, ProtocolVersion, RedisError, RedisFuture, Value};

use crate::evloop::{Watch, event_loop};
use crate::runtime::{fork_generation, runtime};

/// After a failed open, commands go over the multiplexed connection for
/// this long before another is tried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The read buffer's first size; it doubles while an answer needs more.
const READ_CHUNK: usize = 16 * 1024;

/// The largest array a reply may announce (a frame past it is not RESP
/// this client sent a command for).
const MAX_ITEMS: usize = 1 << 32;

/// Where and how to open a connection carried on an event loop.
pub(super) struct Spec {
    /// This L2's, unique in the process.
    id: u64,
    addr: Addr,
    auth: Option<(Option<String>, String)>,
    db: i64,
    connect_timeout: Duration,
    /// Cleared when the L2 is dropped: its connections are then closed
    /// by the next thread that opens one.
    alive: Arc<AtomicBool>,
    /// Commands of loop threads in flight over the multiplexed connection
    /// (no loop connection was open when they were issued). Until they are
    /// answered, later ones wait: two sockets would let a later write
    /// reach Redis before an earlier one.
    behind: Arc<Behinds>,
}

/// The count of `Spec::behind`, and who waits for it to reach zero.
#[derive(Default)]
pub(super) struct Behinds {
    count: AtomicUsize,
    zero: tokio::sync::Notify,
}

/// A loop thread's command in flight over the multiplexed connection
/// (see `Spec::behind`).
pub(super) struct Behind(Arc<Behinds>);

impl Drop for Behind {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// How a loop thread's command is carried (see [`Spec::carrier`]).
pub(super) enum Pick {
    /// Over this thread's connection.
    Loop(Carrier),
    /// Over the multiplexed connection (counted: [`Spec::behind`]).
    Shared,
    /// This thread's connection is open, but earlier commands are still in
    /// flight over the multiplexed one: wait for them ([`Spec::settled`]).
    Wait,
}

#[derive(Clone)]
enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Caches dropped so far in the process: a thread that sees it move
/// closes its connections of dropped caches.
static DROPPED: AtomicU64 = AtomicU64::new(0);

impl Drop for Spec {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
        DROPPED.fetch_add(1, Ordering::Release);
        // On the dropping thread its connection can be closed now.
        let _ = CONNS.try_with(|m| m.try_borrow_mut().map(|mut m| m.remove(&self.id)));
    }
}

impl Spec {
    /// A spec for `url`, or `None` when its commands cannot be carried on
    /// a loop (TLS, RESP3, not one server).
    pub(super) fn new(url: &str, connect_timeout: Duration) -> Option<Spec> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let info = redis::Client::open(url).ok()?.get_connection_info().clone();
        let addr = match info.addr() {
            ConnectionAddr::Tcp(h, p) => Addr::Tcp(h.clone(), *p),
            ConnectionAddr::Unix(p) => Addr::Unix(p.clone()),
            _ => return None,
        };
        let s = info.redis_settings();
        if s.protocol() != ProtocolVersion::RESP2 {
            return None;
        }
        Some(Spec {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            addr,
            auth: s
                .password()
                .map(|p| (s.username().map(str::to_owned), p.to_owned())),
            db: s.db(),
            connect_timeout,
            alive: Arc::new(AtomicBool::new(true)),
            behind: Arc::default(),
        })
    }

    /// Count a loop thread's command sent over the multiplexed connection
    /// until it is answered (dropped).
    pub(super) fn behind(&self) -> Behind {
        self.behind.count.fetch_add(1, Ordering::AcqRel);
        Behind(self.behind.clone())
    }

    /// Until no loop thread's command is in flight over the multiplexed
    /// connection, or `limit` has passed.
    pub(super) async fn settled(&self, limit: Duration) {
        let zero = self.behind.zero.notified();
        tokio::pin!(zero);
        zero.as_mut().enable();
        if self.behind.count.load(Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout(limit, zero).await;
        }
    }

    /// How this thread's next command is carried: its connection when it
    /// is open and no earlier command is in flight over the multiplexed
    /// one (else `Wait`); the multiplexed connection while it opens, after
    /// it broke (another is opened), or with no event loop on this thread.
    pub(super) fn carrier(&self) -> Pick {
        let Some(lp) = event_loop() else {
            return Pick::Shared;
        };
        let behind = self.behind.count.load(Ordering::Acquire) > 0;
        CONNS.with(|m| {
            let mut m = m.borrow_mut();
            let dropped = DROPPED.load(Ordering::Acquire);
            if SWEPT.with(|s| s.replace(dropped)) != dropped {
                // Connections of caches dropped on other threads.
                m.retain(|_, (alive, _)| alive.load(Ordering::Acquire));
            }
            match m.get(&self.id) {
                Some((_, Slot::Open(c))) if !c.broken.get() => {
                    return if behind {
                        Pick::Wait
                    } else {
                        Pick::Loop(Carrier(self.id, self.db))
                    };
                }
                // Opened, but not taken into use while commands are in
                // flight over the multiplexed connection.
                Some((_, Slot::Opening(done, _))) if behind => {
                    let opened = matches!(
                        &*done.lock().unwrap_or_else(|e| e.into_inner()),
                        Some(Ok(_))
                    );
                    return if opened { Pick::Wait } else { Pick::Shared };
                }
                _ => {}
            }
            let generation = fork_generation();
            let next = match m.remove(&self.id).map(|(_, s)| s) {
                Some(Slot::Opening(done, g)) if g == generation => {
                    let r = done.lock().unwrap_or_else(|e| e.into_inner()).take();
                    match r {
                        None => Slot::Opening(done, g),
                        Some(Ok(sock)) => match Conn::watched(sock, &*lp) {
                            Some(c) => Slot::Open(c),
                            None => Slot::Wait(Instant::now() + RETRY_AFTER),
                        },
                        Some(Err(_)) => Slot::Wait(Instant::now() + RETRY_AFTER),
                    }
                }
                Some(Slot::Wait(t)) if Instant::now() < t => Slot::Wait(t),
                _ => self.open(generation),
            };
            let open = matches!(&next, Slot::Open(_));
            m.insert(self.id, (self.alive.clone(), next));
            match (open, behind) {
                (true, false) => Pick::Loop(Carrier(self.id, self.db)),
                (true, true) => Pick::Wait,
                (false, _) => Pick::Shared,
            }
        })
    }

    /// Start opening a connection on a runtime thread.
    fn open(&self, generation: u64) -> Slot {
        let done = Arc::new(Mutex::new(None));
        let (d, addr, auth, db, timeout) = (
            done.clone(),
            self.addr.clone(),
            self.auth.clone(),
            self.db,
            self.connect_timeout,
        );
        runtime().spawn_blocking(move || {
            let r = connect(&addr, auth.as_ref(), db, timeout);
            *d.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        Slot::Opening(done, generation)
    }
}

/// This thread's connection to one L2, in its life.
enum Slot {
    /// Being opened on a runtime thread (in this fork generation).
    Opening(Arc<Mutex<Option<io::Result<Sock>>>>, u64),
    Open(Rc<Conn>),
    /// Opening failed: the multiplexed connection until then.
    Wait(Instant),
}

thread_local! {
    /// `DROPPED` when this thread last closed dropped caches' connections.
    static SWEPT: Cell<u64> = const { Cell::new(0) };
    /// Inside [`batch`] on this thread: commands are written when it ends.
    static BATCH: Cell<bool> = const { Cell::new(false) };
    /// Connections with commands written inside the batch, to flush.
    static DIRTY: RefCell<Vec<Rc<Conn>>> = const { RefCell::new(Vec::new()) };
    /// This thread's connections, by L2.
    static CONNS: RefCell<HashMap<u64, (Arc<AtomicBool>, Slot)>> = RefCell::new(HashMap::new());
}

/// Run `f` with the commands it issues on this thread's connections
/// written together when it ends: one write per connection for all the
/// commands a turn of the loop issues, not one each.
pub(crate) fn batch<R>(f: impl FnOnce() -> R) -> R {
    struct End(bool);
    impl Drop for End {
        fn drop(&mut self) {
            BATCH.with(|b| b.set(self.0));
            if !self.0 {
                let dirty = DIRTY.with(|d| std::mem::take(&mut *d.borrow_mut()));
                for c in dirty {
                    c.flush();
                }
            }
        }
    }
    let _end = End(BATCH.with(|b| b.replace(true)));
    f()
}

/// Close every connection carried on this thread's loop (its event loop is
/// going away).
pub(crate) fn close_all() {
    let _ = CONNS.try_with(|m| m.try_borrow_mut().map(|mut m| std::mem::take(&mut *m)));
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }

    fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Sock::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_nonblocking(true),
            Sock::Unix(s) => s.set_nonblocking(true),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// Open and hand-shake a connection, blocking (on a runtime thread): each
/// step within `timeout`.
fn connect(
    addr: &Addr,
    auth: Option<&(Option<String>, String)>,
    db: i64,
    timeout: Duration,
) -> io::Result<Sock> {
    let sock = match addr {
        Addr::Tcp(host, port) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            let mut found = None;
            for a in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, timeout) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = found.ok_or(last)?;
            s.set_nodelay(true)?;
            Sock::Tcp(s)
        }
        Addr::Unix(p) => Sock::Unix(UnixStream::connect(p)?),
    };
    sock.set_timeouts(Some(timeout))?;
    let mut hello = Vec::new();
    let mut answers = 0;
    if let Some((user, pass)) = auth {
        let mut c = redis::cmd("AUTH");
        if let Some(u) = user {
            c.arg(u);
        }
        c.arg(pass).write_packed_command(&mut hello);
        answers += 1;
    }
    if db != 0 {
        redis::cmd("SELECT")
            .arg(db)
            .write_packed_command(&mut hello);
        answers += 1;
    }
    if answers > 0 {
        let mut w = 0;
        while w < hello.len() {
            w += sock.write(&hello[w..])?;
        }
        let mut buf = Vec::new();
        let mut at = 0;
        while answers > 0 {
            match frame_len(&buf[at..]) {
                Some(Some(n)) => {
                    if let Value::ServerError(e) = parse(&buf[at..at + n])? {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("the handshake was refused: {e}"),
                        ));
                    }
                    at += n;
                    answers -= 1;
                }
                Some(None) => {
                    let mut chunk = [0u8; 512];
                    let n = sock.read(&mut chunk)?;
                    if n == 0 {
                        return Err(closed());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                None => return Err(not_resp()),
            }
        }
    }
    sock.set_timeouts(None)?;
    sock.set_nonblocking()?;
    Ok(sock)
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the server closed the connection",
    )
}

fn not_resp() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the server's answer is not RESP",
    )
}

/// The `Value` of one whole frame (as [`frame_len`] measured it), as the
/// `redis` crate's parser makes it. The answers a cache gets most (a bulk
/// string, nil, an integer, a status) are read here directly: the crate's
/// parser costs several times more per frame (its parser combinators); errors,
/// arrays and anything unusual still go to it.
fn parse(frame: &[u8]) -> io::Result<Value> {
    match parse_simple(frame) {
        Some(v) => Ok(v),
        None => redis::parse_redis_value(frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// [`parse`]'s direct cases; `None` for the rest.
fn parse_simple(frame: &[u8]) -> Option<Value> {
    let (&kind, rest) = frame.split_first()?;
    let eol = rest.iter().position(|&b| b == b'\r')?;
    if rest.get(eol + 1) != Some(&b'\n') {
        return None;
    }
    let line = std::str::from_utf8(&rest[..eol]).ok()?;
    match kind {
        b'$' => {
            let n: i64 = line.trim().parse().ok()?;
            let Ok(n) = usize::try_from(n) else {
                return Some(Value::Nil); // the parser's rule: any size below 0
            };
            let body = rest.get(eol + 2..)?;
            (body.len() == n.checked_add(2)? && body.ends_with(b"\r\n"))
                .then(|| Value::BulkString(body[..n].to_vec()))
        }
        b':' if rest.len() == eol + 2 => line.trim().parse().ok().map(Value::Int),
        b'+' if rest.len() == eol + 2 => Some(if line == "OK" {
            Value::Okay
        } else {
            Value::SimpleString(line.to_owned())
        }),
        _ => None,
    }
}

/// The length of the complete RESP2 frame at the start of `buf`:
/// `Some(None)` while more bytes are needed, `None` when it is not RESP2.
fn frame_len(buf: &[u8]) -> Option<Option<usize>> {
    let mut at = 0usize;
    let mut frames = 1usize;
    while frames > 0 {
        frames -= 1;
        let Some(&kind) = buf.get(at) else {
            return Some(None);
        };
        let Some(eol) = buf[at + 1..].windows(2).position(|w| w == b"\r\n") else {
            return Some(None);
        };
        let line = &buf[at + 1..at + 1 + eol];
        at += eol + 3;
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => {
                let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
                if n >= 0 {
                    at = at.checked_add(usize::try_from(n).ok()?)?.checked_add(2)?;
                    if at > buf.len() {
                        return Some(None);
                    }
                } else if n != -1 {
                    return None;
                }
            }
            b'*' => {
                let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
                if n > 0 {
                    let n = usize::try_from(n).ok().filter(|n| *n <= MAX_ITEMS)?;
                    frames = frames.checked_add(n)?;
                } else if n != 0 && n != -1 {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(Some(at))
}

/// Answers owed to one caller.
struct Owed {
    reply: Arc<Reply>,
    want: usize,
    got: Vec<Value>,
}

/// A caller's answers, filled on the loop's thread; `Send` because the
/// core's futures are, though only ever polled there.
#[derive(Default)]
struct Reply {
    slot: Mutex<(Option<Answers>, Option<Waker>)>,
}

/// What a caller is owed: its command's answers, or why there are none.
type Answers = redis::RedisResult<Vec<Value>>;

impl Reply {
    fn fill(&self, r: Answers) {
        let waker = {
            let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = Some(r);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A non-blocking connection watched by this thread's event loop.
struct Conn {
    /// Dropped first: the loop stops watching before the socket closes.
    watch: RefCell<Option<Box<dyn Watch>>>,
    sock: Sock,
    /// Bytes written to the connection but not yet to the socket.
    out: RefCell<Vec<u8>>,
    /// Bytes read and not yet parsed: the buffer's first `.1` bytes (the
    /// buffer is zeroed once, when it grows, not for every read).
    input: RefCell<(Vec<u8>, usize)>,
    owed: RefCell<VecDeque<Owed>>,
    broken: Cell<bool>,
}

impl Conn {
    fn watched(sock: Sock, lp: &dyn crate::evloop::EventLoop) -> Option<Rc<Conn>> {
        let fd = sock.fd();
        let c = Rc::new(Conn {
            watch: RefCell::new(None),
            sock,
            out: RefCell::new(Vec::new()),
            input: RefCell::new((vec![0; READ_CHUNK], 0)),
            owed: RefCell::new(VecDeque::new()),
            broken: Cell::new(false),
        });
        let weak = Rc::downgrade(&c);
        let w = lp.watch(
            fd,
            Rc::new(move |error| {
                if let Some(c) = weak.upgrade() {
                    c.ready(error);
                }
            }),
        )?;
        *c.watch.borrow_mut() = Some(w);
        Some(c)
    }

    /// Queue a packed command (or pipeline) owing `want` answers, and
    /// write what the socket takes now, or when this thread's batch ends.
    fn send(self: &Rc<Self>, write: impl FnOnce(&mut Vec<u8>), want: usize) -> Arc<Reply> {
        let reply = Arc::new(Reply::default());
        if self.broken.get() {
            reply.fill(Err(closed().into()));
            return reply;
        }
        let was_empty = {
            let mut out = self.out.borrow_mut();
            let was = out.is_empty();
            write(&mut out);
            was
        };
        self.owed.borrow_mut().push_back(Owed {
            reply: reply.clone(),
            want,
            got: Vec::with_capacity(want.min(16)),
        });
        if was_empty {
            if BATCH.with(Cell::get) {
                DIRTY.with(|d| d.borrow_mut().push(self.clone()));
            } else {
                self.flush();
            }
        }
        reply
    }

    /// Write what the socket takes; wait for room for the rest.
    fn flush(&self) {
        if self.broken.get() {
            return;
        }
        let mut out = self.out.borrow_mut();
        let mut w = 0;
        while w < out.len() {
            match self.sock.write(&out[w..]) {
                Ok(0) => {
                    drop(out);
                    return self.fail(closed());
                }
                Ok(n) => w += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    drop(out);
                    return self.fail(e);
                }
            }
        }
        out.drain(..w);
        let more = !out.is_empty();
        drop(out);
        if let Some(watch) = self.watch.borrow().as_ref() {
            watch.writable(more);
        }
    }

    /// The loop says the socket is readable or writable, or (`error`) that
    /// it failed: the socket's own error, if a read finds none, is this.
    fn ready(&self, error: bool) {
        if self.broken.get() {
            return;
        }
        if !self.out.borrow().is_empty() {
            self.flush();
            if self.broken.get() {
                return;
            }
        }
        let mut input = self.input.borrow_mut();
        let (buf, end) = &mut *input;
        loop {
            if buf.len() - *end < READ_CHUNK / 2 {
                let grown = buf.len() * 2;
                buf.resize(grown, 0);
            }
            match self.sock.read(&mut buf[*end..]) {
                Ok(0) => {
                    drop(input);
                    return self.fail(closed());
                }
                Ok(n) => *end += n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        drop(input);
                        return self.fail(e);
                    }
                },
            }
        }
        let mut at = 0;
        let mut done = Vec::new();
        let mut bad = false;
        {
            let mut owed = self.owed.borrow_mut();
            while at < *end {
                let n = match frame_len(&buf[at..*end]) {
                    Some(Some(n)) => n,
                    Some(None) => break,
                    None => {
                        bad = true;
                        break;
                    }
                };
                let (Ok(v), Some(o)) = (parse(&buf[at..at + n]), owed.front_mut()) else {
                    // Not RESP, or an answer to nothing asked.
                    bad = true;
                    break;
                };
                at += n;
                o.got.push(v);
                if o.got.len() == o.want
                    && let Some(o) = owed.pop_front()
                {
                    done.push(o);
                }
            }
        }
        buf.copy_within(at..*end, 0);
        *end -= at;
        if *end == 0 && buf.len() > 4 * READ_CHUNK {
            // A large answer has been read: give its room back.
            *buf = vec![0; READ_CHUNK];
        }
        drop(input);
        for o in done {
            o.reply.fill(Ok(o.got));
        }
        if bad {
            self.fail(not_resp());
        } else if error {
            self.fail(io::Error::other(
                "the event loop reported an error on the socket",
            ));
        }
    }

    /// Fail every command waiting on this connection and close it.
    fn fail(&self, e: io::Error) {
        if self.broken.replace(true) {
            return;
        }
        drop(self.watch.borrow_mut().take());
        self.sock.shutdown();
        let owed = std::mem::take(&mut *self.owed.borrow_mut());
        let msg = e.to_string();
        let kind = e.kind();
        for o in owed {
            o.reply.fill(Err(io::Error::new(kind, msg.clone()).into()));
        }
    }
}

/// This thread's connection to one L2, found by id when a command is sent
/// (held across the core's awaits, so it is `Send` and holds no `Rc`).
pub(super) struct Carrier(u64, i64);

impl Carrier {
    fn send(&self, write: impl FnOnce(&mut Vec<u8>), want: usize) -> Arc<Reply> {
        let conn = CONNS.with(|m| match m.borrow().get(&self.0) {
            Some((_, Slot::Open(c))) => Some(c.clone()),
            _ => None,
        });
        match conn {
            Some(c) => c.send(write, want),
            None => {
                let reply = Arc::new(Reply::default());
                reply.fill(Err(closed().into()));
                reply
            }
        }
    }
}

/// Waits for a [`Reply`].
struct Answer(Arc<Reply>);

impl std::future::Future for Answer {
    type Output = Answers;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.slot.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                if !s.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl redis::aio::ConnectionLike for Carrier {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let answer = Answer(self.send(|out| cmd.write_packed_command(out), 1));
        Box::pin(async move {
            let mut v = answer.await?;
            v.pop().ok_or_else(|| RedisError::from(not_resp()))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let packed = cmd.get_packed_pipeline();
        let answer = Answer(self.send(|out| out.extend_from_slice(&packed), offset + count));
        Box::pin(async move {
            let v = answer.await?;
            Ok(v.into_iter().skip(offset).take(count).collect())
        })
    }

    fn get_db(&self) -> i64 {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::{frame_len, parse, parse_simple};

    #[test]
    fn direct_answers_are_the_parsers() {
        for frame in [
            &b"+OK\r\n"[..],
            b"+PONG\r\n",
            b"+\r\n",
            b":42\r\n",
            b":-7\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"$3\r\n\xff\x00\r\r\n",
        ] {
            let direct = parse_simple(frame).unwrap_or_else(|| panic!("{frame:?} read directly"));
            assert_eq!(
                direct,
                redis::parse_redis_value(frame).expect("the crate parses it"),
                "{frame:?}"
            );
        }
        // Left to the crate's parser, with its values and errors.
        for frame in [
            &b"-ERR no\r\n"[..],
            b"-NOSCRIPT No matching script\r\n",
            b"*-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"$5\r\nhello!\r\n",
            b":x\r\n",
        ] {
            assert_eq!(parse_simple(frame), None, "{frame:?}");
            assert_eq!(
                parse(frame).ok(),
                redis::parse_redis_value(frame).ok(),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn frames_are_measured_whole_or_not_at_all() {
        for whole in [
            &b"+OK\r\n"[..],
            b"-ERR no\r\n",
            b":42\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n",
        ] {
            assert_eq!(frame_len(whole), Some(Some(whole.len())), "{whole:?}");
            let mut more = whole.to_vec();
            more.extend_from_slice(b"+next\r\n");
            assert_eq!(frame_len(&more), Some(Some(whole.len())), "{whole:?}");
            for cut in 0..whole.len() {
                assert_eq!(
                    frame_len(&whole[..cut]),
                    Some(None),
                    "{whole:?} cut at {cut}"
                );
            }
        }
        for bad in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$99999999999999999999999\r\n",
            b"*9999999999999\r\n",
        ] {
            assert_eq!(frame_len(bad), None, "{bad:?}");
        }
    }
}
