//! Bad input to the image rules: each mistake gets a clear message naming
//! the file and line (or the label), exit code 1, nothing written to
//! `berth-out/`, and no entry in the action cache but whole ones of the
//! actions that succeeded before the failure.

use berth::cache::Digest;

use crate::util::workspace::TestWorkspace;

/// A workspace whose `app/BUILD.star` is `build`, with two source files.
fn workspace(build: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace
        .file("WORKSPACE.star", "workspace(name = \"errors\")\n")
        .file("app/main.py", "print('hi')\n")
        .file("app/data.txt", "data\n")
        .file("app/BUILD.star", build);
    workspace
}

/// Builds `//app/...`, expects exit 1 with nothing half-written and nothing
/// cached (each mistake stops the build before any action succeeds), and
/// returns the redacted stderr.
fn fails(build: &str) -> String {
    fails_after(build, 0)
}

/// As [`fails`], when `cached` actions succeed, and stay cached, before the
/// one that fails.
fn fails_after(build: &str, cached: usize) -> String {
    let workspace = workspace(build);
    let output = workspace.berth(&["--console", "none", "build", "//app/..."]);
    output.failure(1);
    assert_eq!(assert_nothing_half_written(&workspace), cached, "action cache entries after the failure");
    workspace.redact(&output.stderr)
}

/// After a failed build: nothing of `//app` under `berth-out/` and no temp
/// files there or in the cache, and every action cache entry whole: it
/// parses, and each blob it names (an object with `digest` and `size`) is
/// in the CAS with that size and those bytes. Returns how many entries the
/// action cache holds (the actions that succeeded before the failure).
fn assert_nothing_half_written(workspace: &TestWorkspace) -> usize {
    let names = |dir: &str| -> Vec<String> {
        match std::fs::read_dir(workspace.path(dir)) {
            Ok(entries) => entries.map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => panic!("{dir}: {error}"),
        }
    };
    assert!(!workspace.path("berth-out/app").exists(), "a failed build wrote outputs");
    let out = names("berth-out");
    assert!(out.iter().all(|name| name == ".berth"), "berth-out/ holds {out:?} after a failed build");
    for tmp in [".cache/tmp", ".cache/cas/tmp"] {
        assert_eq!(names(tmp), Vec::<String>::new(), "a failed build left partial files in {tmp}");
    }
    let entries = names(".cache/ac");
    for name in &entries {
        assert!(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()), "stray file `ac/{name}`");
        let bytes = std::fs::read(workspace.path(&format!(".cache/ac/{name}"))).unwrap();
        let entry: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("ac/{name} is not whole: {error}"));
        let mut blobs = Vec::new();
        blob_refs(&entry, &mut blobs);
        assert!(!blobs.is_empty(), "ac/{name} names no blob: {entry}");
        for (digest, size) in blobs {
            let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("ac/{name}: digest {digest}"));
            let blob = std::fs::read(workspace.path(&format!(".cache/cas/sha256/{hex}")))
                .unwrap_or_else(|error| panic!("ac/{name} names {digest}, not in the CAS: {error}"));
            assert_eq!((blob.len() as u64, Digest::of(&blob).to_string()), (size, digest), "ac/{name}: a torn blob");
        }
    }
    entries.len()
}

/// Every `{"digest": "...", "size": N}` object in `value`.
fn blob_refs(value: &serde_json::Value, found: &mut Vec<(String, u64)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let (Some(digest), Some(size)) = (map.get("digest").and_then(|d| d.as_str()), map.get("size")) {
                found.push((digest.to_owned(), size.as_u64().expect("a blob size is a number")));
            }
            map.values().for_each(|value| blob_refs(value, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|value| blob_refs(value, found)),
        _ => {}
    }
}

#[test]
fn missing_source_file() {
    insta::assert_snapshot!(fails("files(name = 'srcs', srcs = ['missing.txt'])\n"));
}

#[test]
fn strip_prefix_outside_the_package() {
    insta::assert_snapshot!(fails("files(name = 'srcs', srcs = ['main.py'], strip_prefix = '/etc')\n"));
}

#[test]
fn duplicate_destination_in_one_layer() {
    insta::assert_snapshot!(fails("oci_layer(name = 'layer', srcs = ['main.py'], files = {'/main.py': 'data.txt'})\n"));
}

#[test]
fn invalid_mode() {
    insta::assert_snapshot!(fails("oci_layer(name = 'layer', srcs = ['main.py'], mode = '0999')\n"));
}

#[test]
fn unknown_compression() {
    insta::assert_snapshot!(fails(
        "oci_layer(name = 'layer', srcs = ['main.py'])\noci_image_build(name = 'img', layers = [':layer'], compression = 'brotli')\n"
    ));
}

#[test]
fn entrypoint_that_is_not_a_list() {
    // A string is one program (the Pants plugin's `entrypoint = "/bin/app"`).
    insta::assert_snapshot!(fails("oci_image_build(name = 'img', entrypoint = 5)\n"));
}

#[test]
fn python_main_in_no_package() {
    insta::assert_snapshot!(fails(
        "files(name = 'app', srcs = ['main.py'])\noci_python_image(name = 'img', packages = [':app'], python_main = 'server.py')\n"
    ));
}

#[test]
fn index_with_two_images_of_one_platform() {
    // Both images are written (config and manifest each) before the index
    // finds their platforms equal.
    insta::assert_snapshot!(fails_after(
        "oci_image_build(name = 'a', architecture = 'amd64', env = {'A': '1'})\n\
         oci_image_build(name = 'b', architecture = 'amd64', env = {'B': '1'})\n\
         oci_image_index(name = 'index', images = [':a', ':b'])\n",
        4
    ));
}

#[test]
fn image_as_a_package() {
    insta::assert_snapshot!(fails(
        "oci_image_build(name = 'base')\noci_image_build(name = 'img', packages = [':base'])\n"
    ));
}

#[test]
fn pull_without_a_digest() {
    insta::assert_snapshot!(fails("oci_pull_image(name = 'base', repository = '127.0.0.1:1/app')\n"));
}

#[test]
fn pull_with_a_malformed_digest() {
    insta::assert_snapshot!(fails(
        "oci_pull_image(name = 'base', repository = '127.0.0.1:1/app', digest = 'sha256:1234')\n"
    ));
}

#[test]
fn python_main_resolves_to_its_path_in_the_image() {
    let workspace = workspace(
        "files(name = 'app', srcs = ['main.py'], strip_prefix = '.', prefix = '/srv')\n\
         oci_python_image(name = 'img', packages = [':app'], python_main = 'main.py')\n",
    );
    workspace.berth(&["--console", "none", "build", "//app:img"]).success();
    let index = std::fs::read_to_string(workspace.path("berth-out/app/img/index.json")).unwrap();
    let manifest_digest = index.split("sha256:").nth(1).unwrap()[..64].to_owned();
    let blob = |hex: &str| std::fs::read_to_string(workspace.path(&format!("berth-out/app/img/blobs/sha256/{hex}")));
    let manifest = blob(&manifest_digest).unwrap();
    let config_digest = manifest.split("sha256:").nth(1).unwrap()[..64].to_owned();
    let config = blob(&config_digest).unwrap();
    assert!(config.contains(r#""Entrypoint":["python3","/srv/main.py"]"#), "{config}");
}

/// Regression: the key of a layer sees its sources' bytes, not whether a
/// checkout hard-links two of them, so both checkouts must get one layer.
#[test]
fn hard_linked_sources_pack_like_copies() {
    let build = "files(name = 'both', srcs = ['a.txt', 'b.txt'])\n";
    let copies = workspace(build);
    copies.file("app/a.txt", "same\n").file("app/b.txt", "same\n");
    let linked = workspace(build);
    linked.file("app/a.txt", "same\n");
    std::fs::hard_link(linked.path("app/a.txt"), linked.path("app/b.txt")).unwrap();
    let digest = |workspace: &TestWorkspace| {
        let output = workspace.berth(&["--console", "none", "build", "//app:both"]);
        output.success();
        output.stdout.clone()
    };
    assert_eq!(digest(&copies), digest(&linked));
}
