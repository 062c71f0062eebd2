//! Termination signals (SIGINT, SIGTERM, SIGHUP) turned into something a
//! thread can wait for: the handler only writes the signal's number to a
//! pipe (async-signal-safe), and a thread reads it and does the real work.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the pipe the handler writes to; -1 before installation.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid
        // byte. A full pipe drops the byte, which is fine: one is enough.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// The numbers of the signals [`TerminationSignals`] catches.
pub const SIGINT: i32 = libc::SIGINT;
pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGHUP: i32 = libc::SIGHUP;

/// SIGINT, SIGTERM and SIGHUP, caught for the life of the process.
#[derive(Debug)]
pub struct TerminationSignals {
    read_fd: libc::c_int,
}

impl TerminationSignals {
    /// Installs the handlers (once per process; a second call fails).
    pub fn install() -> io::Result<TerminationSignals> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if WRITE_FD.compare_exchange(-1, fds[1], Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // SAFETY: both descriptors were just opened here.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            return Err(io::Error::other("the termination handlers are installed already"));
        }
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // SAFETY: a zeroed sigaction is a valid starting point; the
            // handler is an extern "C" fn that only calls write(2).
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // Restarted syscalls: the threads doing the build never see EINTR.
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: a valid sigaction for a catchable signal.
            if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(TerminationSignals { read_fd: fds[0] })
    }

    /// Blocks until one of the signals arrives and returns its number.
    pub fn wait(&self) -> i32 {
        loop {
            let mut byte = 0u8;
            // SAFETY: reads one byte into a valid buffer from our own pipe.
            let read = unsafe { libc::read(self.read_fd, (&mut byte as *mut u8).cast(), 1) };
            if read == 1 {
                return i32::from(byte);
            }
        }
    }
}

/// Sends `signal` to this process (for tests of the handlers).
pub fn raise(signal: i32) -> io::Result<()> {
    // SAFETY: raise has no memory preconditions.
    if unsafe { libc::raise(signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
