//! `berth cache stats` and `berth cache gc`: sizes of the cache, and
//! least-recently-used eviction down to a size, never removing a blob that a
//! surviving action cache entry references.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::error::io_at;
use crate::cache::{ActionResult, CacheError, CacheLock, Digest};
use crate::sys;

/// Counts and sizes of what the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub cas_blobs: u64,
    pub cas_bytes: u64,
    pub ac_entries: u64,
    pub ac_bytes: u64,
    /// Base layers unpacked for build steps and `berth run`
    /// (`layers/<hex>/`), derived from CAS blobs and rebuilt on demand.
    pub extracted_layers: u64,
    pub extracted_bytes: u64,
    /// Memo files, temp files and leftovers of killed builds.
    pub other_bytes: u64,
}

impl CacheStats {
    pub fn total_bytes(&self) -> u64 {
        self.cas_bytes + self.ac_bytes + self.extracted_bytes + self.other_bytes
    }
}

/// What a gc removed and what remains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub removed_ac_entries: u64,
    pub removed_blobs: u64,
    pub removed_bytes: u64,
    pub remaining_bytes: u64,
}

/// Measures the cache at `cache_dir` (a missing cache is empty).
pub fn stats(cache_dir: &Path) -> Result<CacheStats, CacheError> {
    let mut stats = CacheStats::default();
    for file in list_files(&cache_dir.join("cas").join("sha256"))? {
        stats.cas_blobs += 1;
        stats.cas_bytes += file.size;
    }
    for file in list_files(&cache_dir.join("ac"))? {
        stats.ac_entries += 1;
        stats.ac_bytes += file.size;
    }
    for (_, dir) in extracted_layers(cache_dir)? {
        stats.extracted_layers += 1;
        stats.extracted_bytes += dir_size(&dir)?;
    }
    for dir in ["memo", "tmp", "scratch", "cas/tmp"] {
        stats.other_bytes += dir_size(&cache_dir.join(dir))?;
    }
    Ok(stats)
}

/// The unpacked layers under `layers/` and its id-shifted stores
/// (`layers/shifted-<N>/`, for user namespaces), by the digest (hex) of
/// their blob.
fn extracted_layers(cache_dir: &Path) -> Result<Vec<(String, PathBuf)>, CacheError> {
    let mut layers = Vec::new();
    let mut dirs = vec![cache_dir.join("layers")];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CacheError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().map_err(io_at(entry.path()))?.is_dir() {
                continue;
            }
            if name.len() == 64 {
                layers.push((name, entry.path()));
            } else if name.starts_with("shifted-") && dir == cache_dir.join("layers") {
                dirs.push(entry.path());
            }
        }
    }
    layers.sort();
    Ok(layers)
}

/// Evicts least recently used entries until the cache holds at most
/// `max_size` bytes. Requires the exclusive lock, which guarantees that no
/// build is between writing a blob and recording the entry that owns it.
///
/// Action cache entries are stamped on every hit. Blobs that no entry
/// references (pulled manifests, outputs of failed actions) are ordered by
/// their mtime, which committed blobs pin to the epoch (see `Cas::verify`),
/// so they go before any entry. Evicting an entry frees the blobs only it
/// referenced.
pub fn gc(cache_dir: &Path, max_size: u64, lock: &CacheLock) -> Result<GcReport, CacheError> {
    if !lock.is_exclusive() {
        return Err(CacheError::NotExclusive);
    }
    let mut report = GcReport::default();
    // No build runs (the lock says so): a mount under the cache is a
    // container root a killed berth left. Detach it before removing
    // anything, so nothing below is emptied through it.
    sys::unmount_below(cache_dir).map_err(io_at(cache_dir))?;
    // No build runs: whatever sits in the temp, scratch and run dirs is a
    // leftover.
    for dir in ["tmp", "scratch", "run", "cas/tmp"] {
        let dir = cache_dir.join(dir);
        let size = dir_size(&dir)?;
        if size > 0 || dir.exists() {
            remove_children(&dir)?;
            report.removed_bytes += size;
        }
    }

    let blobs: HashMap<Digest, FileInfo> = list_files(&cache_dir.join("cas").join("sha256"))?
        .into_iter()
        .filter_map(|file| Digest::parse_lenient(&file.name).ok().map(|digest| (digest, file)))
        .collect();
    let mut refcount: HashMap<Digest, u32> = HashMap::new();
    let mut candidates = Vec::new();
    for file in list_files(&cache_dir.join("ac"))? {
        // An entry that does not parse references nothing; it goes first.
        let refs: Vec<Digest> = fs::read(&file.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ActionResult>(&bytes).ok())
            .map(|result| result.blob_refs().map(|blob| blob.digest).collect())
            .unwrap_or_default();
        for digest in &refs {
            *refcount.entry(*digest).or_default() += 1;
        }
        candidates.push(Candidate { file, refs: Some(refs) });
    }
    for (digest, file) in &blobs {
        if !refcount.contains_key(digest) {
            candidates.push(Candidate { file: file.clone(), refs: None });
        }
    }
    // Oldest first; the path breaks ties so the order is deterministic.
    candidates.sort_by(|a, b| (a.file.stamp, &a.file.path).cmp(&(b.file.stamp, &b.file.path)));

    let mut current: u64 = blobs.values().map(|file| file.size).sum::<u64>()
        + candidates.iter().filter(|c| c.refs.is_some()).map(|c| c.file.size).sum::<u64>()
        + dir_size(&cache_dir.join("memo"))?;
    for candidate in candidates {
        if current <= max_size {
            break;
        }
        remove_file(&candidate.file.path)?;
        current -= candidate.file.size;
        match candidate.refs {
            None => report.removed_blobs += 1,
            Some(refs) => {
                report.removed_ac_entries += 1;
                for digest in refs {
                    let count = refcount.get_mut(&digest).expect("counted above");
                    *count -= 1;
                    if *count == 0 {
                        if let Some(blob) = blobs.get(&digest) {
                            remove_file(&blob.path)?;
                            current -= blob.size;
                            report.removed_bytes += blob.size;
                            report.removed_blobs += 1;
                        }
                    }
                }
            }
        }
        report.removed_bytes += candidate.file.size;
    }
    // Unpacked layers are derived data: those whose blob is gone always go,
    // the rest only while the cache is still over the limit.
    for (hex, dir) in extracted_layers(cache_dir)? {
        let size = dir_size(&dir)?;
        let blob_gone = !cache_dir.join("cas").join("sha256").join(&hex).exists();
        if blob_gone || current + size > max_size {
            sys::remove_tree(&dir).map_err(io_at(&dir))?;
            if let Some(store) = dir.parent() {
                let _ = fs::remove_file(store.join(format!("{hex}.lock")));
            }
            report.removed_bytes += size;
        } else {
            current += size;
        }
    }
    report.remaining_bytes = current;
    Ok(report)
}

struct Candidate {
    file: FileInfo,
    /// `Some` for an action cache entry (the blobs it references), `None`
    /// for a blob no entry references.
    refs: Option<Vec<Digest>>,
}

#[derive(Debug, Clone)]
struct FileInfo {
    path: PathBuf,
    name: String,
    size: u64,
    stamp: SystemTime,
}

/// The regular files directly in `dir` whose names are 64 hex digits.
fn list_files(dir: &Path) -> Result<Vec<FileInfo>, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CacheError::Io { path: dir.to_owned(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Removed by a concurrent `put` rename or another gc: skip it.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CacheError::Io { path: entry.path(), source }),
        };
        if metadata.is_file() {
            let stamp = metadata.modified().map_err(io_at(entry.path()))?;
            files.push(FileInfo { path: entry.path(), name, size: metadata.len(), stamp });
        }
    }
    Ok(files)
}

fn dir_size(dir: &Path) -> Result<u64, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(CacheError::Io { path: dir.to_owned(), source }),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        let metadata = match fs::symlink_metadata(entry.path()) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CacheError::Io { path: entry.path(), source }),
        };
        total += if metadata.is_dir() { dir_size(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}

fn remove_children(dir: &Path) -> Result<(), CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CacheError::Io { path: dir.to_owned(), source }),
    };
    for entry in entries {
        let path = entry.map_err(io_at(dir))?.path();
        // Never descends into a mount, and copes with read-only directories.
        sys::remove_tree(&path).map_err(io_at(&path))?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), CacheError> {
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
    use std::fs::File;
    use std::time::Duration;

    use super::*;
    use crate::cache::{ActionCache, Cas};

    fn age(path: &Path, secs: u64) {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + secs);
        File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
    }

    /// An entry for `key` referencing fresh blobs of `sizes` bytes, stamped `stamp`.
    fn entry(cas: &Cas, ac: &ActionCache, key: &[u8], blobs: &[&[u8]], stamp: u64) -> (Digest, Vec<Digest>) {
        let refs: BTreeMap<String, _> =
            blobs.iter().enumerate().map(|(i, bytes)| (format!("b{i}"), cas.put_bytes(bytes).unwrap())).collect();
        let digests = refs.values().map(|blob| blob.digest).collect();
        let key = Digest::of(key);
        ac.put(&key, &ActionResult { blobs: refs, metadata: serde_json::Value::Null }).unwrap();
        age(&ac.path(&key), stamp);
        (key, digests)
    }

    #[test]
    fn evicts_least_recently_used_and_keeps_shared_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let ac = ActionCache::open(dir.path()).unwrap();
        let shared: &[u8] = &[b's'; 1000];
        let (old, old_blobs) = entry(&cas, &ac, b"old", &[&[b'o'; 4000], shared], 10);
        let (new, new_blobs) = entry(&cas, &ac, b"new", &[&[b'n'; 3000], shared], 20);
        let orphan = cas.put_bytes(&[b'x'; 500]).unwrap();
        age(&cas.path(&orphan.digest), 15);

        let before = stats(dir.path()).unwrap();
        assert_eq!((before.cas_blobs, before.ac_entries), (4, 2));

        // Nothing to do under a generous limit.
        let lock = CacheLock::exclusive(dir.path()).unwrap();
        assert_eq!(gc(dir.path(), 1 << 30, &lock).unwrap().removed_ac_entries, 0);

        // Evicting `old` alone brings the cache under the limit.
        let report = gc(dir.path(), 5000, &lock).unwrap();
        assert_eq!((report.removed_ac_entries, report.removed_blobs), (1, 1));
        assert!(!ac.path(&old).exists() && ac.path(&new).exists());
        assert!(!cas.contains(&old_blobs[0]), "a blob only `old` referenced goes with it");
        assert!(new_blobs.iter().all(|blob| cas.contains(blob)), "blobs of a surviving entry stay");
        assert!(cas.contains(&orphan.digest), "younger than `old`, and the cache already fits");
        assert!(report.remaining_bytes <= 5000);
        assert_eq!(stats(dir.path()).unwrap().total_bytes(), report.remaining_bytes);

        // Down to nothing: everything goes, oldest first.
        gc(dir.path(), 0, &lock).unwrap();
        let after = stats(dir.path()).unwrap();
        assert_eq!((after.cas_blobs, after.ac_entries), (0, 0));
    }

    #[test]
    fn refuses_to_run_under_a_shared_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = CacheLock::shared(dir.path()).unwrap();
        assert!(matches!(gc(dir.path(), 0, &lock), Err(CacheError::NotExclusive)));
    }

    #[test]
    fn unpacked_layers_go_with_their_blob_or_when_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let kept = cas.put_bytes(b"kept layer").unwrap();
        let unpack = |hex: &str| {
            let root = dir.path().join("layers").join(hex).join("root");
            fs::create_dir_all(&root).unwrap();
            fs::write(root.join("file"), vec![0u8; 1000]).unwrap();
        };
        unpack(&kept.digest.hex());
        unpack(&Digest::of(b"blob gone").hex());
        assert_eq!(stats(dir.path()).unwrap().extracted_layers, 2);

        let lock = CacheLock::try_exclusive(dir.path()).unwrap().unwrap();
        gc(dir.path(), 1 << 20, &lock).unwrap();
        assert_eq!(stats(dir.path()).unwrap().extracted_layers, 1, "the orphan goes, the other fits");
        gc(dir.path(), 100, &lock).unwrap();
        assert_eq!(stats(dir.path()).unwrap().extracted_layers, 0, "over the limit, unpacked layers go too");
    }
}
