//! The file-digest memo: source files are hashed once and remembered by
//! their stat identity (path, size, mtime, ctime, inode, device), so a no-op
//! build stats every source file but reads none. One memo file per
//! workspace under `<cache>/memo/`; it is a hint, never part of a key.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};

use crate::cache::error::io_at;
use crate::cache::{CacheError, Digest};
use crate::sys;

/// The stat identity of a file. Any write changes mtime or ctime; a
/// replacement by rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl FileStamp {
    pub fn of(metadata: &fs::Metadata) -> FileStamp {
        FileStamp {
            size: metadata.size(),
            mtime_ns: metadata.mtime().saturating_mul(1_000_000_000).saturating_add(metadata.mtime_nsec()),
            ctime_ns: metadata.ctime().saturating_mul(1_000_000_000).saturating_add(metadata.ctime_nsec()),
            ino: metadata.ino(),
            dev: metadata.dev(),
        }
    }

    /// Stats `path` (following symlinks, as reading it would).
    pub fn read(path: &Path) -> io::Result<FileStamp> {
        fs::metadata(path).map(|metadata| FileStamp::of(&metadata))
    }

    /// Whether the file was last written long enough ago (outside the
    /// window of the kernel's coarse file clock) that an unchanged stamp
    /// proves unchanged bytes; else it could still change within the same
    /// timestamp tick (git's "racy clean" problem).
    pub fn is_settled(&self) -> bool {
        // The coarse clock is the one the kernel stamps files with.
        let Some(now_ns) = sys::coarse_realtime_ns() else { return false };
        self.mtime_ns.max(self.ctime_ns) <= now_ns - RACY_WINDOW_NS
    }
}

/// A source file's digest and the stamp it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub digest: Digest,
    pub size: u64,
    pub stamp: FileStamp,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Entry {
    stamp: FileStamp,
    digest: Digest,
}

/// File timestamps are taken from a coarse kernel clock: a file written
/// within this window of being hashed could change again without its stamp
/// changing, so its digest is used but not remembered, and an action that
/// copies it hashes the bytes again.
const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// The memo of one workspace's source-file digests.
#[derive(Debug)]
pub struct FileMemo {
    workspace_root: PathBuf,
    file: PathBuf,
    tmp: PathBuf,
    entries: Mutex<FxHashMap<String, Entry>>,
    dirty: AtomicBool,
    hashed: AtomicUsize,
}

impl FileMemo {
    /// Loads the memo of `workspace_root` (absolute) from `cache_dir`; a
    /// missing or unreadable memo starts empty.
    pub fn load(cache_dir: &Path, workspace_root: &Path) -> Result<FileMemo, CacheError> {
        let dir = cache_dir.join("memo");
        let tmp = cache_dir.join("tmp");
        for dir in [&dir, &tmp] {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        // Named by the workspace's absolute path: the memo is a local hint,
        // never part of a key or an output.
        let name = Digest::of(workspace_root.as_os_str().as_encoded_bytes()).hex();
        let file = dir.join(format!("{name}.json"));
        let entries = fs::read(&file).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        Ok(FileMemo {
            workspace_root: workspace_root.to_owned(),
            file,
            tmp,
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
            hashed: AtomicUsize::new(0),
        })
    }

    pub fn workspace_root(&self) -> &Path {
        &self.workspace_root
    }

    /// The digest of the workspace-relative file `path`: from the memo if
    /// the file's stamp is unchanged, else by reading and hashing it.
    pub fn digest(&self, path: &Path) -> Result<FileDigest, CacheError> {
        let absolute = self.workspace_root.join(path);
        let key = path.to_string_lossy();
        let stamp = match FileStamp::read(&absolute) {
            Ok(stamp) => stamp,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::SourceMissing { path: path.to_owned() })
            }
            Err(source) => return Err(CacheError::SourceUnreadable { path: path.to_owned(), source }),
        };
        if let Some(entry) = self.entries.lock().expect("memo lock").get(key.as_ref()) {
            if entry.stamp == stamp {
                return Ok(FileDigest { digest: entry.digest, size: stamp.size, stamp });
            }
        }
        let digest = hash_file(&absolute, path)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        let after = FileStamp::read(&absolute)
            .map_err(|source| CacheError::SourceUnreadable { path: path.to_owned(), source })?;
        if after != stamp || after.size != digest.1 {
            return Err(CacheError::SourceChanged { path: path.to_owned() });
        }
        if stamp.is_settled() {
            self.entries.lock().expect("memo lock").insert(key.into_owned(), Entry { stamp, digest: digest.0 });
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(FileDigest { digest: digest.0, size: stamp.size, stamp })
    }

    /// How many files this memo had to read and hash since it was loaded.
    pub fn files_hashed(&self) -> usize {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Writes the memo back if anything was learned. Two processes saving at
    /// once is harmless: the last complete file wins and both are correct.
    pub fn save(&self) -> Result<(), CacheError> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        // Plain serde_json, not canonical: the memo is a hint whose digest
        // nobody takes, and sorting 30,000 entries costs more than writing them.
        let mut bytes = Vec::new();
        serde_json::to_writer(&mut bytes, &*self.entries.lock().expect("memo lock"))
            .expect("the memo serializes to JSON");
        sys::write_atomic(&self.tmp, &self.file, &bytes).map_err(io_at(&self.file))
    }
}

thread_local! {
    /// One read buffer per hashing thread: a fresh zeroed 256 KiB per file
    /// cost more than hashing the 30k small files of a large tree.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 256 * 1024].into_boxed_slice());
}

fn hash_file(absolute: &Path, path: &Path) -> Result<(Digest, u64), CacheError> {
    let unreadable = |source| CacheError::SourceUnreadable { path: path.to_owned(), source };
    let mut file = File::open(absolute).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    READ_BUFFER.with_borrow_mut(|buffer| {
        loop {
            let read = match file.read(buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(unreadable(source)),
            };
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        Ok(())
    })?;
    Ok((Digest::from_bytes(hasher.finalize().into()), size))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn write_old(path: &Path, bytes: &[u8], age_secs: u64) {
        fs::write(path, bytes).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + age_secs);
        File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
    }

    #[test]
    fn remembered_files_are_not_read_again() {
        let cache = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        write_old(&workspace.path().join("a.txt"), b"alpha", 0);
        write_old(&workspace.path().join("b.txt"), b"beta", 0);
        // ctime is always "now" after a write; wait out the racy window once.
        std::thread::sleep(Duration::from_millis(2100));

        let memo = FileMemo::load(cache.path(), workspace.path()).unwrap();
        let a = memo.digest(Path::new("a.txt")).unwrap();
        assert_eq!((a.digest, a.size), (Digest::of(b"alpha"), 5));
        memo.digest(Path::new("b.txt")).unwrap();
        assert_eq!(memo.files_hashed(), 2);
        memo.save().unwrap();

        let memo = FileMemo::load(cache.path(), workspace.path()).unwrap();
        assert_eq!(memo.digest(Path::new("a.txt")).unwrap().digest, Digest::of(b"alpha"));
        assert_eq!(memo.digest(Path::new("b.txt")).unwrap().digest, Digest::of(b"beta"));
        assert_eq!(memo.files_hashed(), 0, "a no-op lookup reads no file");

        // Same size, same (old) mtime, new bytes: ctime and the memo catch it.
        write_old(&workspace.path().join("a.txt"), b"ALPHA", 0);
        assert_eq!(memo.digest(Path::new("a.txt")).unwrap().digest, Digest::of(b"ALPHA"));
        assert_eq!(memo.files_hashed(), 1);
    }

    #[test]
    fn freshly_written_files_are_hashed_but_not_remembered() {
        let cache = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        fs::write(workspace.path().join("new.txt"), b"new").unwrap();
        let memo = FileMemo::load(cache.path(), workspace.path()).unwrap();
        assert_eq!(memo.digest(Path::new("new.txt")).unwrap().digest, Digest::of(b"new"));
        memo.save().unwrap();
        let memo = FileMemo::load(cache.path(), workspace.path()).unwrap();
        memo.digest(Path::new("new.txt")).unwrap();
        assert_eq!(memo.files_hashed(), 1, "a racy entry is hashed again");
    }

    #[test]
    fn missing_source_is_a_user_error() {
        let cache = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let memo = FileMemo::load(cache.path(), workspace.path()).unwrap();
        let error = memo.digest(Path::new("gone.txt")).unwrap_err();
        assert!(matches!(error, CacheError::SourceMissing { .. }), "{error}");
    }
}
