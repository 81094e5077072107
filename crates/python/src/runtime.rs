//! Driving core futures from Python.
//!
//! - Sync methods: [`run`] polls the future once on the calling thread,
//!   GIL held (an L1 hit completes right there: no GIL release, no thread
//!   hop), and only if it is not ready blocks on it with the GIL released,
//!   so other Python threads (and the loaders they run) keep going. Its
//!   single Redis commands are sent and read on the calling thread, as
//!   redis-py does, over the core's blocking connections.
//! - Async methods: pyo3-async-runtimes' generic API with [`ForkSafeRt`],
//!   whose tasks run on the core's fork-aware runtime. The crate's stock
//!   tokio runtime is a `&'static` fixed at first use, which is dead in a
//!   child after `fork()` (gunicorn `--preload`, celery prefork); this one
//!   asks the core for the current process's runtime on every spawn.
//! - Exit: runtime threads attach to Python only through [`attach`] (and
//!   [`ForkSafeRt::spawn_blocking`], where results reach asyncio), which
//!   pass a gate that `_at_exit` (an `atexit` hook of the Python package)
//!   closes, then waits, GIL released, until no runtime thread is inside.
//!   Finalization therefore never meets a runtime thread holding or
//!   waiting for the GIL: CPython 3.11 would `pthread_exit` such a thread
//!   and the unwind would run Rust destructors that touch Python unattached
//!   (the abort or segfault at exit after asyncio use).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};
use tokio::sync::OnceCell;

/// Run a core future for a sync Python method.
pub(crate) fn run<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    // Timers and I/O in the future need a runtime context even for this
    // first, GIL-held poll; a Redis command reached in it waits for the
    // second (`poll_once_sync`).
    let fut = match stratacache::runtime::poll_once_sync(Box::pin(fut)) {
        Ok(v) => return v,
        Err(fut) => fut,
    };
    // Not ready: wait with the GIL released, the round trip made on this
    // thread (`block_on_sync`). The no-op waker of the first poll is
    // replaced by block_on's on its first poll.
    py.detach(move || stratacache::runtime::block_on_sync(fut))
}

/// The exit gate: the high bit set once closed, the rest counts the runtime
/// threads inside.
static GATE: AtomicUsize = AtomicUsize::new(0);
const CLOSED: usize = 1 << (usize::BITS - 1);

/// A runtime thread's pass through the gate.
struct Pass;

impl Drop for Pass {
    fn drop(&mut self) {
        GATE.fetch_sub(1, Ordering::Release);
    }
}

fn pass() -> Option<Pass> {
    if GATE.fetch_add(1, Ordering::AcqRel) & CLOSED != 0 {
        GATE.fetch_sub(1, Ordering::Release);
        return None;
    }
    Some(Pass)
}

fn exiting() -> PyErr {
    // Lazy: building it needs no GIL.
    PyRuntimeError::new_err("stratacache: the Python interpreter is exiting")
}

/// `Python::attach` for runtime threads: refused once the interpreter is
/// exiting.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> PyResult<R>) -> PyResult<R> {
    let Some(_pass) = pass() else {
        return Err(exiting());
    };
    Python::attach(f)
}

/// `atexit` hook: close the gate and wait for the runtime threads inside.
#[pyfunction]
pub(crate) fn _at_exit(py: Python<'_>) {
    GATE.fetch_or(CLOSED, Ordering::AcqRel);
    // Those inside need the GIL to finish: wait with it released. Unbounded
    // on purpose: what runs inside is short, and a limit would bring the
    // race back.
    py.detach(|| {
        while GATE.load(Ordering::Acquire) & !CLOSED != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// In a forked child: threads counted in the parent do not exist here.
pub(crate) fn reset_gate() {
    GATE.store(0, Ordering::Release);
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// pyo3-async-runtimes runtime backed by the core's fork-aware runtime.
pub(crate) struct ForkSafeRt;

pub(crate) struct RtJoinError(tokio::task::JoinError);

impl JoinError for RtJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        match self.0.try_into_panic() {
            Ok(p) => p,
            Err(e) => Box::new(e.to_string()),
        }
    }
}

type JoinFuture = Pin<Box<dyn Future<Output = Result<(), RtJoinError>> + Send>>;

impl Runtime for ForkSafeRt {
    type JoinError = RtJoinError;
    type JoinHandle = JoinFuture;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = stratacache::runtime::runtime().spawn(fut);
        Box::pin(async move { h.await.map_err(RtJoinError) })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // pyo3-async-runtimes hands results to asyncio here, attached. Past
        // the exit gate `f` is dropped unrun (its Python references go to
        // pyo3's pending pool: no GIL needed).
        let h = stratacache::runtime::runtime().spawn_blocking(move || {
            if let Some(_pass) = pass() {
                f();
            }
        });
        Box::pin(async move { h.await.map_err(RtJoinError) })
    }
}

impl ContextExt for ForkSafeRt {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new_with(Some(locals));
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Turn a core future into a Python awaitable (an asyncio Future bound to
/// the running loop).
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if GATE.load(Ordering::Acquire) & CLOSED != 0 {
        // A future that would never resolve otherwise.
        return Err(exiting());
    }
    pyo3_async_runtimes::generic::future_into_py::<ForkSafeRt, _, _>(py, fut)
}
