//! The [`Sandbox`] trait: how the scheduler reaches the file system to give
//! each action a fresh scratch directory. `LocalSandbox` is the real one; the
//! scheduler tests use a fake, so they run without root or disk effects.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::exec::ExecError;

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
        let dir = tempfile::Builder::new().prefix("action-").tempdir_in(&self.root).map_err(io_error)?;
        Ok(dir.keep())
    }

    fn remove_scratch(&self, dir: &Path) -> Result<(), ExecError> {
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => {
                // A step may leave read-only directories; make them writable and retry.
                make_writable(dir);
                fs::remove_dir_all(dir).map_err(|source| ExecError::Scratch { path: dir.to_owned(), source })
            }
        }
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = fs::symlink_metadata(dir) else { return };
    if !metadata.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
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
