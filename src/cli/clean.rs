//! `berth clean [--cache]`: removes the workspace's `berth-out/`, and with
//! `--cache` the cache directory's contents (waiting for no build to hold it).

use std::fs;
use std::io;
use std::path::Path;

use clap::Args;

use crate::cache::{resolve_cache_dir, CacheLock};
use crate::cli::global::current_dir;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::sys;
use crate::workspace::{find_root, WorkspaceError};

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove the cache
    #[arg(long)]
    pub cache: bool,
}

pub fn run(args: CleanArgs, global: &GlobalArgs) -> Result<i32> {
    match find_root(&current_dir()?) {
        Ok(root) => {
            let out = root.join("berth-out");
            remove_dir(&out)?;
            if !global.quiet {
                eprintln!("Removed `{}`", out.display());
            }
        }
        Err(WorkspaceError::NotFound { .. }) if args.cache => {}
        Err(error) => return Err(error.into()),
    }
    if args.cache {
        let dir = resolve_cache_dir(global.cache_dir.as_deref())?;
        if dir.exists() {
            let lock = match CacheLock::try_exclusive(&dir)? {
                Some(lock) => lock,
                None => {
                    return Err(Error::user(format!("The cache at `{}` is in use by a running build", dir.display()))
                        .with_hint("run `berth clean --cache` again when it has finished"))
                }
            };
            // Containers a killed berth left go first; then no mount under
            // the cache survives (the lock says no build runs), so nothing
            // is removed through one.
            crate::exec::sweep(&dir, None);
            sys::unmount_below(&dir)
                .map_err(|error| Error::environment(format!("Cannot unmount below `{}`: {error}", dir.display())))?;
            let unreadable = |error: io::Error| Error::environment(format!("Cannot read `{}`: {error}", dir.display()));
            for entry in fs::read_dir(&dir).map_err(unreadable)? {
                let path = entry.map_err(unreadable)?.path();
                // The lock file stays: removing it would let a build start on a
                // fresh lock while this one is held.
                if path.file_name() != Some("lock".as_ref()) {
                    remove_any(&path)?;
                }
            }
            drop(lock);
            if !global.quiet {
                eprintln!("Removed the cache at `{}`", dir.display());
            }
        }
    }
    Ok(0)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(Error::environment(format!("Cannot remove `{}`: {error}", dir.display())))
        }
        _ => Ok(()),
    }
}

/// Never descends into a mount.
fn remove_any(path: &Path) -> Result<()> {
    sys::remove_tree(path).map_err(|error| Error::environment(format!("Cannot remove `{}`: {error}", path.display())))
}
