//! A real `docker-registry` on 127.0.0.1 on a free port, with a temp
//! storage dir, stopped when dropped; the Docker `config.json` that logs
//! berth in to it; and the client settings, `WORKSPACE.star` line and push
//! request that tests of plain-HTTP registries share.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth::cache::{BlobRef, Digest};
use berth::registry::{BlobSources, Client, ClientOptions, ImageRef, PushRequest};
use berth::workspace::RegistrySetting;

use crate::util::images::OCI_MANIFEST;

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The TLS files of an HTTPS registry.
pub struct RegistryTls {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Require client certificates signed by this CA (`http.tls.clientcas`).
    pub client_ca: Option<std::path::PathBuf>,
}

/// A `docker-registry` process serving plain HTTP (or HTTPS) on 127.0.0.1.
pub struct Registry {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry: anyone may pull and push.
    pub fn start() -> Registry {
        Registry::spawn(None, None, "")
    }

    /// A registry that wants Basic credentials (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::spawn(Some((user, password)), None, "")
    }

    /// A registry serving HTTPS with `tls`'s server certificate; with
    /// `tls.client_ca`, it also requires a client certificate signed by it.
    pub fn start_tls(tls: &RegistryTls) -> Registry {
        Registry::spawn(None, Some(tls), "")
    }

    /// An HTTPS registry whose token auth sends clients to `realm` (tokens
    /// are checked against `token_ca`; none will ever be valid).
    pub fn start_tls_with_token_realm(tls: &RegistryTls, realm: &str, token_ca: &std::path::Path) -> Registry {
        let auth = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: berth-test\n    issuer: berth-test\n    rootcertbundle: {}\n",
            token_ca.display()
        );
        Registry::spawn(None, Some(tls), &auth)
    }

    fn spawn(credentials: Option<(&str, &str)>, tls: Option<&RegistryTls>, extra: &str) -> Registry {
        let mut last_error = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
                dir.path().join("storage").display()
            );
            if let Some((user, password)) = credentials {
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            if let Some(tls) = tls {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    tls.certificate.display(),
                    tls.key.display()
                ));
                if let Some(client_ca) = &tls.client_ca {
                    config.push_str(&format!("    clientcas:\n      - {}\n", client_ca.display()));
                }
            }
            config.push_str(extra);
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(DOCKER_REGISTRY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            let mut registry = Registry { port, child, dir };
            if registry.wait_ready() {
                return registry;
            }
            last_error = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                // An HTTPS registry answers plain HTTP with a 400 once it listens.
                if answer.starts_with("HTTP/1.1 200")
                    || answer.starts_with("HTTP/1.1 401")
                    || answer.starts_with("HTTP/1.0 400")
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The blob files the registry stores (its own digest-addressed layout).
    pub fn stored_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The file the registry keeps a blob's bytes in.
    pub fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        let hex = digest.hex();
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(&hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `config.json` directory with Basic credentials for `host`.
pub fn docker_config_with(host: &str, user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// Client options for plain-HTTP registries at `hosts`, with credentials
/// from `docker_config` (a `config.json` directory) when given. Tests set
/// the rest (`backoff`, `max_attempts`) with `..insecure_options(...)`.
pub fn insecure_options(hosts: &[String], docker_config: Option<&Path>) -> ClientOptions {
    ClientOptions {
        registries: hosts
            .iter()
            .map(|host| RegistrySetting { host: host.clone(), insecure: true, ..RegistrySetting::default() })
            .collect(),
        docker_config: docker_config.map(Path::to_owned),
        ..ClientOptions::default()
    }
}

/// A client of the plain-HTTP registries at `hosts` (see [`insecure_options`]).
pub fn insecure_client(hosts: &[String], docker_config: Option<&Path>) -> Client {
    Client::new(insecure_options(hosts, docker_config)).unwrap()
}

/// The `WORKSPACE.star` line that makes `host` a plain-HTTP registry.
pub fn insecure_registry_line(host: &str) -> String {
    format!("registry(\"{host}\", insecure = True)\n")
}

/// A push of the image manifest `manifest` (in the pushing CAS) to
/// `destination` (`host/repository`) with `tags`, nothing mounted.
pub fn manifest_push(manifest: BlobRef, destination: &str, tags: &[&str]) -> PushRequest {
    PushRequest {
        root: manifest,
        media_type: OCI_MANIFEST.to_owned(),
        destination: ImageRef::parse(destination).unwrap(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        sources: BlobSources::new(),
    }
}
