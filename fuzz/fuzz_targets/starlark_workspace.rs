//! A `WORKSPACE.star` evaluated with berth's globals and limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_fuzz_entry::short_deadline();
    berth_fuzz_entry::starlark_workspace(data);
});

#[path = "../src/entry.rs"]
mod berth_fuzz_entry;
