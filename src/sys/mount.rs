//! Mounts for container roots: overlayfs, the lazy unmount that removes
//! them, the mount table, and removing a tree without descending into a
//! mount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// Mounts a tmpfs at `target` with `options` (`size=...,mode=...`),
/// `nodev,nosuid`.
pub fn mount_tmpfs(target: &Path, options: &str) -> io::Result<()> {
    let (source, fstype) = (c_string(b"tmpfs")?, c_string(b"tmpfs")?);
    let (target, data) = (c_string(target.as_os_str().as_bytes())?, c_string(options.as_bytes())?);
    let flags = libc::MS_NODEV | libc::MS_NOSUID;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes free for an unprivileged writer on the file system of `path`
/// (`statvfs`'s `f_bavail * f_frsize`).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let path = c_string(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs only writes into the struct we pass, which is plain data.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Binds `source` at `target` (`MS_BIND`, not recursive).
pub fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target) = (c_string(source.as_os_str().as_bytes())?, c_string(target.as_os_str().as_bytes())?);
    // SAFETY: NUL-terminated paths that outlive the call; no fstype or data.
    let rc =
        unsafe { libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
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

/// The mount points of this process's mount namespace
/// (`/proc/self/mountinfo`), in mount order.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape_mount_path).collect())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| digits.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[index], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |value, digit| value.wrapping_mul(8) + (digit - b'0')));
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Detaches every mount at or below `dir`, deepest first, so that removing
/// `dir` afterwards never reaches into a mounted file system.
pub fn unmount_below(dir: &Path) -> io::Result<()> {
    let mut below: Vec<PathBuf> = mount_points()?.into_iter().filter(|point| point.starts_with(dir)).collect();
    below.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    below.dedup();
    for point in below {
        match unmount_detached(&point) {
            // Already gone (a parent's detach took it along).
            Err(error) if matches!(error.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {}
            result => result?,
        }
    }
    Ok(())
}

/// Removes `path` and everything below it without ever crossing into
/// another file system: mounts below it are detached first, and an entry on
/// another device (a mount that could not be detached) is an error rather
/// than something to empty. A missing `path` is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if metadata.is_dir() {
        unmount_below(path)?;
        remove_on_device(path, metadata.dev())
    } else {
        std::fs::remove_file(path)
    }
}

fn remove_on_device(dir: &Path, device: u64) -> io::Result<()> {
    // Something else may be removing the same tree (berth's watchdog after
    // a killed berth): what is already gone is not an error.
    match remove_on_device_racing(dir, device) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

fn remove_on_device_racing(dir: &Path, device: u64) -> io::Result<()> {
    let metadata = std::fs::symlink_metadata(dir)?;
    if metadata.dev() != device {
        return Err(io::Error::other(format!("`{}` is on another file system (a mount); not removed", dir.display())));
    }
    // A step may leave directories without write or search permission.
    if metadata.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if file_type.is_dir() {
            remove_on_device(&path, device)?;
        } else {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape_mount_path(r"/plain\09"), PathBuf::from(r"/plain\09"));
        assert!(mount_points().unwrap().contains(&PathBuf::from("/")));
    }

    #[test]
    fn remove_tree_removes_unwritable_directories() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", tree.join("link")).unwrap();
        std::fs::set_permissions(tree.join("a"), std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(Path::new("/etc/passwd").exists(), "the symlink was not followed");
        remove_tree(&tree).unwrap();
    }
}
