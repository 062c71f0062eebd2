//! Every loading mistake ends in a clear message (file:line:col or label,
//! a `hint:` where there is something to do) and exit code 1. Golden
//! snapshots of stderr keep the messages stable.

use crate::util::workspace::TestWorkspace;

/// Runs `berth query ARGS` in a workspace of `files`, checks it fails with
/// exit code 1, and returns stderr.
fn fails(files: &[(&str, &str)], args: &[&str]) -> String {
    let workspace = TestWorkspace::new();
    for (path, text) in files {
        workspace.file(path, text);
    }
    let output = workspace.berth(args);
    output.failure(1);
    assert!(output.stdout.is_empty(), "stdout carries data only: {}", output.stdout);
    let stderr = workspace.redact(&output.stderr);
    assert!(!stderr.contains("/tmp"), "no temp paths in messages: {stderr}");
    stderr
}

fn query_fails(files: &[(&str, &str)]) -> String {
    fails(files, &["query", "//..."])
}

#[test]
fn unknown_attribute_suggests_the_closest() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "files(\n    name = \"srcs\",\n    srcz = [\"a.txt\"],\n)\n"
    )]));
}

#[test]
fn unknown_attribute_without_a_close_match_lists_the_attributes() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "files(name = \"srcs\", srcs = [], entrypoint = [])\n")]));
}

#[test]
fn missing_required_attribute() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_build_layer(name = \"build\", base = \"//:empty\")\n"
    )]));
}

#[test]
fn missing_name() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "oci_layer(srcs = [])\n")]));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "oci_image_build(name = \"img\", cmd = \"serve\")\n")]));
}

#[test]
fn bad_mode_string() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "oci_layer(name = \"layer\", mode = \"rwxr-xr-x\")\n")]));
}

#[test]
fn bad_compression_choice() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_image_build(name = \"img\", compression = \"xz\")\n"
    )]));
}

#[test]
fn duplicate_target_name() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_layer(name = \"layer\")\n\noci_layer(name = \"layer\", uid = 1)\n"
    )]));
}

#[test]
fn duplicate_target_name_from_a_macro() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "def pair(name):\n    oci_layer(name = name)\n    oci_layer(name = name)\n"),
        ("app/BUILD.star", "load(\"//tools:defs.star\", \"pair\")\n\npair(name = \"twice\")\n"),
    ]));
}

#[test]
fn unknown_label_suggests_a_target_of_the_package() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_layer(name = \"layer\")\n\noci_image_build(\n    name = \"img\",\n    layers = [\":lyer\"],\n)\n"
    )]));
}

#[test]
fn unknown_label_in_another_package() {
    insta::assert_snapshot!(query_fails(&[
        ("lib/BUILD.star", "oci_image_build(name = \"base\")\n"),
        ("app/BUILD.star", "oci_image_build(name = \"img\", base = \"//lib:bsae\")\n"),
    ]));
}

#[test]
fn unknown_package() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_image_build(name = \"img\", base = \"//nope:base\")\n"
    )]));
}

#[test]
fn file_of_a_subdirectory_named_as_a_package() {
    insta::assert_snapshot!(query_fails(&[
        ("app/BUILD.star", "files(name = \"data\", srcs = [\"//app/data:f.txt\"])\n"),
        ("app/data/f.txt", "x"),
    ]));
}

#[test]
fn source_file_inside_a_subpackage() {
    insta::assert_snapshot!(query_fails(&[
        ("app/BUILD.star", "files(name = \"data\", srcs = [\"sub/f.txt\"])\n"),
        ("app/sub/BUILD.star", ""),
        ("app/sub/f.txt", "x"),
    ]));
}

#[test]
fn dependency_cycle_across_packages() {
    insta::assert_snapshot!(query_fails(&[
        ("a/BUILD.star", "oci_image_build(name = \"x\", base = \"//b:y\")\n"),
        ("b/BUILD.star", "oci_image_build(name = \"y\", base = \"//a:x\")\n"),
    ]));
}

#[test]
fn load_of_a_missing_file() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "def service(name):\n    pass\n"),
        ("app/BUILD.star", "load(\"//tools:def.star\", \"service\")\n"),
    ]));
}

#[test]
fn load_of_a_missing_symbol() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "def service(name):\n    pass\n"),
        ("app/BUILD.star", "load(\"//tools:defs.star\", \"servce\")\n"),
    ]));
}

#[test]
fn load_of_a_missing_library_file() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "load(\"@berth//rules:python.star\", \"py_image\")\n")]));
}

#[test]
fn load_cycle() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/a.star", "load(\":b.star\", \"b\")\na = 1\n"),
        ("tools/b.star", "load(\":a.star\", \"a\")\nb = 1\n"),
        ("app/BUILD.star", "load(\"//tools:a.star\", \"a\")\n"),
    ]));
}

#[test]
fn syntax_error_keeps_the_starlark_snippet() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "files(\n    name = \"srcs\",\n    srcs = [\"a\",\n)\n"
    )]));
}

#[test]
fn error_in_a_loaded_file() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "def broken(name):\n    return name +\n"),
        ("app/BUILD.star", "load(\"//tools:defs.star\", \"broken\")\n"),
    ]));
}

#[test]
fn fail_in_a_macro_shows_the_traceback() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "def service(name, port):\n    if port < 1024:\n        fail(\"service `{}` needs a port above 1023\".format(name))\n"),
        ("app/BUILD.star", "load(\"//tools:defs.star\", \"service\")\n\nservice(name = \"api\", port = 80)\n"),
    ]));
}

#[test]
fn glob_escaping_the_package() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "files(name = \"srcs\", srcs = glob([\"../secrets/*\"]))\n"
    )]));
}

#[test]
fn rules_at_the_top_level_of_a_star_file() {
    insta::assert_snapshot!(query_fails(&[
        ("tools/defs.star", "oci_layer(name = \"nope\")\n"),
        ("app/BUILD.star", "load(\"//tools:defs.star\", \"nothing\")\n"),
    ]));
}

#[test]
fn hash_is_reserved_for_generated_names() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_pull_image(name = \"py#slim\", repository = \"python\", digest = \"sha256:\" + \"a\" * 64)\n"
    )]));
}

#[test]
fn pull_without_a_digest() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "oci_pull_image(name = \"py\", repository = \"python\")\n"
    )]));
}

#[test]
fn infinite_recursion_is_stopped() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "def forever(n):\n    return forever(n + 1)\n\nforever(0)\n"
    )]));
}

#[test]
fn unbounded_loop_is_stopped() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "for i in range(1000000000):\n    pass\n")]));
}

#[test]
fn list_grown_in_a_loop_is_stopped() {
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "items = []\nfor i in range(1000000000):\n    items.append(i)\n"
    )]));
}

#[test]
fn huge_string_repetition_is_an_error() {
    // 2e9 fits Starlark's i32 repeat count (`1 << 40` would stop at the
    // conversion, before anything is allocated), so the string is really
    // allocated: in one go of 2e9 bytes, which berth's allocation cap refuses.
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "x = \"x\" * 2000000000\n")]));
}

#[test]
fn huge_single_allocation_exits_cleanly() {
    // 2**28 items of 8 bytes: one 2 GiB allocation, refused before it happens.
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "x = [0] * (1 << 28)\n")]));
}

#[test]
fn doubling_a_string_exits_cleanly() {
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", "s = \"x\"\nfor i in range(64):\n    s = s + s\n")]));
}

#[test]
fn bad_workspace_setting() {
    insta::assert_snapshot!(query_fails(&[("WORKSPACE.star", "registry(\"localhost:5000\", insecure = \"yes\")\n")]));
}

#[test]
fn no_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["query", "//..."])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&dir.path().display().to_string(), "[DIR]");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_target_in_a_pattern() {
    insta::assert_snapshot!(fails(
        &[("app/BUILD.star", "oci_image_build(name = \"image\")\n")],
        &["query", "//app:imgae"]
    ));
}

#[test]
fn pattern_under_a_missing_directory() {
    insta::assert_snapshot!(fails(&[("app/BUILD.star", "")], &["query", "//nope/..."]));
}

#[test]
fn malformed_query() {
    insta::assert_snapshot!(fails(&[("app/BUILD.star", "")], &["query", "deps(//app:x"]));
}

#[test]
fn many_large_lists_exit_cleanly() {
    // Each list is under the single-allocation cap; together they are not,
    // long before the heap limit's next check.
    let stderr =
        query_fails(&[("app/BUILD.star", "items = []\nfor i in range(100):\n    items.append([i] * 10000000)\n")]);
    assert!(stderr.starts_with("error: Evaluating `app/BUILD.star` "), "{stderr}");
    assert!(stderr.contains("GiB"), "{stderr}");
}

#[test]
fn deeply_nested_syntax_is_refused_before_parsing() {
    // Regression: 100,000 nested brackets overflowed the parser's stack and aborted berth.
    let text = format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    insta::assert_snapshot!(query_fails(&[("app/BUILD.star", &text)]));
}

#[test]
fn deeply_nested_values_in_a_dict_attribute_are_refused() {
    // Regression: coercing a 100,000-deep dict recursed until the stack overflowed.
    insta::assert_snapshot!(query_fails(&[(
        "app/BUILD.star",
        "x = {}\nfor i in range(100000):\n    x = {\"a\": x}\n\noci_image_build(name = \"img\", healthcheck = x)\n"
    )]));
}

#[test]
fn deeply_nested_values_in_a_loaded_file_freeze() {
    // Regression: freezing a deeply nested value of a `.star` file overflowed the main thread's stack.
    let workspace = TestWorkspace::new();
    workspace
        .file(
            "tools/deep.star",
            "def _deep():\n    x = []\n    for i in range(500000):\n        x = [x]\n    return x\n\ndeep = _deep()\n",
        )
        .file("app/BUILD.star", "load(\"//tools:deep.star\", \"deep\")\noci_layer(name = \"l\")\n");
    assert_eq!(workspace.berth(&["query", "//..."]).success().stdout, "//app:l\n");
}
