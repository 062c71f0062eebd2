//! The examples tour, end to end: every example builds to the digests in
//! `examples/expected.digests` (those without a build step also without root
//! or runc), the runnable ones print what they should under `berth run`, and
//! tools nobody here wrote accept the images.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::util::need::{have, skip, Need};
use crate::util::workspace::{project_copy, TestWorkspace};

/// Builds every example in a fresh copy of the project workspace.
fn built_examples() -> Option<TestWorkspace> {
    if skip(&[Need::Debs, Need::Root, Need::Runc, Need::Subids]) {
        return None;
    }
    let workspace = project_copy();
    let build = workspace.berth(&["--console", "plain", "build", "//examples/..."]);
    build.success();
    let expected = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/expected.digests"))
        .expect("read examples/expected.digests");
    assert_eq!(
        build.stdout, expected,
        "the examples' digests changed; if on purpose, update examples/expected.digests"
    );
    Some(workspace)
}

/// The examples that run no container step (no `oci_build_layer` among
/// their dependencies) build, without root or runc, to the digests pinned
/// in `examples/expected.digests`: the digests are checked on every machine,
/// not only where the container tier runs.
#[test]
fn examples_without_build_steps_build_to_the_pinned_digests_without_root() {
    if skip(&[Need::Debs]) {
        return;
    }
    let workspace = project_copy();
    let query = workspace.berth(&["query", "deps(//examples/...)", "--output", "json"]);
    query.success();
    let targets: Vec<serde_json::Value> = serde_json::from_str(&query.stdout).unwrap();
    let kinds: BTreeMap<&str, &str> =
        targets.iter().map(|t| (t["label"].as_str().unwrap(), t["kind"].as_str().unwrap())).collect();
    let deps: BTreeMap<&str, Vec<&str>> = targets
        .iter()
        .map(|t| {
            (t["label"].as_str().unwrap(), t["deps"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect())
        })
        .collect();
    let runs_a_container = |label: &str| {
        let mut stack = vec![label];
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if kinds.get(next) == Some(&"oci_build_layer") {
                return true;
            }
            if seen.insert(next) {
                stack.extend(deps.get(next).into_iter().flatten());
            }
        }
        false
    };
    let expected = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/expected.digests"))
        .expect("read examples/expected.digests");
    let (pinned, with_steps): (Vec<&str>, Vec<&str>) = expected
        .lines()
        .partition(|line| !runs_a_container(line.split(' ').next().expect("a label, a space, a digest")));
    assert!(!with_steps.is_empty() && pinned.len() > with_steps.len(), "pinned {pinned:?}, with steps {with_steps:?}");
    let mut command = vec!["--console", "none", "build"];
    command.extend(pinned.iter().map(|line| line.split(' ').next().unwrap()));
    let build = workspace.berth(&command);
    build.success();
    assert_eq!(
        build.stdout.lines().collect::<Vec<_>>(),
        pinned,
        "the examples' digests changed; if on purpose, update examples/expected.digests"
    );
}

#[test]
fn every_runnable_example_prints_its_output() {
    let _serial = crate::util::runc::serial();
    let Some(workspace) = built_examples() else { return };
    let cases: &[(&[&str], &str)] = &[
        (&["//examples/hello"], "Hello from berth!\n"),
        (&["//examples/layered_app"], "mode=production port=8080\nLayers: base, app code, static files, config.\n"),
        (&["//examples/build_step"], "      3 berth\n      2 bazel\n      1 buck2\n"),
        (&["//examples/python_app"], "Hello, berth, from Python 3.11\n"),
        (&["//examples/python_app", "--", "Bazel"], "Hello, Bazel, from Python 3.11\n"),
        (&["//examples/services/api"], "Hello from api api 1.0\n"),
        (&["//examples/services/worker"], "Working from worker worker 1.0\n"),
    ];
    for (args, expected) in cases {
        let mut command = vec!["-q", "run"];
        command.extend_from_slice(args);
        let run = workspace.berth(&command);
        assert_eq!((run.code, run.stdout.as_str()), (0, *expected), "berth run {args:?}: {}", run.stderr);
    }
    // The exit code of the container is berth's.
    let exit = workspace.berth(&["-q", "run", "//third_party/debs:busybox_base", "--", "sh", "-c", "exit 7"]);
    assert_eq!(exit.code, 7, "{}", exit.stderr);
}

#[test]
fn real_tools_accept_the_example_images() {
    let _serial = crate::util::runc::serial();
    if skip(&[Need::OciImageTool, Need::Skopeo, Need::Umoci]) {
        return;
    }
    let Some(workspace) = built_examples() else { return };
    for (package, name) in [
        ("hello", "hello"),
        ("layered_app", "layered_app"),
        ("build_step", "build_step"),
        ("python_app", "python_app"),
        ("multiarch", "multiarch"),
        ("services/api", "api_index"),
    ] {
        let layout = workspace.path(&format!("berth-out/examples/{package}/{name}"));
        let layout = layout.to_str().unwrap();
        tool(&["oci-image-tool", "validate", "--type", "image", layout]);
        let raw = tool(&["skopeo", "inspect", "--raw", &format!("oci:{layout}")]);
        assert!(raw.contains("schemaVersion"), "{raw}");
    }
    let copy = workspace.path("copied");
    let hello = workspace.path("berth-out/examples/hello/hello");
    tool(&["skopeo", "copy", &format!("oci:{}:latest", hello.display()), &format!("oci:{}:latest", copy.display())]);
    let index = std::fs::read_to_string(copy.join("index.json")).unwrap();
    assert!(index.contains("latest"), "{index}");

    // umoci unpacks the layout into a runtime bundle, and runc runs it.
    let bundle = workspace.path("bundle");
    tool(&["umoci", "unpack", "--image", &format!("{}:latest", hello.display()), bundle.to_str().unwrap()]);
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let id = format!("berth-umoci-{}", std::process::id());
    let output = Command::new("runc").args(["run", "-b", bundle.to_str().unwrap(), &id]).output().unwrap();
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello from berth!\n");
}

#[test]
fn docker_and_podman_load_the_exported_archive() {
    let _serial = crate::util::runc::serial();
    let Some(workspace) = built_examples() else { return };
    let archive = workspace.path("hello.tar");
    workspace
        .berth(&["export", "//examples/hello", "--format", "docker-archive", "-o", archive.to_str().unwrap()])
        .success();
    let oci_archive = workspace.path("hello-oci.tar");
    workspace
        .berth(&["export", "//examples/hello", "--format", "oci-archive", "-o", oci_archive.to_str().unwrap()])
        .success();
    if have(Need::Skopeo) {
        tool(&["skopeo", "inspect", &format!("oci-archive:{}", oci_archive.display())]);
    }

    if have(Need::Docker) {
        tool(&["docker", "load", "-i", archive.to_str().unwrap()]);
        let run = tool(&["docker", "run", "--rm", "berth/examples/hello:latest"]);
        assert_eq!(run, "Hello from berth!\n");
        let _ = Command::new("docker").args(["rmi", "berth/examples/hello:latest"]).output();
    }
    if have(Need::Podman) {
        let loaded = tool(&["podman", "load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains("berth/examples/hello"), "{loaded}");
        let _ = Command::new("podman").args(["rmi", "berth/examples/hello:latest"]).output();
    }
}

/// Runs a tool that must succeed and returns its stdout.
fn tool(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|error| panic!("{}: {error}", args[0]));
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
