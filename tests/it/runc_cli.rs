//! `oci_build_layer` and `berth run` through the real binary, on a busybox
//! image declared with `oci_layer` in a temp workspace.

use crate::util::need::skip;
use crate::util::runc::{serial, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

fn workspace() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &std::fs::read(BUSYBOX).unwrap());
    workspace.file(
        "app/BUILD.star",
        r#"
oci_layer(
    name = "busybox_layer",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/" + applet: "busybox" for applet in ["sh", "echo", "cat", "mkdir", "sleep"]},
    mode = "0755",
)

oci_image_build(
    name = "shell",
    layers = [":busybox_layer"],
    entrypoint = ["/bin/sh", "-c"],
    cmd = ["exit 7"],
)

oci_build_layer(
    name = "built",
    base = ":shell",
    command = ["mkdir -p /out", "echo built by a step > /out/x"],
    outputs = ["/out"],
)

oci_build_layer(
    name = "fails",
    base = ":shell",
    command = ["echo 'the compiler says no' >&2", "exit 3", "echo unreachable"],
    outputs = ["/out"],
)

oci_build_layer(
    name = "slow",
    base = ":shell",
    command = ["sleep 60"],
    outputs = ["/out"],
    timeout = 1,
)

oci_image_build(
    name = "app",
    base = ":shell",
    layers = [":built"],
    entrypoint = ["/bin/cat", "/out/x"],
    cmd = [],
)
"#,
    );
    workspace
}

fn berth_containers() -> Vec<String> {
    let output = std::process::Command::new("runc").args(["list", "--quiet"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter(|id| id.starts_with("berth-")).map(str::to_owned).collect()
}

#[test]
fn run_passes_the_exit_code_through() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace();
    workspace.berth(&["--console", "none", "run", "//app:shell"]).failure(7);
    workspace.berth(&["--console", "none", "run", "//app:shell", "--", "exit 9"]).failure(9);
    let output = workspace.berth(&["--console", "none", "run", "//app:app"]);
    assert_eq!(output.success().stdout, "built by a step\n");
}

#[test]
fn failing_step_shows_stderr_and_exit_code_and_is_not_cached() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace();
    for _ in 0..2 {
        let output = workspace.berth(&["--console", "plain", "build", "//app:fails"]);
        output.failure(1);
        assert!(output.stderr.contains("the compiler says no"), "{}", output.stderr);
        assert!(output.stderr.contains("exit code 3"), "{}", output.stderr);
        assert!(!output.stderr.contains("unreachable\n"), "{}", output.stderr);
    }
    assert!(!workspace.path("berth-out/app/fails").exists());
}

#[test]
fn step_past_its_timeout_is_killed_and_leaves_no_container() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace();
    let started = std::time::Instant::now();
    let output = workspace.berth(&["--console", "plain", "build", "//app:slow"]);
    output.failure(1);
    assert!(output.stderr.contains("timed out after 1s"), "{}", output.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(berth_containers(), Vec::<String>::new());
}

#[test]
fn containers_get_transparent_huge_pages_back() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace();
    // berth turns them off for itself (main.rs); what a step or `run`
    // starts must not inherit that.
    let output = workspace.berth(&["--console", "none", "run", "//app:shell", "--", "cat /proc/self/status"]);
    let status = &output.success().stdout;
    assert!(status.lines().any(|line| line == "THP_enabled:\t1"), "{status}");
}
