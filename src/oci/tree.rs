//! The digest of an extracted layer's tree, recorded in its `layer.json`
//! when it is extracted and recomputed by `berth cache verify`, so a layer
//! directory changed after extraction (a stray write, bit rot) is found
//! instead of being stacked into every later step.
//!
//! What it covers, per entry in byte order of its path: the path, the file
//! type, the permission bits (setuid and sticky included), owner and group,
//! a file's size and sha256, a symlink's target, a device's number, and the
//! xattrs extraction sets (`trusted.overlay.opaque`,
//! `security.capability`). Timestamps are left out: extraction sets them
//! from the tar and nothing reads them back.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cache::{Digest, Sha256Writer};
use crate::oci::ExtractedLayer;
use crate::sys;

/// The xattrs that are part of a tree's digest.
const XATTRS: [&[u8]; 2] = [b"trusted.overlay.opaque", b"security.capability"];

/// The digest of the tree under `root` (see the module documentation).
pub fn tree_digest(root: &Path) -> io::Result<Digest> {
    let mut hasher = Sha256Writer::new(io::sink());
    walk(root, &mut Vec::new(), &mut hasher)?;
    Ok(hasher.finish().0)
}

fn walk(dir: &Path, relative: &mut Vec<u8>, hasher: &mut Sha256Writer<io::Sink>) -> io::Result<()> {
    let mut names: Vec<_> =
        fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.file_name())).collect::<Result<_, _>>()?;
    // Sorted so the digest does not depend on readdir order.
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let metadata = fs::symlink_metadata(&path)?;
        let start = relative.len();
        relative.push(b'/');
        relative.extend_from_slice(name.as_bytes());
        let kind = metadata.file_type();
        let tag = if kind.is_dir() {
            b'd'
        } else if kind.is_symlink() {
            b'l'
        } else if kind.is_char_device() {
            b'c'
        } else if kind.is_block_device() {
            b'b'
        } else if kind.is_fifo() {
            b'p'
        } else if kind.is_socket() {
            b's'
        } else {
            b'f'
        };
        hasher.write_all(&(relative.len() as u64).to_le_bytes())?;
        hasher.write_all(relative)?;
        hasher.write_all(&[tag])?;
        for number in [u64::from(metadata.mode() & 0o7777), u64::from(metadata.uid()), u64::from(metadata.gid())] {
            hasher.write_all(&number.to_le_bytes())?;
        }
        let mut buffer = vec![0u8; 4096];
        for name in XATTRS {
            if let Some(len) = sys::get_xattr(&path, name, &mut buffer) {
                hasher.write_all(name)?;
                hasher.write_all(&(len as u64).to_le_bytes())?;
                hasher.write_all(&buffer[..len])?;
            }
        }
        match tag {
            b'f' => {
                hasher.write_all(&metadata.len().to_le_bytes())?;
                let mut content = Sha256Writer::new(io::sink());
                io::copy(&mut File::open(&path)?, &mut content)?;
                hasher.write_all(content.finish().0.hex().as_bytes())?;
            }
            b'l' => {
                let target = fs::read_link(&path)?;
                hasher.write_all(&(target.as_os_str().len() as u64).to_le_bytes())?;
                hasher.write_all(target.as_os_str().as_bytes())?;
            }
            b'c' | b'b' => hasher.write_all(&metadata.rdev().to_le_bytes())?,
            b'd' => walk(&path, relative, hasher)?,
            _ => {}
        }
        relative.truncate(start);
    }
    Ok(())
}

/// What `berth cache verify` found in the layer store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStoreCheck {
    pub checked: u64,
    /// Layers whose tree no longer matches its recorded digest, or whose
    /// `layer.json` is unreadable, names another blob, or records no tree.
    pub bad: Vec<(String, String)>,
    /// With `repair`: the bad layers removed (extracted again when needed).
    pub removed: u64,
}

/// Recomputes the tree digest of every layer in `<cache>/layers/` and
/// compares it with its `layer.json`; with `repair`, removes the bad ones.
pub fn verify_layer_store(cache_dir: &Path, repair: bool) -> io::Result<LayerStoreCheck> {
    let layers = cache_dir.join("layers");
    let mut check = LayerStoreCheck::default();
    // The store itself, and the id-shifted stores beside its layers
    // (`layers/shifted-<N>/`, for user-namespaced containers).
    let mut stores = vec![layers.clone()];
    stores.extend(
        list_dirs(&layers)?
            .into_iter()
            .filter(|dir| dir.file_name().is_some_and(|name| name.to_string_lossy().starts_with("shifted-"))),
    );
    let mut dirs = Vec::new();
    for store in &stores {
        dirs.extend(list_dirs(store)?.into_iter().filter(|dir| dir.file_name().is_some_and(|name| name.len() == 64)));
    }
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        check.checked += 1;
        let problem = match fs::read(dir.join("layer.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<crate::oci::ExtractedLayer>(&bytes).ok())
        {
            None => Some("its `layer.json` is missing or unreadable".to_owned()),
            Some(layer) if layer.digest.hex() != name => Some(format!("its `layer.json` names `{}`", layer.digest)),
            Some(ExtractedLayer { tree: None, .. }) => Some("no tree digest was recorded".to_owned()),
            Some(ExtractedLayer { tree: Some(expected), .. }) => match tree_digest(&dir.join("root")) {
                Ok(actual) if actual == expected => None,
                Ok(actual) => Some(format!("its tree hashes to `{actual}`, not `{expected}`")),
                Err(error) => Some(format!("its tree cannot be read: {error}")),
            },
        };
        if let Some(problem) = problem {
            check.bad.push((name, problem));
            if repair {
                fs::remove_dir_all(&dir)?;
                check.removed += 1;
            }
        }
    }
    Ok(check)
}

/// The directories directly in `dir` (none when it does not exist).
fn list_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_to_content_mode_or_links_change_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/motd"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/motd", root.join("motd")).unwrap();
        let first = tree_digest(root).unwrap();
        assert_eq!(tree_digest(root).unwrap(), first, "stable");

        fs::write(root.join("etc/motd"), "hellO").unwrap();
        let flipped = tree_digest(root).unwrap();
        assert_ne!(flipped, first);
        fs::write(root.join("etc/motd"), "hello").unwrap();
        assert_eq!(tree_digest(root).unwrap(), first, "mtimes are not part of it");

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o4755)).unwrap();
        assert_ne!(tree_digest(root).unwrap(), first);
        fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o644)).unwrap();

        fs::remove_file(root.join("motd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("motd")).unwrap();
        assert_ne!(tree_digest(root).unwrap(), first);
    }
}
