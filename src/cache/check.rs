//! `berth cache verify`: every blob of the CAS hashed against its name and
//! every action cache entry checked to parse and to name only sound blobs
//! (the layer store is checked by `oci::verify_layer_store`). With
//! `repair`, what is bad is removed: a blob or an entry is rebuilt or
//! fetched again by the next build that needs it.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use rayon::prelude::*;

use crate::cache::error::io_at;
use crate::cache::{ActionResult, CacheError, Digest, Sha256Writer};

/// What `berth cache verify` found in the CAS and the action cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheCheck {
    pub blobs: u64,
    /// Blobs whose bytes do not hash to their name (or stray files in the
    /// blob directory).
    pub bad_blobs: Vec<String>,
    pub entries: u64,
    /// Entries that do not parse or name a missing or corrupt blob.
    pub bad_entries: Vec<String>,
    /// With `repair`: bad blobs and entries removed.
    pub removed: u64,
}

/// Checks the CAS and the action cache of the cache at `cache_dir`.
pub fn verify_cache(cache_dir: &Path, repair: bool) -> Result<CacheCheck, CacheError> {
    let mut check = CacheCheck::default();
    let blob_dir = cache_dir.join("cas").join("sha256");
    let names = list(&blob_dir)?;
    check.blobs = names.len() as u64;
    let results: Vec<(String, bool)> = names
        .par_iter()
        .map(|name| Ok((name.clone(), blob_is_sound(&blob_dir, name)?)))
        .collect::<Result<_, CacheError>>()?;
    for (name, sound) in results {
        if !sound {
            check.bad_blobs.push(name);
        }
    }
    let ac_dir = cache_dir.join("ac");
    for name in list(&ac_dir)? {
        check.entries += 1;
        let path = ac_dir.join(&name);
        let sound = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ActionResult>(&bytes).ok())
            .is_some_and(|result| {
                result.blob_refs().all(|blob| {
                    let hex = blob.digest.hex();
                    !check.bad_blobs.contains(&hex)
                        && fs::metadata(blob_dir.join(&hex)).is_ok_and(|metadata| metadata.len() == blob.size)
                })
            });
        if !sound {
            check.bad_entries.push(name);
        }
    }
    if repair {
        for name in &check.bad_entries {
            remove(&ac_dir.join(name))?;
            check.removed += 1;
        }
        for name in &check.bad_blobs {
            remove(&blob_dir.join(name))?;
            check.removed += 1;
        }
    }
    Ok(check)
}

/// Whether the file `name` in the blob directory is a blob whose bytes hash
/// to its name.
fn blob_is_sound(blob_dir: &Path, name: &str) -> Result<bool, CacheError> {
    let Ok(expected) = format!("sha256:{name}").parse::<Digest>() else { return Ok(false) };
    let path = blob_dir.join(name);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        // Removed by a running build since it was listed.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(CacheError::Io { path, source }),
    };
    let mut hasher = Sha256Writer::new(io::sink());
    io::copy(&mut file, &mut hasher).map_err(io_at(&path))?;
    Ok(hasher.finish().0 == expected)
}

/// The file names in `dir`, sorted (a missing directory is empty).
fn list(dir: &Path) -> Result<Vec<String>, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CacheError::Io { path: dir.to_owned(), source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_type().map_err(io_at(entry.path()))?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn remove(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(CacheError::Io { path: path.to_owned(), source: error })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cache::{ActionCache, Cas};

    #[test]
    fn finds_and_repairs_corrupt_blobs_and_the_entries_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let ac = ActionCache::open(dir.path()).unwrap();
        let good = cas.put_bytes(b"good").unwrap();
        let bad = cas.put_bytes(b"bad blob").unwrap();
        let result = |blob| ActionResult {
            blobs: BTreeMap::from([("layer".to_owned(), blob)]),
            metadata: serde_json::json!({}),
        };
        ac.put(&Digest::of(b"k1"), &result(good)).unwrap();
        ac.put(&Digest::of(b"k2"), &result(bad)).unwrap();
        fs::write(dir.path().join("ac").join(Digest::of(b"k3").hex()), b"not json").unwrap();
        fs::write(cas.path(&bad.digest), b"bad bloB").unwrap();

        let check = verify_cache(dir.path(), false).unwrap();
        assert_eq!((check.blobs, check.entries), (2, 3));
        assert_eq!(check.bad_blobs, [bad.digest.hex()]);
        assert_eq!(check.bad_entries.len(), 2, "the entry naming the bad blob and the torn one");
        assert!(cas.path(&bad.digest).exists(), "nothing removed without repair");

        let repaired = verify_cache(dir.path(), true).unwrap();
        assert_eq!(repaired.removed, 3);
        let after = verify_cache(dir.path(), false).unwrap();
        assert_eq!((after.blobs, after.entries, after.bad_blobs.len(), after.bad_entries.len()), (1, 1, 0, 0));
    }
}
