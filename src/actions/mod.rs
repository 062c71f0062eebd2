//! Action kinds: work with declared inputs and outputs. Rules register
//! actions during analysis; `exec` runs them and `cache` remembers them.
//!
//! - `action`: the [`Action`] trait and the [`ActionGraph`] analysis fills.
//! - `context`: what a running action sees, the build's
//!   [`ExecutionContext`] (CAS, registry, layer store, container runtime).
//! - `runtime`: the [`ContainerRuntime`] trait that `exec` implements.
//! - `outputs`: the typed view of each kind's [`ActionResult`].
//! - one file per kind: `pack_layer`, `deb_layer`, `run_step`, `dockerfile_run`,
//!   `fetch_blob`, `fetch_image`, `import_image`, `import_tar`, `merge_layers`, `write_config`, `write_manifest`,
//!   `write_index`.

mod action;
mod context;
mod deb_layer;
mod dockerfile_run;
mod fetch_blob;
mod fetch_image;
mod import_image;
mod import_tar;
mod merge_layers;
mod outputs;
mod pack_layer;
mod run_step;
mod runtime;
mod write_config;
mod write_index;
mod write_manifest;

/// Re-exported: actions name their inputs by id and return results; both
/// types live in `cache`, below everything that needs them.
pub use crate::cache::{ActionId, ActionResult};
pub use action::{Action, ActionGraph, ActionNode, Input};
pub use context::{ActionContext, ExecutionContext, ResolvedInput};
pub use deb_layer::{DebLayer, DebLayerError, PinnedDeb};
pub use dockerfile_run::{CopyContent, CopyEntry, CopyFrom, DockerfileRun, DockerfileRunSpec};
pub use fetch_blob::FetchBlob;
pub use fetch_image::FetchImage;
pub use import_image::ImportImage;
pub use import_tar::ImportTar;
pub use merge_layers::MergeLayers;
pub use outputs::{ConfigOutput, DebLayerOutput, DebPackage, ImageOutput, IndexOutput, LayerOutput, OutputError};
pub use pack_layer::PackLayer;
pub use run_step::{BaseConfig, RunStep, RunStepSpec};
pub use runtime::{
    capture, check_deadline, merge_env, resolve_user, Captured, CapturedBody, ContainerRoot, ContainerRuntime,
    ImageRuntimeConfig, Outcome, Process, RuntimeError, Stdio, DEFAULT_PATH,
};
pub use write_config::{ConfigLayer, WriteConfig};
pub use write_index::WriteIndex;
pub use write_manifest::{WriteManifest, BASE_DIGEST_ANNOTATION};
