//! Node's libuv loop as the core's event loop (`stratacache::evloop`): the
//! core's connection of this JS thread is watched with a `uv_poll_t`, and
//! when it turns readable the answers are read and the promises they
//! finish settled here, with no thread woken on the way.
//!
//! libuv's functions are Node's own exports, looked up once with `dlsym`;
//! where one is missing (a runtime that does not export libuv), no loop is
//! given to the core and every command goes over the multiplexed
//! connection, as before.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::OnceLock;

use napi::sys;
use stratacache::evloop::{EventLoop, Watch};

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type CloseCb = unsafe extern "C" fn(*mut c_void);

/// `uv_handle_type`'s `UV_POLL`, and `uv_poll_event`'s bits (uv.h, stable
/// across libuv 1.x).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;
const UV_WRITABLE: c_int = 2;

type HandleSize = unsafe extern "C" fn(c_int) -> usize;
type PollInit = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStart = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type Handle = unsafe extern "C" fn(*mut c_void) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void, Option<CloseCb>);
type Unref = unsafe extern "C" fn(*mut c_void);

struct Uv {
    handle_size: HandleSize,
    poll_init: PollInit,
    poll_start: PollStart,
    poll_stop: Handle,
    close: Close,
    unref: Unref,
}

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT`: the process's global scope (a null handle on glibc
/// and musl, -2 on Apple's and FreeBSD's loaders).
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
const RTLD_DEFAULT: *mut c_void = -2isize as *mut c_void;
#[cfg(not(any(target_vendor = "apple", target_os = "freebsd")))]
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    UV.get_or_init(|| {
        let find = |name: &CStr| {
            // SAFETY: RTLD_DEFAULT looks the name up in the process's
            // global scope: Node's exports.
            let p = unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        // SAFETY: each symbol is libuv's function of that name, whose C
        // signature the field's type spells.
        unsafe {
            Some(Uv {
                handle_size: std::mem::transmute::<*mut c_void, HandleSize>(find(
                    c"uv_handle_size",
                )?),
                poll_init: std::mem::transmute::<*mut c_void, PollInit>(find(c"uv_poll_init")?),
                poll_start: std::mem::transmute::<*mut c_void, PollStart>(find(c"uv_poll_start")?),
                poll_stop: std::mem::transmute::<*mut c_void, Handle>(find(c"uv_poll_stop")?),
                close: std::mem::transmute::<*mut c_void, Close>(find(c"uv_close")?),
                unref: std::mem::transmute::<*mut c_void, Unref>(find(c"uv_unref")?),
            })
        }
    })
    .as_ref()
}

/// This JS thread's loop, if libuv can be reached.
pub(crate) fn node_loop(env: sys::napi_env) -> Option<Rc<dyn EventLoop>> {
    uv()?;
    let mut lp = std::ptr::null_mut();
    let status = unsafe { sys::napi_get_uv_event_loop(env, &mut lp) };
    (status == sys::Status::napi_ok && !lp.is_null()).then(|| {
        Rc::new(NodeLoop {
            env,
            uv_loop: lp.cast(),
        }) as Rc<dyn EventLoop>
    })
}

struct NodeLoop {
    env: sys::napi_env,
    uv_loop: *mut c_void,
}

/// What a poll handle's `data` (its first field) points to.
struct Handler {
    ready: Rc<dyn Fn(bool)>,
    env: sys::napi_env,
    /// The handle's memory, in words, freed when libuv has closed it.
    words: usize,
}

impl EventLoop for NodeLoop {
    fn watch(&self, fd: RawFd, ready: Rc<dyn Fn(bool)>) -> Option<Box<dyn Watch>> {
        let uv = uv()?;
        let words = unsafe { (uv.handle_size)(UV_POLL) }.div_ceil(8);
        let h = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<c_void>();
        let handler = Box::into_raw(Box::new(Handler {
            ready,
            env: self.env,
            words,
        }));
        // SAFETY: `h` is zeroed memory of the size libuv asks for a poll
        // handle, aligned for any of its fields; `data` is the first field
        // of every handle (uv.h's UV_HANDLE_FIELDS). Once initialised the
        // handle is freed only from its close callback.
        unsafe {
            if (uv.poll_init)(self.uv_loop, h, fd) != 0 {
                drop(Box::from_raw(handler));
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    h.cast::<u64>(),
                    words,
                )));
                return None;
            }
            *h.cast::<*mut Handler>() = handler;
            if (uv.poll_start)(h, UV_READABLE, on_poll) != 0 {
                (uv.close)(h, Some(on_close));
                return None;
            }
            // Pending promises keep the loop alive, not the connection.
            (uv.unref)(h);
        }
        Some(Box::new(UvWatch {
            h,
            writable: Cell::new(false),
        }))
    }
}

struct UvWatch {
    h: *mut c_void,
    writable: Cell<bool>,
}

impl Watch for UvWatch {
    fn writable(&self, on: bool) {
        if self.writable.replace(on) != on
            && let Some(uv) = uv()
        {
            let events = if on {
                UV_READABLE | UV_WRITABLE
            } else {
                UV_READABLE
            };
            // SAFETY: the handle is open until this watch is dropped.
            unsafe { (uv.poll_start)(self.h, events, on_poll) };
        }
    }
}

impl Drop for UvWatch {
    fn drop(&mut self) {
        if let Some(uv) = uv() {
            // SAFETY: stopped and closed once; freed in `on_close`. Closing
            // from inside this handle's own callback is allowed by libuv.
            unsafe {
                (uv.poll_stop)(self.h);
                (uv.close)(self.h, Some(on_close));
            }
        }
    }
}

unsafe extern "C" fn on_close(h: *mut c_void) {
    // SAFETY: the handler and the memory `watch` made for this handle,
    // which libuv no longer uses.
    unsafe {
        let handler = Box::from_raw(*h.cast::<*mut Handler>());
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            h.cast::<u64>(),
            handler.words,
        )));
    }
}

unsafe extern "C" fn on_poll(h: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: the handler lives until `on_close`, which cannot run during
    // this callback. With an error status libuv has stopped the handle:
    // the core closes the connection.
    let (ready, env) = unsafe {
        let handler = &**h.cast::<*const Handler>();
        (handler.ready.clone(), handler.env)
    };
    crate::settle::on_loop(env, || ready(status < 0));
}
