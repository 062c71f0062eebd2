//! `sha256:<hex>` digests, the one name for every blob, action and file.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 digest. Displays as `sha256:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid digest `{text}`: expected `sha256:` followed by 64 lowercase hex digits (or the 64 digits alone)")]
pub struct DigestError {
    pub text: String,
}

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 64 hex digits, as used in `blobs/sha256/<hex>` paths.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses `sha256:<hex>` or a bare `<hex>` (both forms are accepted in
    /// BUILD files, as `sha` and `digest` attributes).
    pub fn parse_lenient(text: &str) -> Result<Digest, DigestError> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        Self::from_hex(hex_part).ok_or_else(|| DigestError { text: text.to_owned() })
    }

    fn from_hex(hex_part: &str) -> Option<Digest> {
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        Some(Digest(bytes))
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Strict form, as in OCI descriptors: `sha256:<hex>`.
    fn from_str(text: &str) -> Result<Digest, DigestError> {
        text.strip_prefix("sha256:").and_then(Self::from_hex).ok_or_else(|| DigestError { text: text.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts what passes through it, so a stream is
/// digested while it is written (one pass over the bytes, never two).
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer { inner, hasher: Sha256::new(), len: 0 }
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest(self.hasher.finalize().into()), self.len, self.inner)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_and_round_trips() {
        let digest = Digest::of(b"");
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), digest);
        assert_eq!(Digest::parse_lenient(&EMPTY[7..]).unwrap(), digest);
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in ["", "sha256:", "sha512:abc", &EMPTY.to_uppercase(), &EMPTY[..70]] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(EMPTY[7..].parse::<Digest>().is_err(), "strict form needs the prefix");
    }

    #[test]
    fn writer_hashes_what_it_writes() {
        let mut writer = Sha256Writer::new(Vec::new());
        writer.write_all(b"hello").unwrap();
        let (digest, len, inner) = writer.finish();
        assert_eq!((digest, len, inner.as_slice()), (Digest::of(b"hello"), 5, &b"hello"[..]));
    }
}
