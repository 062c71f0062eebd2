//! Errors of the loading phase, converted into `crate::error::Error` at the
//! boundary.

use crate::error::Error;
use crate::graph::GraphError;
use crate::workspace::WorkspaceError;

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A Starlark error (syntax, `fail()`, a bad call), in starlark-rust's own
    /// rendering with the source snippet.
    #[error("{0}")]
    Starlark(String),
    /// A mistake berth found in what a BUILD or `.star` file declared: a
    /// user error with the declaration's location and, mostly, a hint.
    #[error("{0}")]
    Invalid(Error),
    /// A Starlark resource limit was hit (recursion, loop, memory).
    #[error("{0}")]
    Limit(Error),
    #[error(transparent)]
    Graph(Box<GraphError>),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("Cannot read `{path}`: {source}")]
    Io { path: String, source: std::io::Error },
    /// A bug in berth found while loading.
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for LoadError {
    fn from(error: Error) -> LoadError {
        LoadError::Invalid(error)
    }
}

impl From<GraphError> for LoadError {
    fn from(error: GraphError) -> LoadError {
        LoadError::Graph(Box::new(error))
    }
}

impl From<LoadError> for Error {
    fn from(error: LoadError) -> Error {
        match error {
            LoadError::Invalid(error) | LoadError::Limit(error) => error,
            LoadError::Workspace(error) => error.into(),
            LoadError::Graph(error) => (*error).into(),
            LoadError::Io { .. } => Error::environment(error.to_string()),
            LoadError::Internal(message) => Error::internal(message),
            LoadError::Starlark(message) => Error::user(message),
        }
    }
}
