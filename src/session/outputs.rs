//! What each requested target built, and how it appears under `berth-out/`:
//! images and indexes as OCI image layouts, layers as their blob, all hard
//! links into the CAS so an output costs no extra space.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::actions::{ActionResult, ImageOutput, IndexOutput, LayerOutput};
use crate::analysis::{LayerInfo, Provider};
use rayon::prelude::*;

use crate::cache::{BlobRef, Cas, Digest};
use crate::error::{Error, Result};
use crate::oci::{media_types, write_lazy_layout, ImageRoot, Index, Manifest};
use crate::session::Built;
use crate::workspace::Label;

/// The main artifact of a requested target.
#[derive(Debug, Clone)]
pub enum TargetOutput {
    Image { root: ImageRoot, repository: Option<String>, tags: Vec<String> },
    Index { root: ImageRoot, repository: Option<String>, tags: Vec<String> },
    Layer { layer: LayerOutput },
}

impl TargetOutput {
    /// Reads the output of the target's main action.
    pub fn of(provider: &Provider, output: &ActionResult) -> Result<TargetOutput> {
        Ok(match provider {
            Provider::Image(image) => TargetOutput::Image {
                root: ImageRoot {
                    blob: ImageOutput::from_result(output)?.manifest,
                    media_type: media_types::MANIFEST.to_owned(),
                },
                repository: image.repository.clone(),
                tags: image.tags.clone(),
            },
            Provider::Index(index) => TargetOutput::Index {
                root: ImageRoot {
                    blob: IndexOutput::from_result(output)?.index,
                    media_type: media_types::INDEX.to_owned(),
                },
                repository: index.repository.clone(),
                tags: index.tags.clone(),
            },
            Provider::Files(_) | Provider::Layer(_) => TargetOutput::Layer { layer: LayerOutput::from_result(output)? },
        })
    }

    /// The digest `berth build` prints: the manifest's, the index's, or the
    /// layer blob's.
    pub fn digest(&self) -> Digest {
        self.blob().digest
    }

    pub fn blob(&self) -> BlobRef {
        match self {
            TargetOutput::Image { root, .. } | TargetOutput::Index { root, .. } => root.blob,
            TargetOutput::Layer { layer } => layer.blob,
        }
    }

    /// The manifest or index, for layouts, archives and pushes.
    pub fn root(&self) -> Option<&ImageRoot> {
        match self {
            TargetOutput::Image { root, .. } | TargetOutput::Index { root, .. } => Some(root),
            TargetOutput::Layer { .. } => None,
        }
    }

    /// The first tag, as the layout's `org.opencontainers.image.ref.name`.
    pub fn ref_name(&self) -> Option<&str> {
        match self {
            TargetOutput::Image { tags, .. } | TargetOutput::Index { tags, .. } => tags.first().map(String::as_str),
            TargetOutput::Layer { .. } => None,
        }
    }
}

/// `berth-out/<package>/<name>/`: an OCI image layout for an image or an
/// index; `layer.tar`, `layer.tar.gz` or `layer.tar.zst` for a layer (and
/// also at `berth-out/<output_path>` when a build step sets `output_path`).
///
/// Returns, per image, how many blobs of lazily pulled bases the layout
/// leaves out.
pub fn write_outputs(cas: &Cas, out_dir: &Path, built: &Built) -> Result<Vec<(Label, usize)>> {
    let mut not_fetched = Vec::new();
    for (label, output) in &built.targets {
        let dir = target_dir(out_dir, label);
        create_dirs_inside(out_dir, dir.parent().unwrap_or(out_dir))?;
        match output {
            TargetOutput::Image { root, .. } | TargetOutput::Index { root, .. } => {
                let missing = write_lazy_layout(cas, root, output.ref_name(), &dir)?;
                if !missing.is_empty() {
                    not_fetched.push((label.clone(), missing.len()));
                }
            }
            TargetOutput::Layer { layer } => {
                let name = format!("layer{}", layer_extension(&layer.media_type));
                link_blob(cas, layer.blob.digest, &dir.join(name))?;
                if let Some(Provider::Layer(LayerInfo::Built { output_path: Some(path), .. })) = built.provider(label) {
                    let path = out_dir.join(path);
                    create_dirs_inside(out_dir, path.parent().unwrap_or(out_dir))?;
                    link_blob(cas, layer.blob.digest, &path)?;
                }
            }
        }
    }
    Ok(not_fetched)
}

/// `berth-out/<package>/<name>`.
pub fn target_dir(out_dir: &Path, label: &Label) -> PathBuf {
    out_dir.join(&label.package).join(&label.name)
}

fn layer_extension(media_type: &str) -> &'static str {
    if media_type.ends_with("gzip") {
        ".tar.gz"
    } else if media_type.ends_with("zstd") {
        ".tar.zst"
    } else {
        ".tar"
    }
}

/// Creates `dir` (under `out_dir`) one directory at a time, refusing a
/// symlink or a file on the way: a link planted below `berth-out/` must not
/// send an output somewhere else. `out_dir` itself may be a symlink (users
/// point `berth-out` at another disk on purpose).
fn create_dirs_inside(out_dir: &Path, dir: &Path) -> Result<()> {
    let relative = dir.strip_prefix(out_dir).map_err(|_| {
        Error::internal(format!("Output directory `{}` is not inside `{}`", dir.display(), out_dir.display()))
    })?;
    let mut path = out_dir.to_path_buf();
    fs::create_dir_all(&path)
        .map_err(|error| Error::environment(format!("Cannot create `{}`: {error}", path.display())))?;
    for component in relative.components() {
        let std::path::Component::Normal(name) = component else {
            return Err(Error::internal(format!("Output directory `{}` is not a plain path", dir.display())));
        };
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let what = if meta.file_type().is_symlink() { "a symlink" } else { "not a directory" };
                return Err(Error::user(format!(
                    "`{}` is {what}; berth does not write outputs through it",
                    path.display()
                ))
                .with_hint(format!("remove `{}`; berth recreates it", path.display())));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => match fs::create_dir(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::environment(format!("Cannot create `{}`: {error}", path.display()))),
            },
            Err(error) => return Err(Error::environment(format!("Cannot read `{}`: {error}", path.display()))),
        }
    }
    Ok(())
}

/// Hard-links a CAS blob to `path` (copying across filesystems), replacing
/// what was there through a temp name so the path is never half-written.
fn link_blob(cas: &Cas, digest: Digest, path: &Path) -> Result<()> {
    let blob = cas.path(&digest);
    if let (Ok(existing), Ok(wanted)) = (fs::metadata(path), fs::metadata(&blob)) {
        if (existing.ino(), existing.dev()) == (wanted.ino(), wanted.dev()) {
            return Ok(());
        }
    }
    let io_error = |error: std::io::Error| Error::environment(format!("Cannot write `{}`: {error}", path.display()));
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error)?;
    let temp = parent.join(format!(".{}.tmp", digest.hex()));
    let _ = fs::remove_file(&temp);
    if fs::hard_link(&blob, &temp).is_err() {
        fs::copy(&blob, &temp).map_err(io_error)?;
    }
    fs::rename(&temp, path).map_err(io_error)
}

/// The blobs a command is about to publish for `built`'s targets (each
/// image's manifests, configs and layers that are in the CAS; each layer
/// target's blob), checked by content with [`Cas::verify_content`]:
/// hashed whatever their mtime says, once per process. Returns the digests
/// found corrupt, already removed from the CAS. `skip(label, digest)`
/// leaves out blobs that are already where they are published (the
/// hard links a previous build put in `berth-out/`).
pub fn corrupt_published(cas: &Cas, built: &Built, skip: &dyn Fn(&Label, &Digest) -> bool) -> Result<Vec<Digest>> {
    let mut corrupt = Vec::new();
    let mut leaves: Vec<(BlobRef, &Label)> = Vec::new();
    for (label, output) in &built.targets {
        match output {
            TargetOutput::Image { root, .. } | TargetOutput::Index { root, .. } => {
                walk(cas, label, root.blob, &root.media_type, &mut leaves, &mut corrupt)?
            }
            TargetOutput::Layer { layer } => leaves.push((layer.blob, label)),
        }
    }
    leaves.sort_by_key(|(blob, _)| blob.digest);
    leaves.dedup_by_key(|(blob, _)| blob.digest);
    let to_hash: Vec<BlobRef> = leaves
        .into_iter()
        .filter(|(blob, label)| cas.contains(&blob.digest) && !skip(label, &blob.digest))
        .map(|(blob, _)| blob)
        .collect();
    let bad: Vec<Digest> = to_hash
        .par_iter()
        .map(|blob| Ok((blob.digest, cas.verify_content(blob)?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|(digest, sound)| (!sound).then_some(digest))
        .collect();
    corrupt.extend(bad);
    Ok(corrupt)
}

/// Checks a manifest or index (it is read to find its children) and queues
/// its config and layers for hashing.
fn walk<'l>(
    cas: &Cas,
    label: &'l Label,
    blob: BlobRef,
    media_type: &str,
    leaves: &mut Vec<(BlobRef, &'l Label)>,
    corrupt: &mut Vec<Digest>,
) -> Result<()> {
    let is_index = media_types::is_index(media_type);
    if !is_index && !media_types::is_manifest(media_type) {
        leaves.push((blob, label));
        return Ok(());
    }
    if !cas.contains(&blob.digest) || corrupt.contains(&blob.digest) {
        return Ok(());
    }
    // Manifests are small: always hashed, as they are read to find the rest.
    if !cas.verify_content(&blob)? {
        corrupt.push(blob.digest);
        return Ok(());
    }
    let bytes = fs::read(cas.path(&blob.digest))
        .map_err(|error| Error::environment(format!("Cannot read blob `{}`: {error}", blob.digest)))?;
    let bad_json =
        |error: serde_json::Error| Error::internal(format!("Blob `{}` is not a valid manifest: {error}", blob.digest));
    if is_index {
        let index: Index = serde_json::from_slice(&bytes).map_err(bad_json)?;
        for entry in &index.manifests {
            walk(cas, label, entry.blob(), &entry.media_type, leaves, corrupt)?;
        }
    } else {
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(bad_json)?;
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            leaves.push((descriptor.blob(), label));
        }
    }
    Ok(())
}

/// Whether `digest` is already hard-linked where `write_outputs` puts it
/// for `label` (a no-op build hashes nothing it has published before).
pub fn already_in_out_dir(cas: &Cas, out_dir: &Path, built: &Built, label: &Label, digest: &Digest) -> bool {
    let dir = target_dir(out_dir, label);
    let linked = match built.targets.get(label) {
        Some(TargetOutput::Layer { layer }) => dir.join(format!("layer{}", layer_extension(&layer.media_type))),
        Some(_) => dir.join("blobs/sha256").join(digest.hex()),
        None => return false,
    };
    match (fs::metadata(linked), fs::metadata(cas.path(digest))) {
        (Ok(existing), Ok(blob)) => (existing.ino(), existing.dev()) == (blob.ino(), blob.dev()),
        _ => false,
    }
}
