//! OCI image layouts
//! (<https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md>):
//! "The `oci-layout` file MUST be a JSON object with ... `imageLayoutVersion`",
//! "`index.json` file ... MUST exist", and each blob at
//! `blobs/<alg>/<encoded>` "MUST match the digest". Blobs are hard links to
//! the CAS (copies across filesystems), so a layout costs no space.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cache::canonical_json;
use crate::cache::{BlobRef, Cas, CasError, Digest};
use crate::oci::manifest::MediaTypeProbe;
use crate::oci::{media_types, Descriptor, Index, Manifest, OciError, REF_NAME_ANNOTATION};
use crate::sys;

/// The content of the `oci-layout` file.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The top blob of an image in the CAS: an image manifest or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    pub blob: BlobRef,
    pub media_type: String,
}

impl ImageRoot {
    pub fn is_index(&self) -> bool {
        media_types::is_index(&self.media_type)
    }
}

/// Reads a manifest or index blob from the CAS and tells which it is.
pub fn read_root(cas: &Cas, blob: BlobRef) -> Result<ImageRoot, OciError> {
    let bytes = read_blob(cas, blob.digest)?;
    let probe: MediaTypeProbe = parse(&bytes, blob.digest, "manifest or index")?;
    let media_type = match probe.media_type.filter(|media_type| !media_type.is_empty()) {
        Some(media_type) => media_type,
        None if probe.manifests.is_some() => media_types::INDEX.to_owned(),
        None => media_types::MANIFEST.to_owned(),
    };
    Ok(ImageRoot { blob, media_type })
}

/// Every blob the root reaches, the root first, each once, in a stable
/// order (depth first, as the descriptors list them). Manifests and indexes
/// must be in the CAS; configs and layers need not be.
pub fn image_blobs(cas: &Cas, root: &ImageRoot) -> Result<Vec<BlobRef>, OciError> {
    let mut blobs = Vec::new();
    collect(cas, root.blob, &root.media_type, &mut blobs)?;
    Ok(blobs)
}

/// The blobs of the image that are not in the CAS yet (lazily pulled base
/// layers): fetch them before writing a layout or an archive.
pub fn missing_blobs(cas: &Cas, root: &ImageRoot) -> Result<Vec<Digest>, OciError> {
    Ok(image_blobs(cas, root)?.into_iter().filter(|blob| !cas.contains(&blob.digest)).map(|blob| blob.digest).collect())
}

fn collect(cas: &Cas, blob: BlobRef, media_type: &str, out: &mut Vec<BlobRef>) -> Result<(), OciError> {
    if out.contains(&blob) {
        return Ok(());
    }
    out.push(blob);
    if media_types::is_index(media_type) {
        let index: Index = parse(&read_blob(cas, blob.digest)?, blob.digest, "image index")?;
        for entry in &index.manifests {
            collect(cas, entry.blob(), &entry.media_type, out)?;
        }
    } else if media_types::is_manifest(media_type) {
        let manifest: Manifest = parse(&read_blob(cas, blob.digest)?, blob.digest, "image manifest")?;
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !out.contains(&descriptor.blob()) {
                out.push(descriptor.blob());
            }
        }
    }
    Ok(())
}

pub(crate) fn read_blob(cas: &Cas, digest: Digest) -> Result<Vec<u8>, OciError> {
    cas.read_verified(&digest).map_err(|error| match error {
        CasError::Missing { digest } => OciError::MissingBlobs { digests: vec![digest] },
        other => OciError::Cas(other),
    })
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    digest: Digest,
    what: &'static str,
) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|error| OciError::BadBlob { digest, what, reason: error.to_string() })
}

/// The `index.json` of a layout or archive holding `root`, named `ref_name`
/// (`org.opencontainers.image.ref.name`, the tag) when given.
pub(crate) fn layout_index(root: &ImageRoot, ref_name: Option<&str>) -> Result<Vec<u8>, OciError> {
    let mut descriptor = Descriptor::new(root.media_type.clone(), root.blob);
    if let Some(name) = ref_name {
        descriptor.annotations.insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
    }
    let index = Index::new(vec![descriptor], Default::default());
    Ok(canonical_json(&index))
}

/// Writes `root` as an OCI image layout at `dir`, replacing what was there
/// in one rename: the layout is built in a temp sibling directory first, so a
/// reader sees the old layout or the new one, never half of one. Fails with
/// [`OciError::MissingBlobs`] (before writing anything) when blobs are not in
/// the CAS.
pub fn write_layout(cas: &Cas, root: &ImageRoot, ref_name: Option<&str>, dir: &Path) -> Result<(), OciError> {
    let missing = missing_blobs(cas, root)?;
    if !missing.is_empty() {
        return Err(OciError::MissingBlobs { digests: missing });
    }
    write_layout_of_present_blobs(cas, root, ref_name, dir).map(drop)
}

/// Like [`write_layout`], but blobs missing from the CAS (the layers of a
/// lazily pulled base, which no action needed) are left out and returned:
/// `berth build` does not download a base's layers just to link them.
pub fn write_lazy_layout(
    cas: &Cas,
    root: &ImageRoot,
    ref_name: Option<&str>,
    dir: &Path,
) -> Result<Vec<Digest>, OciError> {
    write_layout_of_present_blobs(cas, root, ref_name, dir)
}

fn write_layout_of_present_blobs(
    cas: &Cas,
    root: &ImageRoot,
    ref_name: Option<&str>,
    dir: &Path,
) -> Result<Vec<Digest>, OciError> {
    let (blobs, missing): (Vec<BlobRef>, Vec<BlobRef>) =
        image_blobs(cas, root)?.into_iter().partition(|blob| cas.contains(&blob.digest));
    let index = layout_index(root, ref_name)?;
    let missing: Vec<Digest> = missing.into_iter().map(|blob| blob.digest).collect();
    if is_up_to_date(cas, &blobs, &index, dir) {
        return Ok(missing);
    }
    let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    fs::create_dir_all(parent).map_err(OciError::write(parent.display().to_string()))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(parent)
        .map_err(OciError::write(parent.display().to_string()))?;
    let write_error = |path: &Path| OciError::write(path.display().to_string());

    let blob_dir = temp.path().join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(write_error(&blob_dir))?;
    for blob in &blobs {
        let target = blob_dir.join(blob.digest.hex());
        link_or_copy(&cas.path(&blob.digest), &target).map_err(write_error(&target))?;
    }
    write_file(&temp.path().join("oci-layout"), OCI_LAYOUT)?;
    write_file(&temp.path().join("index.json"), &index)?;
    for sub in [temp.path().to_path_buf(), temp.path().join("blobs"), blob_dir] {
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).map_err(write_error(&sub))?;
    }
    replace_dir(temp.keep(), dir)?;
    Ok(missing)
}

/// Whether `dir` already is this layout: the same `index.json`, and every
/// blob a hard link to its CAS file. A no-op build then touches nothing
/// under `berth-out/` but a few stats.
fn is_up_to_date(cas: &Cas, blobs: &[BlobRef], index: &[u8], dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let same_file = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    fs::read(dir.join("index.json")).is_ok_and(|existing| existing == index)
        && blobs
            .iter()
            .all(|blob| same_file(&dir.join("blobs/sha256").join(blob.digest.hex()), &cas.path(&blob.digest)))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let mut file = File::create(path).map_err(OciError::write(path.display().to_string()))?;
    file.write_all(bytes).map_err(OciError::write(path.display().to_string()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(OciError::write(path.display().to_string()))
}

/// A hard link to the CAS blob, or a copy where links are impossible
/// (another filesystem, or a filesystem without them).
fn link_or_copy(source: &Path, target: &Path) -> io::Result<()> {
    match fs::hard_link(source, target) {
        Ok(()) => Ok(()),
        Err(_) => fs::copy(source, target).map(drop),
    }
}

/// Moves the finished directory `new` to `dir`: a plain rename when `dir`
/// does not exist, an atomic exchange (`renameat2(RENAME_EXCHANGE)`) when
/// it does, after which the old tree is removed.
fn replace_dir(new: PathBuf, dir: &Path) -> Result<(), OciError> {
    let write_error = OciError::write(dir.display().to_string());
    let cleanup = |error: OciError| {
        let _ = fs::remove_dir_all(&new);
        error
    };
    match fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::rename(&new, dir).map_err(write_error).map_err(cleanup)
        }
        Err(error) => Err(cleanup(write_error(error))),
        Ok(meta) if !meta.is_dir() => Err(cleanup(OciError::Write {
            what: dir.display().to_string(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory"),
        })),
        Ok(_) => {
            sys::exchange(&new, dir).map_err(write_error).map_err(cleanup)?;
            // `new` now holds the old layout.
            let _ = fs::remove_dir_all(&new);
            Ok(())
        }
    }
}
