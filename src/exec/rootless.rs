//! Rootless berth: run by a user other than root, berth first moves itself
//! into a user namespace (and a mount namespace) where it is uid 0, as
//! Podman and Buildah do, so extraction can give files their owners,
//! overlayfs can be mounted (kernel 5.11 and later) and runc runs in its
//! rootless mode.
//!
//! - With a subordinate range in `/etc/subuid` and `/etc/subgid` for the
//!   user, `newuidmap`/`newgidmap` (package `uidmap`) map 0 to the user and
//!   1..=N to the range; each container then gets a user namespace of its
//!   own whose 0 is id 1 here, so a process that escapes a container is a
//!   subordinate id on the host, not the user.
//! - Without one (or without those tools), berth maps only 0 to the user
//!   and containers run as that single id: a step that gives a file another
//!   owner fails, and layer owners other than 0 become 0.
//!
//! Whether berth runs this way is read back from `/proc/self/uid_map`
//! ([`rootless`]), so the watchdog and any other child agree with it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

use crate::exec::RANGE_SIZE;
use crate::sys;

/// How this process runs when it is rootless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rootless {
    /// The user berth was started as (uid 0 here).
    pub host_uid: u32,
    /// Ids 0..ids are mapped here, in both the uid and the gid map (1 for a
    /// single-id map).
    pub ids: u32,
}

/// Why berth could not enter its user namespace, when it runs as a user
/// and tried.
static FAILURE: OnceLock<String> = OnceLock::new();

/// Enters the user namespace described in the module docs when berth runs
/// as a user other than root; does nothing as root (or when already
/// inside). When the kernel refuses, berth goes on as the user and
/// [`failure`] says why (the first container then fails with it).
///
/// Call first thing in `main`, while the process has one thread.
pub fn enter() {
    if sys::effective_uid() == 0 {
        return;
    }
    let (uid, gid) = sys::real_ids();
    let range = subordinate_range(uid);
    let tools = range.and_then(|_| Some((find_tool("newuidmap")?, find_tool("newgidmap")?)));
    let mapped = sys::unshare_user_namespace(|pid| {
        let (Some((uid_start, gid_start, count)), Some((newuidmap, newgidmap))) = (range, &tools) else {
            return false;
        };
        let map = |tool: &PathBuf, outside: u32, start: u32| {
            Command::new(tool)
                .args([pid.to_string(), "0".into(), outside.to_string(), "1".into()])
                .args(["1".into(), start.to_string(), count.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        map(newuidmap, uid, uid_start) && map(newgidmap, gid, gid_start)
    });
    let result = match mapped {
        Ok(true) => Ok(()),
        Ok(false) => sys::map_self(uid, gid),
        Err(error) => {
            let _ = FAILURE.set(format!(
                "berth runs as uid {uid}, and the kernel refused it a user namespace ({error}); allow unprivileged \
                 user namespaces (`sysctl kernel.unprivileged_userns_clone=1` on Debian kernels, \
                 `sysctl user.max_user_namespaces=15000`, or `sysctl kernel.apparmor_restrict_unprivileged_userns=0` \
                 on Ubuntu), or run berth as root"
            ));
            return;
        }
    };
    if let Err(error) = result.and_then(|()| sys::make_mounts_slave()) {
        let _ = FAILURE.set(format!("berth runs as uid {uid} and could not set up its user namespace: {error}"));
    }
}

/// Why containers cannot run as this user (see [`enter`]).
pub fn failure() -> Option<&'static str> {
    FAILURE.get().map(String::as_str)
}

/// `Some` when this process is uid 0 of a user namespace other than the
/// host's (berth entered one, or was started in one).
pub fn rootless() -> Option<Rootless> {
    static ROOTLESS: LazyLock<Option<Rootless>> = LazyLock::new(|| {
        let uid_map = fs::read_to_string("/proc/self/uid_map").ok()?;
        let gid_map = fs::read_to_string("/proc/self/gid_map").ok()?;
        from_maps(&uid_map, &gid_map)
    });
    *ROOTLESS
}

/// The ranges of two id maps, if they are not the host's identity map.
fn from_maps(uid_map: &str, gid_map: &str) -> Option<Rootless> {
    let lines = |map: &str| -> Vec<(u32, u32, u32)> {
        let mut lines: Vec<_> = map
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace().map(|field| field.parse::<u32>().ok());
                Some((fields.next()??, fields.next()??, fields.next()??))
            })
            .collect();
        lines.sort();
        lines
    };
    let (uids, gids) = (lines(uid_map), lines(gid_map));
    if uids.first() == Some(&(0, 0, u32::MAX)) || uids.is_empty() {
        return None;
    }
    // Ids mapped without a gap from 0.
    let contiguous = |lines: &[(u32, u32, u32)]| {
        lines
            .iter()
            .fold(0u32, |next, &(inside, _, count)| if inside == next { next.saturating_add(count) } else { next })
    };
    let host_uid = uids.iter().find(|line| line.0 == 0)?.1;
    Some(Rootless { host_uid, ids: contiguous(&uids).min(contiguous(&gids)) })
}

impl Rootless {
    /// The id a container's 0 maps to here, and how many ids it gets: 1 and
    /// up to [`RANGE_SIZE`] with a subordinate range, else 0 and 1.
    pub fn container_ids(&self) -> (u32, u32) {
        match self.ids {
            0 | 1 => (0, 1),
            ids => (1, (ids - 1).min(RANGE_SIZE)),
        }
    }

    /// `/tmp/berth-UID`: runc's state and the bound container roots, on a
    /// path every id can walk (a container's root walks to its own root
    /// filesystem; the cache may sit below a private home directory).
    pub fn private_dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/berth-{}", self.host_uid))
    }

    /// Creates [`Rootless::private_dir`] (0711), or checks that the one
    /// there is a directory of this user's and not a symlink: `/tmp` is
    /// shared, and another user could have made it first.
    pub fn prepare_private_dir(&self) -> io::Result<PathBuf> {
        let dir = self.private_dir();
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
            _ => {}
        }
        let metadata = fs::symlink_metadata(&dir)?;
        if !metadata.is_dir() || metadata.uid() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("`{}` is not a directory of this user; remove it", dir.display()),
            ));
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))?;
        Ok(dir)
    }
}

/// The first range of `/etc/subuid` and the first of `/etc/subgid` for the
/// user `uid` (by name or number), both cut to the shorter one and to
/// [`RANGE_SIZE`]: `(start of the uid range, start of the gid range, count)`.
fn subordinate_range(uid: u32) -> Option<(u32, u32, u32)> {
    let name = user_name(uid);
    let find = |file: &str| -> Option<(u32, u32)> {
        let text = fs::read_to_string(file).ok()?;
        text.lines().find_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            let matches = owner == uid.to_string() || name.as_deref() == Some(owner);
            let (start, count): (u32, u32) = (start.parse().ok()?, count.parse().ok()?);
            (matches && count > 0 && start > 0).then_some((start, count))
        })
    };
    let (uid_start, uid_count) = find("/etc/subuid")?;
    let (gid_start, gid_count) = find("/etc/subgid")?;
    Some((uid_start, gid_start, uid_count.min(gid_count).min(RANGE_SIZE)))
}

/// The name `/etc/passwd` gives `uid`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_say_whether_berth_is_rootless_and_how_many_ids_it_has() {
        assert_eq!(from_maps("0 0 4294967295\n", "0 0 4294967295\n"), None);
        let full = from_maps("0 1000 1\n1 100000 65536\n", "0 1000 1\n1 100000 65536\n").unwrap();
        assert_eq!(full, Rootless { host_uid: 1000, ids: 65_537 });
        assert_eq!(full.container_ids(), (1, 65_536));
        let single = from_maps("0 1000 1\n", "0 1000 1\n").unwrap();
        assert_eq!(single.container_ids(), (0, 1));
        // A gid map shorter than the uid map limits both.
        let short = from_maps("0 1000 1\n1 100000 65536\n", "0 1000 1\n1 100000 10\n").unwrap();
        assert_eq!(short.container_ids(), (1, 10));
        // A gap ends the range.
        assert_eq!(from_maps("0 1000 1\n5 100000 10\n", "0 1000 1\n").unwrap().ids, 1);
    }
}
