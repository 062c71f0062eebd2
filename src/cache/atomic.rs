//! Atomic small-file writes and access stamps, shared by the action cache
//! and the file-digest memo.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Writes `bytes` to `path` through a temp file in `tmp_dir` (same file
/// system), fsynced and renamed, so readers see the old file or the whole
/// new one and a killed process leaves no torn file.
pub(crate) fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = tempfile::NamedTempFile::new_in(tmp_dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// Sets the file's mtime to the kernel's current time (`UTIME_NOW`): the
/// least-recently-used stamp that `berth cache gc` sorts by. The kernel
/// stamps it, so berth itself never reads the clock.
pub(crate) fn touch(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
    ];
    // SAFETY: `c_path` is a valid NUL-terminated string and `times` holds
    // the two entries utimensat reads.
    let result = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates `dir` and its parents if missing.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}
