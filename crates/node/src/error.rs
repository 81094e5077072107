//! Core errors → JS errors.
//!
//! napi's async bridge only carries its own `Status` as `err.code`, so
//! every error's message starts with the core's stable code in brackets
//! (`[E_NOT_FOUND] key not found`); `node/errors.js` turns that into its
//! error classes with `err.code === 'E_NOT_FOUND'`. A factory's error
//! travels as `[E_LOADER:<id>]`, the id of the original JS error object.

use napi::bindgen_prelude::*;

/// A factory error, carried through the core to the coalesced waiters by
/// an id the JS wrapper maps back to the original error object.
#[derive(Debug)]
pub(crate) struct JsLoaderError {
    pub(crate) id: u32,
    pub(crate) message: String,
}

impl std::fmt::Display for JsLoaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsLoaderError {}

pub(crate) fn js_err(e: stratacache::Error) -> Error {
    if let stratacache::Error::Loader(inner) = &e
        && let Some(le) = inner.downcast_ref::<JsLoaderError>()
    {
        return Error::new(
            Status::GenericFailure,
            format!("[E_LOADER:{}] {}", le.id, le.message),
        );
    }
    Error::new(Status::GenericFailure, format!("[{}] {}", e.code(), e))
}

pub(crate) fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::new(Status::InvalidArg, format!("[E_INVALID_VALUE] {msg}"))
}
