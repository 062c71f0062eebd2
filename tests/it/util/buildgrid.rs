//! A real BuildGrid server (PyPI `buildgrid`, in the venv `scripts/setup.sh`
//! makes), cache-only (CAS, ActionCache, ByteStream on disk storage, no
//! database), started by `scripts/buildgrid/start.sh` on 127.0.0.1 on a free
//! port with a temp storage dir, and stopped when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::registry::free_port;

/// Where `scripts/setup.sh` installs BuildGrid's command.
pub const BGD: &str = "/opt/berth-buildgrid/bin/bgd";

pub struct BuildGrid {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl BuildGrid {
    pub fn start() -> BuildGrid {
        BuildGrid::start_with(&[])
    }

    /// A server that speaks TLS only, with `certificate` and `key` (PEM).
    pub fn start_tls(certificate: &Path, key: &Path) -> BuildGrid {
        BuildGrid::start_with(&[certificate, key])
    }

    fn start_with(tls: &[&Path]) -> BuildGrid {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/buildgrid/start.sh");
        let mut last_log = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("berth-buildgrid-").tempdir().unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("bgd.log")).unwrap();
            let child = Command::new(&script)
                .arg(port.to_string())
                .arg(dir.path())
                .args(tls)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start BuildGrid");
            let mut server = BuildGrid { port, child, dir };
            if server.wait_ready() {
                return server;
            }
            last_log = std::fs::read_to_string(server.dir.path().join("bgd.log")).unwrap_or_default();
        }
        panic!("BuildGrid did not start:\n{last_log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The URL berth is given: `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The file BuildGrid's disk storage keeps a blob in.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.path().join("storage/cas/objects").join(&hex[..2]).join(&hex[2..])
    }

    /// Every blob on the server's disk, as (hex digest, path).
    pub fn blobs(&self) -> Vec<(String, PathBuf)> {
        let mut blobs = Vec::new();
        for shard in std::fs::read_dir(self.dir.path().join("storage/cas/objects")).unwrap() {
            let shard = shard.unwrap();
            let prefix = shard.file_name().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(shard.path()).unwrap() {
                let entry = entry.unwrap();
                blobs.push((format!("{prefix}{}", entry.file_name().to_string_lossy()), entry.path()));
            }
        }
        blobs.sort();
        blobs
    }

    /// Stops the server (for the "remote went away" tests).
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM first (start.sh execs bgd, so the child is the server), then
/// SIGKILL if it lingers.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
