//! The cache directory: where it is, and the handle a build opens on it
//! (CAS, action cache, and the shared lock held for the whole build).

use std::path::{Path, PathBuf};

use crate::cache::{ActionCache, CacheError, CacheLock, Cas};

/// The cache directory: `flag` (`--cache-dir`, which clap also fills from
/// `BERTH_CACHE_DIR`), else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.
pub fn resolve_cache_dir(flag: Option<&Path>) -> Result<PathBuf, CacheError> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("BERTH_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME").filter(|dir| dir.is_absolute()) {
        return Ok(xdg.join("berth"));
    }
    non_empty("HOME").map(|home| home.join(".cache").join("berth")).ok_or(CacheError::NoCacheDir)
}

/// An open cache, held by a build: the CAS, the action cache, and the
/// shared lock that keeps `berth cache gc` out until the build ends.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    pub cas: Cas,
    pub ac: ActionCache,
    _lock: CacheLock,
}

impl Cache {
    /// Opens (creating if needed) the cache at `dir` and takes its shared lock.
    /// Open it before analysis: analysis may already store pulled manifests.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        let lock = CacheLock::shared(dir)?;
        Ok(Cache { dir: dir.to_owned(), cas: Cas::open(dir)?, ac: ActionCache::open(dir)?, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
