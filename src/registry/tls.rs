//! TLS per registry host: a private CA to trust, a client certificate to
//! present (mTLS), or no verification at all for a throwaway test registry.
//!
//! Settings come from `registry(host, ca = ..., client_cert = ...,
//! client_key = ..., skip_verify = ...)` in `WORKSPACE.star` (paths relative
//! to the workspace root), overridden per host by environment variables, so
//! CI can hand secrets over without writing them into the workspace:
//!
//! | variable | overrides |
//! |---|---|
//! | `BERTH_REGISTRY_CA_<HOST>` | `ca` |
//! | `BERTH_REGISTRY_CLIENT_CERT_<HOST>` | `client_cert` |
//! | `BERTH_REGISTRY_CLIENT_KEY_<HOST>` | `client_key` |
//! | `BERTH_REGISTRY_SKIP_VERIFY_<HOST>` | `skip_verify` (`1`/`true`/`0`/`false`) |
//!
//! `<HOST>` is the host and port upper-cased, every other character turned
//! into `_` (`127.0.0.1:5443` → `127_0_0_1_5443`). A value is a path (absolute,
//! or relative to the workspace root) or the PEM text itself.
//!
//! Without the host suffix, `BERTH_REGISTRY_CA` is a CA trusted for every
//! host that names none of its own, and `BERTH_REGISTRY_CLIENT_CERT` /
//! `BERTH_REGISTRY_CLIENT_KEY` a client certificate for every host declared
//! with `registry(...)` that names none (never for an undeclared host).
//!
//! The files are checked here, before any connection, with rustls itself, so
//! an error names the certificate that failed and why; a client for a host
//! with its own TLS settings is made on first use and never shared with
//! another host (a client certificate goes only where it was configured).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::registry::RegistryError;
use crate::workspace::RegistrySetting;

/// One PEM input: what errors call it, and its bytes (read on first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemSource {
    /// A file: the path as the user wrote it (in backticks, with where it
    /// was written when that was not `WORKSPACE.star`), and where it is.
    File { shown: String, path: PathBuf },
    /// PEM text given in an environment variable.
    Inline { variable: String, text: String },
}

impl PemSource {
    fn shown(&self) -> String {
        match self {
            PemSource::File { shown, .. } => shown.clone(),
            PemSource::Inline { variable, .. } => format!("in `${variable}`"),
        }
    }

    fn read(&self, host: &str, what: &'static str) -> Result<Vec<u8>, RegistryError> {
        match self {
            PemSource::Inline { text, .. } => Ok(text.as_bytes().to_vec()),
            PemSource::File { path, .. } => std::fs::read(path)
                .map_err(|error| certificate_error(host, what, self, format!("cannot read it: {error}"))),
        }
    }
}

/// The TLS settings of one host, after environment overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub ca: Option<PemSource>,
    pub client: Option<(PemSource, PemSource)>,
    pub skip_verify: bool,
}

impl TlsSettings {
    /// Nothing beyond the public roots: the shared default client serves it.
    pub fn is_default(&self) -> bool {
        *self == TlsSettings::default()
    }
}

/// `127.0.0.1:5443` → `127_0_0_1_5443`, the `<HOST>` of the variables.
pub fn env_key(host: &str) -> String {
    host.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The environment variable that overrides `field` (`CA`, `CLIENT_CERT`,
/// `CLIENT_KEY`, `SKIP_VERIFY`) for `host`.
pub fn env_variable(field: &str, host: &str) -> String {
    format!("BERTH_REGISTRY_{field}_{}", env_key(host))
}

/// The settings for `host`: its `registry(...)` entry, overridden by the
/// environment. `root` is the workspace root that relative paths start at
/// (the current directory outside a workspace).
pub(crate) fn settings_for(
    host: &str,
    setting: Option<&RegistrySetting>,
    root: Option<&Path>,
) -> Result<TlsSettings, RegistryError> {
    let resolve = |path: &str| match root {
        Some(root) => root.join(path),
        None => PathBuf::from(path),
    };
    let from_env = |variable: String| match std::env::var(&variable) {
        Ok(value) if value.trim_start().starts_with("-----BEGIN") => Some(PemSource::Inline { variable, text: value }),
        Ok(value) if !value.is_empty() => {
            Some(PemSource::File { shown: format!("`{value}` (from `${variable}`)"), path: resolve(&value) })
        }
        _ => None,
    };
    // A host's own variable, then its `registry(...)`, then the variable
    // for all hosts (a CA for any host, a client certificate only for
    // declared ones).
    let pick = |field: &str, written: Option<&String>| -> Option<PemSource> {
        from_env(env_variable(field, host))
            .or_else(|| written.map(|path| PemSource::File { shown: format!("`{path}`"), path: resolve(path) }))
            .or_else(|| (field == "CA" || setting.is_some()).then(|| from_env(format!("BERTH_REGISTRY_{field}")))?)
    };
    let ca = pick("CA", setting.and_then(|setting| setting.ca.as_ref()));
    let cert = pick("CLIENT_CERT", setting.and_then(|setting| setting.client_cert.as_ref()));
    let key = pick("CLIENT_KEY", setting.and_then(|setting| setting.client_key.as_ref()));
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(only), None) | (None, Some(only)) => {
            return Err(certificate_error(
                host,
                "client certificate",
                &only,
                "a client certificate needs both `client_cert` and `client_key`".to_owned(),
            ))
        }
    };
    let skip_variable = env_variable("SKIP_VERIFY", host);
    let skip_verify = match std::env::var(&skip_variable).ok().as_deref().map(str::trim) {
        Some("1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        Some("") | None => setting.is_some_and(|setting| setting.skip_verify),
        Some(other) => {
            return Err(RegistryError::Certificate {
                host: host.to_owned(),
                what: "TLS setting",
                path: format!("`${skip_variable}`"),
                reason: format!("`{other}` is not `1`, `true`, `0` or `false`"),
            })
        }
    };
    Ok(TlsSettings { ca, client, skip_verify })
}

/// Applies `tls` to `builder` after checking every file with rustls.
pub(crate) fn configure(
    host: &str,
    tls: &TlsSettings,
    mut builder: reqwest::blocking::ClientBuilder,
) -> Result<reqwest::blocking::ClientBuilder, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca {
        let what = "CA certificate";
        let pem = ca.read(host, what)?;
        let certs = parse_certificates(host, what, ca, &pem)?;
        for cert in certs {
            roots
                .add(cert.clone())
                .map_err(|error| certificate_error(host, what, ca, format!("not a usable CA certificate: {error}")))?;
            let cert = reqwest::Certificate::from_der(&cert)
                .map_err(|error| certificate_error(host, what, ca, crate::registry::client::error_chain(&error)))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert_source, key_source)) = &tls.client {
        let cert_pem = cert_source.read(host, "client certificate")?;
        let key_pem = key_source.read(host, "client key")?;
        let chain = parse_certificates(host, "client certificate", cert_source, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
            certificate_error(host, "client key", key_source, format!("holds no PEM private key ({error})"))
        })?;
        // rustls checks that the key belongs to the certificate here, so a
        // wrong key is named now instead of as a handshake alert later.
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| certificate_error(host, "client certificate", cert_source, error.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|error| {
                let reason = match error {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "its private key {} does not belong to it (the key's public half differs from the certificate's)",
                        key_source.shown()
                    ),
                    other => format!("rustls refused it with the key {}: {other}", key_source.shown()),
                };
                certificate_error(host, "client certificate", cert_source, reason)
            })?;
        let mut identity_pem = cert_pem;
        identity_pem.push(b'\n');
        identity_pem.extend_from_slice(&key_pem);
        let identity = reqwest::Identity::from_pem(&identity_pem).map_err(|error| {
            certificate_error(host, "client certificate", cert_source, crate::registry::client::error_chain(&error))
        })?;
        builder = builder.identity(identity);
    }
    if tls.skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

fn parse_certificates(
    host: &str,
    what: &'static str,
    source: &PemSource,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| certificate_error(host, what, source, format!("not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(certificate_error(host, what, source, "holds no `BEGIN CERTIFICATE` PEM block".to_owned()));
    }
    Ok(certs)
}

fn certificate_error(host: &str, what: &'static str, source: &PemSource, reason: String) -> RegistryError {
    RegistryError::Certificate { host: host.to_owned(), what, path: source.shown(), reason }
}

/// The rustls error behind a failed request, if TLS is what failed.
pub(crate) fn rustls_error(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        // `io::Error::source` skips the error it wraps: step into it instead.
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// A TLS failure with `host`, said plainly, with what to do about it.
pub(crate) fn handshake_error(host: &str, error: &rustls::Error) -> RegistryError {
    use rustls::{AlertDescription, CertificateError};
    let ca_variable = env_variable("CA", host);
    let (reason, hint) = match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => (
            "the registry's certificate is signed by a CA berth does not trust".to_owned(),
            format!(
                "trust the registry's CA with `registry(\"{host}\", ca = \"certs/ca.pem\")` in `WORKSPACE.star` or `{ca_variable}=<path or PEM>`"
            ),
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => (
            format!("the registry's certificate is not valid for `{host}`"),
            "use the host name (or IP address) the certificate names".to_owned(),
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => (
            "the registry's certificate has expired".to_owned(),
            "renew the registry's certificate".to_owned(),
        ),
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::HandshakeFailure
            | AlertDescription::DecryptError,
        ) => (
            format!("the registry refused the connection ({error}); it probably wants a client certificate it trusts"),
            format!(
                "set `client_cert` and `client_key` in `registry(\"{host}\", ...)` or `{}` and `{}`",
                env_variable("CLIENT_CERT", host),
                env_variable("CLIENT_KEY", host)
            ),
        ),
        other => (other.to_string(), format!("check the registry's TLS setup; `{ca_variable}` names a CA to trust")),
    };
    RegistryError::Tls { host: host.to_owned(), reason, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keys_are_upper_case_with_underscores() {
        assert_eq!(env_key("127.0.0.1:5443"), "127_0_0_1_5443");
        assert_eq!(env_variable("CA", "registry.example.com"), "BERTH_REGISTRY_CA_REGISTRY_EXAMPLE_COM");
    }

    #[test]
    fn workspace_paths_are_relative_to_the_root() {
        let setting = RegistrySetting {
            host: "berth-test-tls-unit:1".into(),
            ca: Some("certs/ca.pem".into()),
            ..RegistrySetting::default()
        };
        let tls = settings_for(&setting.host, Some(&setting), Some(Path::new("/ws"))).unwrap();
        assert_eq!(
            tls.ca,
            Some(PemSource::File { shown: "`certs/ca.pem`".into(), path: PathBuf::from("/ws/certs/ca.pem") })
        );
        assert!(!tls.is_default());
        assert!(settings_for("berth-test-tls-unit:2", None, None).unwrap().is_default());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.pem"), "not pem at all\n").unwrap();
        for (file, wanted) in [("missing.pem", "cannot read it"), ("empty.pem", "holds no `BEGIN CERTIFICATE`")] {
            let tls = TlsSettings {
                ca: Some(PemSource::File { shown: format!("`{file}`"), path: dir.path().join(file) }),
                ..TlsSettings::default()
            };
            let error = configure("h:1", &tls, reqwest::blocking::Client::builder()).unwrap_err().to_string();
            assert!(error.contains(&format!("CA certificate `{file}`")) && error.contains(wanted), "{error}");
        }
    }
}
