//! `berth cache verify [--repair]`: every blob hashed (whatever its mtime),
//! every action result checked against the blobs it names, every extracted
//! layer's tree against the digest recorded when it was extracted; exit 1
//! when something is bad and not repaired.

use std::fs::{self, File};
use std::time::UNIX_EPOCH;

use crate::util::need::skip;
use crate::util::runc::{serial, BUSYBOX, CONTAINER};
use crate::util::workspace::{Output, TestWorkspace};

fn workspace() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &fs::read(BUSYBOX).unwrap_or_else(|_| b"not busybox".to_vec()));
    workspace.file(
        "app/BUILD.star",
        r#"
oci_layer(name = "data", contents = {"/data.txt": "data\n" * 100})
oci_layer(
    name = "busybox_layer",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/sh": "busybox", "/bin/mkdir": "busybox", "/bin/echo": "busybox"},
    mode = "0755",
)
oci_image_build(name = "img", layers = [":data"])
oci_image_build(name = "shell", layers = [":busybox_layer"])
oci_build_layer(name = "built", base = ":shell", command = ["mkdir -p /out", "echo hi > /out/x"], outputs = ["/out"])
"#,
    );
    workspace
}

fn verify(workspace: &TestWorkspace, repair: bool) -> Output {
    let mut args = vec!["cache", "verify"];
    if repair {
        args.push("--repair");
    }
    workspace.berth(&args)
}

/// The `N checked, M bad` numbers of one line of the report.
fn counts(output: &Output, what: &str) -> (u64, u64) {
    let line = output.stdout.lines().find(|line| line.starts_with(what)).unwrap_or_else(|| panic!("{output:?}"));
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty()).map(|n| n.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

#[test]
fn a_flipped_blob_is_found_whatever_its_mtime_and_repaired() {
    let workspace = workspace();
    let built = workspace.berth(&["--console", "none", "build", "//app:img"]);
    built.success();
    let clean = verify(&workspace, false);
    clean.success();
    let (blobs, bad) = counts(&clean, "blobs:");
    assert!(blobs >= 3 && bad == 0, "{clean:?}");
    let (entries, bad) = counts(&clean, "action results:");
    assert!(entries >= 3 && bad == 0, "{clean:?}");

    let layer = fs::read_dir(workspace.path("berth-out/app/img/blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .max_by_key(|path| fs::metadata(path).unwrap().len())
        .unwrap();
    let name = layer.file_name().unwrap().to_string_lossy().into_owned();
    let blob = workspace.path(&format!(".cache/cas/sha256/{name}"));
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&blob, &bytes).unwrap();
    File::options().write(true).open(&blob).unwrap().set_modified(UNIX_EPOCH).unwrap();

    let found = verify(&workspace, false);
    found.failure(1);
    assert_eq!(counts(&found, "blobs:"), (blobs, 1), "{found:?}");
    assert_eq!(counts(&found, "action results:").1, 1, "the entry of the layer that made it: {found:?}");
    assert!(found.stderr.contains(&format!("corrupt blob `sha256:{name}`")), "{}", found.stderr);
    assert!(found.stderr.contains("--repair"), "{}", found.stderr);
    assert!(blob.exists(), "nothing is removed without --repair");

    let repaired = verify(&workspace, true);
    repaired.success();
    assert!(repaired.stdout.contains("removed:          2"), "{repaired:?}");
    assert!(!blob.exists());
    let after = verify(&workspace, false);
    after.success();
    assert_eq!(counts(&after, "blobs:"), (blobs - 1, 0));

    // The next build rebuilds the layer, byte for byte.
    fs::remove_dir_all(workspace.path("berth-out")).unwrap();
    let rebuilt = workspace.berth(&["--console", "none", "build", "//app:img"]);
    assert_eq!(rebuilt.success().stdout, built.stdout);
    assert_eq!(fs::read(&blob).unwrap().len(), bytes.len());
    verify(&workspace, false).success();
}

#[test]
fn an_empty_cache_verifies() {
    let workspace = workspace();
    let output = verify(&workspace, false);
    output.success();
    assert_eq!(counts(&output, "blobs:"), (0, 0));
    assert_eq!(counts(&output, "extracted layers:"), (0, 0));
}

#[test]
fn a_changed_extracted_layer_is_found_and_repaired() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace();
    workspace.berth(&["--console", "none", "build", "//app:built"]).success();
    let clean = verify(&workspace, false);
    assert_eq!(counts(clean.success(), "extracted layers:"), (1, 0), "{clean:?}");

    // Containers run in a user namespace: their layers sit in the store's
    // id-shifted part (`layers/shifted-<N>/`).
    let stores: Vec<_> = fs::read_dir(workspace.path(".cache/layers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("shifted-"))
        .chain([workspace.path(".cache/layers")])
        .collect();
    let layer_dir = stores
        .iter()
        .flat_map(|store| fs::read_dir(store).unwrap().map(|entry| entry.unwrap().path()))
        .find(|path| path.is_dir() && path.file_name().unwrap().len() == 64)
        .unwrap();
    // Written through the store, as a stray tool would.
    let busybox = layer_dir.join("root/bin/busybox");
    let mut bytes = fs::read(&busybox).unwrap();
    bytes[100] ^= 1;
    fs::write(&busybox, &bytes).unwrap();

    let found = verify(&workspace, false);
    found.failure(1);
    assert_eq!(counts(&found, "extracted layers:"), (1, 1), "{found:?}");
    assert!(found.stderr.contains("its tree hashes to"), "{}", found.stderr);
    verify(&workspace, true).success();
    assert!(!layer_dir.exists(), "the bad layer is removed");
    verify(&workspace, false).success();

    // Extracted again when a step needs it.
    workspace.berth(&["--console", "none", "build", "//app:built"]).success();
}
