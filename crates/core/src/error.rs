//! One error type for the whole crate.
//!
//! Every variant has a stable [`Error::code`] (`E_...`) that the Python and
//! Node bindings expose unchanged (as an exception class and as `err.code`),
//! so user code can branch on it across languages. Messages say what to do.

use std::sync::Arc;
use std::time::Duration;

/// The error a loader reported through [`crate::Lease::abandon`].
///
/// It is kept as a trait object so a binding can hand its own error type in
/// (a Python exception, a JS error) and downcast it back for the waiters:
/// every caller coalesced onto the failed load sees the *same* error.
pub type LoaderError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in stratacache.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A key is empty or otherwise unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// A value is larger than `max_value_bytes`.
    #[error(
        "value of {size} bytes exceeds the configured maximum of {max} bytes; \
         raise `max_value_bytes` or store something smaller"
    )]
    ValueTooLarge { size: usize, max: usize },

    /// A value or argument has the wrong shape (e.g. a non-integer payload
    /// stored with the integer serializer).
    #[error("invalid value: {0}")]
    InvalidValue(String),

    /// Redis could not be reached (connect failed or the connection broke).
    #[error("Redis is unavailable: {0}; check that Redis is running and the URL is right")]
    L2Unavailable(String),

    /// A Redis command did not answer within `op_timeout`.
    #[error("Redis did not answer within {0:?}; raise `op_timeout` or check the server's load")]
    L2Timeout(Duration),

    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    L2(String),

    /// `incr`/`decr` on a key that does not exist.
    #[error("key not found")]
    NotFound,

    /// `incr`/`decr` on a value that is not an integer, or the result would
    /// overflow a signed 64-bit integer.
    #[error("value is not an integer or the result is out of the signed 64-bit range")]
    NotAnInteger,

    /// The loader for this key failed; every caller waiting on it gets this.
    #[error("loader failed: {0}")]
    Loader(LoaderError),

    /// The leader's lease was dropped without `complete` or `abandon`
    /// (the loader's task was cancelled or panicked).
    #[error("the loading caller went away before completing the load; retry the call")]
    LeaseDropped,

    /// Waiting for another caller's load took longer than the wait timeout.
    #[error(
        "waited {0:?} for another caller's load; raise `wait_timeout` or make the loader faster"
    )]
    WaitTimeout(Duration),

    /// The load did not finish within the hard timeout and no stale value
    /// could be served instead. The load itself goes on in the background
    /// and still fills the cache.
    #[error(
        "the load did not finish within the hard timeout of {0:?} and no stale value was available"
    )]
    LoaderTimeout(Duration),

    /// The cache was closed.
    #[error("the cache is closed")]
    Closed,
}

/// Each variant's stable code, written once: `Error::code` is an
/// exhaustive match built from this list (a new variant without a code
/// does not compile) and `Error::ALL_CODES` is the same list.
macro_rules! error_codes {
    ($($variant:pat => $code:literal),* $(,)?) => {
        impl Error {
            /// A stable machine-readable code, identical in every language binding.
            pub fn code(&self) -> &'static str {
                match self {
                    $($variant => $code),*
                }
            }

            /// Every code, in declaration order, for bindings that build
            /// their exception table up front.
            pub const ALL_CODES: &'static [&'static str] = &[$($code),*];
        }
    };
}

error_codes! {
    Error::Config(_) => "E_CONFIG",
    Error::InvalidKey(_) => "E_INVALID_KEY",
    Error::ValueTooLarge { .. } => "E_VALUE_TOO_LARGE",
    Error::InvalidValue(_) => "E_INVALID_VALUE",
    Error::L2Unavailable(_) => "E_L2_UNAVAILABLE",
    Error::L2Timeout(_) => "E_L2_TIMEOUT",
    Error::L2(_) => "E_L2",
    Error::NotFound => "E_NOT_FOUND",
    Error::NotAnInteger => "E_NOT_INTEGER",
    Error::Loader(_) => "E_LOADER",
    Error::LeaseDropped => "E_LEASE_DROPPED",
    Error::WaitTimeout(_) => "E_WAIT_TIMEOUT",
    Error::LoaderTimeout(_) => "E_LOADER_TIMEOUT",
    Error::Closed => "E_CLOSED",
}

impl Error {
    /// Whether this error came from the L2 tier (Redis), as opposed to the
    /// caller's input or a loader. Bindings that "fail open" on Redis
    /// trouble use this to decide what to swallow.
    pub fn is_l2(&self) -> bool {
        matches!(
            self,
            Error::L2Unavailable(_) | Error::L2Timeout(_) | Error::L2(_)
        )
    }

    /// The codes of [`Error::is_l2`] errors.
    pub const L2_CODES: &'static [&'static str] = &["E_L2_UNAVAILABLE", "E_L2_TIMEOUT", "E_L2"];
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            // The crate's own response timeout; our per-op timeout reports
            // the configured duration instead, see `l2::with_timeout`.
            Error::L2Timeout(Duration::ZERO)
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            Error::L2Unavailable(e.to_string())
        } else {
            Error::L2(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_prefixed() {
        let mut codes = Error::ALL_CODES.to_vec();
        assert!(codes.iter().all(|c| c.starts_with("E_")));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Error::ALL_CODES.len());
    }

    #[test]
    fn l2_codes_are_the_l2_errors() {
        let l2 = [
            Error::L2Unavailable(String::new()),
            Error::L2Timeout(Duration::ZERO),
            Error::L2(String::new()),
        ];
        assert!(l2.iter().all(Error::is_l2));
        let codes: Vec<_> = l2.iter().map(Error::code).collect();
        assert_eq!(codes, Error::L2_CODES);
        assert!(
            !Error::Closed.is_l2() && !Error::Loader(Arc::new(std::io::Error::other("x"))).is_l2()
        );
    }
}
