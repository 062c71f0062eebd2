//! Errors of the loading phase, converted into `crate::error::Error` at the
//! boundary.

use std::fmt;

use crate::error::Error;
use crate::graph::GraphError;
use crate::workspace::{Location, WorkspaceError};

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A Starlark error (syntax, `fail()`, a bad call), in starlark-rust's own
    /// rendering with the source snippet.
    #[error("{0}")]
    Starlark(String),
    /// A mistake berth found in what a BUILD or `.star` file declared.
    #[error("{0}")]
    Invalid(Diagnostic),
    /// A Starlark resource limit was hit (recursion, loop, memory).
    #[error("{0}")]
    Limit(Diagnostic),
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

/// A message, where it applies, and what to do about it:
///
/// ```text
/// Unknown attribute `srcz` of `files` target `//app:srcs`
///   --> app/BUILD.star:3:1
/// hint: did you mean `srcs`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<Location>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), location: None, hint: None }
    }

    pub fn at(mut self, location: Location) -> Diagnostic {
        self.location = Some(location);
        self
    }

    pub fn maybe_at(mut self, location: Option<Location>) -> Diagnostic {
        self.location = location;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(location) = &self.location {
            write!(f, "\n  --> {location}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for LoadError {
    fn from(diagnostic: Diagnostic) -> LoadError {
        LoadError::Invalid(diagnostic)
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
            LoadError::Workspace(error) => error.into(),
            LoadError::Graph(error) => (*error).into(),
            LoadError::Io { .. } => Error::environment(error.to_string()),
            LoadError::Internal(message) => Error::internal(message),
            LoadError::Starlark(_) | LoadError::Invalid(_) | LoadError::Limit(_) => Error::user(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_message_location_and_hint_on_their_own_lines() {
        let diagnostic = Diagnostic::new("Unknown attribute `srcz`")
            .at(Location { path: "app/BUILD.star".into(), line: 3, column: 1 })
            .hint("did you mean `srcs`?");
        assert_eq!(
            diagnostic.to_string(),
            "Unknown attribute `srcz`\n  --> app/BUILD.star:3:1\nhint: did you mean `srcs`?"
        );
    }
}
