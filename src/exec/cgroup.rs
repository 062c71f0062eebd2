//! One cgroup for all the containers of one berth process
//! (`berth-<owner>`), so `-j` steps share one memory and pids budget
//! (`limits(memory_bytes, pids)` in `WORKSPACE.star`) instead of each
//! getting its own. runc puts each container below it (`cgroupsPath`
//! `/berth-<owner>/<container id>`); the kernel charges every container's
//! memory and processes to the parent as well, and refuses past its limits.
//!
//! The parent is made on the first container and removed when berth exits
//! ([`release`], also from the signal handler); the sweep removes the
//! parents of berth processes that no longer exist.

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

/// Made once per process: the parent's cgroup path, or `None` when the
/// machine would not let berth make it (then each container keeps its own
/// limits only).
static PARENT: Mutex<Option<Option<String>>> = Mutex::new(None);

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

/// The cgroup path to put containers under, made with `budget` the first
/// time; `None` when cgroups cannot be made here.
pub fn parent(budget: Budget) -> Option<String> {
    let mut parent = PARENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    parent
        .get_or_insert_with(|| match create(budget) {
            Ok(path) => Some(path),
            Err(_) => {
                release_dirs(&parent_name());
                None
            }
        })
        .clone()
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

/// Removes this process's parent cgroup (once its containers are gone).
pub fn release() {
    let mut parent = PARENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(Some(_)) = parent.take() {
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
