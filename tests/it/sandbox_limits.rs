//! Limits from `limits(...)` in `WORKSPACE.star`: all running containers
//! of one berth share one memory and pids budget (a parent cgroup), a fork
//! bomb hits the pids limit, a memory hog the memory limit, and a step's
//! captured outputs are capped.

use std::process::Stdio;

use crate::util::need::skip;
use crate::util::runc::{serial, wait_for_sleeper, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

fn workspace(limits: &str, steps: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.file("WORKSPACE.star", &format!("limits({limits})\n"));
    workspace.bytes("app/busybox", &std::fs::read(BUSYBOX).unwrap());
    workspace.file(
        "app/BUILD.star",
        &format!(
            r#"
oci_layer(
    name = "busybox_layer",
    files = {{"/bin/busybox": "busybox"}},
    symlinks = {{"/bin/" + applet: "busybox" for applet in ["sh", "mkdir", "sleep", "dd", "head", "cat"]}},
    directories = ["/tmp"],
    mode = "0755",
)

oci_image_build(name = "shell", layers = [":busybox_layer"], entrypoint = ["/bin/sh", "-c"])
{steps}
"#
        ),
    );
    workspace
}

#[test]
fn a_fork_bomb_hits_the_pids_limit() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace(
        "pids = 32",
        r#"
oci_build_layer(
    name = "bomb",
    base = ":shell",
    command = ["i=0; while [ $i -lt 100 ]; do sleep 2 & i=$((i+1)); done; exit 9"],
    outputs = ["/tmp"],
)
"#,
    );
    let output = workspace.berth(&["--console", "none", "build", "//app:bomb"]);
    output.failure(1);
    // The shell could not fork past 32 processes and gave up before its
    // own `exit 9`.
    assert!(output.stderr.contains("can't fork"), "{}", output.stderr);
    assert!(!output.stderr.contains("exit code 9"), "{}", output.stderr);
}

#[test]
fn a_memory_hog_hits_the_memory_limit() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace(
        "memory_bytes = 64 * 1024 * 1024",
        r#"
oci_build_layer(
    name = "hog",
    base = ":shell",
    command = ["dd if=/dev/zero of=/dev/null bs=256M count=1"],
    outputs = ["/tmp"],
)
"#,
    );
    let output = workspace.berth(&["--console", "none", "build", "//app:hog"]);
    output.failure(1);
    // Killed by the OOM killer (137), or dd's allocation refused.
    assert!(output.stderr.contains("exit code 137") || output.stderr.contains("memory"), "{}", output.stderr);
}

#[test]
fn captured_outputs_are_capped() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace(
        "output_bytes = 1000",
        r#"
oci_build_layer(
    name = "big",
    base = ":shell",
    command = ["mkdir -p /out", "head -c 2000 /dev/zero > /out/f"],
    outputs = ["/out"],
)
"#,
    );
    let output = workspace.berth(&["--console", "none", "build", "//app:big"]);
    output.failure(1);
    assert!(output.stderr.contains("//app:big"), "{}", output.stderr);
    assert!(output.stderr.contains("2000 bytes of files, more than the 1000 a step may capture"), "{}", output.stderr);
    assert!(output.stderr.contains("limits(output_bytes"), "{}", output.stderr);
}

/// `(pids.max, memory limit)` of cgroup `path` (from `/proc/PID/cgroup`).
fn cgroup_limits(path: &str) -> (String, String) {
    let read = |file: &str| std::fs::read_to_string(file).map(|text| text.trim().to_owned()).unwrap_or_default();
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (read(&format!("/sys/fs/cgroup{path}/pids.max")), read(&format!("/sys/fs/cgroup{path}/memory.max")))
    } else {
        (
            read(&format!("/sys/fs/cgroup/pids{path}/pids.max")),
            read(&format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")),
        )
    }
}

#[test]
fn containers_share_one_budget_under_a_parent_cgroup() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace("memory_bytes = 256 * 1024 * 1024, pids = 100", "");
    let marker = "2919";
    let child = workspace
        .command(&["--console", "none", "run", "//app:shell", "--", &format!("sleep {marker}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = wait_for_sleeper(marker);
    let cgroups = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap();
    let parent = format!("/berth-{}.", child.id());
    let path = cgroups
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find(|path| path.starts_with(&parent))
        .unwrap_or_else(|| panic!("the container is not below {parent}:\n{cgroups}"))
        .to_owned();
    let parent_path = path.rsplit_once('/').unwrap().0.to_owned();
    let limits = cgroup_limits(&parent_path);
    // SAFETY: kill has no memory preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(143));
    assert_eq!(limits, ("100".to_owned(), (256u64 << 20).to_string()));
    let gone = !std::path::Path::new("/sys/fs/cgroup/pids").join(&parent_path[1..]).exists()
        && !std::path::Path::new("/sys/fs/cgroup").join(&parent_path[1..]).exists();
    assert!(gone, "the parent cgroup {parent_path} was removed");
}

#[test]
fn a_disk_fill_hits_the_upper_directory_cap() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = workspace(
        "upper_bytes = 1024 * 1024",
        r#"
oci_build_layer(
    name = "fill",
    base = ":shell",
    command = ["dd if=/dev/zero of=/tmp/fill bs=64k count=64"],
    outputs = ["/tmp"],
)

oci_build_layer(
    name = "small",
    base = ":shell",
    command = ["dd if=/dev/zero of=/tmp/small bs=64k count=4"],
    outputs = ["/tmp"],
)
"#,
    );
    let output = workspace.berth(&["--console", "none", "build", "//app:fill"]);
    output.failure(1);
    assert!(output.stderr.contains("//app:fill"), "{}", output.stderr);
    assert!(output.stderr.contains("The step wrote its limit of 1048576 bytes and failed"), "{}", output.stderr);
    assert!(output.stderr.contains("limits(upper_bytes"), "{}", output.stderr);
    // Under the cap, a step writes as usual.
    workspace.berth(&["--console", "none", "build", "//app:small"]).success();
}
