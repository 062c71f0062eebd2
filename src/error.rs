//! The crate-wide error: what went wrong, where, what to do about it, and
//! the kind that picks the exit code (as Buck2 tags errors
//! input/environment/tier0).
//!
//! Each layer keeps its own `thiserror` enum, whose `Display` is the message
//! alone; the layer says the kind and the hint of each variant through
//! [`Diagnose`], and `?` turns it into an [`Error`] that keeps them as
//! fields. The error is rendered once, at the command line's boundary.

use std::fmt;

use crate::workspace::Location;

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

/// A message for the user, where it applies and what to do about it, plus
/// the kind that decides the exit code. It renders as
///
/// ```text
/// Unknown attribute `srcz` of `files` target `//app:srcs`
///   --> app/BUILD.star:3:1
/// hint: did you mean `srcs`?
/// ```
///
/// with the location and hint lines only when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// One sentence (or a few lines, e.g. a failing step's stderr), without
    /// the location and the hint.
    pub message: String,
    /// The declaration or the Starlark statement the error is about.
    pub location: Option<Location>,
    /// What the user can do about it, without the `hint: `.
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), location: None, hint: None }
    }

    pub fn user(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::User, message)
    }

    pub fn environment(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Environment, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// Says what to do about it (the `hint:` line).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the hint, or takes it away with `None`.
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Points the error at `location` (the `  --> ` line).
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// Sets the location, or takes it away with `None`.
    pub fn maybe_at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    /// Puts `what` (where the error happened) before the message.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(location) = &self.location {
            write!(f, "\n  --> {location}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// What a layer's error enum tells the crate [`Error`] beside its message
/// (its `Display`): whose fault each variant is and, where there is
/// something to do, the hint. Every implementor converts into [`Error`]
/// with `?`, so the kind, and with it the exit code, cannot be forgotten on
/// the way up.
///
/// A variant that wraps another layer's error asks it for both.
pub trait Diagnose: fmt::Display {
    fn kind(&self) -> ErrorKind;

    /// The `hint:` line, without the `hint: `.
    fn hint(&self) -> Option<String> {
        None
    }

    /// The declaration the error is about, for the `  --> ` line.
    fn location(&self) -> Option<Location> {
        None
    }
}

impl<E: Diagnose> From<E> for Error {
    fn from(error: E) -> Error {
        Error { kind: error.kind(), message: error.to_string(), location: error.location(), hint: error.hint() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        Location { path: "app/BUILD.star".into(), line: 3, column: 1 }
    }

    #[test]
    fn renders_message_location_and_hint_on_their_own_lines() {
        let error = Error::user("Unknown attribute `srcz`").at(location()).with_hint("did you mean `srcs`?");
        assert_eq!(error.to_string(), "Unknown attribute `srcz`\n  --> app/BUILD.star:3:1\nhint: did you mean `srcs`?");
        assert_eq!(Error::user("No hint").at(location()).to_string(), "No hint\n  --> app/BUILD.star:3:1");
        assert_eq!(Error::user("Nowhere").with_hint("look").to_string(), "Nowhere\nhint: look");
        assert_eq!(Error::environment("Just this").to_string(), "Just this");
    }

    #[test]
    fn context_goes_before_the_message_and_keeps_location_and_hint() {
        let error = Error::user("not found").at(location()).with_hint("pin it").context("Pulling `//app:base`");
        assert_eq!(error.to_string(), "Pulling `//app:base`: not found\n  --> app/BUILD.star:3:1\nhint: pin it");
        assert_eq!(error.kind, ErrorKind::User);
    }

    #[test]
    fn maybe_setters_clear_as_well_as_set() {
        let error = Error::user("m").at(location()).with_hint("h").maybe_at(None).maybe_hint(None);
        assert_eq!((error.location, error.hint), (None, None));
        let error = Error::user("m").maybe_at(Some(location())).maybe_hint(Some("h".into()));
        assert_eq!(error.to_string(), "m\n  --> app/BUILD.star:3:1\nhint: h");
    }

    #[test]
    fn kinds_pick_the_exit_code() {
        assert_eq!(ErrorKind::User.exit_code(), 1);
        assert_eq!(ErrorKind::Internal.exit_code(), 1);
        assert_eq!(ErrorKind::Environment.exit_code(), 3);
    }

    #[derive(Debug, thiserror::Error)]
    enum LayerError {
        #[error("Registry `{0}` is unreachable")]
        Unreachable(String),
        #[error("Cycle through `{0}`")]
        Cycle(String),
    }

    impl Diagnose for LayerError {
        fn kind(&self) -> ErrorKind {
            match self {
                LayerError::Unreachable(_) => ErrorKind::Environment,
                LayerError::Cycle(_) => ErrorKind::User,
            }
        }

        fn hint(&self) -> Option<String> {
            matches!(self, LayerError::Unreachable(_)).then(|| "check the host name".to_owned())
        }

        fn location(&self) -> Option<Location> {
            matches!(self, LayerError::Cycle(_)).then(location)
        }
    }

    #[test]
    fn layer_errors_convert_with_their_kind_hint_and_location() {
        fn fails() -> Result<()> {
            Err(LayerError::Unreachable("registry:5000".into()))?
        }
        let error = fails().unwrap_err();
        assert_eq!(error.kind, ErrorKind::Environment);
        assert_eq!(error.message, "Registry `registry:5000` is unreachable");
        assert_eq!(error.to_string(), "Registry `registry:5000` is unreachable\nhint: check the host name");

        let error = Error::from(LayerError::Cycle("//a:x".into()));
        assert_eq!(error.kind, ErrorKind::User);
        assert_eq!(error.to_string(), "Cycle through `//a:x`\n  --> app/BUILD.star:3:1");
    }
}
