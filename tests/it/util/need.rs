//! Prerequisites of the end-to-end tests, and the one way to skip a test
//! that lacks one.
//!
//! libtest captures a passing test's output, so a `SKIP:` line is invisible
//! under `cargo test`: a run without root would report the whole container
//! tier as passed. `BERTH_TEST_REQUIRE` (a comma list of [`Need`] names, or
//! `all`) names what must be there; a skip for a listed need panics instead,
//! saying what is missing and how to install it. `scripts/test.sh` (README's
//! test command, and so CI) lists everything `scripts/setup.sh` installs.
//!
//! ```ignore
//! if skip(&[Need::Root, Need::Runc]) {
//!     return;
//! }
//! ```

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Running as root: extraction restores owners, runc and chroot need it.
    Root,
    /// The `runc` binary, where berth looks for it.
    Runc,
    /// A statically linked `/bin/busybox` for test bases.
    Busybox,
    /// Debian's `docker-registry`, started on 127.0.0.1 by the tests.
    Registry,
    /// The pinned `.deb` files of `third_party/debs`, fetched.
    Debs,
    /// A running Docker engine (`docker info` answers).
    Docker,
    Skopeo,
    Umoci,
    OciImageTool,
    Podman,
    /// libfaketime's `faketime`, for builds under another clock.
    Faketime,
    /// An IPv4 address other than loopback, to reach from a container.
    Network,
    /// `openssl`, to make test CAs and certificates.
    Openssl,
    /// BuildGrid (PyPI `buildgrid`) in the venv `scripts/setup.sh` makes,
    /// for the remote cache tests.
    Buildgrid,
    /// The `berth` ranges of `/etc/subuid` and `/etc/subgid`: containers run
    /// in a user namespace mapped to them.
    Subids,
    /// The users `berth-rootless` (with a range in /etc/subuid and
    /// /etc/subgid) and `berth-single` (without), newuidmap and newgidmap,
    /// and a kernel that gives unprivileged users a user namespace: the
    /// rootless tests run berth as those users.
    Rootless,
}

impl Need {
    /// Every need, in the order `BERTH_TEST_REQUIRE=all` checks them.
    pub const ALL: [Need; 16] = [
        Need::Root,
        Need::Runc,
        Need::Busybox,
        Need::Registry,
        Need::Debs,
        Need::Docker,
        Need::Skopeo,
        Need::Umoci,
        Need::OciImageTool,
        Need::Podman,
        Need::Faketime,
        Need::Network,
        Need::Openssl,
        Need::Buildgrid,
        Need::Subids,
        Need::Rootless,
    ];

    /// The name `BERTH_TEST_REQUIRE` uses.
    pub fn name(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Runc => "runc",
            Need::Busybox => "busybox",
            Need::Registry => "registry",
            Need::Debs => "debs",
            Need::Docker => "docker",
            Need::Skopeo => "skopeo",
            Need::Umoci => "umoci",
            Need::OciImageTool => "oci-image-tool",
            Need::Podman => "podman",
            Need::Faketime => "faketime",
            Need::Network => "network",
            Need::Openssl => "openssl",
            Need::Buildgrid => "buildgrid",
            Need::Subids => "subids",
            Need::Rootless => "rootless",
        }
    }

    /// How to get it.
    pub fn install(self) -> &'static str {
        match self {
            Need::Root => "run the tests as root (CI does)",
            Need::Runc => "run `scripts/setup.sh` (Debian package `runc`)",
            Need::Busybox => "run `scripts/setup.sh` (Debian package `busybox-static`)",
            Need::Registry => "run `scripts/setup.sh` (Debian package `docker-registry`)",
            Need::Debs => "run `scripts/fetch-debs.sh` (`scripts/setup.sh` runs it)",
            Need::Docker => "start a Docker engine (`dockerd`; Debian package `docker.io`)",
            Need::Skopeo => "run `scripts/setup.sh` (Debian package `skopeo`)",
            Need::Umoci => "run `scripts/setup.sh` (Debian package `umoci`)",
            Need::OciImageTool => "run `scripts/setup.sh` (Debian package `oci-image-tool`)",
            Need::Podman => "run `scripts/setup.sh` (Debian package `podman`)",
            Need::Faketime => "run `scripts/setup.sh` (Debian package `faketime`)",
            Need::Network => "give the machine a network interface with an IPv4 address",
            Need::Openssl => "run `scripts/setup.sh` (Debian package `openssl`)",
            Need::Buildgrid => "run `scripts/setup.sh` (a venv at /opt/berth-buildgrid with PyPI `buildgrid==0.9.1`)",
            Need::Subids => "run `scripts/setup.sh` (adds `berth` ranges to /etc/subuid and /etc/subgid)",
            Need::Rootless => {
                "run `scripts/setup.sh` (users `berth-rootless` and `berth-single`, Debian package `uidmap`), on a \
                 kernel that allows unprivileged user namespaces"
            }
        }
    }

    /// `Some(what is missing)` when this machine lacks the need.
    pub fn missing(self) -> Option<String> {
        let present = match self {
            // SAFETY: geteuid has no preconditions.
            Need::Root => (unsafe { libc::geteuid() }) == 0,
            Need::Runc => berth::exec::Runc::locate(None).is_ok(),
            Need::Busybox => is_static_elf(Path::new(super::runc::BUSYBOX)),
            Need::Registry => Path::new(super::registry::DOCKER_REGISTRY).is_file(),
            Need::Debs => return missing_debs(),
            Need::Docker => {
                on_path("docker")
                    && Command::new("docker")
                        .arg("info")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|status| status.success())
            }
            Need::Skopeo => on_path("skopeo"),
            Need::Umoci => on_path("umoci"),
            Need::OciImageTool => on_path("oci-image-tool"),
            Need::Podman => on_path("podman"),
            Need::Buildgrid => Path::new(super::buildgrid::BGD).is_file(),
            Need::Faketime => on_path("faketime"),
            Need::Network => non_loopback_ipv4().is_some(),
            Need::Openssl => on_path("openssl"),
            Need::Subids => berth::exec::UserNamespace::from_subid_files().is_ok(),
            Need::Rootless => return super::rootless::missing(),
        };
        (!present).then(|| match self {
            Need::Root => "the tests do not run as root".to_owned(),
            Need::Busybox => format!("`{}` is not a static busybox", super::runc::BUSYBOX),
            Need::Docker => "no Docker engine is running".to_owned(),
            Need::Network => "the machine has no IPv4 address but loopback".to_owned(),
            Need::Subids => "/etc/subuid or /etc/subgid has no `berth` range".to_owned(),
            other => format!("`{}` is not installed", other.name()),
        })
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `true` when one of `needs` is missing: prints `SKIP: <reason>` and the
/// caller returns, unless `BERTH_TEST_REQUIRE` lists that need, in which
/// case it panics. Checks in order and stops at the first missing need.
#[track_caller]
pub fn skip(needs: &[Need]) -> bool {
    for &need in needs {
        if let Some(reason) = need.missing() {
            skip_because(need, &reason);
            return true;
        }
    }
    false
}

/// `true` when `need` is there; otherwise as [`skip`] (for the optional
/// part of a test: `if have(Need::Skopeo) { ... }`).
#[track_caller]
pub fn have(need: Need) -> bool {
    !skip(&[need])
}

/// Skips for `need`, found missing by the caller (`reason` says how).
#[track_caller]
pub fn skip_because(need: Need, reason: &str) {
    if required().contains(&need) {
        panic!(
            "`{need}` is required (BERTH_TEST_REQUIRE={}) but {reason}\nhint: {}",
            std::env::var("BERTH_TEST_REQUIRE").unwrap_or_default(),
            need.install()
        );
    }
    eprintln!("SKIP: {reason} (needs `{need}`; {})", need.install());
}

/// The needs `BERTH_TEST_REQUIRE` lists. An unknown name panics: a typo
/// must not quietly turn a requirement back into a skip.
pub fn required() -> Vec<Need> {
    let value = std::env::var("BERTH_TEST_REQUIRE").unwrap_or_default();
    parse(&value).unwrap_or_else(|unknown| {
        let known: Vec<&str> = Need::ALL.iter().map(|need| need.name()).collect();
        panic!("BERTH_TEST_REQUIRE names `{unknown}`, which is no need\nhint: use `all` or some of {}", known.join(","))
    })
}

/// The needs of a `BERTH_TEST_REQUIRE` value, or the first unknown name.
fn parse(value: &str) -> Result<Vec<Need>, String> {
    let mut needs = Vec::new();
    for name in value.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        if name == "all" {
            needs.extend(Need::ALL);
        } else {
            needs.push(*Need::ALL.iter().find(|need| need.name() == name).ok_or_else(|| name.to_owned())?);
        }
    }
    Ok(needs)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What is missing of the `.deb` files `third_party/debs/debs.lock` pins.
fn missing_debs() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("third_party/debs");
    let missing: Vec<String> =
        super::workspace::pinned_debs().into_iter().filter(|file| !dir.join(file).is_file()).collect();
    match missing.as_slice() {
        [] => None,
        [one] => Some(format!("`third_party/debs/{one}` has not been fetched")),
        [first, ..] => {
            Some(format!("`third_party/debs/{first}` and {} more .deb files have not been fetched", missing.len() - 1))
        }
    }
}

/// Whether `path` is a 64-bit little-endian ELF without a program
/// interpreter: a dynamic busybox would need the host's libc in a container.
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    if bytes.len() < 64 || !bytes.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|index| {
        let at = phoff + index * phentsize;
        bytes.get(at..at + 4).is_some_and(|p_type| p_type != 3u32.to_le_bytes())
    })
}

/// An IPv4 address of this machine other than loopback, if it has one.
pub fn non_loopback_ipv4() -> Option<String> {
    let output = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&output.stdout).split_whitespace().find(|address| address.contains('.')).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_require_list() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("root, runc,,debs"), Ok(vec![Need::Root, Need::Runc, Need::Debs]));
        assert_eq!(parse("all"), Ok(Need::ALL.to_vec()));
        assert_eq!(parse("root,rot"), Err("rot".to_owned()));
        for need in Need::ALL {
            assert_eq!(parse(need.name()), Ok(vec![need]));
        }
    }
}
