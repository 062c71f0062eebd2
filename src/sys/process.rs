//! Processes: who berth runs as, signals, the per-process switches runc's
//! child inherits, and the machine's limits.

use std::io;

/// `EPERM`, the errno a refused syscall returns in a container's seccomp filter.
pub const EPERM: i32 = libc::EPERM;
/// `EBUSY`, what removing a cgroup that still holds a process fails with.
pub const EBUSY: i32 = libc::EBUSY;
/// `ELOOP`, what opening a symlink with `O_NOFOLLOW` fails with.
pub const ELOOP: i32 = libc::ELOOP;
/// `ENOSYS`, the errno that makes libc fall back to an older syscall.
pub const ENOSYS: i32 = libc::ENOSYS;

/// The signals berth sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Kill,
}

/// Sets the signal the calling process gets when the thread that started
/// it dies (`prctl(PR_SET_PDEATHSIG, SIGKILL)`). Call it in a child before
/// `exec` (it survives `exec` of a program that is not set-uid), so a
/// child of berth dies with berth. Async-signal-safe.
pub fn kill_when_parent_dies() {
    // SAFETY: prctl with integer arguments is async-signal-safe and changes
    // only the calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); `None` when it does not exist. A pid together with
/// its start time names one process even after the pid is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Makes the calling process the leader of a new session (`setsid`), out
/// of its parent's process group and terminal. Async-signal-safe.
pub fn new_session() {
    // SAFETY: setsid has no memory preconditions.
    unsafe { libc::setsid() };
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: Signal) -> io::Result<()> {
    let signal = match signal {
        Signal::Kill => libc::SIGKILL,
    };
    let pid = i32::try_from(pid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory preconditions; the caller owns the pid's meaning.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process `pid` exists (signal 0; a process of another user
/// exists too).
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let delivered = unsafe { libc::kill(pid, 0) } == 0;
    delivered || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Turns transparent huge pages back on for this process (`prctl(
/// PR_SET_THP_DISABLE, 0)`). berth turns them off for itself in `main.rs`
/// and children inherit that; call this in a child before `exec` so a
/// container gets the machine's setting. Async-signal-safe.
pub fn restore_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments is async-signal-safe and changes
    // only the calling process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
}

/// The machine's RAM in bytes, if the kernel says.
pub fn total_memory() -> Option<u64> {
    // SAFETY: sysinfo only writes into the struct we pass, which is plain data.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    Some((info.totalram as u64).saturating_mul(u64::from(info.mem_unit)))
}

/// This process's hard limit on open files (`RLIMIT_NOFILE`), if readable.
pub fn open_files_hard_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_exists_and_the_machine_has_memory() {
        assert!(process_exists(std::process::id() as i32));
        let started = process_start_time(std::process::id()).unwrap();
        assert_eq!(process_start_time(std::process::id()), Some(started));
        assert_eq!(process_start_time(u32::MAX), None);
        assert!(total_memory().is_some_and(|bytes| bytes > 0));
        assert!(open_files_hard_limit().is_some_and(|limit| limit > 0));
    }
}
