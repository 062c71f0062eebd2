//! The committed fuzz corpus (`fuzz/corpus/<target>/`) fed through the
//! fuzz targets' own bodies (`fuzz/src/entry.rs`): every input the fuzzer
//! kept, and every crash it ever found once fixed, runs in CI as a normal
//! test without nightly or libFuzzer.

#[path = "../../fuzz/src/entry.rs"]
mod entry;

use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    inputs
}

/// Runs every input of `target`'s corpus; a panic names the input.
fn replay(target: &str, run: fn(&[u8])) {
    for (name, bytes) in corpus(target) {
        if let Err(panic) = std::panic::catch_unwind(|| run(&bytes)) {
            std::panic::resume_unwind(Box::new(format!("{target}/{name}: {panic:?}")));
        }
    }
}

#[test]
fn layer_unpack_corpus() {
    replay("layer_unpack", entry::layer_unpack);
}

#[test]
fn oci_json_corpus() {
    replay("oci_json", entry::oci_json);
}

#[test]
fn starlark_workspace_corpus() {
    replay("starlark_workspace", entry::starlark_workspace);
}

#[test]
fn starlark_build_corpus() {
    replay("starlark_build", entry::starlark_build);
}

#[test]
fn www_authenticate_corpus() {
    replay("www_authenticate", entry::www_authenticate);
}
