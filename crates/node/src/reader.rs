//! `getLocal` as a plain JS function bound to one cache, for the L1-hit
//! path of `Cache#get`.
//!
//! A `#[napi]` method costs each call napi-rs's bookkeeping for `this`:
//! unwrapping it, checking its type tag, and registering the borrow of
//! the Rust object in a process-wide map (napi-rs 3 has no opt-out). On an
//! L1 hit that was ~a quarter of the native call (docs/benchmarks.md).
//! This function carries its cache as the function's own data pointer
//! instead: one `napi_get_cb_info`, the key, the lookup, the value. What
//! it answers is exactly `NativeCache#getLocal`'s (the same core call and
//! the same [`JsEntry`] shaping); errors are thrown as every method's are.

use std::ptr;

use napi::bindgen_prelude::*;

use crate::convert::JsEntry;
use crate::error::js_err;

/// The function: `(key: string) => string | [number, string | Buffer] | null`.
pub(crate) fn local_reader(env: &Env, cache: &stratacache::Cache) -> Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(cache.clone()));
    let mut f = ptr::null_mut();
    let name = "getLocal";
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
            return Err(Error::new(Status::GenericFailure, "cannot create getLocal"));
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
            return Err(Error::new(Status::GenericFailure, "cannot create getLocal"));
        }
    }
    Ok(f)
}

unsafe extern "C" fn release(
    _env: sys::napi_env,
    data: *mut std::ffi::c_void,
    _hint: *mut std::ffi::c_void,
) {
    // SAFETY: `data` is the box `local_reader` leaked, freed once, here.
    drop(unsafe { Box::from_raw(data.cast::<stratacache::Cache>()) });
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
    let mut argc = 1usize; // in: argv's room; out: how many were passed
    let mut argv = [ptr::null_mut(); 1];
    let mut data = ptr::null_mut();
    check_status!(unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    })?;
    // SAFETY: the data pointer of this function is the cache it was made
    // with, alive while the function is (see `local_reader`).
    let cache = unsafe { &*data.cast::<stratacache::Cache>() };
    // (A missing argument is `undefined` in argv.)
    let mut kind = sys::ValueType::napi_undefined;
    check_status!(unsafe { sys::napi_typeof(env, argv[0], &mut kind) })?;
    if kind != sys::ValueType::napi_string {
        return Err(Error::new(
            Status::InvalidArg,
            "[E_INVALID_KEY] getLocal(key): the key must be a string",
        ));
    }
    let key = unsafe { String::from_napi_value(env, argv[0]) }?;
    let e = cache.get_local(&key).map_err(js_err)?;
    unsafe { ToNapiValue::to_napi_value(env, e.map(JsEntry)) }
}
