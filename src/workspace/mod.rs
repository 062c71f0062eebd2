//! The workspace: its root, its packages, and the labels that name targets.

mod label;

pub use label::{Label, LabelError};
