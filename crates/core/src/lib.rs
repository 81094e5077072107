//! # stratacache
//!
//! A tiered cache: an in-process L1 ([`quick_cache`], bounded by bytes, S3-FIFO)
//! in front of an optional Redis or Redis Cluster L2, with single-flight
//! read-through and the lease API the Python and Node bindings sit on.
//! With no Redis configured it runs L1-only.
//!
//! The read path is [`Cache::lookup`]: it answers [`Lookup::Fresh`],
//! [`Lookup::Refresh`], [`Lookup::Stale`] or [`Lookup::Lead`]. The core never calls a loader:
//! a `Lead` hands the caller a [`Lease`], the caller runs its loader in its
//! own world (a Rust task, a Python thread, a JS promise) and calls
//! [`Lease::complete`] or [`Lease::abandon`]. Everyone else asking for the
//! same key in the meantime waits inside the core and gets that outcome.
//!
//! ```no_run
//! # async fn demo() -> stratacache::Result<()> {
//! use bytes::Bytes;
//! use stratacache::{Cache, Lookup, LookupPolicy, WriteOptions};
//!
//! let cache = Cache::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .namespace("shop")
//!     .build()?;
//! let value = match cache.lookup("user:42", &LookupPolicy::default()).await? {
//!     Lookup::Fresh(e, _) | Lookup::Stale(e, None) => e.payload.clone(),
//!     Lookup::Refresh(e, lease) | Lookup::Stale(e, Some(lease)) => {
//!         // Serve `e` now; refresh in the background.
//!         tokio::spawn(async move {
//!             let _ = lease.complete(Bytes::from_static(b"new"), &WriteOptions::default()).await;
//!         });
//!         e.payload.clone()
//!     }
//!     Lookup::Lead(lease) => {
//!         let loaded = Bytes::from_static(b"{\"id\":42}"); // your loader
//!         lease.complete(loaded, &WriteOptions::default()).await?.payload.clone()
//!     }
//! };
//! # let _ = value; Ok(()) }
//! ```
//!
//! See `docs/architecture.md` in the repository for the design.

pub mod alloc;
pub mod bus;
mod cache;
pub mod clock;
mod config;
mod deps;
pub mod doctor;
mod engine;
pub mod envelope;
mod error;
pub mod evloop;
#[cfg(feature = "feed")]
pub mod feed;
mod flight;
pub mod http;
pub mod key;
mod l1;
mod l2;
mod lease;
mod lookup;
pub mod memo;
mod metrics;
mod options;
pub mod purge;
mod read;
pub mod runtime;
mod scan;
mod versions;
pub mod watch;
mod write;

pub use cache::Cache;
pub use config::{CacheBuilder, Config, RedisLocation, nearest_name, redacted_url};
pub use deps::{Deps, MAX_DEPENDENCIES};
pub use envelope::{Codec, DecodeError, Entry, Format, Meta, Tags};
pub use error::{Error, LoaderError, Result};
pub use lease::{Deadline, Lease, LoadClock, LoadOutcome, Settled};
pub use lookup::{Lookup, ManyLookup};
pub use memo::Memo;
pub use metrics::Stats;
pub use options::{DEFAULT_FAIL_SAFE_THROTTLE, LookupPolicy, OnWaitTimeout, Ttl, WriteOptions};
pub use read::{Served, Source};
pub use scan::ScanPage;
