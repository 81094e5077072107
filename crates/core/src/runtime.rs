//! The core's own tokio runtime, and fork safety.
//!
//! Redis connections are driven by tasks on this runtime, whatever runtime
//! (or none) the caller uses, so a connection never dies with a caller's
//! short-lived runtime and a binding can block on it from any thread.
//!
//! **fork().** Pre-fork servers (gunicorn `--preload`, celery prefork,
//! `multiprocessing` with fork) copy the process after the cache exists.
//! Threads do not survive `fork`, so the parent's runtime, its connection
//! tasks and any in-flight loads are dead in the child: touching them hangs.
//! A `pthread_atfork` child handler (installed on first use, and also
//! exposed as [`after_fork_child`] for bindings that prefer their own hook)
//! bumps a fork generation. Everything fork-sensitive compares generations
//! lazily: [`runtime`] builds a fresh runtime (the parent's is leaked, never
//! dropped: dropping it would try to join threads that do not exist), the
//! L2 client reconnects, and in-flight loads inherited from the parent are
//! forgotten. The check is one relaxed atomic load, and the L1 hit path
//! does not make it at all: L1 contents stay valid in the child.

use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use tokio::runtime::Runtime;

static FORK_GEN: AtomicU64 = AtomicU64::new(0);
static RT: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());
static RT_GEN: AtomicU64 = AtomicU64::new(u64::MAX);
static RT_INIT: Mutex<()> = Mutex::new(());
static ATFORK: Once = Once::new();

extern "C" fn child_handler() {
    // Async-signal-safe: one atomic add, nothing else.
    FORK_GEN.fetch_add(1, Ordering::SeqCst);
}

/// Install the `pthread_atfork` child handler (idempotent).
pub(crate) fn install_fork_hook() {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic add.
        unsafe {
            libc::pthread_atfork(None, None, Some(child_handler));
        }
    });
}

/// Tell the core this process is a freshly forked child. Idempotent per fork
/// in effect: calling it in addition to the automatic hook only causes one
/// extra reconnect.
pub fn after_fork_child() {
    child_handler();
}

/// The current fork generation (changes in a child after `fork`).
pub fn fork_generation() -> u64 {
    FORK_GEN.load(Ordering::Relaxed)
}

/// Poll `fut` once on the calling thread: its output if it is ready, or the
/// future back, to be driven elsewhere (blocked on, or handed to the
/// binding's event loop). For futures that never wait in the common case,
/// such as an L1 read, whose first poll needs no runtime (no timer, no I/O).
/// Every binding's "answer at once when it can" goes through this and
/// [`poll_once_in_runtime`].
pub fn poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Result<F::Output, F> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => Err(fut),
    }
}

/// [`poll_once`] inside the core runtime's context, for futures that may
/// start timers or I/O on their first poll (a read that may go to Redis).
pub fn poll_once_in_runtime<F: std::future::Future + Unpin>(fut: F) -> Result<F::Output, F> {
    let _ctx = runtime().enter();
    poll_once(fut)
}

/// Worker threads of the runtimes [`build_runtime`] makes.
static WORKERS: AtomicUsize = AtomicUsize::new(2);

/// Set the worker threads of the runtimes built from now on (the
/// process-wide one is built on first use): a binding whose calls all come
/// from one thread sets 1, so each Redis round trip is handed between that
/// thread and one worker, not also between two workers (Node:
/// docs/benchmarks.md, "one runtime worker"). Bindings called from many
/// threads keep the default, 2.
pub fn set_worker_threads(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// Build a multi-thread runtime the way the core wants it (used for the
/// process-wide runtime, and available to bindings that must own theirs).
pub fn build_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS.load(Ordering::Relaxed))
        .thread_name("stratacache-rt")
        .enable_all()
        .build()
}

/// The process-wide runtime of the core, rebuilt after `fork`.
///
/// # Panics
/// Only if the OS refuses to create threads for a new runtime.
pub fn runtime() -> &'static Runtime {
    install_fork_hook();
    let generation = fork_generation();
    if RT_GEN.load(Ordering::Acquire) == generation {
        let p = RT.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: runtimes stored in RT are leaked and never freed.
            return unsafe { &*p };
        }
    }
    let _g = RT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if RT_GEN.load(Ordering::Acquire) != generation || RT.load(Ordering::Acquire).is_null() {
        let rt =
            build_runtime().unwrap_or_else(|e| panic!("cannot start the stratacache runtime: {e}"));
        // Leak on purpose (see module docs); the old pointer is left leaked.
        RT.store(Box::into_raw(Box::new(rt)), Ordering::Release);
        RT_GEN.store(generation, Ordering::Release);
    }
    // SAFETY: as above.
    unsafe { &*RT.load(Ordering::Acquire) }
}

/// Run `fut` to completion from synchronous code, on the core's runtime.
///
/// Works from a plain thread and from inside a tokio worker thread of a
/// multi-thread runtime (via `block_in_place`), which is where a binding's
/// sync API ends up when a user callback re-enters it.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(fut))
        }
        // A current-thread runtime cannot be blocked from inside; run on a
        // helper thread with the core runtime instead.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
        Err(_) => runtime().block_on(fut),
    }
}

/// How a Redis command issued on this thread is carried (see [`L2`'s
/// blocking connections](crate::l2)): the caller's own thread may do the
/// round trip itself, as a synchronous client does, only inside
/// [`block_on_sync`] on a thread that is no runtime's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Carry {
    /// Over the multiplexed connection, driven by the runtime.
    Shared,
    /// The first poll of [`poll_once_sync`]: a command yields once, to be
    /// sent from [`block_on_sync`] (the binding's lock released) rather
    /// than now.
    Defer,
    /// On this thread, over a pooled blocking connection.
    Here,
    /// On this thread's event loop ([`crate::evloop`]).
    Loop,
}

thread_local! {
    static CARRY: std::cell::Cell<Carry> = const { std::cell::Cell::new(Carry::Shared) };
}

/// How a command issued now on this thread is carried.
pub(crate) fn carry() -> Carry {
    CARRY.with(std::cell::Cell::get)
}

/// Restores the thread's previous [`Carry`] when dropped (also on panic).
pub(crate) struct CarryGuard(Carry);

impl CarryGuard {
    pub(crate) fn set(c: Carry) -> Self {
        CarryGuard(CARRY.with(|x| x.replace(c)))
    }
}

impl Drop for CarryGuard {
    fn drop(&mut self) {
        CARRY.with(|x| x.set(self.0));
    }
}

/// Whether this thread may carry its own commands: not a runtime's thread
/// (a worker must never block), nor inside another runtime's context.
fn may_carry_here() -> bool {
    tokio::runtime::Handle::try_current().is_err()
}

/// [`poll_once_in_runtime`] for a binding's synchronous method, whose
/// future, if not ready, is then finished by [`block_on_sync`] on the same
/// thread. A Redis command reached on this poll is not sent yet: the
/// future yields, and the command goes out from [`block_on_sync`], on the
/// caller's thread over a blocking connection (one round trip, no hand-off
/// to a runtime worker and back), with the binding's lock released there.
pub fn poll_once_sync<F: std::future::Future + Unpin>(fut: F) -> Result<F::Output, F> {
    // Set either way: a call nested in another's poll (inside a runtime
    // context, so not carried here) must not inherit `Defer` or `Here`.
    let _g = CarryGuard::set(if may_carry_here() {
        Carry::Defer
    } else {
        Carry::Shared
    });
    poll_once_in_runtime(fut)
}

/// [`block_on`] for a binding's synchronous method (after
/// [`poll_once_sync`]): on a thread of its own, single Redis commands are
/// sent and answered on this thread over a blocking connection; commands
/// issued together ([`join_all`]) still go pipelined over the multiplexed
/// connection.
pub fn block_on_sync<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if may_carry_here() {
        let _g = CarryGuard::set(Carry::Here);
        runtime().block_on(fut)
    } else {
        let _g = CarryGuard::set(Carry::Shared);
        block_on(fut)
    }
}

/// `futures_util::future::join_all` for the core: the futures' Redis
/// commands go over the multiplexed connection, pipelined, even from a
/// thread that carries its own single commands ([`block_on_sync`]), where
/// each would otherwise wait for the one before.
pub(crate) fn join_all<I>(
    futs: I,
) -> Shared<futures_util::future::JoinAll<<I as IntoIterator>::Item>>
where
    I: IntoIterator,
    I::Item: std::future::Future,
{
    #[allow(clippy::disallowed_methods)] // the one place it is called
    Shared(Box::pin(futures_util::future::join_all(futs)))
}

/// A future polled with the thread's [`Carry`] set to `Shared`.
pub(crate) struct Shared<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for Shared<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let _g = CarryGuard::set(Carry::Shared);
        self.0.as_mut().poll(cx)
    }
}
