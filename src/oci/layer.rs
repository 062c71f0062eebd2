//! Layer tars, written from our own sorted walk so that the same entries give
//! the same bytes on any machine.
//!
//! Analysis describes a layer as [`LayerEntry`] values (the params of
//! `pack_layer`); other producers (`deb_layer`'s data.tar, `run_step`'s
//! captured directory) feed a [`LayerBuilder`] with [`LayerBuilder::add_tar`]
//! or [`LayerBuilder::add_tree`]. [`LayerBuilder::write`] then streams
//! tar → sha256 (the diff_id) → compression → the output (a `CasWriter`),
//! holding only the entries' metadata in memory, never file contents.
//!
//! The rules (design "Reproducibility rules"): entries sorted by the bytes of
//! their paths, so parents come before children; missing parent directories
//! added as 0755; uid/gid 0 unless set; mode 0644 for files, 0755 for
//! directories and executables unless set; mtime `SOURCE_DATE_EPOCH` (or 0)
//! unless set; no user or group names, no atime or ctime (GNU headers with
//! those fields zero, GNU long names when a path needs them); files that
//! share a (device, inode) kept as hard links (files of a tree the action
//! owns: a step's outputs, a re-packed tar; never declared workspace
//! sources, whose link structure the key cannot see); a duplicate path is an
//! error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::cache::{BlobRef, Cas, Digest, Sha256Writer};
use crate::oci::{Compression, Compressor, OciError};

/// Mode of a file that is not executable, unless the entry sets one.
pub const FILE_MODE: u32 = 0o644;
/// Mode of directories and executable files, unless the entry sets one.
pub const DIR_MODE: u32 = 0o755;
/// Mode of symlinks (Linux ignores it; this is what every tool writes).
pub const SYMLINK_MODE: u32 = 0o777;

/// One entry of a declarative layer, as analysis builds it from `oci_layer`
/// and `files`. It is part of `pack_layer`'s params, so everything that
/// decides the bytes is in it (sources are named by their index in the
/// action's inputs; their bytes are covered by the input digests).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerEntry {
    /// Absolute and normalised: `/etc/motd`, never `etc/motd`, `/a/../b` or `/a/`.
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Permission bits (`0o4755` keeps setuid); `None` normalises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Seconds since the epoch; `None` is the layer's `SOURCE_DATE_EPOCH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
}

/// What a [`LayerEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryKind {
    /// The bytes of input `source` (an index into the action's inputs).
    /// `executable` is the source file's executable bit as analysis saw it:
    /// it is a param so that a `chmod +x` changes the action key.
    File {
        source: usize,
        executable: bool,
    },
    /// Literal text (`contents = {"/etc/motd": "hi"}`).
    Contents {
        contents: String,
    },
    Symlink {
        target: String,
    },
    Directory,
}

impl LayerEntry {
    pub fn file(path: impl Into<String>, source: usize, executable: bool) -> LayerEntry {
        LayerEntry::new(path, EntryKind::File { source, executable })
    }

    pub fn contents(path: impl Into<String>, contents: impl Into<String>) -> LayerEntry {
        LayerEntry::new(path, EntryKind::Contents { contents: contents.into() })
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> LayerEntry {
        LayerEntry::new(path, EntryKind::Symlink { target: target.into() })
    }

    pub fn directory(path: impl Into<String>) -> LayerEntry {
        LayerEntry::new(path, EntryKind::Directory)
    }

    fn new(path: impl Into<String>, kind: EntryKind) -> LayerEntry {
        LayerEntry { path: path.into(), kind, mode: None, uid: 0, gid: 0, mtime: None }
    }

    pub fn with_mode(mut self, mode: u32) -> LayerEntry {
        self.mode = Some(mode);
        self
    }

    pub fn with_owner(mut self, uid: u32, gid: u32) -> LayerEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn with_mtime(mut self, mtime: u64) -> LayerEntry {
        self.mtime = Some(mtime);
        self
    }

    pub fn meta(&self) -> EntryMeta {
        EntryMeta { mode: self.mode, uid: self.uid, gid: self.gid, mtime: self.mtime }
    }
}

/// Owner, mode and time of an entry; `None` fields are normalised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryMeta {
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<u64>,
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// `size` bytes of a file on disk.
    Path {
        path: PathBuf,
        size: u64,
        origin: Origin,
    },
    Bytes(Vec<u8>),
}

/// Where a file on disk comes from, which decides how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file the action made or unpacked (a step's output): hard links
    /// between such files are kept as links.
    Owned,
    /// A declared source whose stamp the scheduler checks again after the
    /// action, which proves its bytes. Packed as a file, never linked by
    /// inode: the action key sees its bytes, not whether the checkout
    /// happens to hard-link it to another file.
    Source,
    /// A declared source written too recently for its stamp to prove its
    /// bytes: they must hash to this digest as they are copied.
    UnsettledSource(Digest),
}

/// What an entry of a [`LayerBuilder`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Directory,
    File {
        source: FileSource,
        executable: bool,
    },
    Symlink {
        target: String,
    },
    /// A hard link to another (absolute) path of the same layer.
    HardLink {
        target: String,
    },
}

/// How [`LayerBuilder::add_tree`] treats owners and modes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// As the files have them (a `run_step` capture: "owners and modes as the
    /// step left them").
    Keep,
    /// uid/gid 0 and normalised modes (source trees).
    Normalise,
}

/// The digests of a layer written by [`LayerBuilder::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerTar {
    /// sha256 of the uncompressed tar, for the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub tar_size: u64,
}

/// A layer blob in the CAS with what a manifest and a config need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayer {
    pub blob: BlobRef,
    pub diff_id: Digest,
    pub compression: Compression,
}

impl PackedLayer {
    pub fn media_type(&self) -> &'static str {
        self.compression.media_type()
    }
}

#[derive(Debug, Clone)]
struct Planned {
    meta: EntryMeta,
    body: Body,
}

/// Collects the entries of one layer, then writes them sorted.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Planned>,
    default_mtime: u64,
}

impl LayerBuilder {
    /// `source_date_epoch` is the mtime of every entry that sets none.
    pub fn new(source_date_epoch: u64) -> LayerBuilder {
        LayerBuilder { entries: BTreeMap::new(), default_mtime: source_date_epoch }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds one entry at an absolute, normalised `path`. A path that is
    /// already there is a user error naming it (unless both are the same
    /// directory).
    pub fn add(&mut self, path: &str, meta: EntryMeta, body: Body) -> Result<(), OciError> {
        validate_path(path)?;
        if path == "/" && body != Body::Directory {
            return Err(OciError::InvalidPath { path: path.to_owned(), reason: "the root can only be a directory" });
        }
        if let Some(existing) = self.entries.get(path) {
            // The same directory declared twice (by two `files` targets) is
            // one directory; anything else at one path is ambiguous.
            if existing.body == Body::Directory && body == Body::Directory && existing.meta == meta {
                return Ok(());
            }
            return Err(OciError::DuplicatePath { path: path.to_owned() });
        }
        self.entries.insert(path.to_owned(), Planned { meta, body });
        Ok(())
    }

    /// Adds the entries of an uncompressed tar stream (a `.deb`'s data.tar),
    /// keeping owners and modes, normalising paths and times. File contents
    /// are spooled into `spool_dir` (a scratch directory) so memory stays
    /// constant. As when extracting, a later entry replaces an earlier one at
    /// the same path.
    pub fn add_tar<R: Read>(&mut self, reader: R, spool_dir: &Path) -> Result<(), OciError> {
        let read_error = |source| OciError::Read { path: PathBuf::from("<tar stream>"), source };
        let mut archive = tar::Archive::new(reader);
        for (index, entry) in archive.entries().map_err(read_error)?.enumerate() {
            let mut entry = entry.map_err(read_error)?;
            let raw_path = entry.path_bytes().into_owned();
            let raw_path = String::from_utf8(raw_path).map_err(|error| OciError::InvalidPath {
                path: String::from_utf8_lossy(error.as_bytes()).into_owned(),
                reason: "not UTF-8",
            })?;
            let path = normalize_path(&raw_path)?;
            let header = entry.header();
            let mode = header.mode().map_err(read_error)? & 0o7777;
            let meta = EntryMeta {
                mode: Some(mode),
                uid: header.uid().map_err(read_error)? as u32,
                gid: header.gid().map_err(read_error)? as u32,
                mtime: None,
            };
            let link_name = || -> Result<String, OciError> {
                let bytes = entry
                    .link_name_bytes()
                    .ok_or_else(|| OciError::InvalidPath { path: path.clone(), reason: "a link without a target" })?;
                String::from_utf8(bytes.into_owned())
                    .map_err(|_| OciError::InvalidPath { path: path.clone(), reason: "link target not UTF-8" })
            };
            let body = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let spooled = spool_dir.join(index.to_string());
                    let mut file = File::create(&spooled).map_err(OciError::write(spooled.display().to_string()))?;
                    let size = io::copy(&mut entry, &mut file).map_err(read_error)?;
                    Body::File {
                        source: FileSource::Path { path: spooled, size, origin: Origin::Owned },
                        executable: mode & 0o111 != 0,
                    }
                }
                tar::EntryType::Directory => Body::Directory,
                tar::EntryType::Symlink => Body::Symlink { target: link_name()? },
                tar::EntryType::Link => Body::HardLink { target: normalize_path(&link_name()?)? },
                tar::EntryType::XGlobalHeader => continue,
                other => return Err(OciError::UnsupportedFile { path, what: format!("tar entry type {other:?}") }),
            };
            if path == "/" {
                continue;
            }
            self.entries.insert(path, Planned { meta, body });
        }
        Ok(())
    }

    /// Adds the directory `dir` at `dest` (absolute) and everything under it.
    /// Files are read when the layer is written; hard links among them are
    /// kept.
    pub fn add_tree(&mut self, dir: &Path, dest: &str, ownership: Ownership) -> Result<(), OciError> {
        validate_path(dest)?;
        let meta = fs::symlink_metadata(dir).map_err(OciError::read(dir))?;
        if !meta.is_dir() {
            return Err(OciError::UnsupportedFile { path: dest.to_owned(), what: "not a directory".to_owned() });
        }
        if dest != "/" {
            self.add(dest, tree_meta(&meta, ownership), Body::Directory)?;
        }
        self.walk_tree(dir, dest, ownership)
    }

    fn walk_tree(&mut self, dir: &Path, dest: &str, ownership: Ownership) -> Result<(), OciError> {
        let mut children = Vec::new();
        for child in fs::read_dir(dir).map_err(OciError::read(dir))? {
            children.push(child.map_err(OciError::read(dir))?.file_name());
        }
        // Sorted so errors (the first duplicate) do not depend on readdir order.
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in children {
            let source = dir.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| OciError::InvalidPath { path: source.display().to_string(), reason: "not UTF-8" })?;
            let path = if dest == "/" { format!("/{name}") } else { format!("{dest}/{name}") };
            let meta = fs::symlink_metadata(&source).map_err(OciError::read(&source))?;
            let file_type = meta.file_type();
            let body = if file_type.is_dir() {
                Body::Directory
            } else if file_type.is_file() {
                Body::File {
                    source: FileSource::Path { path: source.clone(), size: meta.len(), origin: Origin::Owned },
                    executable: meta.mode() & 0o111 != 0,
                }
            } else if file_type.is_symlink() {
                let target = fs::read_link(&source).map_err(OciError::read(&source))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| OciError::InvalidPath { path: path.clone(), reason: "symlink target not UTF-8" })?;
                Body::Symlink { target: target.to_owned() }
            } else {
                return Err(OciError::UnsupportedFile { path, what: format!("{file_type:?}") });
            };
            let is_dir = body == Body::Directory;
            self.add(&path, tree_meta(&meta, ownership), body)?;
            if is_dir {
                self.walk_tree(&source, &path, ownership)?;
            }
        }
        Ok(())
    }

    /// Writes the layer into the CAS: tar → diff_id → compression → digest.
    /// `threads` only sets the parallelism of gzip, never the bytes.
    pub fn write_to_cas(self, cas: &Cas, compression: Compression, threads: usize) -> Result<PackedLayer, OciError> {
        let writer = cas.writer()?;
        let (tar, writer) = self.write(writer, compression, threads)?;
        let blob = writer.commit()?;
        Ok(PackedLayer { blob, diff_id: tar.diff_id, compression })
    }

    /// Streams the layer into `out`, compressed; returns the diff_id.
    pub fn write<W: Write>(self, out: W, compression: Compression, threads: usize) -> Result<(LayerTar, W), OciError> {
        let default_mtime = self.default_mtime;
        let plan = self.plan()?;
        let write_error = OciError::write;
        let compressor = Compressor::new(out, compression, threads).map_err(write_error("the layer"))?;
        let mut tar = tar::Builder::new(Sha256Writer::new(compressor));
        // Files already written, by (device, inode), with their resolved
        // metadata: a later path of the same inode becomes a hard link.
        let mut inodes: HashMap<(u64, u64), (String, Resolved)> = HashMap::new();
        for (path, Planned { meta, body }) in plan {
            if path == "/" {
                continue; // The root is not an entry of a layer.
            }
            let name = &path[1..];
            let resolved = Resolved::new(meta, &body, default_mtime);
            let mut header = resolved.header();
            let result = match body {
                Body::Directory => {
                    header.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut header, name, io::empty())
                }
                Body::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    tar.append_link(&mut header, name, target)
                }
                Body::HardLink { target } => {
                    header.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut header, name, &target[1..])
                }
                Body::File { source: FileSource::Bytes(bytes), .. } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, name, &bytes[..])
                }
                Body::File { source: FileSource::Path { path: source, size, origin }, .. } => {
                    let file = File::open(&source).map_err(OciError::read(&source))?;
                    let stat = file.metadata().map_err(OciError::read(&source))?;
                    if origin == Origin::Owned && stat.nlink() > 1 {
                        let key = (stat.dev(), stat.ino());
                        if let Some((first, first_resolved)) = inodes.get(&key) {
                            if *first_resolved == resolved {
                                header.set_entry_type(tar::EntryType::Link);
                                tar.append_link(&mut header, name, first).map_err(write_error("the layer"))?;
                                continue;
                            }
                        } else {
                            inodes.insert(key, (name.to_owned(), resolved));
                        }
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    let expected = match origin {
                        Origin::UnsettledSource(digest) => Some(digest),
                        Origin::Owned | Origin::Source => None,
                    };
                    let reader = BufReader::with_capacity(256 << 10, file).take(size);
                    let mut reader = CheckedReader::new(reader, expected.is_some());
                    tar.append_data(&mut header, name, &mut reader).map_err(|error| match error.kind() {
                        _ if reader.read_failed => OciError::Read { path: source.clone(), source: error },
                        _ => OciError::Write { what: "the layer".to_owned(), source: error },
                    })?;
                    let (len, actual) = reader.finish();
                    if len != size {
                        return Err(OciError::InputChanged {
                            path: source,
                            expected: format!("{size} bytes"),
                            actual: format!("{len} bytes"),
                        });
                    }
                    if let (Some(expected), Some(actual)) = (expected, actual) {
                        if actual != expected {
                            return Err(OciError::InputChanged {
                                path: source,
                                expected: expected.to_string(),
                                actual: actual.to_string(),
                            });
                        }
                    }
                    Ok(())
                }
            };
            result.map_err(write_error("the layer"))?;
        }
        let hashed = tar.into_inner().map_err(write_error("the layer"))?;
        let (diff_id, tar_size, compressor) = hashed.finish();
        let out = compressor.finish().map_err(write_error("the layer"))?;
        Ok((LayerTar { diff_id, tar_size }, out))
    }

    /// Adds missing parent directories, checks that parents are directories,
    /// and points every hard link group at its first path in byte order (a
    /// tar hard link must name an earlier entry). The map is handed over and
    /// consumed as it is written, so a 30,000-entry layer is never held
    /// twice.
    fn plan(mut self) -> Result<BTreeMap<String, Planned>, OciError> {
        let mut missing: BTreeSet<&str> = BTreeSet::new();
        for path in self.entries.keys() {
            let mut parent = parent_of(path);
            while let Some(dir) = parent {
                match self.entries.get(dir) {
                    Some(Planned { body: Body::Directory, .. }) => break,
                    Some(_) => return Err(OciError::NotADirectory { parent: dir.to_owned(), path: path.clone() }),
                    // Its own parents were added when it was.
                    None if !missing.insert(dir) => break,
                    None => parent = parent_of(dir),
                }
            }
        }
        let missing: Vec<String> = missing.into_iter().map(str::to_owned).collect();
        for dir in missing {
            let meta = EntryMeta { mode: Some(DIR_MODE), ..EntryMeta::default() };
            self.entries.insert(dir, Planned { meta, body: Body::Directory });
        }
        self.resolve_hard_links()?;
        Ok(self.entries)
    }

    fn resolve_hard_links(&mut self) -> Result<(), OciError> {
        let links: Vec<(String, String)> = self
            .entries
            .iter()
            .filter_map(|(path, planned)| match &planned.body {
                Body::HardLink { target } => Some((path.clone(), target.clone())),
                _ => None,
            })
            .collect();
        if links.is_empty() {
            return Ok(());
        }
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, target) in links {
            // Follow chains of links to the file that holds the bytes; a
            // chain longer than the layer is a cycle.
            let mut next = target.clone();
            let mut file = None;
            for _ in 0..=self.entries.len() {
                match self.entries.get(&next).map(|planned| &planned.body) {
                    Some(Body::HardLink { target }) => next = target.clone(),
                    Some(Body::File { .. }) => {
                        file = Some(next);
                        break;
                    }
                    _ => break,
                }
            }
            let Some(file) = file else { return Err(OciError::BadHardLink { path, target }) };
            groups.entry(file).or_default().push(path);
        }
        for (file, links) in groups {
            let first = links.iter().min().filter(|first| **first < file).cloned();
            let holder = match first {
                Some(first) => {
                    let body = self.entries.get(&file).expect("resolved above").body.clone();
                    self.entries.get_mut(&first).expect("a link of the group").body = body;
                    self.entries.get_mut(&file).expect("resolved above").body =
                        Body::HardLink { target: first.clone() };
                    first
                }
                None => file,
            };
            for link in links.into_iter().filter(|link| *link != holder) {
                self.entries.get_mut(&link).expect("a link of the group").body =
                    Body::HardLink { target: holder.clone() };
            }
        }
        Ok(())
    }
}

/// An entry's header fields after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resolved {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Resolved {
    fn new(meta: EntryMeta, body: &Body, default_mtime: u64) -> Resolved {
        let default_mode = match body {
            Body::Directory => DIR_MODE,
            Body::Symlink { .. } => SYMLINK_MODE,
            Body::File { executable: true, .. } => DIR_MODE,
            Body::File { executable: false, .. } | Body::HardLink { .. } => FILE_MODE,
        };
        Resolved {
            mode: meta.mode.unwrap_or(default_mode) & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime.unwrap_or(default_mtime),
        }
    }

    /// A GNU header with no user or group name and zero atime/ctime.
    fn header(&self) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_mode(self.mode);
        header.set_uid(u64::from(self.uid));
        header.set_gid(u64::from(self.gid));
        header.set_mtime(self.mtime);
        header.set_size(0);
        header
    }
}

fn tree_meta(meta: &fs::Metadata, ownership: Ownership) -> EntryMeta {
    match ownership {
        Ownership::Keep => {
            EntryMeta { mode: Some(meta.mode() & 0o7777), uid: meta.uid(), gid: meta.gid(), mtime: None }
        }
        Ownership::Normalise => EntryMeta::default(),
    }
}

/// Hashes and counts what is read through it; remembers whether a read
/// failed, to tell a bad source from a bad destination.
struct CheckedReader<R> {
    inner: R,
    /// Only for bytes that must match a digest: hashing is a third of the
    /// CPU a layer writer spends besides compression.
    hasher: Option<Sha256>,
    len: u64,
    read_failed: bool,
}

impl<R: Read> CheckedReader<R> {
    fn new(inner: R, hash: bool) -> Self {
        CheckedReader { inner, hasher: hash.then(Sha256::new), len: 0, read_failed: false }
    }

    /// The length read, and the digest of the bytes if they were hashed.
    fn finish(self) -> (u64, Option<Digest>) {
        (self.len, self.hasher.map(|hasher| Digest::from_bytes(hasher.finalize().into())))
    }
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf).inspect_err(|_| self.read_failed = true)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..read]);
        }
        self.len += read as u64;
        Ok(read)
    }
}

/// Checks that `path` is absolute and normalised: `/`, or `/` followed by
/// non-empty components that are neither `.` nor `..`, without a trailing `/`.
pub fn validate_path(path: &str) -> Result<(), OciError> {
    let invalid = |reason| Err(OciError::InvalidPath { path: path.to_owned(), reason });
    if path == "/" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else { return invalid("not absolute") };
    if path.contains('\0') {
        return invalid("contains a NUL byte");
    }
    for component in rest.split('/') {
        match component {
            "" => return invalid("empty component or trailing `/`"),
            "." | ".." => return invalid("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Turns a path as tar archives spell it (`./usr/bin/`, `usr//lib`, `/etc`)
/// into the absolute, normalised form; refuses `..`.
pub fn normalize_path(raw: &str) -> Result<String, OciError> {
    let mut out = String::with_capacity(raw.len() + 1);
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(OciError::InvalidPath { path: raw.to_owned(), reason: "`..` component" }),
            name => {
                out.push('/');
                out.push_str(name);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    validate_path(&out)?;
    Ok(out)
}

/// The parent of a normalised path, `None` for `/` and top-level entries
/// (the root is never an entry).
fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(index) => Some(&path[..index]),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::oci::decoder;

    struct TarEntry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        mtime: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn write(builder: LayerBuilder, compression: Compression) -> (LayerTar, Vec<u8>) {
        builder.write(Vec::new(), compression, 2).unwrap()
    }

    fn entries(tar_bytes: &[u8]) -> Vec<TarEntry> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                assert_eq!(header.username_bytes(), Some(&b""[..]), "no user names");
                assert_eq!(header.groupname_bytes(), Some(&b""[..]), "no group names");
                let gnu = header.as_gnu().expect("GNU headers");
                assert!(gnu.atime.iter().chain(&gnu.ctime).all(|byte| *byte == 0), "no atime/ctime");
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                TarEntry {
                    path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                    kind: header.entry_type(),
                    mode: header.mode().unwrap(),
                    uid: header.uid().unwrap(),
                    mtime: header.mtime().unwrap(),
                    link: entry.link_name_bytes().map(|link| String::from_utf8(link.into_owned()).unwrap()),
                    data,
                }
            })
            .collect()
    }

    fn sample(dir: &Path) -> LayerBuilder {
        let script = dir.join("run.sh");
        fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
        let mut builder = LayerBuilder::new(1_700_000_000);
        let file = |path: &Path, executable| Body::File {
            source: FileSource::Path {
                path: path.to_owned(),
                size: fs::metadata(path).unwrap().len(),
                origin: Origin::Owned,
            },
            executable,
        };
        builder.add("/usr/bin/run", EntryMeta::default(), file(&script, true)).unwrap();
        let motd = Body::File { source: FileSource::Bytes(b"hello\n".to_vec()), executable: false };
        builder.add("/etc/motd", EntryMeta { mtime: Some(5), ..EntryMeta::default() }, motd).unwrap();
        builder.add("/usr/bin/sh", EntryMeta::default(), Body::Symlink { target: "run".to_owned() }).unwrap();
        let secret = Body::File { source: FileSource::Bytes(b"s".to_vec()), executable: false };
        builder.add("/etc/secret", EntryMeta { mode: Some(0o600), uid: 7, gid: 7, mtime: None }, secret).unwrap();
        builder.add("/var/empty", EntryMeta::default(), Body::Directory).unwrap();
        builder.add("/usr-local", EntryMeta::default(), Body::Directory).unwrap();
        builder
    }

    #[test]
    fn sorted_walk_with_implicit_parents_and_normalised_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tar) = write(sample(dir.path()), Compression::None);
        let got = entries(&tar);
        let paths: Vec<&str> = got.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(
            paths,
            // Byte order: `-` (0x2d) sorts before `/` (0x2f); parents still precede children.
            [
                "etc",
                "etc/motd",
                "etc/secret",
                "usr",
                "usr-local",
                "usr/bin",
                "usr/bin/run",
                "usr/bin/sh",
                "var",
                "var/empty"
            ]
        );
        let by_path = |path: &str| got.iter().find(|entry| entry.path == path).unwrap();
        assert_eq!((by_path("etc").mode, by_path("etc").kind), (0o755, tar::EntryType::Directory));
        assert_eq!((by_path("etc/motd").mode, by_path("etc/motd").mtime), (0o644, 5));
        assert_eq!((by_path("etc/secret").mode, by_path("etc/secret").uid), (0o600, 7));
        assert_eq!(by_path("usr/bin/run").mode, 0o755);
        assert_eq!(by_path("usr/bin/run").data, b"#!/bin/sh\necho hi\n");
        assert_eq!(by_path("usr/bin/sh").link.as_deref(), Some("run"));
        assert!(got.iter().filter(|entry| entry.path != "etc/motd").all(|entry| entry.mtime == 1_700_000_000));
        assert!(got.iter().filter(|entry| entry.path != "etc/secret").all(|entry| entry.uid == 0));
    }

    #[test]
    fn same_entries_same_bytes_whatever_the_insertion_order_umask_or_file_times() {
        let dir = tempfile::tempdir().unwrap();
        let (first, bytes) = write(sample(dir.path()), Compression::Gzip);
        let script = dir.path().join("run.sh");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        let file = fs::File::options().write(true).open(&script).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345)).unwrap();
        let mut reversed = LayerBuilder::new(1_700_000_000);
        for (path, planned) in sample(dir.path()).entries.into_iter().rev() {
            reversed.add(&path, planned.meta, planned.body).unwrap();
        }
        let (second, again) = write(reversed, Compression::Gzip);
        assert_eq!(first, second);
        assert!(bytes == again);
    }

    #[test]
    fn long_paths_and_link_targets_round_trip() {
        let long = format!("/{}/{}", "d".repeat(120), "f".repeat(150));
        let mut builder = LayerBuilder::new(0);
        let body = Body::File { source: FileSource::Bytes(b"x".to_vec()), executable: false };
        builder.add(&long, EntryMeta::default(), body).unwrap();
        builder.add("/link", EntryMeta::default(), Body::Symlink { target: long.clone() }).unwrap();
        let (_, tar) = write(builder, Compression::None);
        let got = entries(&tar);
        assert_eq!(got[1].path, &long[1..]);
        assert_eq!(got[2].link.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn duplicates_and_bad_paths_are_user_errors() {
        let mut builder = LayerBuilder::new(0);
        builder.add("/a", EntryMeta::default(), Body::Directory).unwrap();
        builder.add("/a", EntryMeta::default(), Body::Directory).unwrap();
        let error = builder.add("/a", EntryMeta { uid: 1, ..EntryMeta::default() }, Body::Directory).unwrap_err();
        assert_eq!(error.to_string().lines().next().unwrap(), "Duplicate path `/a` in the layer");
        assert_eq!(crate::error::Error::from(error).kind, crate::error::ErrorKind::User);
        for bad in ["a", "/a/", "/a//b", "/a/./b", "/a/../b", ""] {
            assert!(matches!(validate_path(bad), Err(OciError::InvalidPath { .. })), "{bad}");
        }
        assert_eq!(normalize_path("./usr//bin/").unwrap(), "/usr/bin");
        assert_eq!(normalize_path("./").unwrap(), "/");
        assert!(normalize_path("../etc").is_err());

        let mut builder = LayerBuilder::new(0);
        builder.add("/a", EntryMeta::default(), Body::Symlink { target: "b".to_owned() }).unwrap();
        builder.add("/a/c", EntryMeta::default(), Body::Directory).unwrap();
        let error = builder.write(Vec::new(), Compression::None, 1).unwrap_err();
        assert!(matches!(error, OciError::NotADirectory { .. }), "{error}");
    }

    #[test]
    fn files_sharing_an_inode_become_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("b")).unwrap();
        fs::write(tree.join("b/original"), b"shared bytes").unwrap();
        fs::hard_link(tree.join("b/original"), tree.join("a-link")).unwrap();
        let mut builder = LayerBuilder::new(0);
        builder.add_tree(&tree, "/opt", Ownership::Normalise).unwrap();
        let (_, tar) = write(builder, Compression::None);
        let got = entries(&tar);
        let paths: Vec<&str> = got.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["opt", "opt/a-link", "opt/b", "opt/b/original"]);
        assert_eq!((got[1].kind, &got[1].data[..]), (tar::EntryType::Regular, &b"shared bytes"[..]));
        assert_eq!((got[3].kind, got[3].link.as_deref()), (tar::EntryType::Link, Some("opt/a-link")));
    }

    #[test]
    fn tar_streams_are_repacked_sorted_with_hard_links_pointing_backwards() {
        let mut source = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8], mode: u32| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_mtime(999);
            header.set_uid(0);
            header.set_gid(0);
            header.set_size(data.len() as u64);
            header.set_username("builder").unwrap();
            match link {
                Some(link) => source.append_link(&mut header, path, link).unwrap(),
                None => source.append_data(&mut header, path, data).unwrap(),
            }
        };
        add("./", tar::EntryType::Directory, None, b"", 0o755);
        add("./usr/bin/zz", tar::EntryType::Regular, None, b"bin", 0o4755);
        add("./usr/bin/aa", tar::EntryType::Link, Some("./usr/bin/zz"), b"", 0o4755);
        add("./usr/share/doc", tar::EntryType::Directory, None, b"", 0o700);
        let source = source.into_inner().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let mut builder = LayerBuilder::new(0);
        builder.add_tar(&source[..], spool.path()).unwrap();
        let (_, tar) = write(builder.clone(), Compression::None);
        let got = entries(&tar);
        let paths: Vec<&str> = got.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["usr", "usr/bin", "usr/bin/aa", "usr/bin/zz", "usr/share", "usr/share/doc"]);
        let mut cycle = builder;
        for (path, target) in [("/c1", "/c2"), ("/c2", "/c1")] {
            cycle.add(path, EntryMeta::default(), Body::HardLink { target: target.to_owned() }).unwrap();
        }
        assert!(matches!(cycle.write(Vec::new(), Compression::None, 1), Err(OciError::BadHardLink { .. })));
        assert_eq!((got[2].kind, got[2].mode, &got[2].data[..]), (tar::EntryType::Regular, 0o4755, &b"bin"[..]));
        assert_eq!((got[3].kind, got[3].link.as_deref()), (tar::EntryType::Link, Some("usr/bin/aa")));
        assert_eq!(got[5].mode, 0o700);
        assert!(got.iter().all(|entry| entry.mtime == 0));
    }

    #[test]
    fn a_file_that_changed_since_it_was_hashed_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        fs::write(&path, b"new bytes!").unwrap();
        let mut builder = LayerBuilder::new(0);
        let source = FileSource::Path {
            path: path.clone(),
            size: 10,
            origin: Origin::UnsettledSource(Digest::of(b"old bytes!")),
        };
        builder.add("/f", EntryMeta::default(), Body::File { source, executable: false }).unwrap();
        let error = builder.write(Vec::new(), Compression::Gzip, 1).unwrap_err();
        assert!(matches!(error, OciError::InputChanged { .. }), "{error}");
        let mut builder = LayerBuilder::new(0);
        let source = FileSource::Path { path, size: 20, origin: Origin::Source };
        builder.add("/f", EntryMeta::default(), Body::File { source, executable: false }).unwrap();
        assert!(matches!(builder.write(Vec::new(), Compression::None, 1), Err(OciError::InputChanged { .. })));
    }

    /// Golden digests: a change of tar layout, compressor, level or block
    /// size changes them, and with them every image digest users have.
    #[test]
    fn golden_digests() {
        let golden = |compression| {
            let mut builder = LayerBuilder::new(0);
            for i in 0..40u32 {
                let text = format!("file {i}\n").repeat(usize::try_from(i).unwrap() * 997);
                let body = Body::File { source: FileSource::Bytes(text.into_bytes()), executable: i % 3 == 0 };
                builder.add(&format!("/data/{i:02}"), EntryMeta::default(), body).unwrap();
            }
            builder.add("/data/link", EntryMeta::default(), Body::Symlink { target: "00".to_owned() }).unwrap();
            let (tar, bytes) = builder.write(Vec::new(), compression, 3).unwrap();
            let mut round_trip = Vec::new();
            decoder(&bytes[..], compression).unwrap().read_to_end(&mut round_trip).unwrap();
            assert_eq!(Digest::of(&round_trip), tar.diff_id);
            (tar.diff_id.to_string(), Digest::of(&bytes).to_string())
        };
        let (diff_id, gzip) = golden(Compression::Gzip);
        let (_, zstd) = golden(Compression::Zstd);
        let (_, none) = golden(Compression::None);
        assert_eq!(none, diff_id);
        assert_eq!(diff_id, "sha256:fcf353f54e0c95261252dbcb153929b1bbe016ae6154f89032ac9718fa3bc2a2");
        assert_eq!(gzip, "sha256:d52d3d0b642a1fa72a3a1c77f403cf9c07eef60c82a1b6eb4192d57725ae0f2c");
        assert_eq!(zstd, "sha256:1b854a1e59e92944ce750a6a4c407b1ea7d3cfdd0feabd69075f5e4cb57cebee");
    }
}
