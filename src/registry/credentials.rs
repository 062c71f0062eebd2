//! Credentials from the files every registry tool already reads: Podman's
//! and the containers tools' `auth.json` (`$REGISTRY_AUTH_FILE`, else
//! `${XDG_RUNTIME_DIR}/containers/auth.json` and
//! `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`), then Docker's
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). The first
//! file with an answer for the host wins, as containers-auth.json(5) says.
//!
//! Lookup order inside a file, as the Docker CLI does it:
//! `credHelpers[host]`, then an `auths[host]` entry with an `identitytoken`
//! (an OAuth2 refresh token), an `auth` (base64 `user:password`) or
//! `username`/`password`, then the `credsStore` helper. Helpers run as
//! `docker-credential-<name> get` with the host on stdin; a `<token>` user
//! name in their answer means the secret is an identity token.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::registry::reference::normalize_host;
use crate::registry::RegistryError;

/// What berth presents to a registry or its token server.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and a password (or a personal access token used as one).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the
    /// token realm for access tokens; it is never sent as a password.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a debug log.
        match self {
            Credentials::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).finish_non_exhaustive()
            }
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(..)"),
        }
    }
}

impl Credentials {
    /// The `Authorization: Basic` value; `None` for an identity token, which
    /// only a token server takes.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => {
                let pair = format!("{username}:{password}");
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// The directory holding `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    home().map(|home| home.join(".docker"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(PathBuf::from)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from)
}

/// The credential files to consult, in order: the containers tools'
/// `auth.json` files, then Docker's `config.json`.
pub fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = env_path("REGISTRY_AUTH_FILE") {
        files.push(file);
    } else {
        if let Some(runtime) = env_path("XDG_RUNTIME_DIR") {
            files.push(runtime.join("containers/auth.json"));
        }
        if let Some(config) = env_path("XDG_CONFIG_HOME").or_else(|| home().map(|home| home.join(".config"))) {
            files.push(config.join("containers/auth.json"));
        }
    }
    files.extend(default_config_dir().map(|dir| dir.join("config.json")));
    files
}

/// The first answer for `host` among `files`.
pub fn lookup_files(files: &[PathBuf], host: &str) -> Result<Option<Credentials>, RegistryError> {
    for file in files {
        if let Some(found) = lookup_file(file, host)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
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
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Looks up the credentials for `host` in `config_dir/config.json`.
pub fn lookup(config_dir: &Path, host: &str) -> Result<Option<Credentials>, RegistryError> {
    lookup_file(&config_dir.join("config.json"), host)
}

/// Looks up the credentials for `host` in one Docker-format file; `None`
/// when the file or an entry for the host is absent.
pub fn lookup_file(path: &Path, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let config_error = |reason: String| RegistryError::DockerConfig { path: path.display().to_string(), reason };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(config_error(error.to_string())),
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|error| config_error(error.to_string()))?;

    // Docker Hub's credentials are filed under `https://index.docker.io/v1/`
    // (or `docker.io`) and its registry is `registry-1.docker.io`.
    let host = normalize_host(host);
    let helper = config.cred_helpers.iter().find(|(key, _)| normalize_host(normalize_key(key)) == host);
    if let Some((key, helper)) = helper {
        return run_helper(helper, key);
    }
    let entry = config.auths.iter().find(|(key, _)| normalize_host(normalize_key(key)) == host).map(|(_, entry)| entry);
    if let Some(entry) = entry {
        if let Some(token) = entry.identitytoken.as_deref().filter(|token| !token.is_empty()) {
            return Ok(Some(Credentials::IdentityToken(token.to_owned())));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|error| config_error(format!("`auths.\"{host}\".auth` is not base64: {error}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| config_error(format!("`auths.\"{host}\".auth` is not UTF-8")))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| config_error(format!("`auths.\"{host}\".auth` is not `user:password`")))?;
            return Ok(Some(Credentials::Basic { username: username.to_owned(), password: password.to_owned() }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::Basic { username: username.clone(), password: password.clone() }));
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

/// How long a credential helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a credential helper may print on each of stdout and stderr.
pub const MAX_HELPER_OUTPUT: u64 = 1 << 20;

/// Runs `docker-credential-<helper> get` (the credential helper protocol:
/// server on stdin, JSON on stdout, "credentials not found" when none),
/// killed after [`HELPER_TIMEOUT`] and refused past [`MAX_HELPER_OUTPUT`]:
/// a helper waiting for a desktop prompt must not hang a CI build.
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
    let stdout = capped_reader(child.stdout.take());
    let stderr = capped_reader(child.stderr.take());
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its stdin is judged by its answer.
        let _ = stdin.write_all(host.as_bytes());
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let too_much = || failed(format!("it printed more than {MAX_HELPER_OUTPUT} bytes and was stopped"));
    let mut output: Option<Vec<u8>> = None;
    let status = loop {
        if output.is_none() {
            if let Ok(read) = stdout.try_recv() {
                let Some(bytes) = read else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(too_much());
                };
                output = Some(bytes);
            }
        }
        match child.try_wait().map_err(|error| failed(error.to_string()))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("it did not answer within {} s and was stopped", HELPER_TIMEOUT.as_secs())));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = match output {
        Some(bytes) => bytes,
        // The helper has exited; its pipe ends now unless it left a child
        // holding it open.
        None => stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1))
            .map_err(|_| failed("its output did not end after it exited".to_owned()))?
            .ok_or_else(too_much)?,
    };
    let stderr = stderr.recv_timeout(Duration::from_millis(200)).ok().flatten().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout);
    if !status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(failed(format!("{} {}", stdout.trim(), stderr.trim()).trim().to_owned()));
    }
    let parsed: HelperOutput =
        serde_json::from_str(&stdout).map_err(|error| failed(format!("unexpected output: {error}")))?;
    if parsed.username == "<token>" {
        // An identity token is an OAuth2 refresh token, not a password.
        return Ok(Some(Credentials::IdentityToken(parsed.secret)));
    }
    Ok(Some(Credentials::Basic { username: parsed.username, password: parsed.secret }))
}

/// Reads a pipe on its own thread, up to [`MAX_HELPER_OUTPUT`] bytes; sends
/// `None` when there was more.
fn capped_reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Option<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let mut limited = pipe.take(MAX_HELPER_OUTPUT + 1);
            if limited.read_to_end(&mut bytes).is_err() {
                bytes.clear();
            }
        }
        let _ = sender.send((bytes.len() as u64 <= MAX_HELPER_OUTPUT).then_some(bytes));
    });
    receiver
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
                          "127.0.0.1:6000": {"username": "bob", "password": "pw"},
                          "127.0.0.1:6001": {"auth": "PHRva2VuPjo=", "identitytoken": "refresh-me"},
                          "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}}}"#,
        );
        let basic = |username: &str, password: &str| {
            Some(Credentials::Basic { username: username.to_owned(), password: password.to_owned() })
        };
        let alice = lookup(dir.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(alice, basic("alice", "s3cr3t"));
        assert_eq!(lookup(dir.path(), "127.0.0.1:6000").unwrap(), basic("bob", "pw"));
        assert_eq!(
            lookup(dir.path(), "127.0.0.1:6001").unwrap(),
            Some(Credentials::IdentityToken("refresh-me".into()))
        );
        assert_eq!(lookup(dir.path(), "registry-1.docker.io").unwrap(), basic("hub", "pw"), "Docker Hub's key");
        assert_eq!(lookup(dir.path(), "127.0.0.1:7000").unwrap(), None);
        assert!(!format!("{alice:?}").contains("s3cr3t"), "debug output hides the secret");
        let token = Credentials::IdentityToken("refresh-me".into());
        assert!(!format!("{token:?}").contains("refresh-me"), "debug output hides the token");
    }

    #[test]
    fn missing_file_means_no_credentials_and_bad_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lookup(dir.path(), "127.0.0.1:8000").unwrap(), None);
        write_config(dir.path(), "{not json");
        assert!(matches!(lookup(dir.path(), "127.0.0.1:8000"), Err(RegistryError::DockerConfig { .. })));
    }

    #[test]
    fn the_first_file_with_an_answer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        std::fs::write(&podman, r#"{"auths": {"127.0.0.1:5000": {"auth": "cG9kbWFuOnB3"}}}"#).unwrap();
        write_config(
            dir.path(),
            r#"{"auths": {"127.0.0.1:5000": {"auth": "ZG9ja2VyOnB3"}, "127.0.0.1:6000": {"auth": "ZG9ja2VyOnB3"}}}"#,
        );
        let files = [dir.path().join("missing.json"), podman, dir.path().join("config.json")];
        let user = |host: &str| match lookup_files(&files, host).unwrap() {
            Some(Credentials::Basic { username, .. }) => username,
            other => panic!("{other:?}"),
        };
        assert_eq!(user("127.0.0.1:5000"), "podman");
        assert_eq!(user("127.0.0.1:6000"), "docker");
    }

    #[test]
    fn a_missing_helper_is_an_environment_error() {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), r#"{"credHelpers": {"127.0.0.1:8000": "berth-test-no-such-helper"}}"#);
        let error = lookup(dir.path(), "127.0.0.1:8000").unwrap_err();
        assert!(error.to_string().contains("docker-credential-berth-test-no-such-helper"), "{error}");
    }
}
