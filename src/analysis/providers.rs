//! Providers: what a target hands the targets that depend on it (Bazel's
//! and Buck2's word), after analysis.

use std::rc::Rc;

use crate::actions::ActionId;
use crate::analysis::PlannedEntry;
use crate::oci::Platform;

/// A target's provider. Cheap to clone: big entry lists are shared.
#[derive(Debug, Clone)]
pub enum Provider {
    /// `files`: files with their destinations, packed by whoever uses them.
    Files(FilesInfo),
    Layer(LayerInfo),
    Image(ImageInfo),
    Index(IndexInfo),
}

impl Provider {
    pub fn describe(&self) -> &'static str {
        match self {
            Provider::Files(_) => "a group of files",
            Provider::Layer(_) => "a layer",
            Provider::Image(_) => "an image",
            Provider::Index(_) => "an image index",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FilesInfo {
    pub entries: Rc<Vec<PlannedEntry>>,
}

/// A layer: either entries that each image packs with its own compression
/// (so one `oci_layer` serves a gzip and a zstd image), or an action whose
/// output already is a layer blob.
#[derive(Debug, Clone)]
pub enum LayerInfo {
    Planned {
        entries: Rc<Vec<PlannedEntry>>,
        main_output: Option<String>,
    },
    /// `output_path`: where a build step's layer is also linked under
    /// `berth-out/`.
    Built {
        action: ActionId,
        main_output: Option<String>,
        output_path: Option<String>,
    },
}

impl LayerInfo {
    /// The path a package's image runs by default when it is the first
    /// package (its first file, or a build step's first output).
    pub fn main_output(&self) -> Option<&str> {
        match self {
            LayerInfo::Planned { main_output, .. } | LayerInfo::Built { main_output, .. } => main_output.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The action whose output holds blobs `manifest` and `config`.
    pub image: ActionId,
    /// The actions whose outputs hold each layer's blob, base layers first.
    /// Actions that need the layers' bytes (a build step, `berth run`)
    /// depend on these; a plain build of a derived image does not.
    pub layer_blobs: Vec<ActionId>,
    pub repository: Option<String>,
    pub tags: Vec<String>,
    /// The image's platform when analysis knows it (an empty base, a
    /// `platform` or `os`/`architecture` set, a pulled config); `None`
    /// when only building its base would tell.
    pub platform: Option<Platform>,
    /// What `berth run` does with the target: run the image, or, for
    /// rules_oci's `oci_push` and `oci_load`, push or load it.
    pub run: RunAs,
}

/// What `berth run` does with an image or index target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunAs {
    /// Runs the image with runc.
    #[default]
    Container,
    /// `oci_push`: pushes to the target's `repository` and tags.
    Push,
    /// `oci_load`: streams a docker-archive named `repo_tags` into
    /// `docker load` (or `podman load`).
    Load { repo_tags: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// The action whose output holds blob `index`.
    pub index: ActionId,
    pub images: Vec<ImageInfo>,
    pub repository: Option<String>,
    pub tags: Vec<String>,
    pub run: RunAs,
}
