//! Running an image's process with runc (`berth run`), and the pieces that
//! `actions::run_step` shares with it: the runtime part of an image config,
//! environment merging, user lookup in the root filesystem, and the layer
//! extraction that feeds `exec::rootfs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::cache::{Cas, Digest};
use crate::error::{Error, Result};
use crate::exec::{Container, Limits, RootFs, Runc, StackMode, StdioMode};
use crate::oci::{extract_layer_cached, ExtractLimits, ExtractedLayer};

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
}

#[derive(serde::Deserialize, Default)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ConfigFields>,
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
        })
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
    let lookup = |file: &str, name: &str| -> Option<(u32, Option<u32>)> {
        table(file)?.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok())))
                .flatten()
        })
    };
    let (uid, primary_gid) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, lookup_uid(&table("etc/passwd").unwrap_or_default(), uid)),
        Err(_) => {
            let (uid, gid) = lookup("etc/passwd", user_part)
                .ok_or_else(|| Error::user(format!("User `{user_part}` of the image is not in its `/etc/passwd`")))?;
            (uid, gid)
        }
    };
    let gid = match group_part {
        None => primary_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                lookup("etc/group", group)
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

/// Reads a small file of the root filesystem without following symlinks
/// out of it (a symlinked `/etc/passwd` is simply not read).
fn read_in_root(rootfs: &Path, relative: &str) -> Option<String> {
    let mut path = rootfs.to_path_buf();
    for component in relative.split('/') {
        path.push(component);
        if std::fs::symlink_metadata(&path).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::read_to_string(path).ok()
}

/// Extracts (or finds in the cache) every layer, in parallel, keeping order.
pub fn extract_layers(cas: &Cas, cache_dir: &Path, layers: &[Digest]) -> Result<Vec<ExtractedLayer>> {
    let limits = ExtractLimits::default();
    layers.par_iter().map(|digest| extract_layer_cached(cas, cache_dir, digest, &limits).map_err(Error::from)).collect()
}

/// A fresh private directory for one container run under `<cache>/run/`,
/// removed when dropped.
#[derive(Debug)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(cache_dir: &Path) -> Result<RunDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let runs = cache_dir.join("run");
        std::fs::create_dir_all(&runs)
            .map_err(|error| Error::environment(format!("Cannot create `{}`: {error}", runs.display())))?;
        let dir = runs.join(format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(RunDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `berth run` runs.
#[derive(Debug, Clone)]
pub struct RunImageRequest<'a> {
    pub cas: &'a Cas,
    pub cache_dir: &'a Path,
    /// The image config blob (JSON bytes).
    pub config: &'a [u8],
    /// The image's layer blobs in the CAS, lowest first.
    pub layers: &'a [Digest],
    /// Replace the image's `cmd` (the entrypoint stays) when non-empty.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing) the image's env.
    pub env: Vec<String>,
    pub network: bool,
    pub runc: &'a Runc,
    pub stack: StackMode,
}

/// Runs the image's entrypoint + cmd with stdio attached and returns its
/// exit code (128 + N when killed by signal N).
pub fn run_image(request: &RunImageRequest<'_>) -> Result<i32> {
    let config = ImageRuntimeConfig::parse(request.config)?;
    let mut args = config.entrypoint.clone();
    args.extend(if request.args.is_empty() { config.cmd.clone() } else { request.args.clone() });
    if args.is_empty() {
        return Err(Error::user(
            "The image has no entrypoint or cmd to run\nhint: name the program after `--`: berth run LABEL -- /bin/sh",
        ));
    }
    let layers = extract_layers(request.cas, request.cache_dir, request.layers)?;
    let run_dir = RunDir::new(request.cache_dir)?;
    let rootfs = RootFs::stack(&layers, &run_dir.path().join("rootfs"), request.stack)?;
    let (uid, gid) = resolve_user(rootfs.merged(), config.user.as_deref())?;
    let container = Container {
        args,
        env: merge_env(&config.env, &request.env),
        cwd: config.working_dir.unwrap_or_else(|| "/".to_owned()),
        uid,
        gid,
        rootfs: rootfs.merged().to_path_buf(),
        network: request.network,
        limits: Limits::default(),
    };
    let outcome = request.runc.run(&container, &run_dir.path().join("bundle"), StdioMode::Inherit, None)?;
    Ok(outcome.exit_code)
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
