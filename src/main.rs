fn main() {
    // One malloc arena for every thread: loading and analysis free tens of
    // megabytes on the main thread just before a worker thread packs a layer,
    // and per-thread arenas would keep both sets of pages resident (a cold
    // build of a 30,000-file layer: 136 MB peak, 98 MB with one arena, and
    // no slower, measured with bench/layer/run.sh).
    // SAFETY: mallopt only tunes glibc's allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    std::process::exit(berth::cli::main());
}
