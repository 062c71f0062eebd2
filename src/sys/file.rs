//! Files written so that readers see the old bytes or all of the new ones:
//! a temp file in the same directory (same file system), fsynced, then
//! renamed over the target. A killed process leaves a temp file at worst,
//! never a torn one.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether [`AtomicFile::commit`] fsyncs before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync, then rename: after a crash the target holds the old bytes or
    /// all of the new ones. For everything in the cache.
    Synced,
    /// Rename only: after a power loss the target may be empty. For files
    /// whose readers treat an unreadable file as absent (the build log).
    Unsynced,
}

/// A file being written under a temp name in the directory it is committed
/// to (or a directory on the same file system). Dropped without
/// [`AtomicFile::commit`], it leaves nothing behind.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    durability: Durability,
}

impl AtomicFile {
    /// A new temp file in `dir`, committed with fsync.
    pub fn new_in(dir: &Path) -> io::Result<AtomicFile> {
        Ok(AtomicFile { temp: tempfile::NamedTempFile::new_in(dir)?, durability: Durability::Synced })
    }

    /// Chooses whether `commit` fsyncs; see [`Durability`].
    pub fn with_durability(mut self, durability: Durability) -> AtomicFile {
        self.durability = durability;
        self
    }

    /// The open temp file, to set its permissions or times before commit.
    pub fn as_file(&self) -> &File {
        self.temp.as_file()
    }

    /// Makes the bytes written so far the contents of `path`, replacing
    /// what was there in one rename.
    pub fn commit(self, path: &Path) -> io::Result<()> {
        if self.durability == Durability::Synced {
            self.temp.as_file().sync_all()?;
        }
        self.temp.persist(path).map_err(|error| error.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Writes `bytes` to `path` through a synced temp file in `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::new_in(tmp_dir)?;
    file.write_all(bytes)?;
    file.commit(path)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the file's mtime to the kernel's current time (`UTIME_NOW`),
/// leaving its atime alone. The kernel stamps it, so berth never reads the
/// clock for it.
pub fn touch(path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
    ];
    // SAFETY: `path` is NUL-terminated and `times` holds the two entries
    // utimensat reads.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })
}

/// Swaps two paths in one step (`renameat2(RENAME_EXCHANGE)`): readers see
/// either the old or the new tree at each, never neither.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let (a, b) = (c_path(a)?, c_path(b)?);
    // SAFETY: both are NUL-terminated paths that outlive the call.
    check(unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) })
}

/// `options` with `O_NOFOLLOW | O_CLOEXEC`: opening a symlink fails instead
/// of following it.
pub fn open_nofollow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
}

/// Reads at most `cap` bytes of the regular file at `path`, which a
/// hostile image may have made a FIFO, a device or a symlink: it is opened
/// with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (a FIFO with no writer opens
/// at once, a symlink does not open), and anything but a regular file is
/// refused before a byte is read. A file longer than `cap` is an error
/// (`InvalidData`), as is a non-regular one (`InvalidInput`).
pub fn read_regular_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {cap} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn atomic_files_replace_whole_or_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        write_atomic(dir.path(), &target, b"first").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"first");

        let mut file = AtomicFile::new_in(dir.path()).unwrap().with_durability(Durability::Unsynced);
        file.write_all(b"second").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"first", "nothing shows before the commit");
        file.commit(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");

        let mut dropped = AtomicFile::new_in(dir.path()).unwrap();
        dropped.write_all(b"never").unwrap();
        drop(dropped);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn exchange_swaps_and_nofollow_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"b".to_vec(), b"a".to_vec()));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(open_nofollow(OpenOptions::new().read(true), &link).is_err());
        assert!(open_nofollow(OpenOptions::new().read(true), &a).is_ok());
    }

    #[test]
    fn capped_reads_take_only_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        fs::write(&file, b"root:x:0:0::/:/bin/sh\n").unwrap();
        assert_eq!(read_regular_capped(&file, 1 << 20).unwrap(), b"root:x:0:0::/:/bin/sh\n");
        assert_eq!(read_regular_capped(&file, 4).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let fifo = dir.path().join("fifo");
        crate::sys::make_fifo(&fifo).unwrap();
        // Returns at once: no writer is waited for.
        assert_eq!(read_regular_capped(&fifo, 1 << 20).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_regular_capped(&link, 1 << 20).is_err());
        assert_eq!(read_regular_capped(dir.path(), 1 << 20).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn touch_moves_the_mtime_to_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(std::time::UNIX_EPOCH).unwrap();
        touch(&path).unwrap();
        assert!(fs::metadata(&path).unwrap().modified().unwrap() > std::time::UNIX_EPOCH);
        assert!(touch(&dir.path().join("missing")).is_err());
    }
}
