//! Execution: the scheduler that runs the action DAG, and the sandboxes actions run in.

mod rootfs;
mod run_image;
mod runc;

pub use rootfs::{RootFs, RootFsError, StackMode};
pub use run_image::{
    extract_layers, merge_env, resolve_user, run_image, ImageRuntimeConfig, RunDir, RunImageRequest, DEFAULT_PATH,
};
pub use runc::{config as runc_config, Container, Limits, Outcome, Runc, RuncError, StdioMode};
