//! Entering a user namespace from an unprivileged process: `unshare(2)`
//! with a helper process outside that writes the id maps (newuidmap and
//! newgidmap must run from outside the new namespace), or the single-id
//! map a process may write for itself.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Moves this process into a new user namespace and a new mount namespace
/// owned by it. `map(pid)` runs in a child forked beforehand, still
/// outside, once this process has unshared; it writes the id maps of `pid`
/// and says whether it did. Returns what `map` said; an `Err` means
/// nothing changed (the kernel refused the namespace).
///
/// Must be called while the process has a single thread (the kernel
/// refuses `CLONE_NEWUSER` otherwise): at the start of `main`.
pub fn unshare_user_namespace(map: impl FnOnce(u32) -> bool) -> io::Result<bool> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned here only.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let parent = std::process::id();
    // SAFETY: the process has one thread (the caller's contract), so the
    // child may do anything the parent could.
    let child = check(unsafe { libc::fork() })?;
    if child == 0 {
        drop(write_end);
        let mut go = [0u8; 1];
        let mapped = std::fs::File::from(read_end).read(&mut go).is_ok_and(|read| read == 1) && map(parent);
        // SAFETY: _exit ends the forked child without running the parent's
        // atexit handlers or destructors twice.
        unsafe { libc::_exit(if mapped { 0 } else { 1 }) };
    }
    drop(read_end);
    // SAFETY: unshare has no memory preconditions.
    let unshared = check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) });
    if unshared.is_ok() {
        let _ = std::fs::File::from(write_end).write_all(&[1]);
    } else {
        drop(write_end);
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above, writing into our int.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    unshared?;
    Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
}

/// Maps uid and gid 0 of this process's (new, not yet mapped) user
/// namespace to its own `uid` and `gid` outside, the one map an
/// unprivileged process may write for itself; `setgroups(2)` is denied
/// first, as the kernel requires for that.
pub fn map_self(uid: u32, gid: u32) -> io::Result<()> {
    // Already denied (or the uid map written) when a helper got halfway.
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let uid_map = std::fs::read_to_string("/proc/self/uid_map")?;
    if uid_map.trim().is_empty() {
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    }
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// Makes every mount of this mount namespace a slave of the one it was
/// copied from: mounts made here never reach the host's namespace.
pub fn make_mounts_slave() -> io::Result<()> {
    let root = c"/";
    // SAFETY: a NUL-terminated path; no fstype or data.
    check(unsafe {
        libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null())
    })
    .map(drop)
}

/// The real user and group ids of this process.
pub fn real_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid have no preconditions.
    unsafe { (libc::getuid(), libc::getgid()) }
}
