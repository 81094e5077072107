//! Promises of the core's futures, driven and settled on the JS thread.
//!
//! A future that cannot answer at once is kept on its JS thread (the main
//! thread, or a worker's) and polled there only: its single Redis
//! commands go over this thread's connection, watched by the libuv loop
//! (`crate::evloop`, `stratacache::evloop`), so a round trip wakes no
//! other thread. When a future is woken on the JS thread (its answer was
//! read there) it is polled and its promise settled in the same callback;
//! when it is woken from another thread (a command over the multiplexed
//! connection, a flight another call finishes, a timer), the waker queues
//! it and one threadsafe function per JS thread carries it back, signalled
//! only when the queue was empty, to be polled with everything queued.
//! That function holds the event loop open exactly while a promise is
//! pending.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use napi::bindgen_prelude::*;
use napi::sys;
use stratacache::evloop::poll_on_loop;

/// Makes the settled value on the JS thread.
type Make = Box<dyn FnOnce(sys::napi_env) -> Result<sys::napi_value> + Send>;

/// A kept future, its result made into a [`Make`].
type Job = Pin<Box<dyn Future<Output = Result<Make>> + Send>>;

/// A future kept on its JS thread, with its promise.
struct Task {
    job: Job,
    deferred: sys::napi_deferred,
    waker: Waker,
}

/// The part wakers reach from other threads.
struct Queue {
    /// Tasks woken off the JS thread; `None` once the environment tears
    /// down (`teardown`, or `finalize` if Node finalizes the function
    /// first). The threadsafe function is only called with this lock held
    /// and while it is `Some`.
    woken: Mutex<Option<Vec<u64>>>,
    /// Set once, right after the function is made with this queue as its
    /// context.
    tsfn: AtomicPtr<sys::napi_threadsafe_function__>,
}

impl Queue {
    fn tsfn(&self) -> sys::napi_threadsafe_function {
        self.tsfn.load(Ordering::Acquire)
    }

    fn push(&self, id: u64) {
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = woken.as_mut() else {
            return; // the environment is gone, and its promises with it
        };
        q.push(id);
        if q.len() == 1 {
            // SAFETY: called under `woken`'s lock while it is `Some`, so
            // before `teardown` or `finalize` (see `Queue::woken`).
            // Non-blocking: the queue is unbounded, so this never waits on
            // the JS thread.
            unsafe {
                sys::napi_call_threadsafe_function(
                    self.tsfn(),
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                );
            }
        }
    }
}

/// Wakes one kept task.
struct TaskWaker {
    id: u64,
    queue: Arc<Queue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // On its own JS thread while tasks are being run there, the task
        // joins the run; anywhere else (another thread, or this one
        // outside a run) the threadsafe function brings it back.
        let here = RUNNING.with(|r| r.get() == Arc::as_ptr(&self.queue));
        if here {
            READY.with(|r| r.borrow_mut().push_back(self.id));
        } else {
            self.queue.push(self.id);
        }
    }
}

/// The JS thread's side.
struct Hub {
    queue: Arc<Queue>,
    /// Promises made and not yet settled; the threadsafe function holds
    /// the event loop open while this is above zero.
    pending: Cell<usize>,
    next: Cell<u64>,
    /// A task id and its waker not given to any task yet.
    spare: Cell<Option<(u64, Waker)>>,
    /// The async context and resource of the callbacks in which answers
    /// read from the loop's connection settle their promises.
    context: sys::napi_async_context,
    resource: sys::napi_ref,
}

thread_local! {
    /// One per JS thread, made on its first promise.
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
    /// This thread's kept tasks, by id.
    static TASKS: RefCell<HashMap<u64, Task>> = RefCell::new(HashMap::new());
    /// Tasks woken on this thread during a run, to poll in it.
    static READY: RefCell<VecDeque<u64>> = const { RefCell::new(VecDeque::new()) };
    /// The queue of the hub whose tasks are being run on this thread now.
    static RUNNING: Cell<*const Queue> = const { Cell::new(ptr::null()) };
}

/// Poll `fut` once, here on the JS thread: its value now, or a Promise of
/// it when it has to wait (on Redis). L1 work never waits: an L1 lock is
/// held for one map update.
pub(crate) fn now_or_promise<T, F>(env: &Env, fut: F) -> Result<Either<T, PromiseRaw<'_, T>>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match start(env, fut)? {
        Started::Now(r) => r.map(Either::A),
        Started::Later(p) => Ok(Either::B(p)),
    }
}

/// A Promise of `fut`'s output, polled once here as `now_or_promise` does
/// (an answer that needs no I/O settles it at once). With many calls in
/// flight one JS turn writes all their Redis commands before any answer
/// is read.
pub(crate) fn promise<T, F>(env: &Env, fut: F) -> Result<PromiseRaw<'_, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match start(env, fut)? {
        Started::Now(r) => {
            let (deferred, value) = new_promise(env)?;
            settle(env.raw(), deferred, r.map(make::<T>));
            Ok(PromiseRaw::new(env.raw(), value))
        }
        Started::Later(p) => Ok(p),
    }
}

enum Started<'env, T> {
    Now(Result<T>),
    Later(PromiseRaw<'env, T>),
}

/// Poll `fut` once with its own waker; keep it on this thread, with a
/// promise, when it has to wait.
fn start<T, F>(env: &Env, fut: F) -> Result<Started<'_, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let raw = env.raw();
    let hub = hub(raw)?;
    // The waker of a call answered at once (an L1 write) is kept for the
    // next call: no allocation on that path. A clone a future kept would
    // only wake the next task spuriously, which polls it once more.
    let (id, waker) = match hub.spare.take() {
        Some(w) => w,
        None => {
            let id = hub.next.get();
            hub.next.set(id + 1);
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                queue: hub.queue.clone(),
            }));
            (id, waker)
        }
    };
    let mut fut = Box::pin(fut);
    if let Poll::Ready(r) = poll_on_loop(fut.as_mut(), &mut Context::from_waker(&waker)) {
        hub.spare.set(Some((id, waker)));
        return Ok(Started::Now(r));
    }
    let (deferred, value) = new_promise(env)?;
    if hub.pending.get() == 0 {
        check_status!(unsafe { sys::napi_ref_threadsafe_function(raw, hub.queue.tsfn()) })?;
    }
    hub.pending.set(hub.pending.get() + 1);
    let job: Job = Box::pin(async move { fut.await.map(make::<T>) });
    TASKS.with(|t| {
        t.borrow_mut().insert(
            id,
            Task {
                job,
                deferred,
                waker,
            },
        )
    });
    Ok(Started::Later(PromiseRaw::new(raw, value)))
}

/// Run `f` (the loop's connection reading its answers) and then the tasks
/// it woke, settling their promises, inside a callback scope: the JS
/// continuations of the settled promises run when it closes.
pub(crate) fn on_loop(env: sys::napi_env, f: impl FnOnce()) {
    let Some(hub) = HUB.with(|h| h.borrow().clone()) else {
        return f();
    };
    // The commands the continuations issue are written together when the
    // callback scope has closed (they run as it closes).
    stratacache::evloop::batch(|| on_loop_in_batch(env, &hub, f));
}

fn on_loop_in_batch(env: sys::napi_env, hub: &Hub, f: impl FnOnce()) {
    let outer = RUNNING.with(|r| r.replace(Arc::as_ptr(&hub.queue)));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    if READY.with(|r| !r.borrow().is_empty()) {
        let mut handles = ptr::null_mut();
        let opened =
            unsafe { sys::napi_open_handle_scope(env, &mut handles) } == sys::Status::napi_ok;
        let mut resource = ptr::null_mut();
        let mut scope = ptr::null_mut();
        let scoped = opened
            && unsafe { sys::napi_get_reference_value(env, hub.resource, &mut resource) }
                == sys::Status::napi_ok
            && unsafe { sys::napi_open_callback_scope(env, resource, hub.context, &mut scope) }
                == sys::Status::napi_ok;
        run(env, hub);
        // The continuations run as the scope closes, outside this run: a
        // task they wake on this thread goes through the queue.
        RUNNING.with(|r| r.set(outer));
        if scoped {
            unsafe { sys::napi_close_callback_scope(env, scope) };
        }
        if opened {
            unsafe { sys::napi_close_handle_scope(env, handles) };
        }
    } else {
        RUNNING.with(|r| r.set(outer));
    }
    requeue(hub);
}

/// Tasks left in this thread's READY after a run (none are expected: a
/// wake outside a run takes the queue) go through the queue, so none is
/// stranded until the next run.
fn requeue(hub: &Hub) {
    if RUNNING.with(|r| !r.get().is_null()) {
        return; // inside an outer run, which polls them
    }
    let left: Vec<u64> = READY.with(|r| r.borrow_mut().drain(..).collect());
    for id in left {
        hub.queue.push(id);
    }
}

/// Poll every ready task of this thread, settling the finished ones.
fn run(env: sys::napi_env, hub: &Hub) {
    let mut settled = 0;
    while let Some(id) = READY.with(|r| r.borrow_mut().pop_front()) {
        let Some(mut task) = TASKS.with(|t| t.borrow_mut().remove(&id)) else {
            continue; // woken again after it finished
        };
        let mut cx = Context::from_waker(&task.waker);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_on_loop(task.job.as_mut(), &mut cx)
        }));
        let r = match polled {
            Ok(Poll::Pending) => {
                TASKS.with(|t| t.borrow_mut().insert(id, task));
                continue;
            }
            Ok(Poll::Ready(r)) => r,
            Err(_) => Err(Error::from_reason(
                "stratacache: the operation ended without an answer (a panic in the core)",
            )),
        };
        settle(env, task.deferred, r);
        settled += 1;
    }
    if settled > 0 {
        let left = hub.pending.get().saturating_sub(settled);
        hub.pending.set(left);
        if left == 0 {
            unsafe { sys::napi_unref_threadsafe_function(env, hub.queue.tsfn()) };
        }
    }
}

fn new_promise(env: &Env) -> Result<(sys::napi_deferred, sys::napi_value)> {
    let mut deferred = ptr::null_mut();
    let mut value = ptr::null_mut();
    check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut value) })?;
    Ok((deferred, value))
}

fn make<T: ToNapiValue + Send + 'static>(v: T) -> Make {
    // SAFETY: called by `settle`, on the JS thread, with its env.
    Box::new(move |env| unsafe { T::to_napi_value(env, v) })
}

fn hub(env: sys::napi_env) -> Result<Rc<Hub>> {
    HUB.with(|h| {
        if let Some(hub) = h.borrow().as_ref() {
            return Ok(hub.clone());
        }
        let hub = Rc::new(make_hub(env)?);
        *h.borrow_mut() = Some(hub.clone());
        Ok(hub)
    })
}

fn make_hub(env: sys::napi_env) -> Result<Hub> {
    let mut name = ptr::null_mut();
    let label = "stratacache:settle";
    check_status!(unsafe {
        sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name)
    })?;
    // The queue's address is the function's context and finalize data; it
    // is made before the function, which is then stored in it.
    let queue = Arc::new(Queue {
        woken: Mutex::new(Some(Vec::new())),
        tsfn: AtomicPtr::new(ptr::null_mut()),
    });
    let ctx = Arc::into_raw(queue.clone()).cast_mut().cast::<c_void>();
    let mut tsfn = ptr::null_mut();
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            env,
            ptr::null_mut(),
            ptr::null_mut(),
            name,
            0,
            1,
            ctx,
            Some(finalize),
            ctx,
            Some(drain),
            &mut tsfn,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the function was not made, so nothing else owns `ctx`.
        drop(unsafe { Arc::from_raw(ctx.cast::<Queue>()) });
        check_status!(status)?;
    }
    queue.tsfn.store(tsfn, Ordering::Release);
    check_status!(unsafe { sys::napi_unref_threadsafe_function(env, tsfn) })?;
    let hook = Arc::into_raw(queue.clone()).cast_mut().cast::<c_void>();
    check_status!(unsafe { sys::napi_add_env_cleanup_hook(env, Some(teardown), hook) })?;
    // The callbacks of the loop's connection settle promises in this
    // async context (what async_hooks see as their resource).
    let mut object = ptr::null_mut();
    check_status!(unsafe { sys::napi_create_object(env, &mut object) })?;
    let mut resource = ptr::null_mut();
    check_status!(unsafe { sys::napi_create_reference(env, object, 1, &mut resource) })?;
    let mut context = ptr::null_mut();
    check_status!(unsafe { sys::napi_async_init(env, object, name, &mut context) })?;
    if let Some(lp) = crate::evloop::node_loop(env) {
        stratacache::evloop::set_event_loop(Some(lp));
    }
    Ok(Hub {
        queue,
        pending: Cell::new(0),
        next: Cell::new(0),
        spare: Cell::new(None),
        context,
        resource,
    })
}

/// The threadsafe function's callback, on the JS thread: poll every task
/// woken from another thread, settling the finished ones.
unsafe extern "C" fn drain(
    env: sys::napi_env,
    _js: sys::napi_value,
    ctx: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() {
        return; // the environment is tearing down
    }
    // SAFETY: `ctx` is the queue, kept alive by the reference `finalize`
    // drops after the last call.
    let queue = unsafe { &*ctx.cast::<Queue>() };
    let batch = {
        let mut woken = queue.woken.lock().unwrap_or_else(|e| e.into_inner());
        match woken.as_mut() {
            Some(q) => std::mem::take(q),
            None => return,
        }
    };
    let Some(hub) = HUB.with(|h| h.borrow().clone()) else {
        return;
    };
    let outer = RUNNING.with(|r| r.replace(Arc::as_ptr(&hub.queue)));
    READY.with(|r| r.borrow_mut().extend(batch));
    run(env, &hub);
    RUNNING.with(|r| r.set(outer));
    requeue(&hub);
}

/// Resolve or reject one promise, on the JS thread. A value that could
/// not be made (an exception left pending, say for a string too long for
/// V8) rejects with that exception, cleared first, so it cannot strand the
/// rest of the batch.
fn settle(env: sys::napi_env, deferred: sys::napi_deferred, r: Result<Make>) {
    let mut scope = ptr::null_mut();
    let opened = unsafe { sys::napi_open_handle_scope(env, &mut scope) } == sys::Status::napi_ok;
    let status = match r.and_then(|make| make(env)) {
        Ok(v) => unsafe { sys::napi_resolve_deferred(env, deferred, v) },
        Err(e) => match pending_exception(env) {
            Some(x) => unsafe { sys::napi_reject_deferred(env, deferred, x) },
            // As napi-rs rejects: the error's own value, or a new Error.
            None => match unsafe { ToNapiValue::to_napi_value(env, e) } {
                Ok(v) => unsafe { sys::napi_reject_deferred(env, deferred, v) },
                Err(_) => sys::Status::napi_generic_failure,
            },
        },
    };
    if status != sys::Status::napi_ok {
        let x = pending_exception(env).or_else(|| {
            let e = Error::from_reason("stratacache: the answer could not be made into a JS value");
            unsafe { ToNapiValue::to_napi_value(env, e) }.ok()
        });
        if let Some(x) = x {
            unsafe { sys::napi_reject_deferred(env, deferred, x) };
        }
    }
    if opened {
        unsafe { sys::napi_close_handle_scope(env, scope) };
    }
}

/// The JS exception pending on `env`, cleared, if any.
fn pending_exception(env: sys::napi_env) -> Option<sys::napi_value> {
    let mut pending = false;
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        return None;
    }
    let mut x = ptr::null_mut();
    let status = unsafe { sys::napi_get_and_clear_last_exception(env, &mut x) };
    (status == sys::Status::napi_ok && !x.is_null()).then_some(x)
}

/// The environment is tearing down: close the queue and abort the
/// function, so no runtime thread calls it past this point, whatever order
/// Node finalizes it in.
unsafe extern "C" fn teardown(data: *mut c_void) {
    // SAFETY: `data` is the reference `make_hub` leaked for this hook.
    let queue = unsafe { Arc::from_raw(data.cast::<Queue>()) };
    // The loop's connections close with it; the kept futures are dropped
    // (their promises go with the environment).
    stratacache::evloop::set_event_loop(None);
    let _ = TASKS.try_with(|t| t.try_borrow_mut().map(|mut t| t.clear()));
    let mut woken = queue.woken.lock().unwrap_or_else(|e| e.into_inner());
    if woken.take().is_some() {
        unsafe {
            sys::napi_release_threadsafe_function(
                queue.tsfn(),
                sys::ThreadsafeFunctionReleaseMode::abort,
            )
        };
    }
}

/// The threadsafe function is gone (its environment is tearing down):
/// later completions are dropped, and the queue's reference released.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the reference `make_hub` leaked for the function.
    let queue = unsafe { Arc::from_raw(data.cast::<Queue>()) };
    *queue.woken.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let _ = HUB.try_with(|h| h.try_borrow_mut().map(|mut h| h.take()));
}
