//! A registry's `WWW-Authenticate` header: the challenge parser and the
//! check of where a Bearer realm may send berth (with and without
//! credentials).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_fuzz_entry::www_authenticate(data);
});

#[path = "../src/entry.rs"]
mod berth_fuzz_entry;
