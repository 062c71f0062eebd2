//! Action kinds: work with declared inputs and outputs. Rules register
//! actions during analysis; `exec` runs them and `cache` remembers them.

mod action;
mod deb_layer;
mod fetch_blob;
mod fetch_image;
mod outputs;
mod pack_layer;
mod run_step;
mod write_config;
mod write_index;
mod write_manifest;

/// Re-exported: actions name their inputs by id and return results; both
/// types live in `cache`, below everything that needs them.
pub use crate::cache::{ActionId, ActionResult};
pub use action::{Action, ActionContext, ActionGraph, ActionNode, Input, ResolvedInput};
pub use deb_layer::{DebLayer, DebLayerError, PinnedDeb};
pub use fetch_blob::FetchBlob;
pub use fetch_image::FetchImage;
pub use outputs::{ConfigOutput, DebLayerOutput, DebPackage, ImageOutput, IndexOutput, LayerOutput, OutputError};
pub use pack_layer::PackLayer;
pub use run_step::{capture, BaseConfig, Captured, CapturedBody, RunStep, RunStepRuntime, RunStepSpec};
pub use write_config::{ConfigLayer, WriteConfig};
pub use write_index::WriteIndex;
pub use write_manifest::{WriteManifest, BASE_DIGEST_ANNOTATION};
