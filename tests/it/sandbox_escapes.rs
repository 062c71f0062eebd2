//! An escape suite run from inside a step: a static probe
//! (`tests/it/data/escape_probe.c`, built with `cc -static`) makes each
//! attempt and prints its errno; every attempt must fail, the syscalls the
//! seccomp allowlist leaves out with `EPERM`.

use std::io::Read;
use std::path::Path;

use crate::util::need::skip;
use crate::util::runc::{serial, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

const EPERM: &str = "errno:1";

/// Attempts refused by seccomp, capabilities or the devices cgroup, with
/// `EPERM`.
const REFUSED: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "mount",
    "mount_cgroup",
    "unshare_user",
    "unshare_mount",
    "clone_newuser",
    "setns",
    "chroot_escape_setns_pid1",
    "ptrace",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "reboot",
    "clock_settime",
    "settimeofday",
    "sethostname",
    "swapon",
    "perf_event_open",
    "open_by_handle_at",
    "userfaultfd",
    "pivot_root",
    "personality",
    "raw_socket",
    "vsock",
];

/// Attempts refused otherwise, where any error will do: a block device made
/// with `mknod` cannot be opened (the upper directory is `nodev`, and the
/// devices cgroup allows nothing), and read-only or masked paths (`EROFS`,
/// `EACCES`, `ENOENT` where the kernel lacks the file; `/proc/kcore` reads
/// as empty, reported as `ENODATA`).
const READ_ONLY: &[&str] = &["device_node", "sysrq_trigger", "proc_sys", "sysfs_write", "kcore"];

fn build_probe(dir: &Path) -> Vec<u8> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/escape_probe.c");
    let binary = dir.join("escape_probe");
    let status = std::process::Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc -static failed to build the escape probe");
    std::fs::read(binary).unwrap()
}

fn read_output(layer: &Path, path: &str) -> String {
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(layer).unwrap()).read_to_end(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("`{path}` is not in the layer");
}

#[test]
fn escapes_from_a_step_fail() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &std::fs::read(BUSYBOX).unwrap());
    workspace.bytes("app/probe", &build_probe(workspace.root()));
    let attempts: Vec<&str> = ["fork"].iter().chain(REFUSED).chain(READ_ONLY).copied().collect();
    workspace.file(
        "app/BUILD.star",
        &format!(
            r#"
oci_layer(
    name = "base_layer",
    files = {{"/bin/busybox": "busybox", "/bin/probe": "probe"}},
    symlinks = {{"/bin/sh": "busybox", "/bin/mkdir": "busybox"}},
    directories = ["/tmp"],
    mode = "0755",
)

oci_image_build(name = "base", layers = [":base_layer"])

oci_build_layer(
    name = "escapes",
    base = ":base",
    command = ["mkdir -p /out", "/bin/probe {} > /out/result"],
    outputs = ["/out"],
)
"#,
            attempts.join(" ")
        ),
    );
    workspace.berth(&["--console", "none", "build", "//app:escapes"]).success();
    let result = read_output(&workspace.path("berth-out/app/escapes/layer.tar.gz"), "out/result");
    let outcome = |name: &str| {
        result
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no result for {name}:\n{result}"))
            .to_owned()
    };
    assert_eq!(outcome("fork"), "ok", "the probe itself works");
    let mut escaped = Vec::new();
    for name in REFUSED {
        if outcome(name) != EPERM {
            escaped.push(format!("{name}={}", outcome(name)));
        }
    }
    for name in READ_ONLY {
        if !outcome(name).starts_with("errno:") {
            escaped.push(format!("{name}={}", outcome(name)));
        }
    }
    assert!(escaped.is_empty(), "attempts that were not refused as expected: {escaped:?}\n{result}");
    assert!(REFUSED.len() + READ_ONLY.len() >= 25);
}
