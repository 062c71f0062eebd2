//! Special files and extended attributes: overlayfs whiteouts (character
//! devices 0/0), FIFOs, and the `trusted.overlay.opaque` marker.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path or name"))
}

fn mknod(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let path = c_string(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path; device 0/0.
    if unsafe { libc::mknod(path.as_ptr(), mode, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates overlayfs's whiteout at `path`: a character device 0/0.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    mknod(path, libc::S_IFCHR)
}

/// Creates a FIFO at `path`, mode 0600 (callers set owner and mode after).
pub fn make_fifo(path: &Path) -> io::Result<()> {
    mknod(path, libc::S_IFIFO | 0o600)
}

/// Sets the extended attribute `name` of `path` itself (never of a symlink's
/// target).
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (path, name) = (c_string(path.as_os_str().as_bytes())?, c_string(name)?);
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the extended attribute `name` of `path` itself into `buffer`;
/// returns its length, or `None` when it is missing, longer than the buffer,
/// or unreadable.
pub fn get_xattr(path: &Path, name: &[u8], buffer: &mut [u8]) -> Option<usize> {
    let (path, name) = (c_string(path.as_os_str().as_bytes()).ok()?, c_string(name).ok()?);
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    usize::try_from(len).ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    #[test]
    fn fifos_are_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        make_fifo(&path).unwrap();
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
        assert_eq!(make_fifo(&path).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(get_xattr(&path, b"user.none", &mut [0; 4]), None);
    }
}
