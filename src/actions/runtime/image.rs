//! What an image config says about running its process, for every
//! runtime: the runtime fields of the config, the environment merged with a
//! step's or `berth run`'s additions, and the user looked up in the image's
//! own `/etc/passwd` and `/etc/group`.

use std::path::Path;

use crate::cache::Digest;
use crate::error::{Error, Result};
use crate::oci::ExtractedLayer;
use crate::sys;

/// The default `PATH` when the image sets none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The fields of an OCI image config that decide how its process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRuntimeConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `rootfs.diff_ids`: what each layer's uncompressed tar hashes to
    /// (`None` for a config without `rootfs`, which only tests write).
    pub diff_ids: Option<Vec<Digest>>,
}

#[derive(serde::Deserialize, Default)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ConfigFields>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(serde::Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigFields {
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

impl ImageRuntimeConfig {
    /// Reads the `config` section of an OCI image config blob.
    pub fn parse(bytes: &[u8]) -> Result<ImageRuntimeConfig> {
        let blob: ConfigBlob = serde_json::from_slice(bytes)
            .map_err(|error| Error::user(format!("The base image's config is not valid JSON: {error}")))?;
        let fields = blob.config.unwrap_or_default();
        Ok(ImageRuntimeConfig {
            env: fields.env.unwrap_or_default(),
            entrypoint: fields.entrypoint.unwrap_or_default(),
            cmd: fields.cmd.unwrap_or_default(),
            working_dir: fields.working_dir.filter(|dir| !dir.is_empty()),
            user: fields.user.filter(|user| !user.is_empty()),
            diff_ids: blob.rootfs.map(|rootfs| rootfs.diff_ids),
        })
    }

    /// Checks the image's layers, as extracted, against `rootfs.diff_ids`:
    /// the layer blobs passed their digests, so a mismatch is an image whose
    /// config does not describe its layers, refused before anything runs.
    pub fn check_diff_ids(&self, layers: &[ExtractedLayer]) -> Result<()> {
        let Some(diff_ids) = &self.diff_ids else { return Ok(()) };
        if diff_ids.len() != layers.len() {
            return Err(Error::user(format!(
                "The image's config lists {} diff_ids for its {} layers",
                diff_ids.len(),
                layers.len()
            ))
            .with_hint("the image is broken: its config does not describe its layers"));
        }
        for (index, (expected, layer)) in diff_ids.iter().zip(layers).enumerate() {
            if *expected != layer.diff_id {
                return Err(Error::user(format!(
                    "Layer {index} (`{}`) of the image unpacks to diff_id `{}`, but its config says `{expected}`",
                    layer.digest, layer.diff_id
                ))
                .with_hint("the image is broken: its config does not describe its layers"));
            }
        }
        Ok(())
    }
}

/// `base` with every `KEY=VALUE` of `overrides` replacing the same key (or
/// appended), plus a default `PATH` when neither sets one.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |entry: &String| entry.split_once('=').map_or(entry.clone(), |(key, _)| key.to_owned());
    let mut merged: Vec<String> = Vec::new();
    for entry in base.iter().chain(overrides) {
        let name = key(entry);
        match merged.iter_mut().find(|existing| key(existing) == name) {
            Some(existing) => *existing = entry.clone(),
            None => merged.push(entry.clone()),
        }
    }
    if !merged.iter().any(|entry| entry.starts_with("PATH=")) {
        merged.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    merged
}

/// Resolves an image `User` (`uid`, `uid:gid`, `name`, `name:group`) against
/// `/etc/passwd` and `/etc/group` of the root filesystem. Empty means root.
pub fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<(u32, u32)> {
    let Some(user) = user else { return Ok((0, 0)) };
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    // Read through the root: these files are the image's, not the host's.
    let table = |name: &str| read_in_root(rootfs, name);
    let lookup = |file: &str, name: &str| -> Result<Option<(u32, Option<u32>)>> {
        Ok(table(file)?.and_then(|text| {
            text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() > 3 && fields[0] == name)
                    .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok())))
                    .flatten()
            })
        }))
    };
    let (uid, primary_gid) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, lookup_uid(&table("etc/passwd")?.unwrap_or_default(), uid)),
        Err(_) => {
            let (uid, gid) = lookup("etc/passwd", user_part)?
                .ok_or_else(|| Error::user(format!("User `{user_part}` of the image is not in its `/etc/passwd`")))?;
            (uid, gid)
        }
    };
    let gid = match group_part {
        None => primary_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                lookup("etc/group", group)?
                    .ok_or_else(|| Error::user(format!("Group `{group}` of the image is not in its `/etc/group`")))?
                    .0
            }
        },
    };
    Ok((uid, gid))
}

fn lookup_uid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[2].parse() == Ok(uid)).then(|| fields[3].parse().ok()).flatten()
    })
}

/// The most berth reads of an image's `/etc/passwd` or `/etc/group`.
const TABLE_LIMIT: u64 = 1 << 20;

/// Reads a small file of the root filesystem on the host without following
/// symlinks out of it (a symlinked `/etc/passwd` is simply not read, like a
/// missing one). The image chose what is there: a FIFO, a device or a
/// directory is an error, never waited on, and so is a file over 1 MiB.
fn read_in_root(rootfs: &Path, relative: &str) -> Result<Option<String>> {
    let mut path = rootfs.to_path_buf();
    for component in relative.split('/') {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => return Ok(None),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
    match sys::read_regular_capped(&path, TABLE_LIMIT) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        // Removed or replaced by a symlink since the walk above.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound || error.raw_os_error() == Some(sys::ELOOP) => {
            Ok(None)
        }
        Err(error) => Err(Error::user(format!("`/{relative}` of the image cannot be read: {error}"))
            .with_hint("the image's user is looked up in it; it must be a regular file of at most 1 MiB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_by_key_and_defaults_path() {
        let merged = merge_env(&["A=1".into(), "B=2".into()], &["B=3".into(), "C=4".into()]);
        assert_eq!(merged, [format!("PATH={DEFAULT_PATH}"), "A=1".into(), "B=3".into(), "C=4".into()]);
        assert_eq!(merge_env(&["PATH=/x".into()], &[]), ["PATH=/x"]);
    }

    #[test]
    fn users_resolve_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
            .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(root.path(), None).unwrap(), (0, 0));
        assert_eq!(resolve_user(root.path(), Some("app")).unwrap(), (1000, 1001));
        assert_eq!(resolve_user(root.path(), Some("1000")).unwrap(), (1000, 1001));
        assert_eq!(resolve_user(root.path(), Some("app:staff")).unwrap(), (1000, 50));
        assert_eq!(resolve_user(root.path(), Some("7:8")).unwrap(), (7, 8));
        assert!(resolve_user(root.path(), Some("nobody")).is_err());
    }

    #[test]
    fn a_fifo_or_huge_passwd_is_refused_without_waiting() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        crate::sys::make_fifo(&root.path().join("etc/passwd")).unwrap();
        let error = resolve_user(root.path(), Some("app")).unwrap_err();
        assert!(error.to_string().contains("`/etc/passwd` of the image cannot be read: not a regular file"), "{error}");
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), vec![b'#'; 2 << 20]).unwrap();
        assert!(resolve_user(root.path(), Some("app")).unwrap_err().to_string().contains("longer than"));
        // A symlink is not followed out of the root: as if missing.
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(root.path(), Some("root")).unwrap_err().to_string().contains("is not in its"));
    }

    #[test]
    fn config_runtime_fields() {
        let config = ImageRuntimeConfig::parse(
            br#"{"architecture":"amd64","config":{"Env":["A=1"],"Entrypoint":["/bin/sh"],"Cmd":["-c","true"],"WorkingDir":"/w"}}"#,
        )
        .unwrap();
        assert_eq!(config.entrypoint, ["/bin/sh"]);
        assert_eq!(config.working_dir.as_deref(), Some("/w"));
        assert_eq!(ImageRuntimeConfig::parse(b"{}").unwrap(), ImageRuntimeConfig::default());
    }
}
