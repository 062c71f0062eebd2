//! Errors of the remote cache. Only a bad `remote_cache(...)` URL reaches
//! the user as an error; everything the server does wrong is a miss and a
//! warning (the failure policy of [`RemoteCache`](crate::remote::RemoteCache)).

use crate::error::{Diagnose, ErrorKind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// A URL this client cannot serve.
    #[error("Remote cache URL `{url}` is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    /// The certificate authority `BERTH_REMOTE_CACHE_CA` names cannot be used.
    #[error("Remote cache CA certificate `{path}` (`BERTH_REMOTE_CACHE_CA`) cannot be used: {reason}")]
    BadCa { path: String, reason: String },
    /// The server could not be reached, timed out or answered with an error.
    #[error("Remote cache `{remote}` failed: {message}")]
    Unavailable { remote: String, message: String },
    /// The server answered, but what it holds for an action cannot be
    /// trusted (a wrong digest, a missing blob, a result that is not berth's).
    #[error("Remote cache entry is not usable: {message}")]
    Invalid { message: String },
}

impl Diagnose for RemoteError {
    fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::BadUrl { .. } => ErrorKind::User,
            // As a registry's unusable certificate: the machine's setup.
            RemoteError::BadCa { .. } => ErrorKind::Environment,
            RemoteError::Unavailable { .. } => ErrorKind::Environment,
            RemoteError::Invalid { .. } => ErrorKind::Environment,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RemoteError::BadUrl { .. } => Some(
                "use grpc://host:port[/instance], grpcs://host:port[/instance] or oci://host[:port]/repo".to_owned(),
            ),
            RemoteError::BadCa { .. } => Some(
                "point `BERTH_REMOTE_CACHE_CA` at a PEM file of the CA that signed the server's certificate".to_owned(),
            ),
            _ => None,
        }
    }
}
