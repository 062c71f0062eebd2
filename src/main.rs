/// mimalloc v3's `mi_option_purge_delay` (`mi_option_e` in
/// include/mimalloc.h of the version Cargo.toml pins): libmimalloc-sys names
/// only mimalloc v2's options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // The global allocator is mimalloc (see `frontend::limits`). Loading and
    // analysis free tens of megabytes just before a layer is packed; these
    // two settings give those pages back at once (a cold build of a
    // 33,000-file layer peaks at 88 MB instead of 120, no slower, measured
    // with bench/layer/run.sh): no transparent huge pages, which mimalloc
    // asks for and which keep a whole 2 MiB resident for one live object,
    // and no delay before freed memory is returned.
    // SAFETY: both only tune this process's memory; no other thread exists
    // yet, and mimalloc reads the purge delay on its first purge.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    std::process::exit(berth::cli::main());
}
