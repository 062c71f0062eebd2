fn main() {
    // No transparent huge pages: mimalloc asks for them, and one live object
    // then keeps a whole 2 MiB resident (a cold build of a 33,000-file layer
    // peaked at 120 MB with them, 94 MB without; bench/layer/run.sh).
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    std::process::exit(berth::cli::main());
}
