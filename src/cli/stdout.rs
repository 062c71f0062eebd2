//! Data on stdout, through one writer for every command. A closed pipe
//! (`berth query //... | head -1`) means the reader has seen enough: the rest
//! is dropped and the command ends as it would have, exit code and all,
//! without an error (as `ls | head` does). Any other failure to write is the
//! machine's.

use std::fmt;
use std::io::{self, Write};

use crate::error::{Error, Result};

/// Locked stdout for a command's data; talk goes to stderr, through `report`.
pub struct Stdout<W: Write = io::StdoutLock<'static>> {
    out: W,
    /// The reader went away: everything after is dropped.
    closed: bool,
}

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout::new(io::stdout().lock())
    }
}

impl<W: Write> Stdout<W> {
    fn new(out: W) -> Stdout<W> {
        Stdout { out, closed: false }
    }

    /// Writes formatted data: `out.print(format_args!("{label}\n"))?`.
    pub fn print(&mut self, args: fmt::Arguments<'_>) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.out.write_fmt(args);
        self.check(result)
    }

    /// Pushes out what is buffered. A command calls it after its last line,
    /// so that a failure is reported rather than lost at exit.
    pub fn flush(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.out.flush();
        self.check(result)
    }

    fn check(&mut self, result: io::Result<()>) -> Result<()> {
        match result {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => Err(Error::environment(format!("Cannot write to stdout: {error}"))),
            Ok(()) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Takes `room` bytes, then fails every write and flush with `error`.
    struct Pipe {
        written: Vec<u8>,
        room: usize,
        error: io::ErrorKind,
        attempts: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.attempts += 1;
            let taken = bytes.len().min(self.room - self.written.len());
            if taken == 0 {
                return Err(self.error.into());
            }
            self.written.extend_from_slice(&bytes[..taken]);
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            if self.written.len() == self.room {
                return Err(self.error.into());
            }
            Ok(())
        }
    }

    fn pipe(room: usize, error: io::ErrorKind) -> Stdout<Pipe> {
        Stdout::new(Pipe { written: Vec::new(), room, error, attempts: 0 })
    }

    #[test]
    fn a_closed_pipe_drops_the_rest_without_an_error() {
        let mut out = pipe(6, io::ErrorKind::BrokenPipe);
        for line in ["//a:x", "//b:y", "//c:z"] {
            out.print(format_args!("{line}\n")).unwrap();
        }
        out.flush().unwrap();
        assert_eq!(out.out.written, b"//a:x\n");
        let attempts = out.out.attempts;
        out.print(format_args!("more\n")).unwrap();
        assert_eq!(out.out.attempts, attempts, "nothing is written once the reader has gone");
    }

    #[test]
    fn other_write_failures_are_the_machines() {
        let mut out = pipe(3, io::ErrorKind::StorageFull);
        let error = out.print(format_args!("//a:x\n")).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Environment);
        assert!(error.message.starts_with("Cannot write to stdout: "), "{error}");
        assert!(pipe(10, io::ErrorKind::StorageFull).flush().is_ok());
    }
}
