//! The cache lock: builders hold it shared for the whole build, `berth cache
//! gc` holds it exclusive, so gc never deletes a blob a running build has
//! written but not yet recorded. `flock(2)` locks die with the process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cache::atomic::ensure_dir;
use crate::cache::error::io_at;
use crate::cache::CacheError;

/// A held lock on a cache directory; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
    exclusive: bool,
}

impl CacheLock {
    /// Blocks until the shared (builder) lock is held.
    pub fn shared(cache_dir: &Path) -> Result<CacheLock, CacheError> {
        Self::take(cache_dir, libc::LOCK_SH).map(|lock| lock.expect("blocking flock returns a lock"))
    }

    /// Blocks until the exclusive (gc) lock is held.
    pub fn exclusive(cache_dir: &Path) -> Result<CacheLock, CacheError> {
        Self::take(cache_dir, libc::LOCK_EX).map(|lock| lock.expect("blocking flock returns a lock"))
    }

    /// The exclusive lock if nobody holds the cache, else `None`.
    pub fn try_exclusive(cache_dir: &Path) -> Result<Option<CacheLock>, CacheError> {
        Self::take(cache_dir, libc::LOCK_EX | libc::LOCK_NB)
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    fn take(cache_dir: &Path, operation: libc::c_int) -> Result<Option<CacheLock>, CacheError> {
        ensure_dir(cache_dir).map_err(io_at(cache_dir))?;
        let path = cache_dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| CacheError::Lock { path: path.clone(), source })?;
        loop {
            // SAFETY: the descriptor is open for the duration of the call.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                return Ok(Some(CacheLock { _file: file, exclusive: operation & libc::LOCK_EX != 0 }));
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(CacheError::Lock { path, source: error }),
            }
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
