//! What each requested target built, and how it appears under `berth-out/`:
//! images and indexes as OCI image layouts, layers as their blob, all hard
//! links into the CAS so an output costs no extra space.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::actions::{ActionResult, ImageOutput, IndexOutput, LayerOutput};
use crate::analysis::{LayerInfo, Provider};
use crate::cache::{BlobRef, Cas, Digest};
use crate::error::{Error, Result};
use crate::oci::{media_types, write_lazy_layout, ImageRoot};
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
                    link_blob(cas, layer.blob.digest, &out_dir.join(path.trim_start_matches('/')))?;
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
