//! Safe extraction of layer blobs (gzip, zstd or plain tar, told apart by
//! their magic bytes) into directories that `exec::rootfs` stacks into the
//! root filesystem of an in-container step.
//!
//! Each layer is extracted once per digest into `<cache>/layers/<hex>/`
//! (`root/` plus a `layer.json` side file): into a temp directory first, then
//! renamed, so a killed extraction never leaves half a layer behind.
//!
//! Whiteouts stay in the extracted tree as overlayfs markers, so the layer
//! directories can be given to overlayfs as they are. The [OCI image spec,
//! layer changesets](https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts)
//! says:
//!
//! - "A whiteout file is an empty file with a special filename that signifies
//!   a path should be deleted. A whiteout filename consists of the prefix
//!   `.wh.` plus the basename of the path to be deleted." It becomes a
//!   character device 0/0 named after the deleted path (overlayfs's whiteout).
//! - "An opaque whiteout entry is a file with the name `.wh..wh..opq`
//!   indicating that all siblings are hidden in the lower layer." It becomes
//!   the xattr `trusted.overlay.opaque=y` on its directory. At the layer root
//!   it is recorded as `opaque_root` in `layer.json` instead (overlayfs
//!   ignores the xattr on a root), and stacking drops every lower layer.
//! - "Whiteout files MUST only apply to resources in lower/parent layers.
//!   Files that are present in the same layer as a whiteout file can only be
//!   hidden by whiteout files in subsequent layers." So a real entry and a
//!   whiteout of the same name in one layer keep the real entry.
//!
//! Nothing is ever written outside the root: absolute paths are taken as
//! relative to the root, `..` components are refused, every parent directory
//! of an entry is checked with `lstat` to be a real directory created by this
//! layer (an entry below a symlink is refused, so nothing is written through
//! one), files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` after any
//! previous entry of the same name is unlinked, and hard links must name an
//! entry already extracted inside the root. Symlinks are stored as they are:
//! they are only ever resolved inside the container, where `/` is the root.
//! Device nodes are skipped. Limits on total size, entry count, name and
//! extension-header size and decompression ratio stop archive bombs.
//!
//! Extraction runs as root on a private temp directory nobody else writes
//! to, so path-based checks cannot race with another writer.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::Digest as _;

use crate::cache::{Cas, Digest};
use crate::error::{Diagnose, ErrorKind};
use crate::sys::{self, LockMode};

/// Caps that stop hostile or broken archives before they fill the disk or
/// the memory. The defaults fit real base images (a few GiB, a few hundred
/// thousand files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Decompressed bytes of the whole tar stream.
    pub max_total_bytes: u64,
    /// Tar entries, extension headers included.
    pub max_entries: u64,
    /// Bytes of one path or link target.
    pub max_name_bytes: usize,
    /// Bytes of one PAX extended header.
    pub max_pax_bytes: u64,
    /// Decompressed bytes per compressed byte, beyond `ratio_slack_bytes`.
    pub max_ratio: u64,
    /// Decompressed bytes always allowed whatever the ratio (small layers of
    /// zeros compress very well and are legitimate).
    pub ratio_slack_bytes: u64,
    /// When extraction must have finished (the deadline of the step that
    /// needs the layer); checked before every entry. `None`: no deadline.
    pub deadline: Option<Instant>,
    /// Added to every owner id on disk (and given to the directories
    /// extraction creates itself), for containers in a user namespace whose
    /// uid 0 is this host id; 0 keeps the ids of the archive. Set by
    /// [`LayerStore::with_id_shift`].
    pub id_shift: u32,
    /// Owner ids (before the shift) at or past this become 0: ids the
    /// namespace berth runs in cannot give (rootless berth has the ids of
    /// its subordinate range only, or just one). Set by
    /// [`LayerStore::with_id_count`]; `u32::MAX` keeps every id.
    pub id_count: u32,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 32 << 30,
            max_entries: 2_000_000,
            max_name_bytes: 4096,
            max_pax_bytes: 1 << 20,
            max_ratio: 1000,
            ratio_slack_bytes: 64 << 20,
            deadline: None,
            id_shift: 0,
            id_count: u32::MAX,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("Layer archive refused: entry `{path}` {reason}")]
    Refused { path: String, reason: String },
    #[error("Layer archive refused: {what} exceeds the limit of {limit}")]
    Limit { what: &'static str, limit: u64 },
    #[error("Layer archive is not a readable tar stream: {source}")]
    Corrupt { source: io::Error },
    #[error("Layer blob `{expected}` changed while it was read (its bytes hash to `{actual}`)")]
    Changed { expected: Digest, actual: Digest },
    #[error("I/O error at `{path}` while extracting a layer: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("The deadline passed while extracting a layer ({entries} entries done)")]
    DeadlinePassed { entries: u64 },
}

impl Diagnose for ExtractError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExtractError::Refused { .. }
            | ExtractError::Limit { .. }
            | ExtractError::Corrupt { .. }
            | ExtractError::DeadlinePassed { .. } => ErrorKind::User,
            ExtractError::Changed { .. } | ExtractError::Io { .. } => ErrorKind::Environment,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            ExtractError::Refused { .. } => "the layer is hostile or broken; nothing outside its root was touched",
            ExtractError::Limit { .. } => "the layer is an archive bomb or far larger than a real image layer",
            ExtractError::Changed { .. } => "run the build again; the blob will be fetched or rebuilt",
            ExtractError::DeadlinePassed { .. } => "raise the step's `timeout`; the layer is extracted again next time",
            ExtractError::Corrupt { .. } | ExtractError::Io { .. } => return None,
        };
        Some(hint.to_owned())
    }
}

/// A layer extracted into the cache, ready to be stacked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractedLayer {
    /// The digest of the blob (compressed bytes).
    pub digest: Digest,
    /// The digest of the uncompressed tar (the OCI `diff_id`).
    pub diff_id: Digest,
    /// The layer held `.wh..wh..opq` at its root: every lower layer is hidden.
    pub opaque_root: bool,
    /// The digest of the extracted tree (`oci::tree_digest`), which
    /// `berth cache verify` recomputes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Digest>,
    /// The extracted tree, with whiteouts as overlayfs markers.
    #[serde(skip)]
    pub root: PathBuf,
}

/// What one extraction did, for the side file and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    /// Steps through the tree of known directories (one per path component
    /// looked up or added, one per replaced directory): linear in the
    /// archive, which `tests/it/extract_linear.rs` checks.
    pub dir_steps: u64,
    pub bytes: u64,
    pub skipped_devices: u64,
    pub opaque_root: bool,
}

/// The xattr overlayfs reads to make a directory hide the lower layers' one.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The same, for overlayfs mounted in a user namespace (`userxattr`):
/// `trusted.` xattrs belong to the host's root.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// The opaque xattr extraction writes: [`USER_OPAQUE_XATTR`] when berth
/// runs rootless (`exec::rootless`), else [`OPAQUE_XATTR`].
fn opaque_xattr() -> &'static [u8] {
    match crate::exec::rootless() {
        Some(_) => USER_OPAQUE_XATTR.as_bytes(),
        None => OPAQUE_XATTR.as_bytes(),
    }
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// The layer store: layers extracted once per digest under
/// `<cache>/layers/<hex>/`, for container runtimes to stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStore {
    dir: PathBuf,
    id_shift: u32,
    id_count: u32,
}

impl LayerStore {
    /// The store of the cache at `cache_dir` (created on first extraction).
    pub fn new(cache_dir: &Path) -> LayerStore {
        LayerStore { dir: cache_dir.join("layers"), id_shift: 0, id_count: u32::MAX }
    }

    /// The store of the same cache whose layers are extracted with every
    /// owner id moved up by `shift` (`<cache>/layers/shifted-<shift>/`), for
    /// containers whose uid 0 is host id `shift`. 0 is this store.
    pub fn with_id_shift(&self, shift: u32) -> LayerStore {
        match shift {
            0 => self.clone(),
            _ => LayerStore { dir: self.dir.join(format!("shifted-{shift}")), id_shift: shift, ..self.clone() },
        }
    }

    /// This store with owner ids at or past `count` made 0
    /// (`<store>/ids-<count>/`), for a namespace with only `count` ids to
    /// give (see [`ExtractLimits::id_count`]).
    pub fn with_id_count(&self, count: u32) -> LayerStore {
        LayerStore { dir: self.dir.join(format!("ids-{count}")), id_count: count, ..self.clone() }
    }

    /// `<cache>/layers`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the layer extracted in the store, extracting it first if
    /// needed.
    ///
    /// The blob is read from the CAS and its digest checked while it streams.
    /// Concurrent callers for one digest (threads or processes sharing the
    /// cache) wait on a lock file and find the first one's result.
    pub fn extract(&self, cas: &Cas, digest: &Digest, limits: &ExtractLimits) -> Result<ExtractedLayer, ExtractError> {
        let limits = ExtractLimits { id_shift: self.id_shift, id_count: self.id_count, ..limits.clone() };
        extract_layer_cached(cas, &self.dir, digest, &limits)
    }
}

fn extract_layer_cached(
    cas: &Cas,
    layers: &Path,
    digest: &Digest,
    limits: &ExtractLimits,
) -> Result<ExtractedLayer, ExtractError> {
    let final_dir = layers.join(digest.hex());
    if let Some(layer) = read_side_file(&final_dir, digest) {
        return Ok(layer);
    }
    // 0700: extracted layers hold setuid binaries owned by root.
    fs::DirBuilder::new().recursive(true).mode(0o700).create(layers).map_err(io_at(layers))?;
    // One extraction per digest at a time, across threads and processes:
    // steps that start together on a cold base wait for one extraction.
    let lock_path = layers.join(format!("{}.lock", digest.hex()));
    let lock = File::create(&lock_path).map_err(io_at(&lock_path))?;
    // Released when `lock` closes.
    sys::flock(&lock, LockMode::Exclusive, true).map_err(io_at(&lock_path))?;
    if let Some(layer) = read_side_file(&final_dir, digest) {
        return Ok(layer);
    }
    if final_dir.exists() {
        // No valid side file: not a finished extraction (the side file is
        // written before the rename), so it is garbage.
        fs::remove_dir_all(&final_dir).map_err(io_at(&final_dir))?;
    }
    remove_stale_temp_dirs(layers);

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temp = layers.join(format!(
        "tmp-{}-{}-{}",
        &digest.hex()[..16],
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let layer = match extract_into(cas, digest, &temp, limits) {
        Ok(layer) => layer,
        Err(error) => {
            let _ = fs::remove_dir_all(&temp);
            return Err(error);
        }
    };
    if let Err(source) = fs::rename(&temp, &final_dir) {
        let _ = fs::remove_dir_all(&temp);
        return Err(ExtractError::Io { path: final_dir, source });
    }
    drop(lock);
    Ok(ExtractedLayer { root: final_dir.join("root"), ..layer })
}

fn extract_into(
    cas: &Cas,
    digest: &Digest,
    temp: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractedLayer, ExtractError> {
    let root = temp.join("root");
    fs::DirBuilder::new().recursive(true).mode(0o755).create(&root).map_err(io_at(&root))?;
    if limits.id_shift != 0 {
        std::os::unix::fs::lchown(&root, Some(limits.id_shift), Some(limits.id_shift)).map_err(io_at(&root))?;
    }
    let blob_path = cas.path(digest);
    let file = File::open(&blob_path).map_err(io_at(&blob_path))?;
    let mut hashed = HashingReader { inner: file, hasher: sha2::Sha256::new() };
    let (stats, diff_id) = unpack_counted(&mut hashed, &root, limits)?;
    // Hash what the decompressor did not need (padding after the tar's end).
    io::copy(&mut hashed, &mut io::sink()).map_err(io_at(&blob_path))?;
    let actual = Digest::from_bytes(hashed.hasher.finalize().into());
    if actual != *digest {
        return Err(ExtractError::Changed { expected: *digest, actual });
    }
    let tree = crate::oci::tree_digest(&root).map_err(io_at(&root))?;
    let layer = ExtractedLayer { digest: *digest, diff_id, opaque_root: stats.opaque_root, tree: Some(tree), root };
    let side = temp.join("layer.json");
    let file = File::create(&side).map_err(io_at(&side))?;
    serde_json::to_writer(&file, &layer)
        .map_err(|error| ExtractError::Io { path: side.clone(), source: error.into() })?;
    file.sync_all().map_err(io_at(&side))?;
    Ok(layer)
}

fn read_side_file(dir: &Path, digest: &Digest) -> Option<ExtractedLayer> {
    let bytes = fs::read(dir.join("layer.json")).ok()?;
    let layer: ExtractedLayer = serde_json::from_slice(&bytes).ok()?;
    (layer.digest == *digest).then(|| ExtractedLayer { root: dir.join("root"), ..layer })
}

/// Removes temp directories left by killed extractions (their pid is gone).
fn remove_stale_temp_dirs(layers: &Path) {
    let Ok(entries) = fs::read_dir(layers) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|name| name.strip_prefix("tmp-")) else { continue };
        let Some(pid) = rest.split('-').nth(1).and_then(|pid| pid.parse::<i32>().ok()) else { continue };
        if !sys::process_exists(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Extracts a layer stream (gzip, zstd or plain tar) into `root`, an existing
/// directory, applying the rules of this module. Returns what it did.
pub fn unpack(reader: impl Read, root: &Path, limits: &ExtractLimits) -> Result<UnpackStats, ExtractError> {
    let mut reader = reader;
    unpack_counted(&mut reader, root, limits).map(|(stats, _)| stats)
}

/// Unpacks a layer (tar, gzip or zstd, detected by its magic bytes) into
/// `root` as [`unpack`] does, refusing what it refuses, and returns the
/// digest of the decompressed tar (the layer's diff_id) too: how a tar
/// file from the workspace is checked before it becomes a layer.
pub fn unpack_with_diff_id(
    reader: impl Read,
    root: &Path,
    limits: &ExtractLimits,
) -> Result<(UnpackStats, Digest), ExtractError> {
    let mut reader = reader;
    unpack_counted(&mut reader, root, limits)
}

fn unpack_counted<R: Read>(
    reader: &mut R,
    root: &Path,
    limits: &ExtractLimits,
) -> Result<(UnpackStats, Digest), ExtractError> {
    let compressed = Rc::new(Cell::new(0));
    let counting = CountingReader { inner: reader, count: Rc::clone(&compressed) };
    let mut buffered = BufReader::with_capacity(1 << 16, counting);
    let magic = buffered.fill_buf().map_err(|source| ExtractError::Corrupt { source })?.to_vec();
    let decoder: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(|source| ExtractError::Corrupt { source })?)
    } else {
        Box::new(buffered)
    };
    let guarded =
        GuardedReader { inner: decoder, hasher: sha2::Sha256::new(), count: 0, limits, compressed, tripped: None };
    let mut archive = tar::Archive::new(guarded);
    let mut unpacker =
        Unpacker { root: root.to_path_buf(), limits, stats: UnpackStats::default(), dirs: DirTree::default() };
    let result = unpacker.run(&mut archive);
    let mut guarded = archive.into_inner();
    if let Some(error) = guarded.tripped.take() {
        return Err(error);
    }
    result?;
    // Read the rest of the decompressed stream so the diff_id covers it all.
    let drained = io::copy(&mut guarded, &mut io::sink());
    if let Some(error) = guarded.tripped.take() {
        return Err(error);
    }
    drained.map_err(|source| ExtractError::Corrupt { source })?;
    unpacker.stats.bytes = guarded.count;
    let diff_id = Digest::from_bytes(guarded.hasher.finalize().into());
    Ok((unpacker.stats, diff_id))
}

struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.set(self.count.get() + read as u64);
        Ok(read)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

/// Counts and hashes the decompressed stream and stops it when it grows
/// past the total size or the decompression ratio.
struct GuardedReader<'l, R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
    limits: &'l ExtractLimits,
    /// Compressed bytes read so far, counted below the decoder.
    compressed: Rc<Cell<u64>>,
    tripped: Option<ExtractError>,
}

impl<R: Read> Read for GuardedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.count += read as u64;
        let error = if self.count > self.limits.max_total_bytes {
            Some(ExtractError::Limit { what: "the decompressed size", limit: self.limits.max_total_bytes })
        } else if self.count > self.limits.ratio_slack_bytes
            && self.count > self.compressed.get().saturating_mul(self.limits.max_ratio)
        {
            Some(ExtractError::Limit { what: "the decompression ratio", limit: self.limits.max_ratio })
        } else {
            None
        };
        if let Some(error) = error {
            let message = error.to_string();
            self.tripped = Some(error);
            return Err(io::Error::other(message));
        }
        Ok(read)
    }
}

/// The fields of a PAX extended header that extraction honours.
#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    /// `SCHILY.xattr.*` records that are safe to restore (see `allowed_xattr`).
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pax {
    fn parse(bytes: &[u8]) -> Result<Pax, String> {
        let mut pax = Pax::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let space = rest.iter().position(|&b| b == b' ').ok_or("has a malformed PAX record")?;
            let len: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .and_then(|len| len.parse().ok())
                .ok_or("has a malformed PAX record length")?;
            if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
                return Err("has a malformed PAX record".into());
            }
            let record = &rest[space + 1..len - 1];
            rest = &rest[len..];
            let eq = record.iter().position(|&b| b == b'=').ok_or("has a PAX record without `=`")?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let number = || -> Result<u64, String> {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| format!("has a bad PAX `{}` value", String::from_utf8_lossy(key)))
            };
            match key {
                b"path" => pax.path = Some(value.to_vec()),
                b"linkpath" => pax.linkpath = Some(value.to_vec()),
                b"size" => pax.size = Some(number()?),
                b"uid" => pax.uid = Some(number()?),
                b"gid" => pax.gid = Some(number()?),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        pax.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
        Ok(pax)
    }
}

/// Only these xattrs are restored: `trusted.*` would let a layer forge
/// overlayfs markers and `security.selinux` labels are the host's business.
fn allowed_xattr(name: &[u8]) -> bool {
    // `user.overlay.` is overlayfs's own in a user namespace (rootless
    // berth): a layer must not make its directories opaque that way.
    name == b"security.capability" || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io { path: path.to_path_buf(), source }
}

fn corrupt(source: io::Error) -> ExtractError {
    ExtractError::Corrupt { source }
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>, ExtractError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExtractError::Io { path: path.to_path_buf(), source }),
    }
}

/// Is this an overlayfs whiteout marker (character device 0/0)?
pub fn is_whiteout(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

/// Does this directory carry overlayfs's opaque marker?
pub fn is_opaque_dir(path: &Path) -> bool {
    let mut value = [0u8; 4];
    [OPAQUE_XATTR, USER_OPAQUE_XATTR]
        .iter()
        .any(|name| sys::get_xattr(path, name.as_bytes(), &mut value) == Some(1) && value[0] == b'y')
}

fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> Result<(), ExtractError> {
    if name.contains(&0) {
        return Err(ExtractError::Refused {
            path: path.display().to_string(),
            reason: "has an xattr name with a NUL byte".into(),
        });
    }
    sys::set_xattr(path, name, value).map_err(io_at(path))
}

/// Applies tar entries to one root directory.
struct Unpacker<'l> {
    root: PathBuf,
    limits: &'l ExtractLimits,
    stats: UnpackStats,
    /// The directories already checked to be real directories of this
    /// layer, as a tree of names: each entry costs one lookup per path
    /// component, and replacing a directory drops its subtree in one step,
    /// so extraction is linear in the archive (a set of whole paths hashed
    /// every prefix of every path and was scanned whole per replaced
    /// directory: 51 s for 40,000 replaced directories).
    dirs: DirTree,
}

/// A directory known to this layer's extraction, and its known subdirectories.
#[derive(Debug, Default)]
struct DirTree {
    children: HashMap<Box<[u8]>, DirTree>,
}

impl DirTree {
    /// The node of `components`, if every one of them is known.
    fn get(&self, components: &[Vec<u8>], steps: &mut u64) -> Option<&DirTree> {
        let mut node = self;
        for component in components {
            *steps += 1;
            node = node.children.get(component.as_slice())?;
        }
        Some(node)
    }

    fn get_mut(&mut self, components: &[Vec<u8>], steps: &mut u64) -> Option<&mut DirTree> {
        let mut node = self;
        for component in components {
            *steps += 1;
            node = node.children.get_mut(component.as_slice())?;
        }
        Some(node)
    }
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), ExtractError> {
        // Raw entries: the tar crate reads GNU long names and PAX headers into
        // memory without a limit, so they are handled here, capped.
        let entries = archive.entries().map_err(corrupt)?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            if self.limits.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(ExtractError::DeadlinePassed { entries: self.stats.entries });
            }
            self.stats.entries += 1;
            if self.stats.entries > self.limits.max_entries {
                return Err(ExtractError::Limit { what: "the number of entries", limit: self.limits.max_entries });
            }
            let kind = entry.header().entry_type();
            let name_cap = self.limits.max_name_bytes as u64 + 1;
            if kind.is_gnu_longname() || kind.is_gnu_longlink() {
                let mut bytes = read_extension(&mut entry, name_cap, "a GNU long name")?;
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                *(if kind.is_gnu_longname() { &mut long_name } else { &mut long_link }) = Some(bytes);
                continue;
            }
            if kind.is_pax_local_extensions() {
                let bytes = read_extension(&mut entry, self.limits.max_pax_bytes, "a PAX header")?;
                pax = Some(Pax::parse(&bytes).map_err(|reason| ExtractError::Refused {
                    path: String::from_utf8_lossy(&entry.header().path_bytes()).into_owned(),
                    reason,
                })?);
                continue;
            }
            if kind.is_pax_global_extensions() {
                read_extension(&mut entry, self.limits.max_pax_bytes, "a PAX header")?;
                continue;
            }
            let ext = pax.take().unwrap_or_default();
            let header = entry.header();
            let path = ext.path.clone().or(long_name.take()).unwrap_or_else(|| header.path_bytes().into_owned());
            let shown = String::from_utf8_lossy(&path).into_owned();
            let refuse = |reason: &str| ExtractError::Refused { path: shown.clone(), reason: reason.to_owned() };
            let link =
                ext.linkpath.clone().or(long_link.take()).or(header.link_name_bytes().map(|link| link.into_owned()));
            if path.len() > self.limits.max_name_bytes
                || link.as_ref().is_some_and(|l| l.len() > self.limits.max_name_bytes)
            {
                return Err(ExtractError::Limit { what: "a path length", limit: self.limits.max_name_bytes as u64 });
            }
            if kind.is_gnu_sparse() {
                return Err(refuse("is a GNU sparse file, which layers do not use"));
            }
            let size = header.entry_size().map_err(corrupt)?;
            if ext.size.is_some_and(|pax_size| pax_size != size) {
                return Err(refuse("has a PAX size that disagrees with its header"));
            }
            let uid = ext.uid.map_or_else(|| header.uid(), Ok).map_err(corrupt)?;
            let gid = ext.gid.map_or_else(|| header.gid(), Ok).map_err(corrupt)?;
            let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
                return Err(refuse("has an owner id above 2^32"));
            };
            let mode = header.mode().map_err(corrupt)? & 0o7777;
            let mtime = header.mtime().ok();
            // Ids past the mapped range show as the overflow id inside.
            let shift = self.limits.id_shift;
            let inside = |id: u32| if id < self.limits.id_count { id } else { 0 };
            let owner = Owner { uid: inside(uid).saturating_add(shift), gid: inside(gid).saturating_add(shift), mode };
            let components = components(&path).map_err(|reason| refuse(&reason))?;
            match kind {
                _ if kind.is_dir() => self.directory(&components, owner, &shown)?,
                _ if components.last().is_some_and(|name| name.starts_with(WHITEOUT_PREFIX.as_bytes())) => {
                    self.whiteout(&components, &shown)?
                }
                _ if components.is_empty() => return Err(refuse("names the root as a non-directory")),
                _ if kind.is_file() || kind.is_contiguous() => {
                    self.file(&components, owner, mtime, &mut entry, &shown)?;
                    self.xattrs(&components, &ext.xattrs)?;
                }
                _ if kind.is_symlink() => {
                    let target = link.ok_or_else(|| refuse("is a symlink without a target"))?;
                    if target.is_empty() || target.contains(&0) {
                        return Err(refuse("is a symlink with an empty or NUL target"));
                    }
                    self.symlink(&components, &target, owner, &shown)?
                }
                _ if kind.is_hard_link() => {
                    let target = link.ok_or_else(|| refuse("is a hard link without a target"))?;
                    self.hard_link(&components, &target, &shown)?
                }
                _ if kind.is_fifo() => self.fifo(&components, owner, &shown)?,
                _ if kind.is_character_special() || kind.is_block_special() => self.stats.skipped_devices += 1,
                // Other types (GNU volume labels, multi-volume parts, ...) carry
                // no file.
                _ => {}
            }
        }
        if long_name.is_some() || long_link.is_some() || pax.is_some() {
            return Err(ExtractError::Corrupt {
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "an extension header describes no entry"),
            });
        }
        Ok(())
    }

    fn at(&self, components: &[Vec<u8>]) -> PathBuf {
        let mut path = self.root.clone();
        for component in components {
            path.push(std::ffi::OsStr::from_bytes(component));
        }
        path
    }

    /// Makes sure every parent of an entry is a real directory of this layer,
    /// creating missing ones (0755, root). Refuses to go through a symlink.
    fn parents(&mut self, parents: &[Vec<u8>], shown: &str) -> Result<PathBuf, ExtractError> {
        let mut path = self.root.clone();
        let mut node = &mut self.dirs;
        for (index, component) in parents.iter().enumerate() {
            path.push(std::ffi::OsStr::from_bytes(component));
            self.stats.dir_steps += 1;
            if !node.children.contains_key(component.as_slice()) {
                let relative =
                    || parents[..=index].iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("/");
                match lstat(&path)? {
                    None => {
                        fs::DirBuilder::new().mode(0o755).create(&path).map_err(io_at(&path))?;
                        chown_created(self.limits.id_shift, &path)?;
                    }
                    Some(metadata) if metadata.is_dir() => {}
                    Some(metadata) if is_whiteout(&metadata) => {
                        // A directory whited out and recreated in this layer:
                        // it replaces the lower one.
                        fs::remove_file(&path).map_err(io_at(&path))?;
                        fs::DirBuilder::new().mode(0o755).create(&path).map_err(io_at(&path))?;
                        chown_created(self.limits.id_shift, &path)?;
                        set_xattr(&path, opaque_xattr(), b"y")?;
                    }
                    Some(metadata) if metadata.file_type().is_symlink() => {
                        return Err(ExtractError::Refused {
                            path: shown.to_owned(),
                            reason: format!(
                                "goes through the symlink `{}`; nothing is written through a symlink",
                                relative()
                            ),
                        });
                    }
                    Some(_) => {
                        return Err(ExtractError::Refused {
                            path: shown.to_owned(),
                            reason: format!("is below `{}`, which is not a directory", relative()),
                        });
                    }
                }
                node.children.insert(component.clone().into_boxed_slice(), DirTree::default());
            }
            node = node.children.get_mut(component.as_slice()).expect("known or just added");
        }
        Ok(path)
    }

    /// Removes whatever an earlier entry of this layer left at `path` (the
    /// entry `components`).
    fn clear(&mut self, components: &[Vec<u8>], path: &Path) -> Result<(), ExtractError> {
        match lstat(path)? {
            None => Ok(()),
            Some(metadata) if metadata.is_dir() => {
                // `remove_dir_all` does not follow symlinks inside the tree.
                fs::remove_dir_all(path).map_err(io_at(path))?;
                self.forget_dir(components);
                Ok(())
            }
            Some(_) => fs::remove_file(path).map_err(io_at(path)),
        }
    }

    /// Drops the directory `components` and everything known below it.
    fn forget_dir(&mut self, components: &[Vec<u8>]) {
        let Some((name, parents)) = components.split_last() else { return };
        self.stats.dir_steps += 1;
        if let Some(parent) = self.dirs.get_mut(parents, &mut self.stats.dir_steps) {
            parent.children.remove(name.as_slice());
        }
    }

    /// Records the directory `components` (whose parents are known).
    fn remember_dir(&mut self, components: &[Vec<u8>]) {
        let Some((name, parents)) = components.split_last() else { return };
        self.stats.dir_steps += 1;
        if let Some(parent) = self.dirs.get_mut(parents, &mut self.stats.dir_steps) {
            parent.children.entry(name.clone().into_boxed_slice()).or_default();
        }
    }

    fn directory(&mut self, components: &[Vec<u8>], owner: Owner, shown: &str) -> Result<(), ExtractError> {
        let Some((name, parents)) = components.split_last() else {
            // `./` itself: the root's owner and mode.
            return owner.apply(&self.root.clone());
        };
        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Err(ExtractError::Refused {
                path: shown.to_owned(),
                reason: "is a whiteout that is a directory".into(),
            });
        }
        let parent = self.parents(parents, shown)?;
        let path = parent.join(std::ffi::OsStr::from_bytes(name));
        match lstat(&path)? {
            Some(metadata) if metadata.is_dir() => {}
            Some(metadata) if is_whiteout(&metadata) => {
                fs::remove_file(&path).map_err(io_at(&path))?;
                fs::DirBuilder::new().mode(0o700).create(&path).map_err(io_at(&path))?;
                set_xattr(&path, opaque_xattr(), b"y")?;
            }
            existing => {
                if existing.is_some() {
                    self.clear(components, &path)?;
                }
                fs::DirBuilder::new().mode(0o700).create(&path).map_err(io_at(&path))?;
            }
        }
        owner.apply(&path)?;
        self.remember_dir(components);
        Ok(())
    }

    fn whiteout(&mut self, components: &[Vec<u8>], shown: &str) -> Result<(), ExtractError> {
        let (name, parents) = components.split_last().expect("a whiteout has a name");
        let parent = self.parents(parents, shown)?;
        if name.as_slice() == OPAQUE_WHITEOUT.as_bytes() {
            if parents.is_empty() {
                self.stats.opaque_root = true;
            } else {
                set_xattr(&parent, opaque_xattr(), b"y")?;
            }
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not a path.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(ExtractError::Refused {
                path: shown.to_owned(),
                reason: "whites out `.` or `..`, which is not a sibling".into(),
            });
        }
        let path = parent.join(std::ffi::OsStr::from_bytes(target));
        // A real entry of this same layer is not hidden by its whiteout.
        if lstat(&path)?.is_none() {
            sys::make_whiteout(&path).map_err(io_at(&path))?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        components: &[Vec<u8>],
        owner: Owner,
        mtime: Option<u64>,
        entry: &mut impl Read,
        shown: &str,
    ) -> Result<(), ExtractError> {
        let (name, parents) = components.split_last().expect("a file has a name");
        let path = self.parents(parents, shown)?.join(std::ffi::OsStr::from_bytes(name));
        self.clear(components, &path)?;
        let mut file = sys::open_nofollow(OpenOptions::new().write(true).create_new(true).mode(0o600), &path)
            .map_err(io_at(&path))?;
        io::copy(entry, &mut file).map_err(|source| match source.kind() {
            io::ErrorKind::Other => corrupt(source),
            _ => ExtractError::Io { path: path.clone(), source },
        })?;
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid)).map_err(io_at(&path))?;
        // After chown, which clears setuid bits.
        file.set_permissions(fs::Permissions::from_mode(owner.mode)).map_err(io_at(&path))?;
        if let Some(mtime) = mtime {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            let _ = file.set_modified(time);
        }
        Ok(())
    }

    fn xattrs(&mut self, components: &[Vec<u8>], xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ExtractError> {
        let path = self.at(components);
        for (name, value) in xattrs.iter().filter(|(name, _)| allowed_xattr(name)) {
            set_xattr(&path, name, value)?;
        }
        Ok(())
    }

    fn symlink(
        &mut self,
        components: &[Vec<u8>],
        target: &[u8],
        owner: Owner,
        shown: &str,
    ) -> Result<(), ExtractError> {
        let (name, parents) = components.split_last().expect("a symlink has a name");
        let path = self.parents(parents, shown)?.join(std::ffi::OsStr::from_bytes(name));
        self.clear(components, &path)?;
        // Stored as written: it is only ever resolved inside the container,
        // where `/` and `..` at the top are the root.
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).map_err(io_at(&path))?;
        std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid)).map_err(io_at(&path))
    }

    fn hard_link(&mut self, components: &[Vec<u8>], target: &[u8], shown: &str) -> Result<(), ExtractError> {
        let refuse = |reason: String| ExtractError::Refused { path: shown.to_owned(), reason };
        let target_components = components_of_link(target).map_err(&refuse)?;
        let Some((target_name, target_parents)) = target_components.split_last() else {
            return Err(refuse("is a hard link to the root".into()));
        };
        // The target must be an entry this layer already extracted, reached
        // through real directories only.
        let mut relative = PathBuf::new();
        for (index, component) in target_parents.iter().enumerate() {
            relative.push(std::ffi::OsStr::from_bytes(component));
            let known = self.dirs.get(&target_parents[..=index], &mut self.stats.dir_steps).is_some();
            let is_dir = known || lstat(&self.root.join(&relative))?.is_some_and(|metadata| metadata.is_dir());
            if !is_dir {
                return Err(refuse(format!(
                    "is a hard link through `{}`, which is not a directory of this layer",
                    relative.display()
                )));
            }
        }
        let source = self.root.join(&relative).join(std::ffi::OsStr::from_bytes(target_name));
        match lstat(&source)? {
            None => return Err(refuse("is a hard link to an entry that is not in this layer".into())),
            Some(metadata) if metadata.is_dir() => return Err(refuse("is a hard link to a directory".into())),
            Some(metadata) if is_whiteout(&metadata) => {
                return Err(refuse("is a hard link to a whiteout".into()));
            }
            Some(_) => {}
        }
        let (name, parents) = components.split_last().expect("a hard link has a name");
        let path = self.parents(parents, shown)?.join(std::ffi::OsStr::from_bytes(name));
        if path == source {
            return Ok(());
        }
        self.clear(components, &path)?;
        // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the
        // symlink itself, never what it points at.
        fs::hard_link(&source, &path).map_err(io_at(&path))
    }

    fn fifo(&mut self, components: &[Vec<u8>], owner: Owner, shown: &str) -> Result<(), ExtractError> {
        let (name, parents) = components.split_last().expect("a fifo has a name");
        let path = self.parents(parents, shown)?.join(std::ffi::OsStr::from_bytes(name));
        self.clear(components, &path)?;
        sys::make_fifo(&path).map_err(io_at(&path))?;
        owner.apply(&path)
    }
}

/// Gives a directory extraction made by itself (a parent the archive did
/// not list) the shifted root as owner.
fn chown_created(id_shift: u32, path: &Path) -> Result<(), ExtractError> {
    match id_shift {
        0 => Ok(()),
        shift => std::os::unix::fs::lchown(path, Some(shift), Some(shift)).map_err(io_at(path)),
    }
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Owner {
    /// Owner then mode (chown clears setuid bits), on a path this layer
    /// created and that is not a symlink.
    fn apply(&self, path: &Path) -> Result<(), ExtractError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(io_at(path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(self.mode)).map_err(io_at(path))
    }
}

/// Reads the data of an extension header (long name, PAX), refusing it when
/// its declared size is above `cap`.
fn read_extension(
    entry: &mut tar::Entry<'_, impl Read>,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, ExtractError> {
    let size = entry.header().entry_size().map_err(corrupt)?;
    if size > cap {
        return Err(ExtractError::Limit { what, limit: cap });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(cap).read_to_end(&mut bytes).map_err(corrupt)?;
    Ok(bytes)
}

/// Splits an entry path into components: leading `/` and `./` are dropped
/// (absolute paths are relative to the root), `..` is refused.
fn components(path: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("has a `..` component; entries may not climb out of the root".into()),
            _ if component.contains(&0) => return Err("holds a NUL byte".into()),
            _ => out.push(component.to_vec()),
        }
    }
    Ok(out)
}

fn components_of_link(target: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    components(target).map_err(|reason| format!("is a hard link whose target {}", reason.trim_start_matches("has ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_drop_root_and_refuse_parent() {
        assert_eq!(components(b"/./a//b/").unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(components(b"a/../b").is_err());
        assert!(components(b"").unwrap().is_empty());
    }

    #[test]
    fn a_passed_deadline_stops_extraction() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, "d", io::empty()).unwrap();
        let tar = builder.into_inner().unwrap();
        let root = tempfile::tempdir().unwrap();
        let limits = ExtractLimits { deadline: Some(Instant::now()), ..ExtractLimits::default() };
        let error = unpack(&tar[..], root.path(), &limits).unwrap_err();
        assert!(matches!(error, ExtractError::DeadlinePassed { entries: 0 }), "{error}");
        assert!(!root.path().join("d").exists());
    }

    #[test]
    fn pax_records_parse() {
        let pax = Pax::parse(b"12 path=a/b\n12 uid=1000\n").unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a/b"[..]));
        assert_eq!(pax.uid, Some(1000));
        assert!(Pax::parse(b"99 path=x\n").is_err());
    }
}
