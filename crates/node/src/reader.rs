//! The hottest calls as plain JS functions bound to one cache: the L1
//! reads of the hit path, `getLocal(key)` (the HTTP middleware's) and
//! `getKept(key, fetch, hits)` (`Cache#get`'s and `getOrSet`'s, see
//! `kept.rs`), `Cache#get`'s read from Redis, `getL2(key, sourced)`,
//! and `Cache#set`'s write, `set(key, data, format, ttlMs, graceMs, tags)`
//! (the middleware's writes, which carry dependencies, use the `set`
//! method; both make the write with `cache::write`).
//!
//! A `#[napi]` method costs each call napi-rs's bookkeeping for `this`:
//! unwrapping it, checking its type tag, and registering the borrow of
//! the Rust object in a process-wide map (napi-rs 3 has no opt-out). On a
//! user-shaped L1 hit that was ~0.5 µs of 1.85 (docs/benchmarks.md). These
//! functions carry their cache as the function's own data pointer
//! instead: one `napi_get_cb_info`, the arguments, the core call, the
//! value. Errors are thrown as a method's are (`[CODE] message`), and a
//! panic is caught before it could unwind into V8.

use std::ptr;

use napi::bindgen_prelude::*;

use crate::convert::JsEntry;
use crate::error::js_err;
use crate::kept::{Kind, Watch};

/// The most arguments a bound function takes (missing ones are `undefined`).
const ARGS: usize = 6;

/// What a bound function does with its data and its arguments.
type Answer = unsafe fn(sys::napi_env, &Bound, &[sys::napi_value; ARGS]) -> Result<sys::napi_value>;

/// `getLocal(key)`: L1's fresh entry of `key` shaped by [`JsEntry`], or
/// `null` (then read as `get` does when Redis is configured).
pub(crate) fn local_reader(env: &Env, cache: &stratacache::Cache) -> Result<sys::napi_value> {
    bound(env, cache, "getLocal", get_local, None)
}

/// `getKept(key, fetch, hits)` for values of `kind`: see
/// [`crate::kept::answer`]; it says how long its answer holds in `watch`.
pub(crate) fn kept_reader(
    env: &Env,
    cache: &stratacache::Cache,
    kind: Kind,
    watch: Option<Watch>,
) -> Result<sys::napi_value> {
    let answer: Answer = match kind {
        Kind::Values => get_kept::<true>,
        Kind::Text => get_kept::<false>,
    };
    bound(env, cache, "getKept", answer, watch)
}

/// `getL2(key, sourced)`: `NativeCache#get`, a Promise of the entry shaped
/// by [`JsEntry`] or `null`; with `sourced` true, of `[entry, served]`
/// (for the tracing wrappers) as the method gives it.
pub(crate) fn l2_reader(env: &Env, cache: &stratacache::Cache) -> Result<sys::napi_value> {
    bound(env, cache, "getL2", get_l2, None)
}

/// `set(key, data, format, ttlMs, graceMs, tags)`: `NativeCache#set`
/// without dependencies ([`crate::cache::write`]): `undefined` when
/// answered here, else a Promise.
pub(crate) fn writer(env: &Env, cache: &stratacache::Cache) -> Result<sys::napi_value> {
    bound(env, cache, "set", set, None)
}

unsafe fn get_local(
    env: sys::napi_env,
    b: &Bound,
    args: &[sys::napi_value; ARGS],
) -> Result<sys::napi_value> {
    let e = unsafe { with_key(env, args[0], |key| b.cache.get_local(key).map_err(js_err)) }?;
    unsafe { ToNapiValue::to_napi_value(env, e.map(JsEntry)) }
}

/// `SHARE`: [`Kind::Values`], else [`Kind::Text`].
unsafe fn get_kept<const SHARE: bool>(
    env: sys::napi_env,
    b: &Bound,
    args: &[sys::napi_value; ARGS],
) -> Result<sys::napi_value> {
    let kind = if SHARE { Kind::Values } else { Kind::Text };
    // Not a boolean (a missing argument): the stamp will do. Not a number:
    // no hits to count. Read raw: napi-rs would build an error (a
    // formatted message) to say so.
    let mut fetch = false;
    let _ = unsafe { sys::napi_get_value_bool(env, args[1], &mut fetch) };
    let mut hits = 0.0;
    let _ = unsafe { sys::napi_get_value_double(env, args[2], &mut hits) };
    if hits >= 1.0 {
        b.cache.note_l1_hits(hits as u64);
    }
    let r = unsafe {
        with_key(env, args[0], |key| {
            crate::kept::answer(&b.cache, key, fetch, kind, b.watch.as_ref())
        })
    }?;
    unsafe { ToNapiValue::to_napi_value(env, r) }
}

unsafe fn get_l2(
    env: sys::napi_env,
    b: &Bound,
    args: &[sys::napi_value; ARGS],
) -> Result<sys::napi_value> {
    // Not a boolean (a missing argument): not sourced.
    let mut sourced = false;
    let _ = unsafe { sys::napi_get_value_bool(env, args[1], &mut sourced) };
    let key = unsafe { with_key(env, args[0], |key| Ok(key.to_owned())) }?;
    let c = b.cache.clone();
    let e = Env::from_raw(env);
    if sourced {
        return crate::cache::get_sourced(&e, c, key).map(|p| p.raw());
    }
    let p = crate::settle::promise(&e, async move {
        let r = c.get_sourced(&key).await.map_err(js_err)?;
        Ok(r.map(|(e, _)| JsEntry(e)))
    })?;
    Ok(p.raw())
}

unsafe fn set(
    env: sys::napi_env,
    b: &Bound,
    args: &[sys::napi_value; ARGS],
) -> Result<sys::napi_value> {
    let cache = &b.cache;
    let key = unsafe { with_key(env, args[0], |key| Ok(key.to_owned())) }?;
    let format = unsafe { u32::from_napi_value(env, args[2]) }?;
    let ttl_ms = unsafe { Option::<f64>::from_napi_value(env, args[3]) }?;
    let grace_ms = unsafe { Option::<f64>::from_napi_value(env, args[4]) }?;
    // Reading the tags' elements can run JS (an index getter), which could
    // detach a Buffer: the data is borrowed last, after every conversion
    // that can, and copied before anything else runs.
    let tags = unsafe { Option::<Vec<String>>::from_napi_value(env, args[5]) }?;
    let data = unsafe { crate::convert::Data::from_napi_value(env, args[1]) }?;
    let e = Env::from_raw(env);
    let r = crate::cache::write(&e, cache, key, data, format, ttl_ms, grace_ms, tags, None)?;
    unsafe { ToNapiValue::to_napi_value(env, r) }
}

/// Room for a key read in one call, on the stack.
const KEY_ROOM: usize = 256;

/// `f` of the key argument: a string, else `E_INVALID_KEY` (a missing
/// argument is `undefined` in argv). A key of up to `KEY_ROOM - 5` bytes of
/// UTF-8 is read onto the stack in one call; napi-rs's `String` asks V8
/// for the length first, then allocates and copies.
unsafe fn with_key<T>(
    env: sys::napi_env,
    v: sys::napi_value,
    f: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    let mut kind = sys::ValueType::napi_undefined;
    check_status!(unsafe { sys::napi_typeof(env, v, &mut kind) })?;
    if kind != sys::ValueType::napi_string {
        return Err(Error::new(
            Status::InvalidArg,
            "[E_INVALID_KEY] the key must be a string",
        ));
    }
    let mut room = [0u8; KEY_ROOM];
    let mut n = 0;
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(env, v, room.as_mut_ptr().cast(), KEY_ROOM, &mut n)
    })?;
    // V8 writes at most KEY_ROOM - 1 bytes and never part of a character
    // (at most 4 bytes): under KEY_ROOM - 4, the key is whole.
    if n < KEY_ROOM - 4 {
        // V8 writes UTF-8 (lone surrogates as U+FFFD), as napi-rs's `String`.
        let key = std::str::from_utf8(&room[..n])
            .map_err(|_| Error::new(Status::InvalidArg, "[E_INVALID_KEY] the key is not UTF-8"))?;
        return f(key);
    }
    let key = unsafe { String::from_napi_value(env, v) }?;
    f(&key)
}

/// The data of a bound function: its cache, what it answers, and (a kept
/// reader's) where it says how long an answer holds.
pub(crate) struct Bound {
    cache: stratacache::Cache,
    answer: Answer,
    watch: Option<Watch>,
}

fn bound(
    env: &Env,
    cache: &stratacache::Cache,
    name: &str,
    answer: Answer,
    watch: Option<Watch>,
) -> Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(Bound {
        cache: cache.clone(),
        answer,
        watch,
    }));
    let mut f = ptr::null_mut();
    let failed = || Error::new(Status::GenericFailure, format!("cannot create {name}"));
    // SAFETY: `data` stays valid until the finalizer below frees it, which
    // V8 runs only once the function is unreachable (no call in progress).
    unsafe {
        let status = sys::napi_create_function(
            env.raw(),
            name.as_ptr().cast(),
            name.len() as isize,
            Some(call),
            data.cast(),
            &mut f,
        );
        if status != sys::Status::napi_ok {
            drop(Box::from_raw(data));
            return Err(failed());
        }
        let status = sys::napi_add_finalizer(
            env.raw(),
            f,
            data.cast(),
            Some(release),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        if status != sys::Status::napi_ok {
            drop(Box::from_raw(data));
            return Err(failed());
        }
    }
    Ok(f)
}

unsafe extern "C" fn release(
    _env: sys::napi_env,
    data: *mut std::ffi::c_void,
    _hint: *mut std::ffi::c_void,
) {
    // SAFETY: `data` is the box `bound` leaked, freed once, here.
    drop(unsafe { Box::from_raw(data.cast::<Bound>()) });
}

unsafe extern "C" fn call(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // No panic may unwind into V8.
    let r = std::panic::catch_unwind(|| unsafe { answer(env, info) }).unwrap_or_else(|_| {
        Err(Error::new(
            Status::GenericFailure,
            "stratacache: the operation ended without an answer (a panic in the core)",
        ))
    });
    match r {
        Ok(v) => v,
        Err(e) => {
            unsafe { JsError::from(e).throw_into(env) };
            ptr::null_mut()
        }
    }
}

unsafe fn answer(env: sys::napi_env, info: sys::napi_callback_info) -> Result<sys::napi_value> {
    let mut argc = ARGS; // in: argv's room; out: how many were passed
    let mut args = [ptr::null_mut(); ARGS];
    let mut data = ptr::null_mut();
    check_status!(unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            args.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    })?;
    // SAFETY: the data pointer of this function is the `Bound` it was made
    // with, alive while the function is (see `bound`).
    let b = unsafe { &*data.cast::<Bound>() };
    unsafe { (b.answer)(env, b, &args) }
}
