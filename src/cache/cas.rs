//! The content-addressed store: `cas/sha256/<hex>`, written atomically
//! (temp file, fsync, rename) so a killed build never leaves a torn blob.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{Digest, Sha256Writer};
use crate::error::{Diagnose, ErrorKind};
use crate::sys::AtomicFile;

/// The mtime every committed blob carries. Writing to a blob (through a
/// hard link under `berth-out/`, or by a stray tool) moves its mtime away
/// from it, which is how [`Cas::verify`] knows to hash it again.
const VERIFIED_MTIME: SystemTime = UNIX_EPOCH;

/// A blob in the CAS: its digest and size (what an OCI descriptor needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CasError {
    #[error("Cache I/O error at `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("Blob `{digest}` is not in the cache")]
    Missing { digest: Digest },
    #[error("Blob `{expected}` in the cache is corrupt (its bytes hash to `{actual}`); it was removed")]
    Corrupt { expected: Digest, actual: Digest },
    #[error("Blob `{digest}` in the cache was corrupt ({reason}); it was removed")]
    Removed { digest: Digest, reason: String },
}

impl Diagnose for CasError {
    fn kind(&self) -> ErrorKind {
        match self {
            CasError::Io { .. } | CasError::Corrupt { .. } | CasError::Removed { .. } => ErrorKind::Environment,
            CasError::Missing { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CasError::Corrupt { .. } | CasError::Removed { .. } => {
                Some("run the command again: the blob is rebuilt or fetched again; `berth cache verify` checks the whole cache".to_owned())
            }
            CasError::Io { .. } | CasError::Missing { .. } => None,
        }
    }
}

/// The content-addressed store under `<cache>/cas`.
#[derive(Debug, Clone)]
pub struct Cas {
    root: PathBuf,
    /// Blobs whose bytes this process hashed (or wrote) and found right:
    /// [`Cas::verify_content`] hashes a blob once per build, shared by every
    /// clone of the store.
    hashed: Arc<Mutex<HashSet<Digest>>>,
}

impl Cas {
    /// Opens (creating if needed) the store under `cache_dir/cas`.
    pub fn open(cache_dir: &Path) -> Result<Cas, CasError> {
        let root = cache_dir.join("cas");
        for dir in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|source| CasError::Io { path: dir.clone(), source })?;
        }
        Ok(Cas { root, hashed: Arc::default() })
    }

    /// Where the blob lives (whether or not it exists yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef, CasError> {
        let mut writer = self.writer()?;
        writer.write_all(bytes).map_err(|source| CasError::Io { path: self.root.join("tmp"), source })?;
        writer.commit()
    }

    /// A writer whose bytes become a blob on [`CasWriter::commit`]; dropped
    /// without commit, it leaves nothing behind.
    pub fn writer(&self) -> Result<CasWriter<'_>, CasError> {
        let tmp_dir = self.root.join("tmp");
        let temp = AtomicFile::new_in(&tmp_dir).map_err(|source| CasError::Io { path: tmp_dir, source })?;
        Ok(CasWriter { cas: self, inner: Sha256Writer::new(io::BufWriter::with_capacity(1 << 20, temp)) })
    }

    /// Whether `blob` is in the store with the right bytes. A blob still
    /// carrying the mtime it was committed with is trusted without reading
    /// it (any write to the file changes its mtime, so a no-op build hashes
    /// nothing); any other blob is hashed, and removed if it does not match.
    pub fn verify(&self, blob: &BlobRef) -> Result<bool, CasError> {
        let path = self.path(&blob.digest);
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(CasError::Io { path, source }),
        };
        if metadata.len() == blob.size && metadata.modified().ok() == Some(VERIFIED_MTIME) {
            return Ok(true);
        }
        let io_error = |source| CasError::Io { path: path.clone(), source };
        let mut hasher = Sha256Writer::new(io::sink());
        io::copy(&mut File::open(&path).map_err(io_error)?, &mut hasher).map_err(io_error)?;
        let (actual, size, _) = hasher.finish();
        if actual != blob.digest || size != blob.size {
            let _ = fs::remove_file(&path);
            return Ok(false);
        }
        // Sound after all (copied in, or touched): trust it from now on.
        File::open(&path).and_then(|file| file.set_modified(VERIFIED_MTIME)).map_err(io_error)?;
        Ok(true)
    }

    /// Whether `blob` is in the store with the right bytes, hashing it
    /// whatever its mtime says: for a blob about to be published (linked
    /// into `berth-out/`, exported, pushed, extracted), where bit rot that
    /// kept the committed stamp must not get through. Hashed once per
    /// process; a blob that does not match is removed.
    pub fn verify_content(&self, blob: &BlobRef) -> Result<bool, CasError> {
        if self.hashed.lock().expect("the hashed set is never poisoned").contains(&blob.digest) {
            return Ok(self.contains(&blob.digest));
        }
        let path = self.path(&blob.digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(CasError::Io { path, source }),
        };
        let io_error = |source| CasError::Io { path: path.clone(), source };
        let mut hasher = Sha256Writer::new(io::sink());
        io::copy(&mut io::BufReader::with_capacity(1 << 20, file), &mut hasher).map_err(io_error)?;
        let (actual, size, _) = hasher.finish();
        if actual != blob.digest || size != blob.size {
            self.remove_corrupt(&blob.digest);
            return Ok(false);
        }
        self.hashed.lock().expect("the hashed set is never poisoned").insert(blob.digest);
        Ok(true)
    }

    /// Removes a blob found corrupt, and forgets that it was hashed.
    pub fn remove_corrupt(&self, digest: &Digest) {
        self.hashed.lock().expect("the hashed set is never poisoned").remove(digest);
        let _ = fs::remove_file(self.path(digest));
    }

    /// Reads a whole blob, checking its digest; a corrupt blob is removed so
    /// the action that made it reruns.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, CasError> {
        let path = self.path(digest);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes).map_err(|source| CasError::Io { path: path.clone(), source })?
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(CasError::Missing { digest: *digest }),
            Err(source) => return Err(CasError::Io { path, source }),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            self.remove_corrupt(digest);
            return Err(CasError::Corrupt { expected: *digest, actual });
        }
        self.hashed.lock().expect("the hashed set is never poisoned").insert(*digest);
        Ok(bytes)
    }
}

/// A blob being written into the CAS; hashed as it is written.
pub struct CasWriter<'a> {
    cas: &'a Cas,
    inner: Sha256Writer<io::BufWriter<AtomicFile>>,
}

impl CasWriter<'_> {
    /// Flushes, fsyncs and renames the temp file to its digest's path.
    pub fn commit(self) -> Result<BlobRef, CasError> {
        let (digest, size, buffered) = self.inner.finish();
        let io_error = |source| CasError::Io { path: self.cas.root.join("tmp"), source };
        let temp = buffered.into_inner().map_err(|error| io_error(error.into_error()))?;
        temp.as_file().set_modified(VERIFIED_MTIME).map_err(io_error)?;
        let path = self.cas.path(&digest);
        // Another process may have written the same blob: content addressing
        // makes the rename idempotent.
        temp.commit(&path).map_err(|source| CasError::Io { path, source })?;
        // Hashed as it was written: publishing it later need not read it again.
        self.cas.hashed.lock().expect("the hashed set is never poisoned").insert(digest);
        Ok(BlobRef { digest, size })
    }
}

impl Write for CasWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_verifies_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let blob = cas.put_bytes(b"layer").unwrap();
        assert_eq!(blob, BlobRef { digest: Digest::of(b"layer"), size: 5 });
        assert_eq!(cas.read_verified(&blob.digest).unwrap(), b"layer");

        fs::write(cas.path(&blob.digest), b"flipped").unwrap();
        assert!(matches!(cas.read_verified(&blob.digest), Err(CasError::Corrupt { .. })));
        assert!(!cas.contains(&blob.digest), "a corrupt blob is dropped");
    }

    #[test]
    fn verify_trusts_untouched_blobs_and_drops_modified_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let blob = cas.put_bytes(b"config").unwrap();
        assert!(cas.verify(&blob).unwrap());

        // Rewritten with the same bytes: hashed once, then trusted again.
        fs::write(cas.path(&blob.digest), b"config").unwrap();
        assert!(cas.verify(&blob).unwrap());
        assert_eq!(fs::metadata(cas.path(&blob.digest)).unwrap().modified().unwrap(), VERIFIED_MTIME);

        // Same size, one byte flipped: detected and removed.
        fs::write(cas.path(&blob.digest), b"cOnfig").unwrap();
        assert!(!cas.verify(&blob).unwrap());
        assert!(!cas.contains(&blob.digest));
    }

    /// Bit rot keeps the committed mtime: `verify` trusts the stamp, but
    /// `verify_content` (what publishing uses) hashes the bytes.
    #[test]
    fn verify_content_ignores_the_stamp_and_hashes_once() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let blob = cas.put_bytes(b"layer bytes").unwrap();
        let fresh = Cas::open(dir.path()).unwrap();
        let path = cas.path(&blob.digest);
        fs::write(&path, b"layer bytEs").unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(VERIFIED_MTIME).unwrap();
        assert!(fresh.verify(&blob).unwrap(), "the stamp shortcut trusts the flipped blob");
        // This process wrote it and hashed it then: not read again.
        assert!(cas.verify_content(&blob).unwrap());
        // Another process (a new build) hashes it and removes it.
        assert!(!fresh.verify_content(&blob).unwrap());
        assert!(!path.exists(), "a corrupt blob is removed");
        assert!(!cas.verify_content(&blob).unwrap(), "a removed blob is not vouched for");
    }

    #[test]
    fn uncommitted_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let mut writer = cas.writer().unwrap();
        writer.write_all(b"partial").unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path().join("cas/tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("cas/sha256")).unwrap().count(), 0);
    }
}
