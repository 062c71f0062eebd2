//! Manifest, index and config bytes as a registry or an archive hands them
//! over: parsed into berth's OCI types and the image's run settings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_fuzz_entry::oci_json(data);
});

#[path = "../src/entry.rs"]
mod berth_fuzz_entry;
