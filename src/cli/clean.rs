//! `berth clean [--cache]`: removes the workspace's `berth-out/`, and with
//! `--cache` the cache directory's contents (waiting for no build to hold it).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;
use clap::Args;

use crate::cache::{resolve_cache_dir, CacheLock};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::workspace::{find_root, WorkspaceError};

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove the cache
    #[arg(long)]
    pub cache: bool,
}

pub fn run(args: CleanArgs, global: &GlobalArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir().context("Cannot read the current directory")?;
    match find_root(&cwd) {
        Ok(root) => {
            let out = root.join("berth-out");
            remove_dir(&out)?;
            if !global.quiet {
                eprintln!("Removed `{}`", out.display());
            }
        }
        Err(WorkspaceError::NotFound { .. }) if args.cache => {}
        Err(error) => return Err(Error::from(error).into()),
    }
    if args.cache {
        let dir = resolve_cache_dir(global.cache_dir.as_deref()).map_err(Error::from)?;
        if dir.exists() {
            let lock = match CacheLock::try_exclusive(&dir).map_err(Error::from)? {
                Some(lock) => lock,
                None => {
                    return Err(Error::user(format!(
                        "The cache at `{}` is in use by a running build\nhint: run `berth clean --cache` again when it has finished",
                        dir.display()
                    ))
                    .into())
                }
            };
            for entry in fs::read_dir(&dir).with_context(|| format!("Cannot read `{}`", dir.display()))? {
                let path = entry?.path();
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

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(Error::environment(format!("Cannot remove `{}`: {error}", dir.display())).into())
        }
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> anyhow::Result<()> {
    if fs::symlink_metadata(path).map(|metadata| metadata.is_dir()).unwrap_or(false) {
        remove_dir(path)
    } else {
        match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(Error::environment(format!("Cannot remove `{}`: {error}", path.display())).into())
            }
            _ => Ok(()),
        }
    }
}
