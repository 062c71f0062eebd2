//! A place in the workspace's files: where a target was declared, where a
//! Starlark error happened. Errors name it on their `  --> ` line.

use std::fmt;

/// A file, line and column in the workspace (or in the embedded rule
/// library). A target's is the call in the BUILD file (not the line in the
/// macro that forwarded it), so errors point at what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Workspace-relative path of the BUILD or `.star` file.
    pub path: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path, self.line, self.column)
    }
}
