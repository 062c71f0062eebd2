//! Bit rot in the CAS, as it really looks: a byte flipped and the mtime put
//! back to the committed stamp, so the stamp shortcut of `Cas::verify`
//! trusts the blob. Every command that publishes (`build` into
//! `berth-out/`, `export`, `push`, `run`, and a build step that extracts a
//! base layer) detects it, warns, removes the blob, rebuilds it once and
//! publishes only sound bytes.

use std::fs::{self, File};
use std::path::Path;
use std::time::UNIX_EPOCH;

use berth::cache::Digest;

use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::runc::{serial, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

/// An image of three `oci_layer` layers: no container needed to build it.
fn workspace(repository: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.file("WORKSPACE.star", "workspace(name = \"heal\")\n").file(
        "app/BUILD.star",
        &format!(
            r#"
oci_layer(name = "one", contents = {{"/one.txt": "one\n" * 500}})
oci_layer(name = "two", contents = {{"/two.txt": "two\n" * 500}})
oci_layer(name = "three", contents = {{"/three.txt": "three\n" * 500}})
oci_image_build(
    name = "img",
    layers = [":one", ":two", ":three"],
    cmd = ["/one.txt"],
    repository = "{repository}",
    tag = "1.0",
)
"#
        ),
    );
    workspace
}

/// The CAS blob files of the workspace's cache.
fn cas_blobs(workspace: &TestWorkspace) -> Vec<std::path::PathBuf> {
    let mut blobs: Vec<_> =
        fs::read_dir(workspace.path(".cache/cas/sha256")).unwrap().map(|entry| entry.unwrap().path()).collect();
    blobs.sort();
    blobs
}

/// Flips one byte in the middle of `path` and puts the committed mtime
/// back, as bit rot does.
fn flip_keeping_mtime(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(path, &bytes).unwrap();
    File::options().write(true).open(path).unwrap().set_modified(UNIX_EPOCH).unwrap();
    assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), UNIX_EPOCH);
}

/// Flips every blob in the CAS (each one detected either before it is
/// published or when an action reads it); returns how many.
fn flip_all(workspace: &TestWorkspace) -> usize {
    let blobs = cas_blobs(workspace);
    blobs.iter().for_each(|blob| flip_keeping_mtime(blob));
    blobs.len()
}

/// Every file named by its sha256 under `dir` (recursively, in
/// `blobs/sha256/` or the CAS) hashes to its name; returns how many.
fn assert_blobs_sound(dir: &Path) -> usize {
    let mut checked = 0;
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = fs::read(&entry).unwrap();
            assert_eq!(Digest::of(&bytes).hex(), name, "corrupt blob published at {}", entry.display());
            checked += 1;
        }
    }
    checked
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return files };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn warnings(stderr: &str) -> usize {
    stderr.lines().filter(|line| line.starts_with("warning: ") && line.contains("corrupt")).count()
}

#[test]
fn build_detects_flipped_blobs_heals_and_publishes_sound_ones() {
    let workspace = workspace("example.invalid/heal");
    let first = workspace.berth(&["--console", "none", "build", "//app:img"]);
    first.success();
    let flipped = flip_all(&workspace);
    assert!(flipped >= 5, "three layers, a config and a manifest: {flipped}");
    fs::remove_dir_all(workspace.path("berth-out/app")).unwrap();

    let output = workspace.berth(&["--console", "none", "build", "//app:img"]);
    output.success();
    assert_eq!(output.stdout, first.stdout, "the rebuilt image has the same digest");
    assert!(warnings(&output.stderr) >= 1, "a warning names what was corrupt:\n{}", output.stderr);
    assert!(!output.stderr.contains("bug in berth"), "{}", output.stderr);
    assert_eq!(assert_blobs_sound(&workspace.path("berth-out/app/img")), flipped);
    assert_eq!(assert_blobs_sound(&workspace.path(".cache/cas")), cas_blobs(&workspace).len());

    // Healed: the next build has nothing to say.
    let again = workspace.berth(&["--console", "none", "build", "//app:img"]);
    assert_eq!(warnings(&again.success().stderr), 0, "{}", again.stderr);
}

/// A no-op build hashes only what it newly publishes: a blob already
/// hard-linked in `berth-out/` is not read again (`cache verify` is the
/// check for those).
#[test]
fn a_layer_target_is_checked_before_it_is_linked() {
    let workspace = workspace("example.invalid/heal");
    workspace.berth(&["--console", "none", "build", "//app:one"]).success();
    let layer = workspace.path("berth-out/app/one/layer.tar.gz");
    let digest = Digest::of(&fs::read(&layer).unwrap());
    fs::remove_file(&layer).unwrap();
    flip_keeping_mtime(&workspace.path(&format!(".cache/cas/sha256/{}", digest.hex())));

    let output = workspace.berth(&["--console", "none", "build", "//app:one"]);
    assert_eq!(warnings(&output.success().stderr), 1, "{}", output.stderr);
    assert_eq!(Digest::of(&fs::read(&layer).unwrap()), digest, "the relinked layer is sound");
}

#[test]
fn export_detects_flipped_blobs_and_writes_a_sound_archive() {
    let workspace = workspace("example.invalid/heal");
    workspace.berth(&["--console", "none", "build", "//app:img"]).success();
    let flipped = flip_all(&workspace);
    let archive = workspace.path("img.tar");
    let output = workspace.berth(&[
        "--console",
        "none",
        "export",
        "//app:img",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().unwrap(),
    ]);
    output.success();
    assert!(warnings(&output.stderr) >= 1, "{}", output.stderr);
    assert!(!output.stderr.contains("bug in berth"), "{}", output.stderr);
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(File::open(&archive).unwrap()).unpack(unpacked.path()).unwrap();
    assert_eq!(assert_blobs_sound(unpacked.path()), flipped, "every blob in the archive is sound");
}

#[test]
fn push_detects_flipped_blobs_and_uploads_sound_ones() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let mut workspace = workspace(&format!("{}/heal", registry.host()));
    workspace.file(
        "WORKSPACE.star",
        &format!("workspace(name = \"heal\")\nregistry(\"{}\", insecure = True)\n", registry.host()),
    );
    let no_credentials = tempfile::tempdir().unwrap();
    workspace.env("DOCKER_CONFIG", no_credentials.path().to_str().unwrap());
    workspace.berth(&["--console", "none", "build", "//app:img"]).success();
    assert!(flip_all(&workspace) >= 5);

    let output = workspace.berth(&["--console", "none", "push", "//app:img"]);
    output.success();
    assert!(warnings(&output.stderr) >= 1, "{}", output.stderr);
    let blobs = cas_blobs(&workspace);
    assert_eq!(assert_blobs_sound(&workspace.path(".cache/cas")), blobs.len());
    // The registry checks what it is sent: every layer and the config got in.
    for blob in &blobs {
        let digest: Digest = format!("sha256:{}", blob.file_name().unwrap().to_string_lossy()).parse().unwrap();
        let bytes = fs::read(blob).unwrap();
        let is_manifest = bytes.starts_with(b"{") && String::from_utf8_lossy(&bytes).contains("\"layers\"");
        assert!(is_manifest || registry.stored_blob(&digest), "{digest} was not pushed");
    }
}

/// A busybox image for the container cases.
fn busybox_workspace() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &fs::read(BUSYBOX).unwrap());
    workspace.file(
        "app/BUILD.star",
        r#"
oci_layer(
    name = "busybox_layer",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/" + applet: "busybox" for applet in ["sh", "echo", "cat", "mkdir"]},
    mode = "0755",
)
oci_image_build(name = "shell", layers = [":busybox_layer"], entrypoint = ["/bin/sh", "-c"], cmd = ["exit 7"])
oci_build_layer(
    name = "built",
    base = ":shell",
    command = ["mkdir -p /out", "echo built > /out/x"],
    outputs = ["/out"],
)
"#,
    );
    workspace
}

#[test]
fn run_detects_flipped_blobs_and_heals() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = busybox_workspace();
    workspace.berth(&["--console", "none", "build", "//app:shell"]).success();
    assert!(flip_all(&workspace) >= 3);
    let output = workspace.berth(&["--console", "none", "run", "//app:shell"]);
    output.failure(7);
    assert!(warnings(&output.stderr) >= 1, "{}", output.stderr);
    assert_eq!(assert_blobs_sound(&workspace.path(".cache/cas")), cas_blobs(&workspace).len());
}

/// The step extracts its base layer from the CAS: the flipped blob fails
/// its digest while it streams, is removed, and the layer is packed again.
#[test]
fn a_step_extracting_a_flipped_base_layer_heals_it() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = busybox_workspace();
    workspace.berth(&["--console", "none", "build", "//app:busybox_layer"]).success();
    let layer = workspace.path("berth-out/app/busybox_layer/layer.tar.gz");
    let digest = Digest::of(&fs::read(&layer).unwrap());
    // A fresh layer store, so the step must extract the blob.
    let _ = fs::remove_dir_all(workspace.path(".cache/layers"));
    flip_keeping_mtime(&workspace.path(&format!(".cache/cas/sha256/{}", digest.hex())));

    let output = workspace.berth(&["--console", "none", "build", "//app:built"]);
    output.success();
    assert!(warnings(&output.stderr) >= 1, "{}", output.stderr);
    assert_eq!(assert_blobs_sound(&workspace.path(".cache/cas")), cas_blobs(&workspace).len());
}
