//! JS values ↔ core values: milliseconds, TTLs, write options, and
//! entries (as `{format, data}` or, for reads, a JS string when that is
//! what the JS side wants).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use stratacache::{Format, Ttl, WriteOptions};

use crate::error::invalid;

pub(crate) fn ms(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v / 1000.0).map_err(|_| {
        invalid(format!(
            "{name} must be a finite number of milliseconds >= 0"
        ))
    })
}

/// `undefined` → the cache default; `Infinity` → never; `<= 0` → do not cache.
pub(crate) fn ttl_of(ttl_ms: Option<f64>) -> Result<Ttl> {
    Ok(match ttl_ms {
        None => Ttl::Default,
        Some(t) if t.is_nan() => return Err(invalid("ttl must not be NaN")),
        Some(t) if t == f64::INFINITY => Ttl::Never,
        Some(t) if t <= 0.0 => Ttl::After(Duration::ZERO),
        Some(t) => Ttl::After(ms("ttl", t)?),
    })
}

pub(crate) fn write_opts(
    format: u32,
    ttl_ms: Option<f64>,
    grace_ms: Option<f64>,
    tags: Option<Vec<String>>,
) -> Result<WriteOptions> {
    let format = u8::try_from(format).map_err(|_| invalid("format must be 0-255"))?;
    Ok(WriteOptions::new(ttl_of(ttl_ms)?, Format(format))
        .with_grace(ms("grace", grace_ms.unwrap_or(0.0))?)
        .with_tags(tags.unwrap_or_default()))
}

/// A value's bytes as the JS side hands them over: a string (JSON text,
/// integers, UTF-8: no Buffer is made for them on the JS thread, which
/// cost more than `JSON.stringify` of a 10-field object) or a Buffer.
pub(crate) type Data<'a> = Either<String, BufferSlice<'a>>;

/// The bytes of `d`, in one allocation of their own length (a string's
/// buffer is shrunk, not copied, past the C terminator napi wrote).
pub(crate) fn data_bytes(d: Data<'_>) -> Bytes {
    match d {
        Either::A(s) => Bytes::from(s.into_bytes().into_boxed_slice()),
        Either::B(b) => Bytes::copy_from_slice(&b),
    }
}

/// A stored value: serializer id and bytes.
#[napi(object, object_from_js = false)]
pub struct NativeValue {
    pub format: u32,
    #[napi(ts_type = "Buffer")]
    pub data: Copied,
}

pub(crate) fn value(e: &stratacache::Entry) -> NativeValue {
    NativeValue {
        format: u32::from(e.meta.format.0),
        data: Copied(e.payload.clone()),
    }
}

/// Bytes handed to JS as a Buffer whose memory V8 owns: a copy made by
/// `napi_create_buffer_copy`. napi-rs's `Buffer` lends its `Vec` as an
/// external Buffer instead, whose finalizer Node runs only when the event
/// loop turns, so hits in a loop that never yields kept every copy alive
/// until then (1 M hits of a 1 KB value: +1.3 GB).
pub struct Copied(pub(crate) Bytes);

impl ToNapiValue for Copied {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let mut out = std::ptr::null_mut();
        let status = unsafe {
            sys::napi_create_buffer_copy(
                env,
                val.0.len(),
                val.0.as_ptr().cast(),
                std::ptr::null_mut(),
                &mut out,
            )
        };
        check_status!(status, "could not create a Buffer of a cached value")?;
        Ok(out)
    }
}

/// A value read for `get` and friends, converted on the JS thread: a JSON
/// entry, the common case, as its JSON text (a JS string: the cheapest
/// thing to hand over, and what `JSON.parse` wants); any other as
/// `[format, data]`, `data` being a string for UTF-8 and integers and a
/// Buffer (a copy) otherwise.
pub struct JsEntry(pub(crate) Arc<stratacache::Entry>);

impl ToNapiValue for JsEntry {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let e = &val.0;
        let format = e.meta.format;
        if !matches!(format, Format::JSON | Format::UTF8 | Format::INT) {
            let data = Copied(e.payload.clone());
            return unsafe { ToNapiValue::to_napi_value(env, (u32::from(format.0), data)) };
        }
        let text = unsafe { js_text(env, &e.payload) }?;
        if format == Format::JSON {
            return Ok(text);
        }
        let pair = (u32::from(format.0), unsafe {
            napi::JsString::from_napi_value(env, text)
        }?);
        unsafe { ToNapiValue::to_napi_value(env, pair) }
    }
}

/// A JS string of UTF-8 `bytes`, copied once: ASCII (most JSON) straight
/// into a one-byte string; anything else decoded by V8, which replaces
/// invalid sequences with U+FFFD exactly as `Buffer#toString` does.
pub(crate) unsafe fn js_text(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
    let mut out = std::ptr::null_mut();
    let len = bytes.len() as isize;
    let ptr = bytes.as_ptr().cast();
    let status = if bytes.is_ascii() {
        unsafe { sys::napi_create_string_latin1(env, ptr, len, &mut out) }
    } else {
        unsafe { sys::napi_create_string_utf8(env, ptr, len, &mut out) }
    };
    check_status!(status, "could not create a string of a cached value")?;
    Ok(out)
}
