//! The L1 memory soak (`l1_memory`) with mimalloc as the global allocator
//! and its arenas committed lazily, as the Python and Node bindings run it.

#[path = "common/soak.rs"]
mod soak;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // mimalloc v3's `arena_eager_commit` (option 4) off, as the bindings do.
    unsafe { mi_option_set(4, 0) };
    soak::main();
}
