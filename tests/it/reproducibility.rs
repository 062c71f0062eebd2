//! Same inputs, same bytes: the examples built in two checkouts at different
//! paths, with different umasks, file modes, mtimes, time zones, locales,
//! clocks and caches, give byte-identical `berth-out/` trees whose digests
//! are the checked-in `examples/expected.digests`; and a workspace that needs
//! no runc does the same without root under three umasks and job counts.
//!
//! The umask is set for the `berth` child only (`sh -c 'umask 077; exec
//! berth ...'`): the test process's umask is shared by every test running
//! beside it in this binary.

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

/// A workspace that needs neither runc nor root: source files (one
/// executable), a `files` package, an `oci_layer` with contents and a
/// symlink, and an image of both.
const UMASK_BUILD: &str = r#"
files(name = "srcs", srcs = ["bin/run.sh", "data/a.txt", "data/b.txt"])

oci_layer(
    name = "etc",
    contents = {"/etc/motd": "same bytes\n"},
    symlinks = {"/usr/bin/run": "/app/bin/run.sh"},
)

oci_image_build(
    name = "image",
    packages = [":srcs"],
    layers = [":etc"],
    entrypoint = ["/app/bin/run.sh"],
    repository = "berth/umask",
    tag = "v1",
)
"#;

#[test]
fn same_inputs_same_layout_bytes_from_any_directory_umask_or_thread_count() {
    // (umask of `berth` and of the checkout's files, workspace below the
    // temp dir, jobs)
    let runs = [("022", "", "1"), ("077", "elsewhere/deeper", "4"), ("002", "x", "2")];
    let mut results = Vec::new();
    for (umask, below, jobs) in runs {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(below);
        let mask = u32::from_str_radix(umask, 8).unwrap();
        for (path, text, executable) in [
            ("WORKSPACE.star", "workspace(name = \"umask\")\n", false),
            ("app/BUILD.star", UMASK_BUILD, false),
            ("app/bin/run.sh", "#!/bin/sh\ncat /app/data/a.txt\n", true),
            ("app/data/a.txt", "a\n", false),
            ("app/data/b.txt", "b\n", false),
        ] {
            // The modes a checkout made under this umask would have.
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            let mode = if executable { 0o777 } else { 0o666 } & !mask;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let script =
            format!("umask {umask}; exec {} -j {jobs} --console none build //app:image", env!("CARGO_BIN_EXE_berth"));
        let output = Command::new("sh")
            .args(["-c", &script])
            .current_dir(root.join("app"))
            .env("BERTH_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap();
        assert!(output.status.success(), "umask {umask}: {}", String::from_utf8_lossy(&output.stderr));
        let mut files = BTreeMap::new();
        collect(&root.join("berth-out"), "", &mut files);
        assert!(files.keys().any(|path| path.starts_with("/app/image/blobs/sha256/")), "{files:?}");
        results.push((umask, String::from_utf8(output.stdout).unwrap(), files));
    }
    let (_, digests, files) = &results[0];
    assert!(digests.starts_with("//app:image sha256:"), "{digests}");
    for (umask, other_digests, other_files) in &results[1..] {
        assert_eq!(other_digests, digests, "umask {umask}: other digests");
        assert_eq!(other_files, files, "umask {umask}: other bytes or modes under berth-out/");
    }
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
