//! Credentials from Docker's client configuration, the file every registry
//! tool already reads: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`).
//!
//! Lookup order for a host, as the Docker CLI does it: `credHelpers[host]`,
//! then an `auths[host]` entry with an `auth` (base64 `user:password`) or
//! `username`/`password`, then the `credsStore` helper. Helpers run as
//! `docker-credential-<name> get` with the host on stdin.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::registry::RegistryError;

/// A user name and a password (or a personal access token used as one).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug log.
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// The directory holding `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(|home| PathBuf::from(home).join(".docker"))
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Looks up the credentials for `host` in `config_dir/config.json`; `None`
/// when the file or an entry for the host is absent.
pub fn lookup(config_dir: &Path, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let path = config_dir.join("config.json");
    let config_error = |reason: String| RegistryError::DockerConfig { path: path.display().to_string(), reason };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(config_error(error.to_string())),
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|error| config_error(error.to_string()))?;

    if let Some(helper) = config.cred_helpers.get(host) {
        return run_helper(helper, host);
    }
    let entry = config.auths.iter().find(|(key, _)| normalize_key(key) == host).map(|(_, entry)| entry);
    if let Some(entry) = entry {
        if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|error| config_error(format!("`auths.\"{host}\".auth` is not base64: {error}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| config_error(format!("`auths.\"{host}\".auth` is not UTF-8")))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| config_error(format!("`auths.\"{host}\".auth` is not `user:password`")))?;
            return Ok(Some(Credentials { username: username.to_owned(), password: password.to_owned() }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials { username: username.clone(), password: password.clone() }));
        }
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, host),
        _ => Ok(None),
    }
}

/// `auths` keys may be written as URLs (`https://host/v1/`); compare hosts.
fn normalize_key(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[derive(serde::Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` (the credential helper protocol:
/// server on stdin, JSON on stdout, "credentials not found" when none).
fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let failed =
        |reason: String| RegistryError::CredentialHelper { helper: helper.to_owned(), host: host.to_owned(), reason };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run `{program}`: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(host.as_bytes()).map_err(|error| failed(error.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|error| failed(error.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!("{} {}", stdout.trim(), stderr.trim()).trim().to_owned()));
    }
    let parsed: HelperOutput =
        serde_json::from_str(&stdout).map_err(|error| failed(format!("unexpected output: {error}")))?;
    if parsed.username == "<token>" {
        // An identity token is an OAuth2 refresh token, not a password.
        return Err(failed(
            "identity tokens (`<token>` user names) are not supported; store a password or an access token instead"
                .to_owned(),
        ));
    }
    Ok(Some(Credentials { username: parsed.username, password: parsed.secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, json: &str) {
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    #[test]
    fn reads_auths_entries_by_host() {
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            r#"{"auths": {"https://127.0.0.1:5000/v1/": {"auth": "YWxpY2U6czNjcjN0"},
                          "127.0.0.1:6000": {"username": "bob", "password": "pw"}}}"#,
        );
        let alice = lookup(dir.path(), "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((alice.username.as_str(), alice.password.as_str()), ("alice", "s3cr3t"));
        assert_eq!(lookup(dir.path(), "127.0.0.1:6000").unwrap().unwrap().username, "bob");
        assert_eq!(lookup(dir.path(), "127.0.0.1:7000").unwrap(), None);
        assert!(!format!("{alice:?}").contains("s3cr3t"), "debug output hides the secret");
    }

    #[test]
    fn missing_file_means_no_credentials_and_bad_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lookup(dir.path(), "127.0.0.1:8000").unwrap(), None);
        write_config(dir.path(), "{not json");
        assert!(matches!(lookup(dir.path(), "127.0.0.1:8000"), Err(RegistryError::DockerConfig { .. })));
    }

    #[test]
    fn a_missing_helper_is_an_environment_error() {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), r#"{"credHelpers": {"127.0.0.1:8000": "berth-test-no-such-helper"}}"#);
        let error = lookup(dir.path(), "127.0.0.1:8000").unwrap_err();
        assert!(error.to_string().contains("docker-credential-berth-test-no-such-helper"), "{error}");
    }
}
