//! `berth query` against real workspaces: patterns, `deps`, `rdeps`, the
//! three output formats (golden), and user macros.

use crate::util::workspace::TestWorkspace;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A small monorepo: a shared macro, two services, a base image with variants.
fn monorepo() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace
        .file("WORKSPACE.star", "workspace(name = \"demo\")\nsource_date_epoch(0)\n")
        .file(
            "tools/defs.star",
            r#"
def service(name, srcs, port = 8080, base = "//base:python#slim"):
    """A service: its files as a package, and an image running them."""
    files(name = name + "_files", srcs = srcs)
    oci_image_build(
        name = name,
        base = base,
        packages = [":" + name + "_files"],
        exposed_ports = [f"{port}/tcp"],
    )
"#,
        )
        .file("tools/BUILD.star", "")
        .file(
            "base/BUILD.star",
            &format!("oci_pull_images(\n    name = \"python\",\n    repository = \"library/python\",\n    variants = {{\"slim\": \"{DIGEST}\", \"full\": \"{DIGEST}\"}},\n)\n"),
        )
        .file(
            "services/api/BUILD.star",
            "load(\"//tools:defs.star\", \"service\")\n\nservice(name = \"api\", srcs = glob([\"*.py\"]), port = 8000)\n",
        )
        .file("services/api/main.py", "print('api')\n")
        .file("services/api/util.py", "\n")
        .file(
            "services/web/BUILD.star",
            "load(\"//tools:defs.star\", \"service\")\n\nservice(name = \"web\", srcs = [\"index.html\"])\n\noci_image_index(name = \"all\", images = [\":web\", \"//services/api\"])\n",
        )
        .file("services/web/index.html", "<p>hi</p>\n");
    workspace
}

fn query(workspace: &TestWorkspace, args: &[&str]) -> String {
    let mut full = vec!["query"];
    full.extend_from_slice(args);
    let output = workspace.berth(&full);
    output.success();
    output.stdout
}

#[test]
fn a_user_macro_declares_two_targets_and_query_lists_both() {
    let workspace = TestWorkspace::new();
    workspace
        .file("tools/defs.star", "def service(name, srcs):\n    files(name = name + \"_files\", srcs = srcs)\n    oci_image_build(name = name, packages = [\":\" + name + \"_files\"])\n")
        .file("app/BUILD.star", "load(\"//tools:defs.star\", \"service\")\n\nservice(name = \"api\", srcs = [\"main.py\"])\n")
        .file("app/main.py", "");
    assert_eq!(query(&workspace, &["//..."]), "//app:api\n//app:api_files\n");
}

#[test]
fn all_targets_as_labels() {
    insta::assert_snapshot!(query(&monorepo(), &["//..."]));
}

#[test]
fn default_expression_is_everything() {
    let workspace = monorepo();
    assert_eq!(query(&workspace, &[]), query(&workspace, &["//..."]));
}

#[test]
fn patterns_select_packages() {
    let workspace = monorepo();
    assert_eq!(query(&workspace, &["//services/..."]), "//services/api:api\n//services/api:api_files\n//services/web:all\n//services/web:web\n//services/web:web_files\n");
    assert_eq!(query(&workspace, &["//services/api:all"]), "//services/api:api\n//services/api:api_files\n");
    // A target named `all` wins over the wildcard, as in Bazel.
    assert_eq!(query(&workspace, &["//services/web:all"]), "//services/web:all\n");
    assert_eq!(query(&workspace, &["//services/api"]), "//services/api:api\n");
    assert_eq!(query(&workspace, &["//base:python#slim"]), "//base:python#slim\n");
}

#[test]
fn deps_as_labels_include_source_files() {
    insta::assert_snapshot!(query(&monorepo(), &["deps(//services/api:api)"]));
}

#[test]
fn deps_as_json() {
    insta::assert_snapshot!(query(&monorepo(), &["deps(//services/api:api)", "--output", "json"]));
}

#[test]
fn rdeps_as_dot() {
    insta::assert_snapshot!(query(&monorepo(), &["rdeps(//..., //base:python#slim)", "--output", "dot"]));
}

#[test]
fn rdeps_of_a_source_file() {
    assert_eq!(
        query(&monorepo(), &["rdeps(//services/..., //services/web:index.html)"]),
        "//services/web:all\n//services/web:index.html\n//services/web:web\n//services/web:web_files\n"
    );
}

#[test]
fn implicit_empty_base_appears_only_when_reached() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD.star", "oci_image_build(name = \"img\")\n");
    assert_eq!(query(&workspace, &["//..."]), "//app:img\n");
    assert_eq!(query(&workspace, &["deps(//app:img)"]), "//:empty\n//app:img\n");
    assert!(query(&workspace, &["//:empty", "--output", "json"]).contains("\"kind\": \"oci_image_empty\""));
}

#[test]
fn only_reachable_packages_are_loaded() {
    let workspace = monorepo();
    workspace.file("broken/BUILD.star", "this is not starlark\n");
    // `//services/...` reaches `//base` (a dependency) but never `//broken`.
    query(&workspace, &["//services/..."]);
    assert_eq!(workspace.berth(&["query", "//..."]).code, 1);
}

#[test]
fn runs_from_a_subdirectory() {
    let workspace = monorepo();
    let output = workspace.berth_in("services/web", &["query", "//services/web:all"]);
    assert_eq!(output.success().stdout, "//services/web:all\n");
    let output = workspace.berth_in("services", &["query", "deps(api:api_files)"]);
    assert_eq!(output.success().stdout, "//services/api:api_files\n//services/api:main.py\n//services/api:util.py\n");
    let output = workspace.berth_in("services/web", &["query", "..."]);
    assert_eq!(output.success().stdout, "//services/web:all\n//services/web:web\n//services/web:web_files\n");
}

#[test]
fn outputs_and_hidden_dirs_are_not_packages() {
    let workspace = TestWorkspace::new();
    workspace
        .file("app/BUILD.star", "oci_layer(name = \"layer\")\n")
        .file("berth-out/app/BUILD.star", "oci_layer(name = \"stale\")\n")
        .file(".git/BUILD.star", "oci_layer(name = \"hidden\")\n")
        .file("target/BUILD", "oci_layer(name = \"cargo\")\n")
        .file("legacy/BUILD", "oci_layer(name = \"old\")\n");
    assert_eq!(query(&workspace, &["//..."]), "//app:layer\n//legacy:old\n");
}

#[test]
fn a_loaded_file_is_evaluated_once_for_all_packages() {
    let workspace = TestWorkspace::new();
    workspace
        .file("tools/defs.star", "print(\"evaluating defs.star\")\n\ndef layer(name):\n    oci_layer(name = name)\n");
    for package in ["a", "b", "c", "d"] {
        workspace
            .file(&format!("{package}/BUILD.star"), "load(\"//tools:defs.star\", \"layer\")\nlayer(name = \"l\")\n");
    }
    let output = workspace.berth(&["query", "//..."]);
    assert_eq!(output.success().stdout, "//a:l\n//b:l\n//c:l\n//d:l\n");
    assert_eq!(output.stderr.matches("evaluating defs.star").count(), 1, "{}", output.stderr);
}

/// Runs `berth ARGS` in `workspace` with stdout a pipe whose reader is
/// already gone, as in `berth query //... | head -1` once `head` has exited.
fn berth_into_closed_pipe(workspace: &TestWorkspace, args: &[&str]) -> std::process::Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // Close-on-exec, so that no other test's child holds the reader open.
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are open and owned by nothing else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(workspace.root())
        .env("BERTH_CACHE_DIR", workspace.path(".cache"))
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let workspace = monorepo();
    workspace.file("app/BUILD.star", "oci_layer(name = \"layer\", contents = {\"/hello\": \"hi\"})\n");
    for args in [&["query", "//..."][..], &["build", "//app:layer"], &["cache", "stats"]] {
        let output = berth_into_closed_pipe(&workspace, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("error") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The build ran to the end: its outputs are written.
    assert!(workspace.path("berth-out/app/layer").exists());
}
