//! The mimalloc settings every process that runs the cache on mimalloc
//! applies (the Python and Node bindings, whose global allocator it is,
//! and the soak and charge test that measure them). The L1 charge per
//! entry is measured under these settings.
//!
//! Each pair is `(option, value)` for `mi_option_set`, with the option
//! numbered as mimalloc 3.3 (libmimalloc-sys 0.1.49) numbers `mi_option_e`.
//! The workspace also builds mimalloc with its `no_thp` feature: it never
//! asks for transparent huge pages, which made a 2 MiB page resident for
//! one live block (the soak at 64 B values: 1.30x the bound with them,
//! 0.96x without; the process's own THP setting is left alone).
//! Apply them before the first allocation that matters:
//!
//! ```ignore
//! unsafe extern "C" {
//!     fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
//! }
//! for (option, value) in stratacache::alloc::MIMALLOC_OPTIONS {
//!     unsafe { mi_option_set(option, value) };
//! }
//! ```

use std::ffi::{c_int, c_long};

/// `arena_eager_commit` off: arena memory is committed as it is used.
/// With it on, Node's soak with mixed value sizes grew 1.34x the bound
/// outside V8's heap, 1.19x without (docs/benchmarks.md, "L1 memory under
/// churn").
const ARENA_EAGER_COMMIT_OFF: (c_int, c_long) = (4, 0);

/// `purge_delay` 10 ms (mimalloc 2's default; mimalloc 3 waits 1,000 ms):
/// memory freed in large blocks (an L1 shard's slab and index when they
/// grow) goes back to the OS promptly rather than a second later. With
/// 1,000 ms the Rust soak at 64 B values peaked at 1.09x the bound while
/// L1's tables grew, 0.96x with 10 ms (docs/benchmarks.md, "Denser L1
/// entries").
const PURGE_DELAY_MS: (c_int, c_long) = (15, 10);

/// The settings, in the order to apply them.
pub const MIMALLOC_OPTIONS: [(c_int, c_long); 2] = [ARENA_EAGER_COMMIT_OFF, PURGE_DELAY_MS];
