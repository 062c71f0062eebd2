//! One cgroup for all the containers of one berth process
//! (`berth-<owner>`), so `-j` steps share one memory and pids budget
//! (`limits(memory_bytes, pids)` in `WORKSPACE.star`) instead of each
//! getting its own. runc puts each container below it (`cgroupsPath`
//! `/berth-<owner>/<container id>`); the kernel charges every container's
//! memory and processes to the parent as well, and refuses past its limits.
//!
//! The parent is made with the first running container and removed when
//! the last one ends, or when berth exits ([`release`], also from the
//! signal handler); the sweep removes the parents of berth processes that
//! no longer exist.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::exec::lifecycle;
use crate::sys;

const ROOT: &str = "/sys/fs/cgroup";

/// The limits all containers of this process share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub memory_bytes: Option<u64>,
    pub pids: u64,
}

/// The parent while containers use it: its cgroup path (`None` when the
/// machine would not let berth make it; then each container keeps its own
/// limits only), and how many containers use it.
struct State {
    path: Option<Option<String>>,
    users: usize,
}

static PARENT: Mutex<State> = Mutex::new(State { path: None, users: 0 });

fn state() -> std::sync::MutexGuard<'static, State> {
    PARENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The directories of cgroup `name` that hold limits: one on cgroup v2,
/// one per controller (memory, pids) on v1.
fn limit_dirs(name: &str) -> Vec<(PathBuf, &'static str, &'static str)> {
    if unified() {
        vec![(Path::new(ROOT).join(name), "memory.max", "pids.max")]
    } else {
        vec![
            (Path::new(ROOT).join("memory").join(name), "memory.limit_in_bytes", ""),
            (Path::new(ROOT).join("pids").join(name), "", "pids.max"),
        ]
    }
}

/// Every directory cgroup `name` may have (v1 makes it in each hierarchy
/// runc uses).
fn all_dirs(name: &str) -> Vec<PathBuf> {
    if unified() {
        return vec![Path::new(ROOT).join(name)];
    }
    let Ok(hierarchies) = fs::read_dir(ROOT) else { return Vec::new() };
    hierarchies.flatten().map(|hierarchy| hierarchy.path().join(name)).filter(|dir| dir.is_dir()).collect()
}

fn parent_name() -> String {
    format!("berth-{}", lifecycle::owner())
}

fn create(budget: Budget) -> io::Result<String> {
    let name = parent_name();
    for (dir, memory_file, pids_file) in limit_dirs(&name) {
        fs::create_dir_all(&dir)?;
        if let (false, Some(memory)) = (memory_file.is_empty(), budget.memory_bytes) {
            fs::write(dir.join(memory_file), memory.to_string())?;
        }
        if !pids_file.is_empty() {
            fs::write(dir.join(pids_file), budget.pids.to_string())?;
        }
    }
    Ok(format!("/{name}"))
}

/// One container's use of the parent cgroup; the parent is removed when
/// the last use ends (so a library user, which never calls [`release`],
/// leaves nothing either), and made again for the next container.
#[derive(Debug)]
pub struct ParentUse {
    path: Option<String>,
}

impl ParentUse {
    /// The cgroup path to put the container under; `None` when cgroups
    /// cannot be made here.
    pub fn path(&self) -> Option<&String> {
        self.path.as_ref()
    }
}

impl Drop for ParentUse {
    fn drop(&mut self) {
        let mut state = state();
        state.users -= 1;
        if state.users == 0 {
            if let Some(Some(_)) = state.path.take() {
                release_dirs(&parent_name());
            }
        }
    }
}

/// The parent cgroup for one more container, made with `budget` when no
/// container uses it yet.
pub fn parent(budget: Budget) -> ParentUse {
    let mut state = state();
    state.users += 1;
    let path = state
        .path
        .get_or_insert_with(|| match create(budget) {
            Ok(path) => Some(path),
            Err(_) => {
                release_dirs(&parent_name());
                None
            }
        })
        .clone();
    ParentUse { path }
}

fn release_dirs(name: &str) {
    for dir in all_dirs(name) {
        let _ = remove_cgroup_tree(&dir);
    }
}

/// Removes cgroup `dir` and the cgroups below it, deepest first. A runc
/// killed while it created a container leaves that container's (empty)
/// cgroup below the parent, with no state for `runc delete` to find. A
/// cgroup that still holds a process is not removed (`EBUSY`); a killed
/// process counts until it is reaped, so `EBUSY` is retried for up to a
/// second.
fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            let _ = remove_cgroup_tree(&entry.path());
        }
    }
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Err(error) if error.raw_os_error() == Some(sys::EBUSY) && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            result => return result,
        }
    }
}

/// Removes the parent cgroup of `owner` (the watchdog's, after berth).
pub fn release_owner(owner: &str) {
    release_dirs(&format!("berth-{owner}"));
}

/// Removes this process's parent cgroup (its containers are gone: berth
/// exits, or the signal handler deleted them).
pub fn release() {
    if let Some(Some(_)) = state().path.take() {
        release_dirs(&parent_name());
    }
}

/// Removes the parent cgroups of berth processes that no longer exist;
/// returns how many.
pub fn sweep(alive: impl Fn(&str) -> Option<bool>) -> usize {
    let mut names: Vec<String> = Vec::new();
    let hierarchies: Vec<PathBuf> = if unified() {
        vec![PathBuf::from(ROOT)]
    } else {
        fs::read_dir(ROOT).map(|entries| entries.flatten().map(|entry| entry.path()).collect()).unwrap_or_default()
    };
    for hierarchy in hierarchies {
        let Ok(entries) = fs::read_dir(&hierarchy) else { continue };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else { continue };
            if alive(&name) == Some(false) && remove_cgroup_tree(&entry.path()).is_ok() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.len()
}
