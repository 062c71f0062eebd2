//! `deb_layer` through the real `berth` binary: the hermetic bases of
//! `third_party/debs` build to the same digests from any checkout and run
//! with runc; bad packages fail the build with a message that says what to do.
//!
//! Tests that need the fetched `.deb` files, root or runc print
//! `SKIP: <reason>` without them.

use std::fs;
use std::path::PathBuf;

use berth::cache::Digest;
use berth::oci::deb::{DebCompression, DebControl, DebEntry, DebEntryKind};

use crate::util::deb::write_deb;
use crate::util::need::{skip, Need};
use crate::util::runc::serial;
use crate::util::workspace::{pinned_debs, TestWorkspace};

/// The files of `third_party/debs` that are committed.
const PACKAGE_FILES: &[&str] = &["BUILD.star", "lock.star", "busybox_applets.star", "debs.lock"];

fn repo_debs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("third_party/debs")
}

/// A workspace holding a copy of `third_party/debs`, with the fetched
/// `.deb` files; `None` (after a SKIP) when they have not been fetched.
fn workspace_with_bases() -> Option<TestWorkspace> {
    if skip(&[Need::Debs]) {
        return None;
    }
    let ws = TestWorkspace::new();
    for file in PACKAGE_FILES {
        ws.bytes(&format!("third_party/debs/{file}"), &fs::read(repo_debs().join(file)).unwrap());
    }
    for file in pinned_debs() {
        let source = repo_debs().join(&file);
        // Copied, not hard-linked: a new link changes the inode's ctime,
        // which a build running in another test rightly takes for an edit.
        fs::copy(&source, ws.path(&format!("third_party/debs/{file}"))).unwrap();
    }
    Some(ws)
}

#[test]
fn bases_build_to_the_same_digests_from_any_checkout() {
    let Some(first) = workspace_with_bases() else { return };
    let Some(second) = workspace_with_bases() else { return };
    let targets = ["//third_party/debs:busybox_base", "//third_party/debs:python_base"];
    let mut args = vec!["build"];
    args.extend(targets);
    let one = first.berth(&args);
    one.success();
    let two = second.berth(&args);
    two.success();
    assert_eq!(one.stdout, two.stdout, "same .deb files, same image digests");
    for target in targets {
        assert!(one.stdout.lines().any(|line| line.starts_with(&format!("{target} sha256:"))), "{}", one.stdout);
    }
    // A second build of the same workspace is all cache hits.
    let again = first.berth(&args);
    again.success();
    assert_eq!(again.stdout, one.stdout);
    assert!(!again.stderr.contains("ran "), "{}", again.stderr);
}

#[test]
fn busybox_base_runs_echo() {
    let Some(ws) = workspace_with_bases() else { return };
    if skip(&[Need::Root, Need::Runc, Need::Subids]) {
        return;
    }
    ws.berth(&["build", "//third_party/debs:busybox_base"]).success();
    let _one = serial();
    let out = ws.berth(&["run", "//third_party/debs:busybox_base", "--", "echo", "hello", "from", "debs"]);
    out.success();
    assert_eq!(out.stdout, "hello from debs\n");
    let exit = ws.berth(&["run", "//third_party/debs:busybox_base", "--", "sh", "-c", "test -L /bin/sh && exit 3"]);
    exit.failure(3);
}

#[test]
fn python_base_runs_python() {
    let Some(ws) = workspace_with_bases() else { return };
    if skip(&[Need::Root, Need::Runc, Need::Subids]) {
        return;
    }
    ws.berth(&["build", "//third_party/debs:python_base"]).success();
    let _one = serial();
    let out = ws.berth(&["run", "//third_party/debs:python_base", "--", "python3", "-c", "print(42)"]);
    out.success();
    assert_eq!(out.stdout, "42\n");
}

fn control(package: &str) -> DebControl {
    DebControl { package: package.to_owned(), version: "1.0-1".to_owned(), architecture: "amd64".to_owned() }
}

fn file(path: &str, data: &[u8]) -> DebEntry {
    DebEntry { path: path.to_owned(), kind: DebEntryKind::File(data.to_vec()), mode: 0o755, uid: 0, gid: 0 }
}

/// Writes `debs` (name → bytes) into `//debs` with a `deb_layer` named
/// `layer` pinning `pins` (default: each file's real digest).
fn deb_workspace(debs: &[(&str, Vec<u8>)], pins: Option<Vec<Digest>>) -> TestWorkspace {
    let ws = TestWorkspace::new();
    let pins = pins.unwrap_or_else(|| debs.iter().map(|(_, bytes)| Digest::of(bytes)).collect());
    for (name, bytes) in debs {
        ws.bytes(&format!("debs/{name}"), bytes);
    }
    let names: Vec<String> = debs.iter().map(|(name, _)| format!("\"{name}\"")).collect();
    let pins: Vec<String> = pins.iter().map(|pin| format!("\"{pin}\"")).collect();
    ws.file(
        "debs/BUILD.star",
        &format!(
            "deb_layer(\n    name = \"layer\",\n    debs = [{}],\n    sha256s = [{}],\n)\n",
            names.join(", "),
            pins.join(", ")
        ),
    );
    ws
}

#[test]
fn a_deb_that_does_not_match_its_pin_fails_with_the_fix() {
    let bytes = write_deb(&control("hello"), &[file("/usr/bin/hello", b"#!/bin/sh\n")], DebCompression::Xz).unwrap();
    let pinned = Digest::of(b"the bytes the lock was made from");
    let ws = deb_workspace(&[("hello_1.0-1_amd64.deb", bytes.clone())], Some(vec![pinned]));
    let out = ws.berth(&["build", "//debs:layer"]);
    out.failure(1);
    for needle in [
        "`debs/hello_1.0-1_amd64.deb` has sha256".to_owned(),
        Digest::of(&bytes).hex(),
        pinned.hex(),
        "scripts/fetch-debs.sh".to_owned(),
    ] {
        assert!(out.stderr.contains(&needle), "no `{needle}` in:\n{}", out.stderr);
    }
    assert!(!ws.path("berth-out/debs/layer").exists(), "nothing half-written");
}

#[test]
fn two_debs_that_disagree_on_a_path_fail_naming_both() {
    let a = write_deb(&control("dash"), &[file("/bin/sh", b"dash")], DebCompression::Gzip).unwrap();
    let b = write_deb(&control("busybox"), &[file("/bin/sh", b"busybox")], DebCompression::Zstd).unwrap();
    let ws = deb_workspace(&[("dash.deb", a), ("busybox.deb", b)], None);
    let out = ws.berth(&["build", "//debs:layer"]);
    out.failure(1);
    assert!(out.stderr.contains("`/bin/sh` is a file of 4 bytes"), "{}", out.stderr);
    assert!(out.stderr.contains("`dash` 1.0-1 (`debs/dash.deb`)"), "{}", out.stderr);
    assert!(out.stderr.contains("`busybox` 1.0-1 (`debs/busybox.deb`)"), "{}", out.stderr);
}

#[test]
fn a_deb_layer_packs_the_union_of_its_debs() {
    let common = DebEntry { mode: 0o644, ..file("/usr/share/common", b"same") };
    let a = write_deb(&control("a"), &[file("/usr/bin/a", b"a"), common.clone()], DebCompression::Bzip2).unwrap();
    let b = write_deb(&control("b"), &[file("/usr/bin/b", b"b"), common], DebCompression::None).unwrap();
    let ws = deb_workspace(&[("a.deb", a), ("b.deb", b)], None);
    let out = ws.berth(&["build", "//debs:layer"]);
    out.success();
    assert!(out.stdout.starts_with("//debs:layer sha256:"), "{}", out.stdout);
    // The layer holds each path of both packages once, with the packages'
    // types and modes, the shared one included, in sorted order.
    let layer = fs::read(ws.path("berth-out/debs/layer/layer.tar.gz")).unwrap();
    assert_eq!(
        out.stdout.trim(),
        format!("//debs:layer {}", Digest::of(&layer)),
        "berth-out holds the layer the build printed"
    );
    assert_eq!(
        layer_entries(&layer),
        [
            ("usr".to_owned(), 'd', 0o755),
            ("usr/bin".to_owned(), 'd', 0o755),
            ("usr/bin/a".to_owned(), 'f', 0o755),
            ("usr/bin/b".to_owned(), 'f', 0o755),
            ("usr/share".to_owned(), 'd', 0o755),
            ("usr/share/common".to_owned(), 'f', 0o644),
        ]
    );
    let wrong_count =
        ws.file("debs/BUILD.star", "deb_layer(name = \"layer\", debs = [\"a.deb\", \"b.deb\"], sha256s = [])\n");
    let out = wrong_count.berth(&["build", "//debs:layer"]);
    out.failure(1);
    assert!(out.stderr.contains("debs/BUILD.star:1:1"), "{}", out.stderr);
    assert!(out.stderr.contains("`debs` has 2 file(s) but `sha256s` has 0"), "{}", out.stderr);
}

/// `(path, type, mode)` of each entry of a gzip'd layer tar, in archive
/// order: `d`irectory, `f`ile, `l`ink (symlink), `h`ard link.
fn layer_entries(gzip: &[u8]) -> Vec<(String, char, u32)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gzip));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Regular => 'f',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                other => panic!("unexpected entry type {other:?}"),
            };
            (String::from_utf8(entry.path_bytes().into_owned()).unwrap(), kind, header.mode().unwrap())
        })
        .collect()
}
