//! The cache lock: builders hold it shared for the whole build, `berth cache
//! gc` holds it exclusive, so gc never deletes a blob a running build has
//! written but not yet recorded. `flock(2)` locks die with the process.

use std::fs::{self, File};
use std::path::Path;

use crate::cache::error::io_at;
use crate::cache::CacheError;
use crate::sys::{self, LockMode};

/// A held lock on a cache directory; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
    exclusive: bool,
}

impl CacheLock {
    /// Blocks until the shared (builder) lock is held.
    pub fn shared(cache_dir: &Path) -> Result<CacheLock, CacheError> {
        Self::take(cache_dir, LockMode::Shared, true).map(|lock| lock.expect("blocking flock returns a lock"))
    }

    /// Blocks until the exclusive (gc) lock is held.
    pub fn exclusive(cache_dir: &Path) -> Result<CacheLock, CacheError> {
        Self::take(cache_dir, LockMode::Exclusive, true).map(|lock| lock.expect("blocking flock returns a lock"))
    }

    /// The exclusive lock if nobody holds the cache, else `None`.
    pub fn try_exclusive(cache_dir: &Path) -> Result<Option<CacheLock>, CacheError> {
        Self::take(cache_dir, LockMode::Exclusive, false)
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    fn take(cache_dir: &Path, mode: LockMode, wait: bool) -> Result<Option<CacheLock>, CacheError> {
        fs::create_dir_all(cache_dir).map_err(io_at(cache_dir))?;
        let path = cache_dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| CacheError::Lock { path: path.clone(), source })?;
        match sys::flock(&file, mode, wait) {
            Ok(true) => Ok(Some(CacheLock { _file: file, exclusive: mode == LockMode::Exclusive })),
            Ok(false) => Ok(None),
            Err(source) => Err(CacheError::Lock { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_share_gc_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let first = CacheLock::shared(dir.path()).unwrap();
        let second = CacheLock::shared(dir.path()).unwrap();
        assert!(CacheLock::try_exclusive(dir.path()).unwrap().is_none());
        drop((first, second));
        let gc = CacheLock::try_exclusive(dir.path()).unwrap().expect("free once builders finish");
        assert!(gc.is_exclusive());
        assert!(CacheLock::try_exclusive(dir.path()).unwrap().is_none());
    }
}
