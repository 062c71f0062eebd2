//! Attributes that name a path are checked in analysis: a BUILD file cannot
//! make berth write outside `berth-out/` (`output_path = "../../x"`) or
//! place a layer entry above `/`. Each refusal is a golden error at the
//! BUILD file's line, exit 1, and nothing is written; a symlink planted
//! below `berth-out/` is not followed.

use crate::util::workspace::TestWorkspace;

/// The file `output_path = "../../berth-integrity-escape"` would have made,
/// seen from `berth-out/` two directories below the workspace's parent.
const ESCAPE: &str = "berth-integrity-escape";

fn workspace(build: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace
        .file("WORKSPACE.star", "workspace(name = \"paths\")\n")
        .file("app/main.py", "print('hi')\n")
        .file("app/BUILD.star", build);
    workspace
}

/// Builds `//app/...`, expects exit 1, no output under `berth-out/app` or
/// next to the workspace, and returns the redacted stderr.
fn refused(build: &str) -> String {
    let workspace = workspace(build);
    let output = workspace.berth(&["--console", "none", "build", "//app/..."]);
    output.failure(1);
    assert!(!workspace.path("berth-out/app").exists(), "a refused build wrote outputs");
    let outside = workspace.root().parent().unwrap();
    assert!(!outside.join(ESCAPE).exists(), "a file appeared outside the workspace");
    assert!(!workspace.path(ESCAPE).exists(), "a file appeared outside berth-out/");
    workspace.redact(&output.stderr)
}

/// An `oci_build_layer` on the empty image with one attribute changed.
fn build_layer(attr: &str) -> String {
    format!(
        "oci_build_layer(\n    name = 'step',\n    base = '//:empty',\n    command = ['true'],\n    outputs = ['/out'],\n    {attr},\n)\n"
    )
}

#[test]
fn output_path_climbing_out_of_berth_out() {
    insta::assert_snapshot!(refused(&build_layer(&format!("output_path = '../../{ESCAPE}'"))));
}

#[test]
fn output_path_with_dot_dot_inside() {
    insta::assert_snapshot!(refused(&build_layer("output_path = 'a/../../x.tar.gz'")));
}

#[test]
fn output_path_absolute() {
    insta::assert_snapshot!(refused(&build_layer(&format!("output_path = '/tmp/{ESCAPE}'"))));
}

#[test]
fn output_path_naming_a_directory() {
    insta::assert_snapshot!(refused(&build_layer("output_path = 'reports/'")));
}

#[test]
fn outputs_relative() {
    insta::assert_snapshot!(refused(
        "oci_build_layer(name = 'step', base = '//:empty', command = ['true'], outputs = ['out'])\n"
    ));
}

#[test]
fn outputs_climbing_out_of_the_container() {
    insta::assert_snapshot!(refused(
        "oci_build_layer(name = 'step', base = '//:empty', command = ['true'], outputs = ['/out/../../../etc'])\n"
    ));
}

#[test]
fn files_prefix_climbing_above_root() {
    insta::assert_snapshot!(refused("files(name = 'srcs', srcs = ['main.py'], prefix = '../../x')\n"));
}

#[test]
fn layer_prefix_climbing_above_root() {
    insta::assert_snapshot!(refused("oci_layer(name = 'layer', srcs = ['main.py'], prefix = '/opt/../../x')\n"));
}

#[test]
fn strip_prefix_climbing_out_of_the_workspace() {
    insta::assert_snapshot!(refused("files(name = 'srcs', srcs = ['main.py'], strip_prefix = '../../x')\n"));
}

#[test]
fn files_destination_climbing_above_root() {
    insta::assert_snapshot!(refused("oci_layer(name = 'layer', files = {'../../x': 'main.py'})\n"));
}

#[test]
fn contents_destination_climbing_above_root() {
    insta::assert_snapshot!(refused("oci_layer(name = 'layer', contents = {'/etc/../../x': 'hi'})\n"));
}

#[test]
fn symlinks_destination_climbing_above_root() {
    insta::assert_snapshot!(refused("oci_layer(name = 'layer', symlinks = {'../x': '/etc/passwd'})\n"));
}

#[test]
fn directories_climbing_above_root() {
    insta::assert_snapshot!(refused("oci_layer(name = 'layer', directories = ['../../x'])\n"));
}

/// `berth-out/app` replaced by a symlink to a directory outside the
/// workspace: the build refuses to write through it, and the directory
/// stays empty.
#[test]
fn a_symlink_below_berth_out_is_not_followed() {
    let workspace = workspace("oci_layer(name = 'layer', srcs = ['main.py'])\n");
    workspace.berth(&["--console", "none", "build", "//app:layer"]).success();
    assert!(workspace.path("berth-out/app/layer").is_dir());
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(workspace.path("berth-out/app")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.path("berth-out/app")).unwrap();

    let output = workspace.berth(&["--console", "none", "build", "//app:layer"]);
    output.failure(1);
    assert!(output.stderr.contains("is a symlink; berth does not write outputs through it"), "{}", output.stderr);
    let written: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(written.is_empty(), "berth wrote through the symlink: {written:?}");

    std::fs::remove_file(workspace.path("berth-out/app")).unwrap();
    workspace.berth(&["--console", "none", "build", "//app:layer"]).success();
    assert!(workspace.path("berth-out/app/layer").is_dir());
}
