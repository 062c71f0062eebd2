//! Errors of execution: a failing action (with its owner), a request for an
//! action the graph does not have, and the file system around scratch
//! directories.

use std::io;
use std::path::PathBuf;

use crate::cache::CacheError;
use crate::error::Error;
use crate::workspace::Label;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// An action failed (or its inputs could not be resolved). The kind of
    /// `source` decides the exit code.
    #[error("Action `{kind}` of `{owner}` failed: {source}")]
    ActionFailed { owner: Label, kind: &'static str, source: Box<Error> },
    #[error("Action #{id} was requested but is not in the graph")]
    UnknownAction { id: usize },
    #[error("Cannot prepare a scratch directory at `{path}`: {source}")]
    Scratch { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl From<ExecError> for Error {
    fn from(error: ExecError) -> Error {
        match error {
            ExecError::Cache(error) => error.into(),
            // The action's own error, kind, location and hint kept, named.
            ExecError::ActionFailed { owner, kind, source } => {
                source.context(format_args!("Action `{kind}` of `{owner}` failed"))
            }
            ExecError::UnknownAction { .. } => Error::internal(error.to_string()),
            ExecError::Scratch { .. } => Error::environment(error.to_string()),
        }
    }
}
