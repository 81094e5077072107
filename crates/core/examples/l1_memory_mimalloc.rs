//! The L1 memory soak (`l1_memory`) with mimalloc as the global allocator
//! and its arenas committed lazily, as the Python and Node bindings run it.

#[path = "common/soak.rs"]
mod soak;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // mimalloc, set up as the core's measurements assume (`stratacache::alloc`).
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    for (option, value) in stratacache::alloc::MIMALLOC_OPTIONS {
        unsafe { mi_option_set(option, value) };
    }
    soak::main();
}
