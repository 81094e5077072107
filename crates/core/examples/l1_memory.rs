//! The L1 memory soak's Rust workloads (`make bench-memory` runs them
//! through `benches/memory/run.py`, beside the Python and Node ones).
//!
//! `l1_memory <api> <writes> <size>` (with the system allocator;
//! `l1_memory_mimalloc` is the same soak with mimalloc, set up as the
//! bindings set it up): `api` is `rust` (a stratacache
//! `Cache`, L1 only, 64 MiB bound), `quick_cache` (raw
//! `quick_cache::sync::Cache`, the structure L1 is built on, with the same
//! bound and per-entry charge: the floor) or `moka` (raw
//! `moka::sync::Cache`, same bound and charge, 300 s time to live: what a
//! moka-based L1 would sit on). `size` is a value size in bytes,
//! or `mixed` for sizes drawn from 64 B to 10 KiB. Every write is a new
//! key; each write is followed by a read of one of the last 64 keys
//! written. Twenty times over the run it prints
//! `sample <writes done> <RSS growth bytes> <L1 entries> <L1 bytes>`.
//! The protocol is the same in every language: see `benches/memory/`.

#[path = "common/soak.rs"]
mod soak;

fn main() {
    soak::main();
}
