//! A binding's event loop, on which the core carries Redis commands.
//!
//! Node's calls never block their thread, so a command over the
//! multiplexed connection is handed to a runtime worker to send and its
//! answer handed back: two thread wake-ups per round trip, which bound a
//! Node `set` at 1.5x a raw `SET` (docs/benchmarks.md). A thread that runs
//! an event loop (Node's libuv loop) can instead send single commands
//! itself and be told by its loop when the answer is readable, as a JS
//! Redis client does: [`set_event_loop`] gives the core the loop,
//! [`poll_on_loop`] polls a future with its commands carried on it.
//!
//! Only the carrying differs: the command, `op_timeout`, the breaker and
//! the error mapping are the multiplexed connection's (see `l2::looped`).

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::runtime::{Carry, CarryGuard, runtime};

/// An event loop running on the calling thread.
pub trait EventLoop {
    /// Watch `fd` for input (from now on) and, when asked through the
    /// returned [`Watch`], for room to write; `ready` is then called on
    /// this thread, with `true` when the loop reports an error on the
    /// socket instead (and may have stopped watching it). `None` when the
    /// loop cannot watch it. Watching must not keep the loop alive by
    /// itself.
    fn watch(&self, fd: RawFd, ready: Rc<dyn Fn(bool)>) -> Option<Box<dyn Watch>>;
}

/// A watched socket; dropping it stops the watch (before the socket is
/// closed).
pub trait Watch {
    /// Also wait for room to write (`true`), or no longer (`false`).
    fn writable(&self, on: bool);
}

thread_local! {
    static LOOP: RefCell<Option<Rc<dyn EventLoop>>> = const { RefCell::new(None) };
}

/// Give the core this thread's event loop (`None`: take it back, and close
/// the connections carried on it, as a binding does when its environment
/// tears down).
pub fn set_event_loop(l: Option<Rc<dyn EventLoop>>) {
    let gone = l.is_none();
    LOOP.with(|x| *x.borrow_mut() = l);
    if gone {
        crate::l2::close_looped();
    }
}

/// This thread's event loop, if a binding gave one.
pub(crate) fn event_loop() -> Option<Rc<dyn EventLoop>> {
    LOOP.with(|x| x.borrow().clone())
}

/// Run `f` (a turn of the loop: answers read, futures polled, the
/// language's continuations run) with the Redis commands it issues on
/// this thread's connections written together when it ends, one write
/// per connection rather than one per command. `f` must not wait for an
/// answer to a command it issues (it is not written before `f` returns).
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    crate::l2::batch_looped(f)
}

/// Poll `fut` on this thread, in the core runtime's context, with its
/// single Redis commands carried on this thread's event loop (when it has
/// one and the location is one server reached without TLS; the rest go
/// over the multiplexed connection). The future must then be polled
/// again on this thread only: a command carried here is answered here.
pub fn poll_on_loop<F: Future + ?Sized>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    let _ctx = runtime().enter();
    let _carry = CarryGuard::set(Carry::Loop);
    fut.poll(cx)
}
