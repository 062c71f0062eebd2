//! The `berth` binary: the process-wide choices (the allocator, its tuning,
//! transparent huge pages), then the command line.

use berth::frontend::GuardedAllocator;

/// mimalloc behind the Starlark allocation guard. mimalloc rather than
/// glibc's malloc: the loader, the glob walkers and the hashing threads
/// allocate millions of small strings at once, and glibc's arena locks made
/// a no-op rebuild of a 33,000-file image spend a quarter of its CPU in
/// malloc and free.
#[global_allocator]
static ALLOCATOR: GuardedAllocator = GuardedAllocator;

/// mimalloc v3's `mi_option_purge_delay` (`mi_option_e` in
/// include/mimalloc.h of the version Cargo.toml pins): libmimalloc-sys names
/// only mimalloc v2's options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns what has been freed to the OS, and from then on frees at once
/// rather than after mimalloc's delay; berth calls it once BUILD files are
/// loaded. A cold build of a 33,000-file layer then peaks at 90 MB instead
/// of 117, while the glob walkers and Starlark heaps, which free and
/// reallocate the most, keep the delay (a quarter fewer page faults in a
/// no-op rebuild of that image than with no delay at all).
fn release_freed_memory() {
    // SAFETY: both calls only tune and tidy mimalloc's own state, which is
    // safe from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_collect(true);
    }
}

fn main() {
    // No transparent huge pages: mimalloc asks for them, and one live object
    // then keeps a whole 2 MiB resident (a cold build of a 33,000-file layer
    // peaked at 120 MB with them, 94 MB without; bench/layer/run.sh).
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    berth::frontend::set_release_freed_memory(release_freed_memory);
    std::process::exit(berth::cli::main());
}
