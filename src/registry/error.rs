//! What can go wrong talking to a registry, and whose fault it is.

use crate::cache::{CasError, Digest};
use crate::error::{Diagnose, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Invalid image reference `{text}`: {reason}")]
    BadReference { text: String, reason: String },

    #[error("Registry `{host}` is unreachable: {reason}")]
    Unreachable { host: String, reason: String },

    #[error("Registry `{host}` answered {status} to {method} `{path}`{detail}")]
    Status { host: String, method: String, path: String, status: u16, detail: String },

    #[error("{what} `{reference}` not found in `{repository}`")]
    NotFound { what: &'static str, repository: String, reference: String },

    #[error("Access to `{repository}` was denied by `{host}`: {reason}")]
    Denied { host: String, repository: String, reason: String },

    #[error("Token server for `{host}` failed: {reason}")]
    Token { host: String, reason: String },

    #[error("Digest mismatch for {what} `{expected}` from `{repository}`: the registry sent {size} bytes hashing to `{actual}`")]
    DigestMismatch { what: &'static str, repository: String, expected: Digest, actual: Digest, size: u64 },

    #[error("Size mismatch for {what} `{digest}` from `{repository}`: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: &'static str, repository: String, digest: Digest, expected: u64, actual: u64 },

    #[error("{what} from `{repository}` is larger than the {limit}-byte limit")]
    TooLarge { what: &'static str, repository: String, limit: u64 },

    #[error("Transfer from `{host}` was cut short: {reason}")]
    Transfer { host: String, reason: String },

    #[error("Manifest `{digest}` of `{repository}` is not a valid image manifest or index: {reason}")]
    BadManifest { repository: String, digest: Digest, reason: String },

    #[error("No manifest for platform `{platform}` in index `{digest}` of `{repository}`; available: {}", available.join(", "))]
    NoMatchingPlatform { repository: String, digest: Digest, platform: String, available: Vec<String> },

    #[error(
        "Invalid platform `{text}`: expected `os/architecture` or `os/architecture/variant`, e.g. `linux/arm64/v8`"
    )]
    BadPlatform { text: String },

    #[error("The {what} {path} for registry `{host}` cannot be used: {reason}")]
    Certificate { host: String, what: &'static str, path: String, reason: String },

    #[error("TLS with registry `{host}` failed: {reason}")]
    Tls { host: String, reason: String, hint: String },

    #[error("Registry `{host}` sent berth to the token realm `{realm}`, which berth refuses: {reason}")]
    UnsafeRealm { host: String, realm: String, reason: String },

    #[error("Cannot read Docker credentials from `{path}`: {reason}")]
    DockerConfig { path: String, reason: String },

    #[error("Credential helper `docker-credential-{helper}` failed for `{host}`: {reason}")]
    CredentialHelper { helper: String, host: String, reason: String },

    #[error("{what} `{digest}` is not in the cache and `--offline` forbids fetching it from `{repository}`")]
    Offline { what: &'static str, repository: String, digest: Digest },

    #[error("Blob `{digest}` is neither in the cache nor in any known source repository, so it cannot be pushed")]
    MissingBlob { digest: Digest },

    #[error("Cannot fetch `{url}`: {reason}")]
    UrlFetch { url: String, reason: String },

    #[error("`{url}` sent {size} bytes hashing to `{actual}`, not the `--checksum` `{expected}`")]
    UrlDigestMismatch { url: String, expected: Digest, actual: Digest, size: u64 },

    #[error("Cannot read `{path}`: {source}")]
    Io { path: String, source: std::io::Error },

    #[error(transparent)]
    Cas(#[from] CasError),
}

impl Diagnose for RegistryError {
    fn kind(&self) -> ErrorKind {
        use RegistryError::*;
        match self {
            Cas(error) => error.kind(),
            Unreachable { .. }
            | Status { .. }
            | Token { .. }
            | Transfer { .. }
            | CredentialHelper { .. }
            | Certificate { .. }
            | Tls { .. }
            | UnsafeRealm { .. }
            | UrlFetch { .. }
            | Io { .. } => ErrorKind::Environment,
            BadReference { .. }
            | NotFound { .. }
            | Denied { .. }
            | DigestMismatch { .. }
            | SizeMismatch { .. }
            | TooLarge { .. }
            | BadManifest { .. }
            | NoMatchingPlatform { .. }
            | BadPlatform { .. }
            | DockerConfig { .. }
            | Offline { .. }
            | MissingBlob { .. }
            | UrlDigestMismatch { .. } => ErrorKind::User,
        }
    }

    fn hint(&self) -> Option<String> {
        use RegistryError::*;
        let hint = match self {
            Cas(error) => return error.hint(),
            Tls { hint, .. } => return Some(hint.clone()),
            Certificate { host, .. } => {
                return Some(format!(
                    "fix the file, or the `ca`, `client_cert` and `client_key` of `registry(\"{host}\", ...)` in `WORKSPACE.star` (or their `BERTH_REGISTRY_*_{}` overrides)",
                    crate::registry::tls::env_key(host)
                ))
            }
            Unreachable { .. } => {
                "check the host name and port, and `registry(host, insecure = True)` in `WORKSPACE.star` for a plain-HTTP registry"
            }
            Denied { .. } => {
                "log in with credentials in `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`), or set `anonymous = True` for a public image"
            }
            DigestMismatch { .. } => "the registry or something between it and berth is corrupting data; nothing was cached",
            UnsafeRealm { .. } => {
                "berth sends credentials only to the registry's own host or an https token server; check the registry's `auth.token.realm` (or what answers in its place)"
            }
            NoMatchingPlatform { .. } => "set `platform` to one of the available platforms",
            UrlDigestMismatch { .. } => {
                "nothing was cached; if the file changed on purpose, put its new sha256 in `--checksum`"
            }
            _ => return None,
        };
        Some(hint.to_owned())
    }
}
