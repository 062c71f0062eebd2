//! Same inputs, same bytes: the examples built in two checkouts at different
//! paths, with different umasks, file modes, mtimes, time zones, locales,
//! clocks and caches, give byte-identical `berth-out/` trees whose digests
//! are the checked-in `examples/expected.digests`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::util::need::{skip, Need};
use crate::util::workspace::project_copy;
use sha2::{Digest, Sha256};

struct Environment {
    umask: &'static str,
    tz: &'static str,
    lang: &'static str,
    /// A fake wall clock (libfaketime), or the real one.
    clock: Option<&'static str>,
}

#[test]
fn examples_are_byte_identical_across_checkouts_and_machines_settings() {
    let _serial = crate::util::runc::serial();
    if skip(&[Need::Debs, Need::Root, Need::Runc, Need::Faketime]) {
        return;
    }
    let first = build(&Environment { umask: "022", tz: "UTC", lang: "C", clock: None }, false);
    let second = build(
        &Environment {
            umask: "077",
            tz: "Pacific/Kiritimati",
            lang: "de_DE.UTF-8",
            clock: Some("2031-06-15 03:04:05"),
        },
        true,
    );
    assert_eq!(first.0, second.0, "`berth build` printed different digests");
    let expected =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/expected.digests")).unwrap();
    assert_eq!(first.0, expected, "the examples' digests changed; if on purpose, update examples/expected.digests");
    let differing: Vec<&String> =
        first.1.keys().chain(second.1.keys()).filter(|path| first.1.get(*path) != second.1.get(*path)).collect();
    assert!(differing.is_empty(), "these outputs differ between the two builds: {differing:?}");
}

/// Builds the examples in a fresh copy under `environment`; returns what
/// `berth build` printed and the digest of every file under `berth-out/`.
fn build(environment: &Environment, disturb_sources: bool) -> (String, BTreeMap<String, String>) {
    let workspace = project_copy();
    if disturb_sources {
        // What a different checkout does to files: other modes, other times.
        for dir in ["examples", "tools"] {
            disturb(&workspace.path(dir));
        }
    }
    let mut command = Command::new("sh");
    let berth = env!("CARGO_BIN_EXE_berth");
    let script = match environment.clock {
        Some(clock) => format!("umask {}; exec faketime '{clock}' {berth} build //examples/...", environment.umask),
        None => format!("umask {}; exec {berth} build //examples/...", environment.umask),
    };
    command
        .args(["-c", &script])
        .current_dir(workspace.path("examples"))
        .env("BERTH_CACHE_DIR", workspace.path(".cache"))
        .env("TZ", environment.tz)
        .env("LANG", environment.lang)
        .env("LC_ALL", environment.lang)
        .env_remove("SOURCE_DATE_EPOCH");
    let output = command.output().unwrap();
    assert!(output.status.success(), "build failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut files = BTreeMap::new();
    collect(&workspace.path("berth-out"), "", &mut files);
    (String::from_utf8(output.stdout).unwrap(), files)
}

fn disturb(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            disturb(&path);
        } else if metadata.is_file() {
            let executable = metadata.permissions().mode() & 0o111 != 0;
            let mode = if executable { 0o700 } else { 0o600 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let touched = Command::new("touch").args(["-d", "2001-02-03 04:05:06"]).arg(&path).status().unwrap();
            assert!(touched.success());
        }
    }
}

/// Every file under `dir` (but the build log, which records timings) by
/// relative path, with the sha256 of its bytes and its mode.
fn collect(dir: &Path, prefix: &str, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}/{name}");
        if relative == "/.berth" {
            continue;
        }
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            collect(&entry.path(), &relative, files);
        } else {
            let digest = hex::encode(Sha256::digest(std::fs::read(entry.path()).unwrap()));
            files.insert(relative, format!("{digest} {:o}", metadata.permissions().mode() & 0o7777));
        }
    }
}
