//! Reading declared inputs while checking them: an action hashes a source
//! file as it reads it, and a file whose bytes no longer match the digest in
//! its key fails the action instead of poisoning the cache.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::cache::Digest;

/// A reader over a source file that fails at end of file (with
/// `io::ErrorKind::InvalidData`) if the bytes read do not hash to the
/// expected digest or the size differs.
///
/// Use it for every `ResolvedInput::Source` an action reads:
/// `VerifiedReader::open(&path, digest, size)`.
pub struct VerifiedReader {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    expected: Digest,
    expected_size: u64,
    read: u64,
    checked: bool,
}

impl VerifiedReader {
    pub fn open(path: &Path, expected: Digest, expected_size: u64) -> io::Result<VerifiedReader> {
        Ok(VerifiedReader {
            file: File::open(path)?,
            path: path.to_owned(),
            hasher: Sha256::new(),
            expected,
            expected_size,
            read: 0,
            checked: false,
        })
    }

    fn changed(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "Source file `{}` changed while the action read it (expected {})",
                self.path.display(),
                self.expected
            ),
        )
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read(buf)?;
        self.read += read as u64;
        if self.read > self.expected_size {
            return Err(self.changed());
        }
        if read > 0 {
            self.hasher.update(&buf[..read]);
        } else if !self.checked && !buf.is_empty() {
            self.checked = true;
            let actual = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
            if actual != self.expected || self.read != self.expected_size {
                return Err(self.changed());
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_matching_bytes_and_fails_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let mut out = Vec::new();
        VerifiedReader::open(&path, Digest::of(b"hello"), 5).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");

        std::fs::write(&path, b"HELLO").unwrap();
        let error = VerifiedReader::open(&path, Digest::of(b"hello"), 5).unwrap().read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        std::fs::write(&path, b"hello, world").unwrap();
        let error = VerifiedReader::open(&path, Digest::of(b"hello"), 5).unwrap().read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
