//! User namespaces for containers: uid and gid 0 inside are a subordinate
//! range of the host (`/etc/subuid` and `/etc/subgid`, the entry named
//! `berth`), so a process that escapes its container is an unprivileged
//! user on the host, not root.
//!
//! Layers for such a container are extracted with every owner moved up by
//! the range's start (`oci::LayerStore::with_id_shift`), so the container
//! sees the owners the image says; captured outputs are moved back down
//! ([`UserNamespace::to_inside`]), so a layer records the ids inside the
//! container and its digest does not depend on the host's range.

use std::path::Path;

use crate::error::{Diagnose, ErrorKind};
use crate::exec::rootless;

/// The name of the `/etc/subuid` and `/etc/subgid` entries berth maps
/// containers to when it runs as root.
pub const SUBID_NAME: &str = "berth";

/// Ids a container uses: 0 to 65535 inside (Docker's and Podman's default
/// size, enough for `nobody` at 65534).
pub const RANGE_SIZE: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum UserNamespaceError {
    #[error(
        "`{file}` has no range for `{SUBID_NAME}` of at least {RANGE_SIZE} ids; containers run in a user \
         namespace mapped to it"
    )]
    NoRange { file: &'static str },
    #[error("The `{SUBID_NAME}` ranges of `/etc/subuid` ({uid}) and `/etc/subgid` ({gid}) start at different ids")]
    Mismatch { uid: u32, gid: u32 },
    /// berth runs as a user and has no user namespace (`exec::rootless`).
    #[error("Containers cannot run: {reason}")]
    NoNamespace { reason: String },
}

impl Diagnose for UserNamespaceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Environment
    }

    fn hint(&self) -> Option<String> {
        if let UserNamespaceError::NoNamespace { .. } = self {
            return None;
        }
        Some(format!(
            "run `scripts/setup.sh`, or add a line `{SUBID_NAME}:START:{RANGE_SIZE}` with the same unused START \
             (for example 1000000) to /etc/subuid and /etc/subgid"
        ))
    }
}

/// The ids a container's ids 0..`size` map to: `host + id`, for uids and
/// gids alike. "Host" is the namespace berth runs in: the machine's when
/// berth runs as root, its own user namespace when rootless
/// (`exec::rootless`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserNamespace {
    /// The host id of uid and gid 0 inside.
    pub host: u32,
    /// How many ids the container has ([`RANGE_SIZE`], or fewer rootless).
    pub size: u32,
}

impl UserNamespace {
    /// The user namespace containers get here: the `berth` ranges when
    /// berth runs as root, else what its rootless namespace holds.
    pub fn current() -> Result<UserNamespace, UserNamespaceError> {
        if let Some(rootless) = rootless::rootless() {
            let (host, size) = rootless.container_ids();
            return Ok(UserNamespace { host, size });
        }
        if crate::sys::effective_uid() != 0 {
            let reason =
                rootless::failure().unwrap_or("berth runs as a user other than root and has no user namespace");
            return Err(UserNamespaceError::NoNamespace { reason: reason.to_owned() });
        }
        UserNamespace::from_subid_files()
    }

    /// The `berth` ranges of `/etc/subuid` and `/etc/subgid`.
    pub fn from_subid_files() -> Result<UserNamespace, UserNamespaceError> {
        UserNamespace::from_files(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    fn from_files(subuid: &Path, subgid: &Path) -> Result<UserNamespace, UserNamespaceError> {
        let uid = range(subuid).ok_or(UserNamespaceError::NoRange { file: "/etc/subuid" })?;
        let gid = range(subgid).ok_or(UserNamespaceError::NoRange { file: "/etc/subgid" })?;
        if uid != gid {
            return Err(UserNamespaceError::Mismatch { uid, gid });
        }
        Ok(UserNamespace { host: uid, size: RANGE_SIZE })
    }

    /// The id inside of host id `host_id`; ids outside the range (which a
    /// container cannot create) are the overflow id 65534, as the kernel
    /// shows them inside.
    pub fn to_inside(&self, host_id: u32) -> u32 {
        match host_id.checked_sub(self.host) {
            Some(inside) if inside < self.size => inside,
            _ => 65_534,
        }
    }
}

/// The start of the first `berth:START:COUNT` line with COUNT >=
/// [`RANGE_SIZE`] (a start that would overflow is skipped).
fn range(file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (name, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        let (start, count): (u32, u32) = (start.parse().ok()?, count.parse().ok()?);
        (name == SUBID_NAME && count >= RANGE_SIZE && start > 0 && start.checked_add(RANGE_SIZE).is_some())
            .then_some(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_berth_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (subuid, subgid) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&subuid, "alice:100000:65536\nberth:200000:10\nberth:300000:65536\n").unwrap();
        std::fs::write(&subgid, "berth:300000:70000\n").unwrap();
        let userns = UserNamespace::from_files(&subuid, &subgid).unwrap();
        assert_eq!(userns, UserNamespace { host: 300_000, size: RANGE_SIZE });
        assert_eq!((userns.to_inside(300_000), userns.to_inside(300_005)), (0, 5));
        assert_eq!((userns.to_inside(0), userns.to_inside(400_000)), (65_534, 65_534));
        std::fs::write(&subgid, "berth:400000:65536\n").unwrap();
        assert!(matches!(UserNamespace::from_files(&subuid, &subgid), Err(UserNamespaceError::Mismatch { .. })));
        std::fs::write(&subgid, "alice:400000:65536\n").unwrap();
        let error = UserNamespace::from_files(&subuid, &subgid).unwrap_err();
        assert!(error.to_string().contains("`/etc/subgid` has no range for `berth`"), "{error}");
    }
}
