//! The real `berth` binary run as an unprivileged user (`setpriv`), for the
//! rootless tests: `berth-rootless` has a subordinate range in
//! /etc/subuid and /etc/subgid, `berth-single` has none (`scripts/setup.sh`
//! makes both).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::workspace::{Output, TestWorkspace};

/// The user with a subordinate range.
pub const WITH_RANGE: &str = "berth-rootless";
/// The user without one.
pub const SINGLE_ID: &str = "berth-single";

/// A user from /etc/passwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// `name`'s ids, if the user exists.
pub fn user(name: &str) -> Option<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name)
            .then(|| Some(User { uid: fields[2].parse().ok()?, gid: fields[3].parse().ok()? }))?
    })
}

/// The start of `name`'s first range in `file` (`/etc/subuid`).
pub fn subordinate_start(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.next()?.parse().ok())?
    })
}

/// What the rootless tests lack on this machine (for `Need::Rootless`).
pub fn missing() -> Option<String> {
    for name in [WITH_RANGE, SINGLE_ID] {
        if user(name).is_none() {
            return Some(format!("there is no user `{name}`"));
        }
    }
    if subordinate_start("/etc/subuid", WITH_RANGE).is_none() || subordinate_start("/etc/subgid", WITH_RANGE).is_none()
    {
        return Some(format!("/etc/subuid or /etc/subgid has no range for `{WITH_RANGE}`"));
    }
    for tool in ["newuidmap", "newgidmap", "setpriv", "unshare"] {
        if !Path::new("/usr/bin").join(tool).is_file() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let user = user(SINGLE_ID).expect("checked above");
    let allowed = as_user(Command::new("/usr/bin/unshare").args(["--user", "true"]), user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    (!allowed).then(|| "the kernel refuses unprivileged users a user namespace".to_owned())
}

/// `command` run as `user` through `setpriv` (no supplementary groups).
fn as_user(command: &Command, user: User) -> Command {
    let mut wrapped = Command::new("/usr/bin/setpriv");
    wrapped
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Gives `workspace` (its files and its cache) to `user`.
pub fn hand_over(workspace: &TestWorkspace, user: User) {
    fn walk(path: &Path, user: User) {
        std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).unwrap();
        if std::fs::symlink_metadata(path).unwrap().is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), user);
            }
        }
    }
    walk(workspace.root(), user);
    assert_eq!(std::fs::metadata(workspace.root()).unwrap().uid(), user.uid);
}

/// `berth ARGS` in `workspace`, run as `user`, with `HOME` in the
/// workspace (root's would be unreadable).
pub fn berth_as(workspace: &TestWorkspace, user: User, args: &[&str]) -> Output {
    let mut command = workspace.command(args);
    command.env("HOME", workspace.path(".home")).env_remove("XDG_CACHE_HOME").env_remove("XDG_RUNTIME_DIR");
    let output = as_user(&command, user).stdin(Stdio::null()).output().expect("run berth through setpriv");
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}
