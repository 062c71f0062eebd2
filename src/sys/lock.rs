//! `flock(2)`: advisory whole-file locks that die with the process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Which lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Takes `mode` on `file`, retrying after signals. With `wait`, blocks until
/// the lock is free; without, returns `Ok(false)` when someone else holds it.
/// The lock is released when the file is closed.
pub fn flock(file: &File, mode: LockMode, wait: bool) -> io::Result<bool> {
    let mut operation = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        operation |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(error),
        }
    }
}
