//! Driving core futures from Python.
//!
//! - Sync methods: [`run`] polls the future once on the calling thread,
//!   GIL held (an L1 hit completes right there: no GIL release, no thread
//!   hop), and only if it is not ready blocks on it with the GIL released,
//!   so other Python threads (and the loaders they run) keep going.
//! - Async methods: pyo3-async-runtimes' generic API with [`ForkSafeRt`],
//!   whose tasks run on the core's fork-aware runtime. The crate's stock
//!   tokio runtime is a `&'static` fixed at first use, which is dead in a
//!   child after `fork()` (gunicorn `--preload`, celery prefork); this one
//!   asks the core for the current process's runtime on every spawn.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

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
    let mut fut = Box::pin(fut);
    {
        // Timers and I/O in the future need a runtime context even for
        // this first, GIL-held poll.
        let _ctx = stratacache::runtime::runtime().enter();
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    // Not ready: wait with the GIL released. The no-op waker of the first
    // poll is replaced by block_on's on its first poll.
    py.detach(move || stratacache::runtime::block_on(fut))
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
        let h = stratacache::runtime::runtime().spawn_blocking(f);
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
    pyo3_async_runtimes::generic::future_into_py::<ForkSafeRt, _, _>(py, fut)
}
