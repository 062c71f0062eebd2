//! Bad input to the image rules: each mistake gets a clear message naming
//! the file and line (or the label), exit code 1, and nothing written to
//! `berth-out/` or the action cache.

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

/// Builds `//app/...`, expects exit 1, and returns the redacted stderr.
fn fails(build: &str) -> String {
    let workspace = workspace(build);
    let output = workspace.berth(&["--console", "none", "build", "//app/..."]);
    output.failure(1);
    assert!(!workspace.path("berth-out/app").exists(), "a failed build wrote outputs");
    let partial = std::fs::read_dir(workspace.path(".cache/cas/tmp")).map(|entries| entries.count()).unwrap_or(0);
    assert_eq!(partial, 0, "a failed build left partial blobs in the cache");
    workspace.redact(&output.stderr)
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
    insta::assert_snapshot!(fails("oci_image_build(name = 'img', entrypoint = '/bin/app')\n"));
}

#[test]
fn python_main_in_no_package() {
    insta::assert_snapshot!(fails(
        "files(name = 'app', srcs = ['main.py'])\noci_python_image(name = 'img', packages = [':app'], python_main = 'server.py')\n"
    ));
}

#[test]
fn index_with_two_images_of_one_platform() {
    insta::assert_snapshot!(fails(
        "oci_image_build(name = 'a', architecture = 'amd64', env = {'A': '1'})\n\
         oci_image_build(name = 'b', architecture = 'amd64', env = {'B': '1'})\n\
         oci_image_index(name = 'index', images = [':a', ':b'])\n"
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
