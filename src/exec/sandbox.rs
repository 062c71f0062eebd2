//! The [`Sandbox`] trait: how the scheduler reaches the file system to give
//! each action a fresh scratch directory. `LocalSandbox` is the real one; the
//! scheduler tests use a fake, so they run without root or disk effects.

use std::fs;
use std::path::{Path, PathBuf};

use crate::exec::{lifecycle, ExecError};
use crate::sys;

/// What the scheduler needs from the OS around running one action.
pub trait Sandbox: Send + Sync {
    /// A fresh, empty directory that only this action writes to.
    fn create_scratch(&self) -> Result<PathBuf, ExecError>;

    /// Removes a directory made by [`Sandbox::create_scratch`] and
    /// everything in it.
    fn remove_scratch(&self, dir: &Path) -> Result<(), ExecError>;
}

/// Scratch directories under `<cache>/scratch`, on the same file system as
/// the CAS so outputs can be renamed into it.
#[derive(Debug, Clone)]
pub struct LocalSandbox {
    root: PathBuf,
}

impl LocalSandbox {
    pub fn new(cache_dir: &Path) -> LocalSandbox {
        LocalSandbox { root: cache_dir.join("scratch") }
    }
}

impl Sandbox for LocalSandbox {
    fn create_scratch(&self) -> Result<PathBuf, ExecError> {
        let io_error = |source| ExecError::Scratch { path: self.root.clone(), source };
        fs::create_dir_all(&self.root).map_err(io_error)?;
        // The owner in the name lets a later command's sweep remove what a
        // killed berth left (`exec::lifecycle::sweep`).
        let prefix = format!("action-{}-", lifecycle::owner());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir_in(&self.root).map_err(io_error)?;
        Ok(dir.keep())
    }

    /// Never descends into a mount (a root a step left mounted is detached
    /// first); read-only directories a step left are made writable.
    fn remove_scratch(&self, dir: &Path) -> Result<(), ExecError> {
        sys::remove_tree(dir).map_err(|source| ExecError::Scratch { path: dir.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn scratch_dirs_are_fresh_and_removed() {
        let cache = tempfile::tempdir().unwrap();
        let sandbox = LocalSandbox::new(cache.path());
        let a = sandbox.create_scratch().unwrap();
        let b = sandbox.create_scratch().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(cache.path().join("scratch")));
        fs::create_dir(a.join("ro")).unwrap();
        fs::write(a.join("ro/file"), b"x").unwrap();
        fs::set_permissions(a.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        sandbox.remove_scratch(&a).unwrap();
        sandbox.remove_scratch(&b).unwrap();
        assert!(!a.exists() && !b.exists());
    }
}
