//! Only the front-end (and analysis) touch the `starlark` crate: no Starlark
//! value leaves loading. This test greps the sources to keep that true.

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn only_frontend_and_analysis_use_starlark() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed = [src.join("frontend"), src.join("analysis")];
    let mut offenders = Vec::new();
    for file in files.iter().filter(|file| !allowed.iter().any(|dir| file.starts_with(dir))) {
        let text = fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.contains("starlark::") || line.trim_start().starts_with("use starlark") {
                offenders.push(format!("{}:{}: {line}", file.strip_prefix(&src).unwrap().display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the starlark crate is used outside frontend/ and analysis/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_rule_library_is_embedded_not_installed() {
    let prelude = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/frontend/prelude.rs")).unwrap();
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".star") {
            assert!(prelude.contains(&format!("include_str!(\"../../rules/{name}\")")), "rules/{name} is not embedded");
        }
    }
}
