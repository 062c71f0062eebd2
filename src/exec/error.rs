//! Errors of execution: a failing action (with its owner), a request for an
//! action the graph does not have, and the file system around scratch
//! directories.

use std::io;
use std::path::PathBuf;

use crate::cache::CacheError;
use crate::error::{Error, ErrorKind};
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
        let kind = match error {
            ExecError::Cache(error) => return error.into(),
            ExecError::ActionFailed { ref source, .. } => source.kind,
            ExecError::UnknownAction { .. } => ErrorKind::Internal,
            ExecError::Scratch { .. } => ErrorKind::Environment,
        };
        Error { kind, message: error.to_string() }
    }
}
