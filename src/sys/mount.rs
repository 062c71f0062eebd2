//! Mounts for container roots: overlayfs, and the lazy unmount that
//! removes them.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a mount argument"))
}

/// Mounts overlayfs at `target` with `options` (`lowerdir=...,upperdir=...,
/// workdir=...`), `nodev`.
pub fn mount_overlay(target: &Path, options: &str) -> io::Result<()> {
    let (source, fstype) = (c_string(b"overlay")?, c_string(b"overlay")?);
    let (target, data) = (c_string(target.as_os_str().as_bytes())?, c_string(options.as_bytes())?);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc =
        unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_NODEV, data.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches the mount at `target` (`MNT_DETACH`): a stray open file cannot
/// keep it, or the cleanup after it, from happening.
pub fn unmount_detached(target: &Path) -> io::Result<()> {
    let target = c_string(target.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
