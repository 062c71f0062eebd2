//! The workspace: its root, its packages, and the labels that name targets.

mod label;
mod settings;

pub use label::{Label, LabelError};
pub use settings::{RegistrySetting, WorkspaceSettings};
