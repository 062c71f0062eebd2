//! The action cache: `ac/<key hex>` holds the canonical JSON of the
//! [`ActionResult`] an action produced. An entry is a hit only if every blob
//! it references is still in the CAS, intact.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::error::io_at;
use crate::cache::{canonical_json, ActionResult, CacheError, Cas, Digest};
use crate::sys;

/// The action cache under `<cache>/ac`.
#[derive(Debug, Clone)]
pub struct ActionCache {
    root: PathBuf,
    tmp: PathBuf,
}

impl ActionCache {
    /// Opens (creating if needed) the action cache under `cache_dir/ac`.
    pub fn open(cache_dir: &Path) -> Result<ActionCache, CacheError> {
        let root = cache_dir.join("ac");
        let tmp = cache_dir.join("tmp");
        for dir in [&root, &tmp] {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        Ok(ActionCache { root, tmp })
    }

    /// Where the entry for `key` lives (whether or not it exists).
    pub fn path(&self, key: &Digest) -> PathBuf {
        self.root.join(key.hex())
    }

    /// The cached output for `key`, if there is one whose blobs are all in
    /// `cas`. A hit refreshes the entry's access stamp (for `cache gc`). An
    /// entry that does not parse is removed and counts as a miss.
    pub fn get(&self, key: &Digest, cas: &Cas) -> Result<Option<ActionResult>, CacheError> {
        let Some(output) = self.read(key)? else {
            return Ok(None);
        };
        for blob in output.blob_refs() {
            if !cas.verify(blob)? {
                return Ok(None);
            }
        }
        // Best effort: a read-only cache still serves hits.
        let _ = sys::touch(&self.path(key));
        Ok(Some(output))
    }

    /// The recorded output for `key` whether or not its blobs are local:
    /// a remote cache hit is recorded without its bytes, which stay on the
    /// server until something reads them.
    pub fn get_without_blobs(&self, key: &Digest) -> Result<Option<ActionResult>, CacheError> {
        let output = self.read(key)?;
        if output.is_some() {
            let _ = sys::touch(&self.path(key));
        }
        Ok(output)
    }

    /// The entry for `key`, parsed. One that does not parse is removed.
    fn read(&self, key: &Digest) -> Result<Option<ActionResult>, CacheError> {
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(output) => Ok(Some(output)),
            Err(_) => {
                // A foreign or damaged file: not ours to trust, cheap to rebuild.
                let _ = fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Records `output` under `key`. Idempotent: two processes that ran the
    /// same action write the same bytes, and the rename is atomic.
    pub fn put(&self, key: &Digest, output: &ActionResult) -> Result<(), CacheError> {
        let path = self.path(key);
        sys::write_atomic(&self.tmp, &path, &canonical_json(output)).map_err(io_at(path))
    }

    /// Forgets the entry for `key` (used when one of its blobs turned out corrupt).
    pub fn remove(&self, key: &Digest) -> Result<(), CacheError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(CacheError::Io { path, source: error }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn output(cas: &Cas, bytes: &[u8]) -> ActionResult {
        let blob = cas.put_bytes(bytes).unwrap();
        ActionResult { blobs: BTreeMap::from([("layer".to_owned(), blob)]), metadata: serde_json::json!({"n": 1}) }
    }

    #[test]
    fn miss_then_hit() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let ac = ActionCache::open(dir.path()).unwrap();
        let key = Digest::of(b"key");
        assert_eq!(ac.get(&key, &cas).unwrap(), None);
        let out = output(&cas, b"bytes");
        ac.put(&key, &out).unwrap();
        assert_eq!(ac.get(&key, &cas).unwrap(), Some(out.clone()));
        ac.put(&key, &out).unwrap();
        assert_eq!(ac.get(&key, &cas).unwrap(), Some(out), "writes are idempotent");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temp file left");
    }

    #[test]
    fn entry_with_a_missing_blob_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let ac = ActionCache::open(dir.path()).unwrap();
        let key = Digest::of(b"key");
        let out = output(&cas, b"bytes");
        ac.put(&key, &out).unwrap();
        fs::remove_file(cas.path(&out.blob_refs().next().unwrap().digest)).unwrap();
        assert_eq!(ac.get(&key, &cas).unwrap(), None);
    }

    #[test]
    fn damaged_entry_is_a_miss_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let ac = ActionCache::open(dir.path()).unwrap();
        let key = Digest::of(b"key");
        fs::write(ac.path(&key), b"{not json").unwrap();
        assert_eq!(ac.get(&key, &cas).unwrap(), None);
        assert!(!ac.path(&key).exists());
    }
}
