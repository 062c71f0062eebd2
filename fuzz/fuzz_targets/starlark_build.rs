//! A `BUILD.star` loaded as berth loads a package: the rule library, the
//! native rules, `glob`, the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_fuzz_entry::short_deadline();
    berth_fuzz_entry::starlark_build(data);
});

#[path = "../src/entry.rs"]
mod berth_fuzz_entry;
