//! Containers with `runc`: an OCI runtime bundle (`config.json` + the root
//! filesystem from `exec::rootfs`), `runc run` with stdio attached or
//! captured, a timeout after which the container is killed, and a
//! `runc delete --force` that always runs, so no container outlives berth's
//! call.
//!
//! The configuration follows Docker's defaults where they exist: its
//! capability set, masked and read-only `/proc` paths, `noNewPrivileges`,
//! pids and memory limits, and a seccomp filter that refuses the syscalls
//! Docker's default profile refuses (kernel modules, mounts, namespaces,
//! keyrings, tracing, clocks, reboot, ...) with `EPERM`. The container gets
//! a network namespace of its own with only loopback unless `network` is
//! set, and no mount from the host.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::actions::{Outcome, Stdio};
use crate::error::{Diagnose, ErrorKind};
use crate::exec::lifecycle;
use crate::sys::{self, Signal};

/// Where runc keeps container state when run as root without `--root`.
const RUNC_STATE_ROOT: &str = "/run/runc";

/// Bytes of stdout and of stderr kept from a captured container (the tail is
/// what a failing step shows).
const CAPTURE_LIMIT: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("`runc` was not found on `PATH`")]
    NotOnPath,
    #[error("`runc` was not found at `{path}` (set by `runc(path)` in WORKSPACE.star)")]
    NotAt { path: PathBuf },
    #[error("Running containers needs root, and berth runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error("Cannot start `{runc}`: {source}")]
    Spawn { runc: PathBuf, source: io::Error },
    #[error("I/O error at `{path}` while preparing a container: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Diagnose for RuncError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Environment
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            RuncError::NotOnPath => "install the `runc` package, or set `runc(path)` in WORKSPACE.star",
            RuncError::NotAt { .. } => "install the `runc` package, or fix the path",
            RuncError::NotRoot { .. } => {
                "run berth as root (for example with sudo); rootless containers are not supported"
            }
            RuncError::Spawn { .. } | RuncError::Io { .. } => return None,
        };
        Some(hint.to_owned())
    }
}

/// The runc binary berth runs containers with.
#[derive(Debug, Clone)]
pub struct Runc {
    path: PathBuf,
}

/// Resource limits, applied through cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of processes and threads.
    pub pids: i64,
    /// Maximum memory in bytes; `None` for no limit.
    pub memory_bytes: Option<i64>,
}

impl Default for Limits {
    fn default() -> Self {
        // Three quarters of the machine's memory: enough for any build, and
        // the host keeps some when a step runs away.
        let memory = sys::total_memory()
            .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX) / 4 * 3)
            .filter(|&bytes| bytes > 0);
        Limits { pids: 4096, memory_bytes: memory }
    }
}

/// What to run, and in which root filesystem.
#[derive(Debug, Clone)]
pub struct Container {
    /// `argv` of the process (`args[0]` is looked up on the container's PATH).
    pub args: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// The stacked root filesystem (`RootFs::merged`).
    pub rootfs: PathBuf,
    /// Share the host's network namespace instead of a loopback-only one.
    pub network: bool,
    pub limits: Limits,
}

/// runc's own error when it could not start the process (captured stdio
/// only), as opposed to the process failing.
pub fn start_error(outcome: &Outcome) -> Option<String> {
    if outcome.exit_code == 0 || outcome.timed_out {
        return None;
    }
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    stderr.lines().find(|line| line.contains("level=error") && line.contains("runc run failed")).map(str::to_owned)
}

impl Runc {
    /// Finds runc (the `runc(path)` setting, else `PATH`) and checks that
    /// berth runs as root.
    pub fn locate(setting: Option<&Path>) -> Result<Runc, RuncError> {
        let path = match setting {
            Some(path) if is_executable(path) => path.to_path_buf(),
            Some(path) => return Err(RuncError::NotAt { path: path.to_path_buf() }),
            None => std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("runc")).find(|p| is_executable(p)))
                .ok_or(RuncError::NotOnPath)?,
        };
        let uid = sys::effective_uid();
        if uid != 0 {
            return Err(RuncError::NotRoot { uid });
        }
        Ok(Runc { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `container` from a bundle written under `bundle` (a fresh
    /// directory), waits at most `timeout`, and always deletes the container.
    pub fn run(
        &self,
        container: &Container,
        bundle: &Path,
        stdio: Stdio,
        timeout: Option<Duration>,
    ) -> Result<Outcome, RuncError> {
        std::fs::create_dir_all(bundle).map_err(|source| RuncError::Io { path: bundle.to_path_buf(), source })?;
        let config_path = bundle.join("config.json");
        let file = File::create(&config_path).map_err(|source| RuncError::Io { path: config_path.clone(), source })?;
        serde_json::to_writer_pretty(&file, &config(container))
            .map_err(|error| RuncError::Io { path: config_path.clone(), source: error.into() })?;
        drop(file);

        let id = container_id();
        let mut command = Command::new(&self.path);
        command.arg("run").arg("--bundle").arg(bundle).arg(&id);
        // berth turns transparent huge pages off for itself (main.rs), and
        // children inherit that: the container gets the machine's setting.
        // runc dies with the thread that started it (which waits for it), so
        // a killed berth leaves no runc behind; its container is deleted by
        // the signal handler or, after SIGKILL, by the next command's sweep
        // (`exec::lifecycle`).
        // SAFETY: the hook only calls prctl, which is async-signal-safe and
        // changes only the child.
        unsafe {
            command.pre_exec(|| {
                sys::restore_transparent_huge_pages();
                sys::kill_when_parent_dies();
                Ok(())
            });
        }
        match stdio {
            Stdio::Inherit => command
                .stdin(process::Stdio::inherit())
                .stdout(process::Stdio::inherit())
                .stderr(process::Stdio::inherit()),
            Stdio::Capture => {
                command.stdin(process::Stdio::null()).stdout(process::Stdio::piped()).stderr(process::Stdio::piped())
            }
        };
        // With stdio attached, Ctrl-C reaches runc too (same process group),
        // which forwards it to the container; berth's handler leaves SIGINT
        // to it and waits for the container to end so it can unmount and
        // delete behind it.
        let (_live, spawned) = lifecycle::start_container(&self.path, &id, stdio == Stdio::Inherit, || command.spawn());
        let mut child = spawned.map_err(|source| RuncError::Spawn { runc: self.path.clone(), source })?;
        let guard = DeleteOnDrop { runc: self, id: &id };
        let readers = [child.stdout.take().map(capture), child.stderr.take().map(capture)];
        let pid = child.id();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait());
        });
        let waited = match timeout {
            Some(timeout) => receiver.recv_timeout(timeout).ok(),
            None => receiver.recv().ok(),
        };
        let (status, timed_out) = match waited {
            Some(status) => (status, false),
            None => {
                self.kill(&id);
                let status = receiver.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
                    // runc itself is stuck: kill it; the delete below cleans up.
                    // The pid is our child, not yet reaped (the waiter holds it).
                    let _ = sys::kill(pid, Signal::Kill);
                    receiver.recv().unwrap_or_else(|_| Err(io::Error::other("the waiter thread died")))
                });
                (status, true)
            }
        };
        drop(guard);
        let status = status.map_err(|source| RuncError::Spawn { runc: self.path.clone(), source })?;
        let [stdout, stderr] = readers.map(|reader| reader.and_then(|reader| reader.join().ok()).unwrap_or_default());
        let exit_code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        };
        Ok(Outcome { exit_code, timed_out, stdout, stderr })
    }

    /// Ids of the containers runc knows about (`runc list`).
    pub fn list(&self) -> Result<Vec<String>, RuncError> {
        let output = Command::new(&self.path)
            .args(["list", "--quiet"])
            .output()
            .map_err(|source| RuncError::Spawn { runc: self.path.clone(), source })?;
        Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
    }

    fn kill(&self, id: &str) {
        let _ = Command::new(&self.path)
            .args(["kill", "--all", id, "KILL"])
            .stdin(process::Stdio::null())
            .stdout(process::Stdio::null())
            .stderr(process::Stdio::null())
            .status();
    }
}

/// `runc delete --force` when the container still exists, whatever happened.
struct DeleteOnDrop<'a> {
    runc: &'a Runc,
    id: &'a str,
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        // `runc run` deletes a container that exited by itself; only a killed
        // or failed one leaves state behind, so skip the extra process then.
        if Path::new(RUNC_STATE_ROOT).join(self.id).exists() {
            let _ = Command::new(&self.runc.path)
                .args(["delete", "--force", self.id])
                .stdin(process::Stdio::null())
                .stdout(process::Stdio::null())
                .stderr(process::Stdio::null())
                .status();
        }
    }
}

fn capture(mut reader: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    kept.extend_from_slice(&buffer[..read]);
                    if kept.len() > CAPTURE_LIMIT {
                        // Keep the tail: that is where errors are.
                        kept.drain(..kept.len() - CAPTURE_LIMIT);
                    }
                }
            }
        }
        kept
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// A container id nobody else uses: its owner (`exec::lifecycle::owner`,
/// which the sweep reads back), a counter and a random part.
fn container_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().build_hasher().finish();
    format!("berth-{}-{}-{:08x}", lifecycle::owner(), COUNTER.fetch_add(1, Ordering::Relaxed), random as u32)
}

/// Docker's default capability set.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Syscalls Docker's default seccomp profile does not allow to a container
/// without extra capabilities; refused with EPERM. Names the running
/// architecture lacks are skipped by runc.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "_sysctl",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

const CLONE_NEWUSER: u64 = 0x1000_0000;

fn seccomp() -> Value {
    let architectures: &[&str] = if cfg!(target_arch = "x86_64") {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        &[]
    };
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures,
        "syscalls": [
            {"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": sys::EPERM},
            // New user namespaces would hand the step back the capabilities
            // it was denied.
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": sys::EPERM,
             "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}]},
            // clone3's flags live in memory seccomp cannot read: ENOSYS makes
            // libc fall back to clone, which the rule above checks.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": sys::ENOSYS},
        ],
    })
}

fn cgroup_available(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(controller).is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|controllers| controllers.split_whitespace().any(|name| name == controller))
}

/// The OCI runtime configuration (`config.json`) of `container`.
pub fn config(container: &Container) -> Value {
    // Docker's 1048576, or what berth's own hard limit allows (runc cannot
    // raise it past the host's `fs.nr_open`).
    let open_files = sys::open_files_hard_limit().map_or(1024, |limit| limit.min(1_048_576));
    let mut namespaces =
        vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
    if !container.network {
        namespaces.push(json!({"type": "network"}));
    }
    if Path::new("/proc/self/ns/cgroup").exists() {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if cgroup_available("pids") {
        resources["pids"] = json!({"limit": container.limits.pids});
    }
    if let (true, Some(limit)) = (cgroup_available("memory"), container.limits.memory_bytes) {
        resources["memory"] = json!({"limit": limit});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": container.uid, "gid": container.gid},
            "args": container.args,
            "env": container.env,
            "cwd": container.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": open_files, "soft": open_files}],
            "noNewPrivileges": true,
        },
        "root": {"path": container.rootfs, "readonly": false},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "seccomp": seccomp(),
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(network: bool) -> Container {
        Container {
            args: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            rootfs: "/x".into(),
            network,
            limits: Limits { pids: 10, memory_bytes: Some(1 << 20) },
        }
    }

    #[test]
    fn network_namespace_unless_asked() {
        let has_netns =
            |config: &Value| config["linux"]["namespaces"].as_array().unwrap().iter().any(|ns| ns["type"] == "network");
        assert!(has_netns(&config(&container(false))));
        assert!(!has_netns(&config(&container(true))));
    }

    #[test]
    fn no_host_bind_mounts_and_no_new_privileges() {
        let config = config(&container(false));
        assert_eq!(config["process"]["noNewPrivileges"], true);
        for mount in config["mounts"].as_array().unwrap() {
            assert_ne!(mount["type"], "bind", "{mount}");
        }
        assert!(!config["process"]["capabilities"]["bounding"].as_array().unwrap().contains(&json!("CAP_SYS_ADMIN")));
    }
}
