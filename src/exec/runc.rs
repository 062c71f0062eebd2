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
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use crate::actions::{Outcome, Stdio};
use crate::error::{Diagnose, ErrorKind};
use crate::exec::{lifecycle, rootless, UserNamespace};
use crate::sys::{self, Signal};

/// Where runc keeps container state (`--root`): its default as root, and
/// below berth's private directory when rootless (`/run/runc` belongs to
/// the host's root).
pub(crate) fn state_root() -> PathBuf {
    match rootless::rootless() {
        Some(rootless) => rootless.private_dir().join("runc"),
        None => PathBuf::from("/run/runc"),
    }
}

/// A `runc` command with berth's state root.
pub(crate) fn runc_command(runc: &Path) -> Command {
    let mut command = Command::new(runc);
    command.arg("--root").arg(state_root());
    command
}

/// Bytes of stdout and of stderr kept from a captured container (the tail is
/// what a failing step shows).
const CAPTURE_LIMIT: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("`runc` was not found on `PATH`")]
    NotOnPath,
    #[error("`runc` was not found at `{path}` (set by `runc(path)` in WORKSPACE.star)")]
    NotAt { path: PathBuf },
    #[error("Running containers needs root or a user namespace, and berth runs as uid {uid}: {reason}")]
    NotRoot { uid: u32, reason: String },
    #[error("Cannot start `{runc}`: {source}")]
    Spawn { runc: PathBuf, source: io::Error },
    #[error("I/O error at `{path}` while preparing a container: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("The container's runtime configuration does not fit the OCI runtime spec: {reason}")]
    Config { reason: String },
}

impl Diagnose for RuncError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuncError::Config { .. } => ErrorKind::Internal,
            _ => ErrorKind::Environment,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            RuncError::NotOnPath => "install the `runc` package, or set `runc(path)` in WORKSPACE.star",
            RuncError::NotAt { .. } => "install the `runc` package, or fix the path",
            RuncError::NotRoot { .. } => {
                "run berth as root, or as a user where the kernel allows unprivileged user namespaces"
            }
            RuncError::Spawn { .. } | RuncError::Io { .. } | RuncError::Config { .. } => return None,
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
    /// The user namespace to run in (`None`: the host's ids).
    pub userns: Option<UserNamespace>,
    /// The cgroup all of berth's containers share (`exec::cgroup`); the
    /// container's own goes below it. `None`: runc's default place.
    pub cgroup_parent: Option<String>,
}

/// Set once per process, the first time runc is located.
static OLD_RUNC: OnceLock<Option<String>> = OnceLock::new();

/// The warning for a runc that predates the fixes of 2025 (CVE-2025-31133,
/// CVE-2025-52565, CVE-2025-52881: runc 1.2.8, 1.3.3 and 1.4.0), once
/// runc has been located in this process; the CLI prints it once.
pub fn runc_warning() -> Option<&'static str> {
    OLD_RUNC.get().and_then(|warning| warning.as_deref())
}

/// `(major, minor, patch)` of `runc --version`'s first line
/// (`runc version 1.1.5+ds1`).
fn parse_runc_version(output: &str) -> Option<(u32, u32, u32)> {
    let version = output.lines().next()?.strip_prefix("runc version ")?;
    let mut numbers = version.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// Whether runc `version` has the 2025 fixes (by its version number; a
/// distribution may have backported them to an older one).
fn has_2025_fixes(version: (u32, u32, u32)) -> bool {
    match version {
        (1, 2, patch) => patch >= 8,
        (1, 3, patch) => patch >= 3,
        (1, minor, _) => minor >= 4,
        (major, _, _) => major > 1,
    }
}

/// Rootless, the cgroups of the host are not berth's: containers run
/// without memory and pids limits.
fn rootless_limits_warning() -> Option<String> {
    rootless::rootless().map(|_| {
        "berth runs rootless: steps get no memory or pids limits (the host's cgroups are not delegated to this \
         user)"
            .to_owned()
    })
}

fn old_runc_warning(path: &Path) -> Option<String> {
    let output = Command::new(path).arg("--version").stdin(process::Stdio::null()).output().ok()?;
    let version = parse_runc_version(&String::from_utf8_lossy(&output.stdout))?;
    (!has_2025_fixes(version)).then(|| {
        let (major, minor, patch) = version;
        format!(
            "`{}` is runc {major}.{minor}.{patch}, older than the releases with the 2025 container-escape fixes \
             (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881: runc 1.2.8, 1.3.3, 1.4.0); a hostile base image or \
             step could use them\nhint: install runc 1.2.8 or newer, or point `runc(path)` in WORKSPACE.star at one",
            path.display()
        )
    })
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
            let reason = rootless::failure().unwrap_or("it has no user namespace").to_owned();
            return Err(RuncError::NotRoot { uid, reason });
        }
        if let Some(rootless) = rootless::rootless() {
            let dir = rootless.private_dir();
            rootless.prepare_private_dir().map_err(|source| RuncError::Io { path: dir, source })?;
        }
        OLD_RUNC.get_or_init(|| {
            let warnings: Vec<String> =
                [old_runc_warning(&path), rootless_limits_warning()].into_iter().flatten().collect();
            (!warnings.is_empty()).then(|| warnings.join("\nwarning: "))
        });
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
        let id = container_id();
        serde_json::to_writer_pretty(&file, &config(container, &id)?)
            .map_err(|error| RuncError::Io { path: config_path.clone(), source: error.into() })?;
        drop(file);

        let mut command = runc_command(&self.path);
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
        let output = runc_command(&self.path)
            .args(["list", "--quiet"])
            .output()
            .map_err(|source| RuncError::Spawn { runc: self.path.clone(), source })?;
        Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
    }

    fn kill(&self, id: &str) {
        let _ = runc_command(&self.path)
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
        if state_root().join(self.id).exists() {
            let _ = runc_command(&self.runc.path)
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
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The syscalls a step may make: Docker's default profile's unconditional
/// allowlist (moby `profiles/seccomp/default.json`, the entry that needs no
/// capability), less what berth refuses on top of it: `io_uring_*` (its
/// own syscall surface, outside this filter, and a steady source of kernel
/// escapes), `ptrace`, `personality` other than the plain Linux domain,
/// `clock_adjtime`/`adjtimex` and `name_to_handle_at`. Everything not here
/// fails with `EPERM` (the default action), among them `mount`, `umount2`,
/// `pivot_root`, `unshare`, `setns`, `keyctl`, `add_key`, `request_key`,
/// `bpf`, `perf_event_open`, `init_module`, `finit_module`,
/// `delete_module`, `kexec_*`, `reboot`, `swapon`, `settimeofday`,
/// `clock_settime`, `acct`, `quotactl`, `userfaultfd`, `open_by_handle_at`,
/// `process_vm_*`, `kcmp`, `lookup_dcookie`, `fsopen`/`fsmount`/`move_mount`/
/// `open_tree`, `syslog`, `vhangup`, `iopl`/`ioperm`. Names the running
/// architecture lacks are skipped by runc.
const ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "chroot",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Per-architecture entries of Docker's profile.
const ALLOWED_X86_64: &[&str] = &["arch_prctl", "modify_ldt"];
const ALLOWED_AARCH64: &[&str] = &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "set_tls"];

/// The namespace flags of `clone(2)` (`CLONE_NEWNS | CLONE_NEWCGROUP |
/// CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET`): a step may fork and start threads, never make
/// namespaces (a new user namespace would hand it back every capability).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `AF_VSOCK`, the one socket family Docker's profile refuses.
const AF_VSOCK: u64 = 40;

/// The `personality(2)` values Docker's profile allows: the Linux domain,
/// with or without `UNAME26`/`ADDR_NO_RANDOMIZE`, and the query.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn spec_error(error: OciSpecError) -> RuncError {
    RuncError::Config { reason: error.to_string() }
}

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut builder = LinuxSyscallBuilder::default()
        .names(names.iter().map(|name| name.to_string()).collect::<Vec<_>>())
        .action(action);
    if let Some(errno) = errno {
        builder = builder.errno_ret(errno);
    }
    if !args.is_empty() {
        builder = builder.args(args);
    }
    builder.build().expect("names and action are set")
}

fn arg(index: usize, value: u64, value_two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    match value_two {
        Some(two) => builder.value_two(two),
        None => builder,
    }
    .build()
    .expect("every field is set")
}

/// The seccomp filter of every container: an allowlist, default `EPERM`
/// (see [`ALLOWED_SYSCALLS`]).
pub fn seccomp() -> LinuxSeccomp {
    let (architectures, extra): (Vec<Arch>, &[&str]) = if cfg!(target_arch = "x86_64") {
        (vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32], ALLOWED_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        (vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm], ALLOWED_AARCH64)
    } else {
        (Vec::new(), &[])
    };
    let allow = LinuxSeccompAction::ScmpActAllow;
    let errno = LinuxSeccompAction::ScmpActErrno;
    let mut syscalls = vec![syscall(ALLOWED_SYSCALLS, allow, None, vec![])];
    if !extra.is_empty() {
        syscalls.push(syscall(extra, allow, None, vec![]));
    }
    syscalls.extend([
        syscall(
            &["clone"],
            allow,
            None,
            vec![arg(0, CLONE_NAMESPACE_FLAGS, Some(0), LinuxSeccompOperator::ScmpCmpMaskedEq)],
        ),
        // clone3's flags live in memory seccomp cannot read: ENOSYS makes
        // libc fall back to clone, which the rule above checks.
        syscall(&["clone3"], errno, Some(sys::ENOSYS as u32), vec![]),
        syscall(&["socket"], allow, None, vec![arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)]),
    ]);
    for personality in PERSONALITIES {
        syscalls.push(syscall(
            &["personality"],
            allow,
            None,
            vec![arg(0, personality, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    LinuxSeccompBuilder::default()
        .default_action(errno)
        .default_errno_ret(sys::EPERM as u32)
        .architectures(architectures)
        .syscalls(syscalls)
        .build()
        .expect("the default action is set")
}

fn cgroup_available(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(controller).is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|controllers| controllers.split_whitespace().any(|name| name == controller))
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, RuncError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|option| option.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// Paths of `/proc` and `/sys` the container sees as empty: Docker's list,
/// plus `/sys/devices/virtual/powercap` (RAPL energy counters, a side
/// channel on the host's other tenants).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths of `/proc` the container sees read-only (Docker's list).
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The OCI runtime configuration (`config.json`) of `container`, in the
/// runtime spec's own types (`oci_spec::runtime`), so every field is
/// checked against the spec when it is built.
pub fn config(container: &Container, id: &str) -> Result<Spec, RuncError> {
    // Docker's 1048576, or what berth's own hard limit allows (runc cannot
    // raise it past the host's `fs.nr_open`).
    let open_files = sys::open_files_hard_limit().map_or(1024, |limit| limit.min(1_048_576));
    let namespace = |typ| LinuxNamespaceBuilder::default().typ(typ).build().map_err(spec_error);
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid)?,
        namespace(LinuxNamespaceType::Ipc)?,
        namespace(LinuxNamespaceType::Uts)?,
        namespace(LinuxNamespaceType::Mount)?,
    ];
    if !container.network {
        namespaces.push(namespace(LinuxNamespaceType::Network)?);
    }
    if Path::new("/proc/self/ns/cgroup").exists() {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup)?);
    }
    let deny_devices = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().map_err(spec_error)?;
    // Rootless, the host's cgroups are not berth's to limit (runc would
    // fail to apply them); `rootless_limits_warning` says so. No device
    // rule either: a user namespace cannot make device nodes anyway.
    let limited = rootless::rootless().is_none();
    let mut resources = LinuxResourcesBuilder::default();
    if limited {
        resources = resources.devices(vec![deny_devices]);
    }
    if limited && cgroup_available("pids") {
        resources =
            resources.pids(LinuxPidsBuilder::default().limit(container.limits.pids).build().map_err(spec_error)?);
    }
    if let (true, true, Some(limit)) = (limited, cgroup_available("memory"), container.limits.memory_bytes) {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build().map_err(spec_error)?);
    }
    // Without `network`, raw sockets are of no use but to probe the
    // loopback-only namespace: CAP_NET_RAW goes.
    let capabilities: Capabilities =
        CAPABILITIES.into_iter().filter(|capability| container.network || *capability != Capability::NetRaw).collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(container.uid).gid(container.gid).build().map_err(spec_error)?)
        .args(container.args.clone())
        .env(container.env.clone())
        .cwd(&container.cwd)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(capabilities.clone())
                .effective(capabilities.clone())
                .permitted(capabilities)
                .build()
                .map_err(spec_error)?,
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(open_files)
            .soft(open_files)
            .build()
            .map_err(spec_error)?])
        .no_new_privileges(true)
        .build()
        .map_err(spec_error)?;
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        // Group `tty` (5) owns terminals, where the container has that id.
        if container.userns.is_none_or(|userns| userns.size > 5) {
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            )?
        } else {
            mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])?
        },
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        // A user namespace may mount sysfs only in a network namespace of
        // its own; with the host's network the host's /sys is bound
        // read-only instead (as rootless Docker does).
        if container.network && container.userns.is_some() {
            mount("/sys", "none", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"])?
        } else {
            mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?
        },
    ];
    let mut linux = LinuxBuilder::default();
    if let Some(parent) = &container.cgroup_parent {
        linux = linux.cgroups_path(PathBuf::from(format!("{parent}/{id}")));
    }
    if let Some(userns) = container.userns {
        namespaces.push(namespace(LinuxNamespaceType::User)?);
        let map = || {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(userns.host)
                .size(userns.size)
                .build()
                .map_err(spec_error)
        };
        linux = linux.uid_mappings(vec![map()?]).gid_mappings(vec![map()?]);
    }
    let linux = linux
        .namespaces(namespaces)
        .resources(resources.build().map_err(spec_error)?)
        .seccomp(seccomp())
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS))
        .build()
        .map_err(spec_error)?;
    SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(RootBuilder::default().path(&container.rootfs).readonly(false).build().map_err(spec_error)?)
        .hostname("berth")
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(spec_error)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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
            userns: None,
            cgroup_parent: None,
        }
    }

    #[test]
    fn network_namespace_unless_asked() {
        let has_netns =
            |config: &Value| config["linux"]["namespaces"].as_array().unwrap().iter().any(|ns| ns["type"] == "network");
        assert!(has_netns(&json(false)));
        assert!(!has_netns(&json(true)));
    }

    fn json(network: bool) -> Value {
        serde_json::to_value(config(&container(network), "berth-test").unwrap()).unwrap()
    }

    #[test]
    fn seccomp_is_an_allowlist_without_io_uring() {
        let config = json(false);
        let seccomp = &config["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(seccomp["defaultErrnoRet"], sys::EPERM);
        let allowed: Vec<&str> = seccomp["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["action"] == "SCMP_ACT_ALLOW" && rule.get("args").is_none())
            .flat_map(|rule| rule["names"].as_array().unwrap().iter().map(|name| name.as_str().unwrap()))
            .collect();
        assert!(allowed.contains(&"read") && allowed.contains(&"execve"));
        for denied in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "bpf",
            "ptrace",
            "init_module",
            "clone",
            "personality",
            "socket",
        ] {
            assert!(!allowed.contains(&denied), "{denied} is allowed unconditionally");
        }
        assert!(config["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("/sys/devices/virtual/powercap")));
    }

    #[test]
    fn runc_versions_before_the_2025_fixes_are_old() {
        assert_eq!(parse_runc_version("runc version 1.1.5+ds1\ncommit: x\n"), Some((1, 1, 5)));
        assert_eq!(parse_runc_version("runc version 1.4.0-rc.3\n"), Some((1, 4, 0)));
        assert_eq!(parse_runc_version("nonsense"), None);
        for old in [(1, 1, 5), (1, 1, 15), (1, 2, 7), (1, 3, 2), (0, 9, 9)] {
            assert!(!has_2025_fixes(old), "{old:?}");
        }
        for fixed in [(1, 2, 8), (1, 3, 3), (1, 4, 0), (2, 0, 0)] {
            assert!(has_2025_fixes(fixed), "{fixed:?}");
        }
    }

    #[test]
    fn a_user_namespace_maps_root_to_the_range() {
        let config = serde_json::to_value(
            config(
                &Container { userns: Some(UserNamespace { host: 300_000, size: 65_536 }), ..container(false) },
                "berth-test",
            )
            .unwrap(),
        )
        .unwrap();
        assert!(config["linux"]["namespaces"].as_array().unwrap().iter().any(|ns| ns["type"] == "user"));
        let expected = serde_json::json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        assert_eq!(config["linux"]["uidMappings"], expected);
        assert_eq!(config["linux"]["gidMappings"], expected);
    }

    #[test]
    fn no_host_bind_mounts_and_no_new_privileges() {
        let config = json(false);
        assert_eq!(config["process"]["noNewPrivileges"], true);
        for mount in config["mounts"].as_array().unwrap() {
            assert_ne!(mount["type"], "bind", "{mount}");
        }
        let bounding = config["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), 13, "Docker's 14 less CAP_NET_RAW without network");
        assert!(!bounding.contains(&serde_json::json!("CAP_NET_RAW")));
        assert_eq!(json(true)["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert!(!bounding.contains(&serde_json::json!("CAP_SYS_ADMIN")));
    }
}
