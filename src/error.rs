//! The crate-wide error: one variant per layer, each tagged with the kind
//! that picks the exit code (as Buck2 tags errors input/environment/tier0).

/// Who is at fault, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a BUILD file, a label, a digest, a failing step. Exit 1.
    User,
    /// The machine or the network: runc missing, registry unreachable. Exit 3.
    Environment,
    /// A bug in berth. Exit 1, with a request to report it.
    Internal,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::User | ErrorKind::Internal => 1,
            ErrorKind::Environment => 3,
        }
    }
}

/// A message for the user plus the kind that decides the exit code.
///
/// Layers keep their own `thiserror` enums and convert into this one; the
/// message is rendered once, at the boundary, by `cli`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn user(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::User, message: message.into() }
    }

    pub fn environment(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Environment, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Internal, message: message.into() }
    }

    /// Puts `what` (where the error happened) before the message.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        Error { kind: self.kind, message: format!("{what}: {}", self.message) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
