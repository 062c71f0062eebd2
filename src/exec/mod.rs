//! Execution: the scheduler that runs the action DAG against the cache, and
//! the sandboxes actions run in (scratch directories here; runc bundles for
//! in-container steps).

mod error;
mod history;
mod rootfs;
mod run_image;
mod runc;
mod sandbox;
mod scheduler;

pub use error::ExecError;
pub use history::{explain, ActionExplanation, ActionName, BuildLog, HistoryError, LoggedAction, LoggedInput, Reason};
pub use rootfs::{RootFs, RootFsError, StackMode};
pub use run_image::{
    extract_layers, merge_env, resolve_user, run_image, ImageRuntimeConfig, RunDir, RunImageRequest, DEFAULT_PATH,
};
pub use runc::{config as runc_config, Container, Limits, Outcome, Runc, RuncError, StdioMode};
pub use sandbox::{LocalSandbox, Sandbox};
pub use scheduler::{default_jobs, ActionRecord, ActionStatus, BuildResult, Executor};
