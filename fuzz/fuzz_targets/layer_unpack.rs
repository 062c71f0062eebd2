//! A pulled layer blob (gzip, zstd or plain tar, told apart by its magic)
//! unpacked by berth's extractor into a fresh directory: it must return
//! (an error is fine) without panicking or writing outside that directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_fuzz_entry::layer_unpack(data);
});

#[path = "../src/entry.rs"]
mod berth_fuzz_entry;
