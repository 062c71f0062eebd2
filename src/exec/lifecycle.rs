//! Containers and mounts never outlive berth.
//!
//! - Every container berth starts and every overlay mount it makes is
//!   registered here while it lives. On SIGINT, SIGTERM or SIGHUP a thread
//!   (woken through `sys::TerminationSignals`) force-deletes the registered
//!   containers, detaches the mounts, removes their directories and exits
//!   with 128 + the signal (130, 143, 129).
//! - runc itself gets `PR_SET_PDEATHSIG` (`exec::runc`), and its container
//!   ids, scratch directories and run directories carry their owner: berth's
//!   pid and that process's start time ([`owner`]). [`sweep`], run by every
//!   command that opens the cache, deletes containers, detaches mounts and
//!   removes directories whose owner no longer exists (a berth killed with
//!   SIGKILL, or a machine that lost power), and leaves those of live berths
//!   alone.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use crate::exec::cgroup;
use crate::exec::rootfs::exposed_roots;
use crate::exec::runc::{runc_command, state_root};
use crate::sys;

/// This process as an owner: `PID.START` (start time in clock ticks since
/// boot), unique across pid reuse.
pub fn owner() -> &'static str {
    static OWNER: LazyLock<String> = LazyLock::new(|| {
        let pid = std::process::id();
        format!("{pid}.{}", sys::process_start_time(pid).unwrap_or(0))
    });
    &OWNER
}

/// Whether the owner named at the start of `name` (after `prefix`; `PID.START`
/// up to the next `-`) is a live process. `None` when `name` names no owner.
fn owner_alive(name: &str, prefix: &str) -> Option<bool> {
    let tag = name.strip_prefix(prefix)?.split('-').next()?;
    let (pid, start) = tag.split_once('.')?;
    let (pid, start): (u32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    Some(sys::process_start_time(pid) == Some(start))
}

#[derive(Debug, Default)]
struct Live {
    /// Container id → the runc that started it.
    containers: BTreeMap<String, PathBuf>,
    /// Mount point → the directory to remove with it.
    mounts: BTreeMap<PathBuf, PathBuf>,
    /// Containers running with berth's terminal: Ctrl-C reaches them through
    /// runc (same process group), so SIGINT is theirs, not berth's.
    interactive: usize,
    /// The watchdog's stdin ([`run_watchdog`]), once started.
    watchdog: Option<ChildStdin>,
}

impl Live {
    /// Tells the watchdog (started on first use, when the CLI enabled it)
    /// one change of the registry; a dead watchdog is dropped.
    fn tell(&mut self, message: std::fmt::Arguments<'_>) {
        if !WATCHDOG.load(Ordering::Relaxed) {
            return;
        }
        if self.watchdog.is_none() {
            self.watchdog = spawn_watchdog();
        }
        if let Some(stdin) = &mut self.watchdog {
            if writeln!(stdin, "{message}").and_then(|()| stdin.flush()).is_err() {
                self.watchdog = None;
            }
        }
    }
}

static LIVE: Mutex<Live> =
    Mutex::new(Live { containers: BTreeMap::new(), mounts: BTreeMap::new(), interactive: 0, watchdog: None });

/// Whether containers get a watchdog (the CLI turns it on; library users
/// and tests of the library do not get one).
static WATCHDOG: AtomicBool = AtomicBool::new(false);

/// The first argument that makes the `berth` binary a watchdog.
pub const WATCHDOG_ARG: &str = "__berth-watchdog";

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A registered container; deregistered when dropped (after it was deleted).
#[derive(Debug)]
pub struct LiveContainer {
    id: String,
    interactive: bool,
}

impl Drop for LiveContainer {
    fn drop(&mut self) {
        let mut live = live();
        live.containers.remove(&self.id);
        live.tell(format_args!("-c {}", hex(self.id.as_bytes())));
        if self.interactive {
            live.interactive -= 1;
        }
    }
}

/// Registers container `id` of `runc` and calls `start` (which spawns it)
/// under the registry's lock, so a termination signal sees the container
/// either not yet started or registered.
pub fn start_container<R>(runc: &Path, id: &str, interactive: bool, start: impl FnOnce() -> R) -> (LiveContainer, R) {
    let mut live = live();
    live.containers.insert(id.to_owned(), runc.to_path_buf());
    live.tell(format_args!("+c {} {}", hex(id.as_bytes()), hex(runc.as_os_str().as_bytes())));
    live.interactive += usize::from(interactive);
    let started = start();
    drop(live);
    (LiveContainer { id: id.to_owned(), interactive }, started)
}

/// A registered mount; deregistered when dropped (after it was unmounted).
#[derive(Debug)]
pub struct LiveMount {
    point: PathBuf,
}

impl Drop for LiveMount {
    fn drop(&mut self) {
        let mut live = live();
        live.mounts.remove(&self.point);
        live.tell(format_args!("-m {}", hex(self.point.as_os_str().as_bytes())));
    }
}

/// Registers the mount at `point` (removed with `dir` on a signal) and
/// calls `mount` under the registry's lock.
pub fn mount<R>(point: &Path, dir: &Path, mount: impl FnOnce() -> R) -> (LiveMount, R) {
    let mut live = live();
    live.mounts.insert(point.to_path_buf(), dir.to_path_buf());
    live.tell(format_args!("+m {} {}", hex(point.as_os_str().as_bytes()), hex(dir.as_os_str().as_bytes())));
    let mounted = mount();
    drop(live);
    (LiveMount { point: point.to_path_buf() }, mounted)
}

/// Installs the SIGINT/SIGTERM/SIGHUP handling described in the module
/// docs. `on_signal` runs after the cleanup, before the exit (the CLI
/// prints what happened). Call once, early in `main`.
///
/// It also turns on the watchdog: with the first container, berth starts
/// its own binary as `berth __berth-watchdog OWNER` in a session of its
/// own and tells it, through a pipe, every container and mount as it comes
/// and goes. When the pipe closes (berth exited, however: SIGKILL too), the
/// watchdog deletes and unmounts whatever is still registered and exits,
/// so even a SIGKILLed berth leaves no running container behind.
pub fn install_signal_handlers(on_signal: fn(i32)) {
    WATCHDOG.store(true, Ordering::Relaxed);
    let Ok(signals) = sys::TerminationSignals::install() else { return };
    std::thread::spawn(move || loop {
        let signal = signals.wait();
        // Held until the process exits: nothing new starts or mounts.
        let live = live();
        if signal == sys::SIGINT && live.interactive > 0 {
            continue;
        }
        for (id, runc) in &live.containers {
            delete_container(runc, id);
        }
        for (point, dir) in live.mounts.iter().rev() {
            let _ = sys::unmount_detached(point);
            let _ = sys::remove_tree(dir);
        }
        cgroup::release();
        on_signal(signal);
        std::process::exit(128 + signal);
    });
}

fn spawn_watchdog() -> Option<ChildStdin> {
    let exe = std::env::current_exe().ok()?;
    let mut command = Command::new(exe);
    command.arg(WATCHDOG_ARG).arg(owner()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and changes only the child.
    unsafe {
        command.pre_exec(|| {
            // Its own session: a signal to berth's process group or
            // terminal does not reach it.
            sys::new_session();
            Ok(())
        });
    }
    command.spawn().ok()?.stdin.take()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok()).collect()
}

/// The watchdog (see [`install_signal_handlers`]): reads the registry's
/// changes from stdin until it closes, then deletes the containers and
/// unmounts the mounts still registered, and releases `owner`'s cgroup.
/// Returns the exit code.
pub fn run_watchdog(owner: &str) -> i32 {
    let mut containers: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut mounts: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let fields: Vec<Option<Vec<u8>>> = line.split(' ').skip(1).map(unhex).collect();
        match (line.get(..2), fields.as_slice()) {
            (Some("+c"), [Some(id), Some(runc)]) => drop(containers.insert(id.clone(), runc.clone())),
            (Some("-c"), [Some(id)]) => drop(containers.remove(id)),
            (Some("+m"), [Some(point), Some(dir)]) => drop(mounts.insert(point.clone(), dir.clone())),
            (Some("-m"), [Some(point)]) => drop(mounts.remove(point)),
            _ => {}
        }
    }
    let path = |bytes: &Vec<u8>| PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
    for (id, runc) in &containers {
        delete_container(&path(runc), &String::from_utf8_lossy(id));
    }
    for (point, dir) in mounts.iter().rev() {
        let _ = sys::unmount_detached(&path(point));
        let _ = sys::remove_tree(&path(dir));
    }
    cgroup::release_owner(owner);
    0
}

/// `runc delete --force ID`: kills the container's processes and removes
/// its state and cgroup.
fn delete_container(runc: &Path, id: &str) {
    let _ = runc_command(runc)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What [`sweep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub containers: usize,
    pub mounts: usize,
    pub dirs: usize,
    /// Parent cgroups (`exec::cgroup`) of gone owners.
    pub cgroups: usize,
}

/// Removes what berth processes that no longer exist left behind: their
/// runc containers (any cache), and under `cache_dir` their mounts and
/// their `scratch/` and `run/` directories, and their roots bound under
/// `exposed_roots()` for user namespaces. Those of live processes are
/// left alone, so it is safe while other builds run. `runc` is the
/// `runc(path)` setting (else `PATH`); without runc or root, containers
/// are not looked for. Best effort: what cannot be removed stays for the
/// next command (or `berth cache gc`).
pub fn sweep(cache_dir: &Path, runc: Option<&Path>) -> SweepReport {
    let mut report = SweepReport::default();
    if sys::effective_uid() == 0 {
        if let Some(runc) = find_runc(runc) {
            for id in list_containers() {
                if owner_alive(&id, "berth-") == Some(false) {
                    delete_container(&runc, &id);
                    report.containers += 1;
                }
            }
        }
        report.cgroups = cgroup::sweep(|name| owner_alive(name, "berth-"));
    }
    let areas = [(cache_dir.join("scratch"), "action-"), (cache_dir.join("run"), ""), (exposed_roots(), "")];
    if let Ok(points) = sys::mount_points() {
        let mut stale: Vec<&PathBuf> = points
            .iter()
            .filter(|point| {
                areas.iter().any(|(area, prefix)| {
                    let Ok(below) = point.strip_prefix(area) else { return false };
                    let first = below.components().next().and_then(|name| name.as_os_str().to_str());
                    first.and_then(|name| owner_alive(name, prefix)) == Some(false)
                })
            })
            .collect();
        stale.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
        for point in stale {
            if sys::unmount_detached(point).is_ok() {
                report.mounts += 1;
            }
        }
    }
    for (area, prefix) in &areas {
        let Ok(entries) = std::fs::read_dir(area) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().and_then(|name| owner_alive(name, prefix)) == Some(false)
                && sys::remove_tree(&entry.path()).is_ok()
            {
                report.dirs += 1;
            }
        }
    }
    report
}

fn find_runc(setting: Option<&Path>) -> Option<PathBuf> {
    match setting {
        Some(path) => Some(path.to_path_buf()),
        None => std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("runc")).find(|path| path.is_file())),
    }
}

/// The containers runc knows: the directories of its state root. Read
/// directly rather than through `runc list`, which costs a process on every
/// command and skips a container whose runc was killed while creating it
/// (a directory without `state.json`, which `runc delete --force` removes).
fn list_containers() -> Vec<String> {
    std::fs::read_dir(state_root())
        .map(|entries| entries.flatten().filter_map(|entry| entry.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_this_process_until_it_is_gone() {
        let me = owner();
        assert_eq!(owner_alive(&format!("berth-{me}-3-abc"), "berth-"), Some(true));
        assert_eq!(owner_alive(&format!("action-{me}-XYZ"), "action-"), Some(true));
        assert_eq!(owner_alive(&format!("{me}-0"), ""), Some(true));
        // Same pid, another start time: the pid was reused.
        let pid = std::process::id();
        assert_eq!(owner_alive(&format!("{pid}.1-0"), ""), Some(false));
        assert_eq!(owner_alive(&format!("{}.5-0", u32::MAX), ""), Some(false));
        // Names without an owner are not ours to judge.
        assert_eq!(owner_alive("action-Xy12ab", "action-"), None);
        assert_eq!(owner_alive("berth-1234-0-abcd", "berth-"), None);
    }

    #[test]
    fn registered_things_leave_the_registry_when_dropped() {
        let (container, started) = start_container(Path::new("/bin/true"), "berth-test-x", true, || 7);
        assert_eq!(started, 7);
        assert!(live().containers.contains_key("berth-test-x"));
        assert!(live().interactive >= 1);
        drop(container);
        assert!(!live().containers.contains_key("berth-test-x"));
        let (mount, ()) = mount(Path::new("/nowhere/merged"), Path::new("/nowhere"), || ());
        assert!(live().mounts.contains_key(Path::new("/nowhere/merged")));
        drop(mount);
        assert!(!live().mounts.contains_key(Path::new("/nowhere/merged")));
    }
}
