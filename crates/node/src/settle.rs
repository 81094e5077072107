//! Promises of the core's futures, settled in batches on the JS thread.
//!
//! napi-rs's future-to-Promise bridge makes one threadsafe function per
//! promise: created, called, released and closed (a libuv handle and an
//! environment cleanup hook each time) on the JS thread, whose time is what
//! bounds reads in flight. Here one threadsafe function per JS thread (the
//! main thread, or a worker's) carries every completion: a finished future
//! queues its result and signals only when the queue was empty; the JS
//! thread then settles everything queued in one callback. That function
//! holds the event loop open exactly while a promise is pending, as the
//! per-promise ones did.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::future::Future;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::sys;
use stratacache::runtime::poll_once_in_runtime;

/// Makes the settled value on the JS thread.
type Make = Box<dyn FnOnce(sys::napi_env) -> Result<sys::napi_value> + Send>;

/// A finished future's promise and its result.
type Done = (Deferred, Result<Make>);

/// A promise's deferred: only ever used on its JS thread.
struct Deferred(sys::napi_deferred);
// SAFETY: the pointer is carried across threads but only dereferenced by
// napi on the JS thread that created it (in `drain`).
unsafe impl Send for Deferred {}

/// The part finished futures reach from the runtime's threads.
struct Queue {
    /// Completions waiting for the JS thread; `None` once the environment
    /// tears down (`teardown`, or `finalize` if Node finalizes the function
    /// first). The threadsafe function is only called with this lock held
    /// and while it is `Some`.
    done: Mutex<Option<Vec<Done>>>,
    /// Set once, right after the function is made with this queue as its
    /// context.
    tsfn: AtomicPtr<sys::napi_threadsafe_function__>,
}

impl Queue {
    fn tsfn(&self) -> sys::napi_threadsafe_function {
        self.tsfn.load(Ordering::Acquire)
    }

    fn push(&self, d: Deferred, r: Result<Make>) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = done.as_mut() else {
            return; // the environment is gone, and its promises with it
        };
        q.push((d, r));
        if q.len() == 1 {
            // SAFETY: called under `done`'s lock while it is `Some`, so
            // before `teardown` or `finalize` (see `Queue::done`).
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

/// The JS thread's side.
struct Hub {
    queue: Arc<Queue>,
    /// Promises made and not yet settled; the threadsafe function holds
    /// the event loop open while this is above zero.
    pending: Cell<usize>,
}

thread_local! {
    /// One per JS thread, made on its first promise.
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
}

/// Poll `fut` once, here on the JS thread (in the core runtime's context):
/// its value now, or a Promise of it when it has to wait (on Redis). L1
/// work never waits: an L1 lock is held for one map update.
pub(crate) fn now_or_promise<T, F>(env: &Env, fut: F) -> Result<Either<T, PromiseRaw<'_, T>>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match poll_once_in_runtime(Box::pin(fut)) {
        Ok(r) => r.map(Either::A),
        Err(fut) => spawn(env, fut).map(Either::B),
    }
}

/// A Promise of `fut`'s output, polled once here as `now_or_promise` does
/// (an answer that needs no I/O settles it at once). With many calls in
/// flight this lets one JS turn queue its Redis commands before the
/// runtime's worker wakes, and the Redis client writes them together:
/// 64 reads in flight went from 0.74-0.76x to 1.12-1.14x raw ioredis
/// (docs/benchmarks.md, "Every promise polled once on the JS thread").
pub(crate) fn promise<T, F>(env: &Env, fut: F) -> Result<PromiseRaw<'_, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match poll_once_in_runtime(Box::pin(fut)) {
        Ok(r) => {
            let (deferred, value) = new_promise(env)?;
            settle(env.raw(), deferred, r.map(make::<T>));
            Ok(PromiseRaw::new(env.raw(), value))
        }
        Err(fut) => spawn(env, fut),
    }
}

/// A Promise of the rest of `fut`, which runs on the core's runtime.
fn spawn<T, F>(env: &Env, fut: F) -> Result<PromiseRaw<'_, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let raw = env.raw();
    let hub = hub(raw)?;
    let (deferred, value) = new_promise(env)?;
    if hub.pending.get() == 0 {
        check_status!(unsafe { sys::napi_ref_threadsafe_function(raw, hub.queue.tsfn()) })?;
    }
    hub.pending.set(hub.pending.get() + 1);
    let mut owed = Owed {
        queue: hub.queue.clone(),
        deferred: Some(Deferred(deferred)),
    };
    stratacache::runtime::runtime().spawn(async move {
        let r = fut.await;
        owed.pay(r.map(make::<T>));
    });
    Ok(PromiseRaw::new(raw, value))
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

/// A promise its future still owes a settlement. Dropped unpaid (the
/// future panicked, or the runtime dropped it), it rejects, so no promise
/// is left pending and holding the event loop open.
struct Owed {
    queue: Arc<Queue>,
    deferred: Option<Deferred>,
}

impl Owed {
    fn pay(&mut self, r: Result<Make>) {
        if let Some(d) = self.deferred.take() {
            self.queue.push(d, r);
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.pay(Err(Error::from_reason(
            "stratacache: the operation ended without an answer (a panic in the core)",
        )));
    }
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
        done: Mutex::new(Some(Vec::new())),
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
    Ok(Hub {
        queue,
        pending: Cell::new(0),
    })
}

/// The threadsafe function's callback, on the JS thread: settle every
/// queued promise.
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
        let mut done = queue.done.lock().unwrap_or_else(|e| e.into_inner());
        match done.as_mut() {
            Some(q) => std::mem::take(q),
            None => return,
        }
    };
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    for (d, r) in batch {
        settle(env, d.0, r);
    }
    HUB.with(|h| {
        if let Some(hub) = h.borrow().as_ref() {
            let left = hub.pending.get().saturating_sub(n);
            hub.pending.set(left);
            if left == 0 {
                unsafe { sys::napi_unref_threadsafe_function(env, hub.queue.tsfn()) };
            }
        }
    });
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
    let mut done = queue.done.lock().unwrap_or_else(|e| e.into_inner());
    if done.take().is_some() {
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
    *queue.done.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let _ = HUB.try_with(|h| h.try_borrow_mut().map(|mut h| h.take()));
}
