//! `dockerfile_run`: one `RUN` of an `oci_dockerfile`. It stacks the
//! stage's layers twice through the [`ContainerRuntime`], runs the command
//! in one root, and packs the difference against the untouched other root
//! as a layer: added and changed entries as the command left them, removed
//! ones as whiteouts (`.wh.<name>`), sorted, every mtime clamped to
//! `SOURCE_DATE_EPOCH`.
//!
//! Inputs, in this order: the base image (an [`ImageOutput`], for its
//! config, when the stage's base is an image action), then the stage's
//! layers lowest first (each a [`LayerOutput`]). Secrets are read from the
//! workspace when the step runs and removed before the diff: neither their
//! bytes nor their digest reach the key or the layer.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::actions::run_step::stderr_tail;
use crate::actions::{
    merge_env, Action, ActionContext, ActionId, ActionResult, BaseConfig, ImageRuntimeConfig, Input, LayerOutput,
    Process, ResolvedInput, RuntimeError, Stdio,
};
use crate::cache::{BlobRef, CanonicalJson, Digest};
use crate::error::{Error, Result};
use crate::oci::{Body, Compression, EntryMeta, FileSource, LayerBuilder, Origin};

/// Paths the container runtime provides and Docker never commits.
const NOT_IN_LAYERS: &[&str] =
    &["/dev", "/proc", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv"];

/// Everything about the RUN that decides its layer; all of it is in the key.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DockerfileRunSpec {
    /// `Dockerfile:line:col` of the instruction, for messages (and the key:
    /// moving a RUN is cheap to rerun and keeps messages right).
    pub location: String,
    /// The process's argv (the `SHELL` plus the command line, or the exec
    /// form).
    pub args: Vec<String>,
    /// `KEY=VALUE` of the stage's `ENV` and the `ARG`s in scope, over the
    /// base image's env.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// The stage's `USER`, resolved in the image when the step runs.
    pub user: Option<String>,
    pub network: bool,
    /// `(id, workspace path, path in the container)` of each secret mount.
    /// Only the path is in the key, never the bytes.
    pub secrets: Vec<(String, String, String)>,
    /// `(host, address)` lines of `/etc/hosts` during the run (`add_hosts`);
    /// `/etc/hosts` never reaches a layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<(String, String)>,
    /// `(id, target)` of each `--mount=type=cache`: a directory kept per
    /// workspace and id under the cache directory, copied in before the
    /// run and back after it; its contents are in no key and no layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<(String, String)>,
    pub timeout_secs: u64,
    pub source_date_epoch: u64,
    /// A `WORKDIR`: create this directory (root-owned, 0755) where it is
    /// missing instead of running a process, as `docker build` does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<String>,
    /// A `COPY`/`ADD`: write these entries into the root instead of running
    /// a process; missing parents are made root-owned (or `--chown`ed) 0755,
    /// existing ones keep their mode and owner, as `docker build` does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyEntry>,
    /// `--chown=user[:group]` by name, resolved in the stage's own
    /// `/etc/passwd` and `/etc/group` when the step runs; replaces the
    /// entries' owners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown_name: Option<String>,
    /// A `COPY --from`: paths copied out of the other stage's root (its
    /// layers are the action's `from_layers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_from: Option<CopyFrom>,
}

/// `COPY --from=stage src... dest`, resolved when the step runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyFrom {
    /// Absolute paths in the other stage.
    pub sources: Vec<String>,
    /// Absolute destination; a directory when `into_dir`.
    pub dest: String,
    pub into_dir: bool,
    /// `--chown`; without it, owners are kept as in the other stage (as
    /// the legacy builder does).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, for every copied entry.
    pub mode: Option<u32>,
}

/// One path a `COPY` writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyEntry {
    /// Absolute, normalised path in the container.
    pub path: String,
    pub content: CopyContent,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum CopyContent {
    /// The `index`th of the action's source files (its digest is in the key).
    Source(usize),
    /// Inline bytes (a heredoc).
    Contents(String),
    Directory,
    /// `ADD` of a local tar (plain or gzip): the `index`th source unpacked
    /// into the entry's path, owners and modes as the archive has them.
    Unpack(usize),
    /// `ADD --checksum=sha256:... URL`: the file whose digest is `digest`,
    /// from the CAS or fetched from `url` once. The key holds the digest
    /// only: the same bytes from another URL are the same layer.
    Url {
        #[serde(skip_serializing)]
        url: String,
        digest: Digest,
    },
}

/// The `dockerfile_run` action.
#[derive(Debug, Clone)]
pub struct DockerfileRun {
    pub base_config: BaseConfig,
    /// Actions whose output is a [`LayerOutput`] each, lowest first.
    pub layers: Vec<ActionId>,
    pub spec: DockerfileRunSpec,
    /// Workspace-relative source files a `COPY` reads, after the layers in
    /// the inputs.
    pub sources: Vec<PathBuf>,
    /// The layers of the stage a `COPY --from` reads (lowest first), after
    /// `layers` in the inputs.
    pub from_layers: Vec<ActionId>,
    /// Where the secrets' workspace paths are read from; not in the key, so
    /// two checkouts share cache entries.
    pub workspace_root: PathBuf,
}

impl Action for DockerfileRun {
    fn kind(&self) -> &'static str {
        "dockerfile_run"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "spec": self.spec,
            "base_config": self.base_config.param(),
            "layers": self.layers.len(),
            "from_layers": self.from_layers.len(),
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.base_config
            .action()
            .into_iter()
            .chain(self.layers.iter().copied())
            .chain(self.from_layers.iter().copied())
            .map(Input::Action)
            .chain(self.sources.iter().cloned().map(Input::Source))
            .collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let deadline = Some(Instant::now() + Duration::from_secs(self.spec.timeout_secs.max(1)));
        let runtime = ctx.runtime()?;
        runtime.check()?;
        let (config, layers, from_layers) = self.resolve_inputs(ctx)?;
        let failed = |error: RuntimeError| self.runtime_error(runtime.name(), error);
        let ids = Ids { shift: runtime.id_shift().map_err(failed)? };
        let digests =
            layers.iter().map(|layer| ctx.blob_path(layer).map(|_| layer.digest)).collect::<Result<Vec<_>, _>>()?;
        let extracted = runtime.extract(ctx.layers(), ctx.cas(), &digests, deadline).map_err(failed)?;
        let before = runtime.stack(&extracted, &ctx.scratch.join("before"), deadline).map_err(failed)?;
        let after = runtime.stack(&extracted, &ctx.scratch.join("after"), deadline).map_err(failed)?;
        let owner = match &self.spec.chown_name {
            // `user` alone: the user's uid as the gid too, as Docker does.
            Some(name) => Some(match name.split_once(':') {
                Some(_) => runtime.resolve_user(after.path(), Some(name), deadline).map_err(failed)?,
                None => {
                    let (uid, _) = runtime.resolve_user(after.path(), Some(name), deadline).map_err(failed)?;
                    (uid, uid)
                }
            }),
            None => None,
        }
        .map(|(uid, gid)| (ids.host(uid), ids.host(gid)));
        if let Some(copy_from) = &self.spec.copy_from {
            let mut copy_from = copy_from.clone();
            // A numeric `--chown` holds ids inside the container.
            copy_from.chown = owner.or(copy_from.chown.map(|(uid, gid)| (ids.host(uid), ids.host(gid))));
            let digests = from_layers
                .iter()
                .map(|layer| ctx.blob_path(layer).map(|_| layer.digest))
                .collect::<Result<Vec<_>, _>>()?;
            let extracted = runtime.extract(ctx.layers(), ctx.cas(), &digests, deadline).map_err(failed)?;
            let other = runtime.stack(&extracted, &ctx.scratch.join("from"), deadline).map_err(failed)?;
            copy_from_root(other.path(), after.path(), &copy_from, ids)
                .map_err(|message| Error::user(format!("`COPY --from` at {}: {message}", self.spec.location)))?;
            drop(other);
        }
        if self.spec.mkdir.is_some() || !self.spec.copies.is_empty() || self.spec.copy_from.is_some() {
            if let Some(dir) = &self.spec.mkdir {
                make_dirs(after.path(), dir, ids.host(0), ids.host(0))
                    .map_err(|message| Error::user(format!("`WORKDIR {dir}` at {}: {message}", self.spec.location)))?;
            }
            self.copy(ctx, after.path(), owner, ids)?;
            let mut builder = LayerBuilder::new(self.spec.source_date_epoch);
            diff_dir(before.path(), after.path(), "", &[], &mut builder, ids)?;
            let packed = builder.write_to_cas(ctx.cas(), Compression::Gzip, 1)?;
            drop(after);
            drop(before);
            return Ok(LayerOutput::packed(&packed).to_result());
        }
        let user = self.spec.user.as_deref().filter(|user| !user.is_empty()).or(config.user.as_deref());
        let (uid, gid) = runtime.resolve_user(after.path(), user, deadline).map_err(failed)?;
        let planted = self.plant_secrets(after.path(), ids)?;
        let caches = self.mount_caches(ctx, after.path(), ids)?;
        let process = Process {
            args: self.spec.args.clone(),
            env: merge_env(&config.env, &self.spec.env),
            cwd: self.spec.workdir.clone().or(config.working_dir).unwrap_or_else(|| "/".to_owned()),
            uid,
            gid,
            network: self.spec.network,
        };
        let bundle = ctx.scratch.join("bundle");
        let outcome = runtime.run(&process, after.path(), &bundle, Stdio::Capture, deadline);
        // Secrets leave the root before anything reads it, whatever happened.
        planted.remove(after.path());
        let kept = self.unmount_caches(after.path(), &caches);
        let outcome = outcome.map_err(failed)?;
        kept?;
        if outcome.timed_out {
            return Err(Error::user(format!(
                "`RUN` at {} timed out after {}s; its container was killed{}",
                self.spec.location,
                self.spec.timeout_secs,
                stderr_tail(&outcome.stderr),
            )));
        }
        if outcome.exit_code != 0 {
            return Err(Error::user(format!(
                "`RUN` at {} failed with exit code {}: `{}`{}",
                self.spec.location,
                outcome.exit_code,
                shorten(&self.spec.args.join(" ")),
                stderr_tail(&outcome.stderr),
            )));
        }
        let mut builder = LayerBuilder::new(self.spec.source_date_epoch);
        let skip: Vec<String> = self.spec.caches.iter().map(|(_, target)| target.clone()).collect();
        diff_dir(before.path(), after.path(), "", &skip, &mut builder, ids)?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let packed = builder.write_to_cas(ctx.cas(), Compression::Gzip, threads)?;
        drop(after);
        drop(before);
        Ok(LayerOutput::packed(&packed).to_result())
    }
}

/// Secrets written into the root for one run, and the directories made
/// for them.
struct Planted {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Planted {
    fn remove(&self, root: &Path) {
        for file in &self.files {
            let _ = fs::remove_file(root.join(file));
        }
        // Deepest first, only those berth made.
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(root.join(dir));
        }
    }
}

impl DockerfileRun {
    /// Copies each cache directory into the root at its target; returns
    /// what to undo.
    #[allow(clippy::type_complexity)]
    fn mount_caches(
        &self,
        ctx: &ActionContext<'_>,
        root: &Path,
        ids: Ids,
    ) -> Result<Vec<(PathBuf, String, Planted, Option<PathBuf>)>> {
        let mut mounted = Vec::new();
        let Some(cache_root) = ctx.layers().dir().parent() else { return Ok(mounted) };
        let workspace = crate::cache::Digest::of(self.workspace_root.to_string_lossy().as_bytes()).hex().to_owned();
        for (id, target) in &self.spec.caches {
            let dir =
                cache_root.join("run-cache").join(&workspace[..16]).join(crate::cache::Digest::of(id.as_bytes()).hex());
            fs::create_dir_all(&dir)
                .map_err(|error| Error::environment(format!("Cannot make the cache `{id}`: {error}")))?;
            let mut planted = Planted { files: Vec::new(), dirs: Vec::new() };
            let mut made = PathBuf::new();
            for component in target.split('/').filter(|part| !part.is_empty()) {
                made.push(component);
                if fs::symlink_metadata(root.join(&made)).is_err() {
                    planted.dirs.push(made.clone());
                }
            }
            let host = inside(root, target).map_err(|message| Error::user(format!("Cache `{id}`: {message}")))?;
            // The mount hides what the image has at the target, as Docker's
            // does. The diff skips the target, so what the image has there
            // stays as it was in the layers; this root is thrown away.
            let hidden = match fs::symlink_metadata(&host) {
                Ok(metadata) if metadata.is_dir() => {
                    fs::remove_dir_all(&host)
                        .map_err(|error| Error::environment(format!("Cannot mount the cache `{id}`: {error}")))?;
                    Some(host.clone())
                }
                Ok(_) => return Err(Error::user(format!("Cache `{id}`: `{target}` is not a directory in the image"))),
                Err(_) => None,
            };
            let spec = CopyFrom { sources: Vec::new(), dest: String::new(), into_dir: false, chown: None, mode: None };
            make_dirs(root, target, ids.host(0), ids.host(0))
                .map_err(|message| Error::user(format!("Cache `{id}`: {message}")))?;
            copy_entry(&dir, &host, &spec, true)
                .and_then(|()| chown(&host, ids.host(0), ids.host(0)))
                .map_err(|message| Error::environment(format!("Cache `{id}`: {message}")))?;
            mounted.push((dir, target.clone(), planted, hidden));
        }
        Ok(mounted)
    }

    /// Copies each cache's target back to its directory and takes it out
    /// of the root (a target berth made goes; one the image had is left
    /// to the diff, which skips cache targets).
    fn unmount_caches(&self, root: &Path, caches: &[(PathBuf, String, Planted, Option<PathBuf>)]) -> Result<()> {
        for (dir, target, planted, hidden) in caches.iter().rev() {
            let host = inside(root, target).map_err(Error::user)?;
            let spec = CopyFrom { sources: Vec::new(), dest: String::new(), into_dir: false, chown: None, mode: None };
            let fresh = dir.with_extension("new");
            let _ = fs::remove_dir_all(&fresh);
            fs::create_dir_all(&fresh)
                .and_then(|()| fs::remove_dir_all(dir))
                .map_err(|error| Error::environment(format!("Cannot keep the cache at `{target}`: {error}")))?;
            copy_entry(&host, &fresh, &spec, true).map_err(Error::environment)?;
            fs::rename(&fresh, dir)
                .map_err(|error| Error::environment(format!("Cannot keep the cache at `{target}`: {error}")))?;
            let _ = fs::remove_dir_all(&host);
            if hidden.is_none() {
                planted.remove(root);
            }
        }
        Ok(())
    }

    fn plant_secrets(&self, root: &Path, ids: Ids) -> Result<Planted> {
        let mut planted = Planted { files: Vec::new(), dirs: Vec::new() };
        for (id, source, target) in &self.spec.secrets {
            let bytes = fs::read(self.workspace_root.join(source)).map_err(|error| {
                Error::user(format!(
                    "Secret `{id}` (`{source}`) of the `RUN` at {} cannot be read: {error}",
                    self.spec.location
                ))
            })?;
            let relative = PathBuf::from(target.trim_start_matches('/'));
            let mut dir = PathBuf::new();
            for component in relative.parent().into_iter().flat_map(Path::components) {
                dir.push(component);
                if !root.join(&dir).exists() {
                    fs::create_dir(root.join(&dir))
                        .map_err(|error| error.to_string())
                        .and_then(|()| chown(&root.join(&dir), ids.host(0), ids.host(0)))
                        .map_err(|error| Error::environment(format!("Cannot mount secret `{id}`: {error}")))?;
                    planted.dirs.push(dir.clone());
                }
            }
            let file = root.join(&relative);
            fs::write(&file, &bytes)
                .and_then(|()| fs::set_permissions(&file, fs::Permissions::from_mode(0o400)))
                .map_err(|error| error.to_string())
                .and_then(|()| chown(&file, ids.host(0), ids.host(0)))
                .map_err(|error| Error::environment(format!("Cannot mount secret `{id}`: {error}")))?;
            planted.files.push(relative);
        }
        if !self.spec.hosts.is_empty() {
            let etc = root.join("etc");
            if !etc.exists() {
                fs::create_dir(&etc)
                    .map_err(|error| error.to_string())
                    .and_then(|()| chown(&etc, ids.host(0), ids.host(0)))
                    .map_err(|error| Error::environment(format!("Cannot write `/etc/hosts`: {error}")))?;
                planted.dirs.push(PathBuf::from("etc"));
                planted.files.push(PathBuf::from("etc/hosts"));
            }
            let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
            for (host, address) in &self.spec.hosts {
                text.push_str(&format!("{address}\t{host}\n"));
            }
            let hosts = etc.join("hosts");
            if fs::symlink_metadata(&hosts).is_ok_and(|metadata| !metadata.is_file()) {
                return Err(Error::user(format!("`/etc/hosts` of the `RUN` at {} is not a file", self.spec.location)));
            }
            fs::write(&hosts, text)
                .map_err(|error| Error::environment(format!("Cannot write `/etc/hosts`: {error}")))?;
        }
        Ok(planted)
    }

    /// Writes the `COPY` entries into `root`.
    fn copy(&self, ctx: &ActionContext<'_>, root: &Path, owner: Option<(u32, u32)>, ids: Ids) -> Result<()> {
        let sources: Vec<&ResolvedInput<'_>> = ctx.inputs.iter().skip(ctx.inputs.len() - self.sources.len()).collect();
        let failed = |path: &str, message: String| {
            Error::user(format!("`COPY` to `{path}` at {}: {message}", self.spec.location))
        };
        for entry in &self.spec.copies {
            let (parent, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
            let (uid, gid) = owner.unwrap_or((ids.host(entry.uid), ids.host(entry.gid)));
            make_dirs(root, parent, uid, gid).map_err(|message| failed(&entry.path, message))?;
            let host = inside(root, &entry.path).map_err(|message| failed(&entry.path, message))?;
            if let CopyContent::Unpack(index) = &entry.content {
                let Some(ResolvedInput::Source { path, digest, .. }) = sources.get(*index) else {
                    return Err(Error::internal("`dockerfile_run` lost a source input"));
                };
                let bytes = fs::read(path).map_err(|error| failed(&entry.path, error.to_string()))?;
                if crate::cache::Digest::of(&bytes) != *digest {
                    return Err(failed(&entry.path, format!("`{}` changed during the build", path.display())));
                }
                make_dirs(root, &entry.path, uid, gid).map_err(|message| failed(&entry.path, message))?;
                let host = resolve_in(root, &entry.path).map_err(|message| failed(&entry.path, message))?;
                crate::oci::unpack_added_archive(
                    bytes.as_slice(),
                    &host,
                    &crate::oci::ExtractLimits { id_shift: ids.shift, ..Default::default() },
                )
                .map_err(|error| failed(&entry.path, format!("cannot unpack `{}`: {error}", path.display())))?;
                continue;
            }
            if name.is_empty() {
                continue;
            }
            if let CopyContent::Url { url, digest } = &entry.content {
                let blob = ctx
                    .registry()?
                    .fetch_url(ctx.cas(), url, *digest)
                    .map_err(|error| Error::from(error).context(format!("`ADD` at {}", self.spec.location)))?;
                let blob = ctx.blob_path(&blob)?;
                replace_with_file(&host, &blob).map_err(|message| failed(&entry.path, message))?;
                std::os::unix::fs::chown(&host, Some(uid), Some(gid))
                    .and_then(|()| fs::set_permissions(&host, fs::Permissions::from_mode(entry.mode)))
                    .map_err(|error| failed(&entry.path, error.to_string()))?;
                continue;
            }
            let existing = fs::symlink_metadata(&host).ok();
            match &entry.content {
                CopyContent::Directory => match existing {
                    Some(metadata) if metadata.is_dir() => continue,
                    Some(_) => fs::remove_file(&host).and_then(|()| fs::create_dir(&host)),
                    None => fs::create_dir(&host),
                }
                .map_err(|error| failed(&entry.path, error.to_string()))?,
                content => {
                    let bytes = match content {
                        CopyContent::Source(index) => match sources.get(*index) {
                            Some(ResolvedInput::Source { path, digest, .. }) => {
                                let bytes = fs::read(path).map_err(|error| failed(&entry.path, error.to_string()))?;
                                // The bytes copied are the bytes the key saw.
                                if crate::cache::Digest::of(&bytes) != *digest {
                                    return Err(failed(
                                        &entry.path,
                                        format!("`{}` changed during the build", path.display()),
                                    ));
                                }
                                bytes
                            }
                            _ => return Err(Error::internal("`dockerfile_run` lost a source input")),
                        },
                        CopyContent::Contents(text) => text.clone().into_bytes(),
                        CopyContent::Directory | CopyContent::Unpack(_) | CopyContent::Url { .. } => Vec::new(),
                    };
                    if let Some(metadata) = existing {
                        if metadata.is_dir() {
                            return Err(failed(&entry.path, "a directory is there".to_owned()));
                        }
                        fs::remove_file(&host).map_err(|error| failed(&entry.path, error.to_string()))?;
                    }
                    fs::write(&host, bytes).map_err(|error| failed(&entry.path, error.to_string()))?;
                }
            }
            std::os::unix::fs::chown(&host, Some(uid), Some(gid))
                .and_then(|()| fs::set_permissions(&host, fs::Permissions::from_mode(entry.mode)))
                .map_err(|error| failed(&entry.path, error.to_string()))?;
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn resolve_inputs(&self, ctx: &ActionContext<'_>) -> Result<(ImageRuntimeConfig, Vec<BlobRef>, Vec<BlobRef>)> {
        let mut outputs = ctx.inputs.iter().map(|input| match input {
            ResolvedInput::Action(output) => Ok(*output),
            ResolvedInput::Source { path, .. } => {
                Err(Error::internal(format!("`dockerfile_run` got a source file `{}` too early", path.display())))
            }
        });
        let mut next = || outputs.next().unwrap_or_else(|| Err(Error::internal("`dockerfile_run` got too few inputs")));
        let config = self.base_config.read(ctx, &mut next)?;
        let mut layers = Vec::new();
        for _ in 0..self.layers.len() {
            layers.push(LayerOutput::from_result(next()?)?.blob);
        }
        let mut from_layers = Vec::new();
        for _ in 0..self.from_layers.len() {
            from_layers.push(LayerOutput::from_result(next()?)?.blob);
        }
        Ok((config, layers, from_layers))
    }

    fn runtime_error(&self, runtime: &str, error: RuntimeError) -> Error {
        match error {
            RuntimeError::DeadlinePassed { stage } => Error::user(format!(
                "`RUN` at {} timed out after {}s while {stage}",
                self.spec.location, self.spec.timeout_secs
            )),
            RuntimeError::Start { message, .. } => {
                Error::environment(format!("{runtime} could not start the `RUN` at {}: {message}", self.spec.location))
            }
            RuntimeError::Failed(error) => error,
        }
    }
}

/// Puts a copy of the file `source` at `host`, replacing a file there.
fn replace_with_file(host: &Path, source: &Path) -> std::result::Result<(), String> {
    if let Ok(metadata) = fs::symlink_metadata(host) {
        if metadata.is_dir() {
            return Err("a directory is there".to_owned());
        }
        fs::remove_file(host).map_err(|error| error.to_string())?;
    }
    fs::copy(source, host).map(drop).map_err(|error| error.to_string())
}

/// The host path of the container path `path` below `root`, symlinks in
/// its parents resolved inside the root (an absolute link target starts at
/// the root, `..` stops there), as the container would see them; the last
/// component is followed only when `follow_last`. Never leaves the root.
fn resolve_within(root: &Path, path: &str, follow_last: bool) -> std::result::Result<PathBuf, String> {
    let mut current: Vec<String> = Vec::new();
    let mut pending: Vec<String> =
        path.split('/').filter(|part| !part.is_empty() && *part != ".").rev().map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            current.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&current);
        candidate.push(&component);
        let last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(metadata) if metadata.file_type().is_symlink() && (!last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("`{path}` has too many levels of symlinks"));
                }
                let link = fs::read_link(&candidate).map_err(|error| error.to_string())?;
                let link = link.to_str().ok_or_else(|| format!("a symlink in `{path}` is not UTF-8"))?.to_owned();
                if link.starts_with('/') {
                    current.clear();
                }
                pending
                    .extend(link.split('/').filter(|part| !part.is_empty() && *part != ".").rev().map(str::to_owned));
            }
            _ => current.push(component),
        }
    }
    let mut host = root.to_path_buf();
    host.extend(&current);
    Ok(host)
}

/// The host path of `path` below `root`, parents resolved inside the root.
/// The owners of a root the runtime stacked: id N inside the container is
/// host id `shift + N` (its user namespace; `shift` 0 without one). What
/// this action writes into a root is owned the same way, and a layer
/// records the ids inside, so its digest does not depend on the host.
#[derive(Debug, Clone, Copy)]
struct Ids {
    shift: u32,
}

impl Ids {
    fn host(self, inside: u32) -> u32 {
        self.shift.saturating_add(inside)
    }

    /// Ids outside the container's range (which it cannot make) become the
    /// overflow id, as the kernel shows them inside.
    fn inside(self, host: u32) -> u32 {
        match host.checked_sub(self.shift) {
            Some(inside) if self.shift == 0 || inside < 65_536 => inside,
            _ => 65_534,
        }
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> std::result::Result<(), String> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|error| error.to_string())
}

fn inside(root: &Path, path: &str) -> std::result::Result<PathBuf, String> {
    resolve_within(root, path, false)
}

/// `COPY --from`: each source (a file, a directory whose contents are
/// copied, or a symlink kept as one) from `from` into `root`, owned by
/// `uid:gid`.
fn copy_from_root(from: &Path, root: &Path, spec: &CopyFrom, ids: Ids) -> std::result::Result<(), String> {
    let sources = expand_sources(from, &spec.sources)?;
    let into_dir = spec.into_dir || sources.len() > spec.sources.len();
    let spec = &CopyFrom { into_dir, ..spec.clone() };
    for source in &sources {
        let host = resolve_in(from, source)?;
        let metadata =
            fs::symlink_metadata(&host).map_err(|_| format!("`{source}` does not exist in the other stage"))?;
        let name = source.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        let dest = if metadata.is_dir() || !spec.into_dir {
            spec.dest.clone()
        } else {
            format!("{}/{name}", spec.dest.trim_end_matches('/'))
        };
        let (parent, _) = dest.rsplit_once('/').unwrap_or(("", &dest));
        let (uid, gid) = spec.chown.unwrap_or((ids.host(0), ids.host(0)));
        make_dirs(root, parent, uid, gid)?;
        let target = inside(root, &dest)?;
        if metadata.is_dir() {
            // The directory the contents go to is made like a parent.
            make_dirs(root, &dest, uid, gid)?;
        }
        copy_entry(&host, &target, spec, metadata.is_dir())?;
    }
    Ok(())
}

fn copy_entry(source: &Path, target: &Path, spec: &CopyFrom, top: bool) -> std::result::Result<(), String> {
    let shown = |error: std::io::Error| format!("`{}`: {error}", target.display());
    let metadata = fs::symlink_metadata(source).map_err(shown)?;
    let existing = fs::symlink_metadata(target).ok();
    if metadata.is_dir() {
        let existed = existing.is_some();
        match existing {
            Some(existing) if existing.is_dir() => {}
            Some(_) => {
                fs::remove_file(target).map_err(shown)?;
                fs::create_dir(target).map_err(shown)?;
            }
            None => fs::create_dir(target).map_err(shown)?,
        }
        // The top directory is where the contents go: made like a parent
        // or kept as it was.
        if !top {
            let _ = existed;
            let mode = spec.mode.unwrap_or(metadata.mode() & 0o7777);
            fs::set_permissions(target, fs::Permissions::from_mode(mode)).map_err(shown)?;
            let (uid, gid) = spec.chown.unwrap_or((metadata.uid(), metadata.gid()));
            std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(shown)?;
        }
        let mut children: Vec<_> =
            fs::read_dir(source).map_err(shown)?.flatten().map(|entry| entry.file_name()).collect();
        children.sort();
        for child in children {
            copy_entry(&source.join(&child), &target.join(&child), spec, false)?;
        }
        return Ok(());
    }
    if let Some(existing) = existing {
        if existing.is_dir() {
            return Err(format!("`{}` is a directory", target.display()));
        }
        fs::remove_file(target).map_err(shown)?;
    }
    if metadata.file_type().is_symlink() {
        let link = fs::read_link(source).map_err(shown)?;
        std::os::unix::fs::symlink(link, target).map_err(shown)?;
    } else if metadata.is_file() {
        fs::copy(source, target).map_err(shown)?;
        let mode = spec.mode.unwrap_or(metadata.mode() & 0o7777);
        fs::set_permissions(target, fs::Permissions::from_mode(mode)).map_err(shown)?;
    } else {
        // Sockets, fifos and device nodes do not belong in a layer.
        return Ok(());
    }
    let (uid, gid) = spec.chown.unwrap_or((metadata.uid(), metadata.gid()));
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(shown)
}

/// Sources with a pattern in their last component (`/out/*.txt`) as the
/// paths it matches in `from`, sorted; other sources as they are.
fn expand_sources(from: &Path, sources: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut expanded = Vec::new();
    for source in sources {
        let (dir, pattern) = source.rsplit_once('/').unwrap_or(("", source));
        if !pattern.contains(['*', '?', '[']) {
            expanded.push(source.clone());
            continue;
        }
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|error| format!("bad pattern `{source}`: {error}"))?
            .compile_matcher();
        let host = resolve_in(from, dir)?;
        let mut names: Vec<String> = fs::read_dir(&host)
            .map_err(|_| format!("`{dir}/` does not exist in the other stage"))?
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| glob.is_match(name))
            .collect();
        if names.is_empty() {
            return Err(format!("`{source}` matches nothing in the other stage"));
        }
        names.sort();
        expanded.extend(names.into_iter().map(|name| format!("{dir}/{name}")));
    }
    Ok(expanded)
}

/// The host path of `path` in `root` with every symlink followed inside
/// the root, as `COPY --from` follows a source that is a symlink.
fn resolve_in(root: &Path, path: &str) -> std::result::Result<PathBuf, String> {
    resolve_within(root, path, true)
}

/// Creates the container directory `dir` below `root` where missing,
/// refusing to go through a symlink (it could point out of the root).
fn make_dirs(root: &Path, dir: &str, uid: u32, gid: u32) -> std::result::Result<(), String> {
    let mut prefix = String::new();
    for component in dir.split('/').filter(|part| !part.is_empty() && *part != ".") {
        prefix.push('/');
        prefix.push_str(component);
        let host = resolve_within(root, &prefix, true)?;
        match fs::symlink_metadata(&host) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(format!("`{prefix}` is not a directory")),
            Err(_) => {
                fs::create_dir(&host).map_err(|error| error.to_string())?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755)).map_err(|error| error.to_string())?;
                std::os::unix::fs::chown(&host, Some(uid), Some(gid)).map_err(|error| error.to_string())?;
            }
        }
    }
    Ok(())
}

/// Adds to `builder` what differs between `before` and `after` below the
/// container path `dest` (`""` for the root): entries new or changed in
/// type, mode, owner, contents or link target, and whiteouts for entries
/// gone. Modification times are not compared: they never reach a layer.
fn diff_dir(
    before: &Path,
    after: &Path,
    dest: &str,
    skip: &[String],
    builder: &mut LayerBuilder,
    ids: Ids,
) -> Result<bool> {
    let mut changed_any = false;
    let after_names = sorted_names(after)?;
    let before_names: BTreeSet<String> = match fs::symlink_metadata(before) {
        Ok(metadata) if metadata.is_dir() => sorted_names(before)?.into_iter().collect(),
        _ => BTreeSet::new(),
    };
    for name in before_names.iter().filter(|name| !after_names.contains(name)) {
        let path = format!("{dest}/{name}");
        if NOT_IN_LAYERS.contains(&path.as_str()) || skip.contains(&path) {
            continue;
        }
        let meta = EntryMeta { mode: Some(0o644), uid: 0, gid: 0, mtime: None };
        let body = Body::File { source: FileSource::Bytes(Vec::new()), executable: false };
        builder.add(&format!("{dest}/.wh.{name}"), meta, body)?;
        changed_any = true;
    }
    for name in &after_names {
        let path = format!("{dest}/{name}");
        if NOT_IN_LAYERS.contains(&path.as_str()) || skip.contains(&path) {
            continue;
        }
        let after_path = after.join(name);
        let before_path = before.join(name);
        let now = fs::symlink_metadata(&after_path).map_err(|error| read_error(&path, error))?;
        let then = before_names.contains(name).then(|| fs::symlink_metadata(&before_path).ok()).flatten();
        let same_type = then.as_ref().is_some_and(|then| then.file_type() == now.file_type());
        let same_meta = then.as_ref().is_some_and(|then| {
            same_type
                && then.mode() & 0o7777 == now.mode() & 0o7777
                && then.uid() == now.uid()
                && then.gid() == now.gid()
        });
        let file_type = now.file_type();
        if file_type.is_dir() {
            // A directory that replaced something else holds only new
            // entries: compare against nothing.
            let lower = if same_type { before_path } else { PathBuf::from("/nonexistent/berth") };
            let children = diff_dir(&lower, &after_path, &path, skip, builder, ids)?;
            // A changed child brings its directory with its real mode and
            // owner (not the packer's default for a missing parent).
            if !same_meta || children {
                add_entry(builder, &path, &after_path, &now, ids)?;
                changed_any = true;
            }
        } else if file_type.is_file() {
            let changed = !same_meta
                || then.as_ref().is_some_and(|then| then.len() != now.len())
                || !same_contents(&before_path, &after_path)?;
            if changed {
                add_entry(builder, &path, &after_path, &now, ids)?;
                changed_any = true;
            }
        } else if file_type.is_symlink() {
            let changed = !same_meta || fs::read_link(&before_path).ok() != fs::read_link(&after_path).ok();
            if changed {
                add_entry(builder, &path, &after_path, &now, ids)?;
                changed_any = true;
            }
        }
        // Sockets, fifos and device nodes do not belong in a layer.
    }
    Ok(changed_any)
}

fn add_entry(builder: &mut LayerBuilder, path: &str, host: &Path, metadata: &fs::Metadata, ids: Ids) -> Result<()> {
    let meta = EntryMeta {
        mode: Some(metadata.mode() & 0o7777),
        uid: ids.inside(metadata.uid()),
        gid: ids.inside(metadata.gid()),
        mtime: None,
    };
    let file_type = metadata.file_type();
    let body = if file_type.is_dir() {
        Body::Directory
    } else if file_type.is_symlink() {
        let target = fs::read_link(host).map_err(|error| read_error(path, error))?;
        let Some(target) = target.to_str() else {
            return Err(Error::user(format!("The target of the symlink `{path}` is not UTF-8")));
        };
        Body::Symlink { target: target.to_owned() }
    } else {
        Body::File {
            source: FileSource::Path { path: host.to_path_buf(), size: metadata.len(), origin: Origin::Owned },
            executable: metadata.mode() & 0o111 != 0,
        }
    };
    builder.add(path, meta, body)?;
    Ok(())
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let shown = dir.display().to_string();
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|error| read_error(&shown, error))? {
        let entry = entry.map_err(|error| read_error(&shown, error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(Error::user(format!("A file name under `{shown}` is not UTF-8")));
        };
        names.push(name.to_owned());
    }
    // Sorted so the layer does not depend on readdir order.
    names.sort();
    Ok(names)
}

/// Whether two regular files hold the same bytes (a missing one differs).
fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    match (fs::read(a), fs::read(b)) {
        (Ok(a), Ok(b)) => Ok(a == b),
        _ => Ok(false),
    }
}

fn read_error(path: &str, error: std::io::Error) -> Error {
    Error::environment(format!("Cannot read `{path}` after the `RUN`: {error}"))
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(77).collect::<String>())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cas;

    #[test]
    fn diff_adds_changes_and_whiteouts_sorted() {
        let before = tempfile::tempdir().unwrap();
        let after = tempfile::tempdir().unwrap();
        for root in [before.path(), after.path()] {
            fs::create_dir_all(root.join("etc/keep")).unwrap();
            fs::write(root.join("etc/same"), "same").unwrap();
            fs::write(root.join("etc/changed"), "old").unwrap();
            fs::write(root.join("gone"), "x").unwrap();
            fs::create_dir_all(root.join("proc")).unwrap();
        }
        fs::write(after.path().join("etc/changed"), "new").unwrap();
        fs::remove_file(after.path().join("gone")).unwrap();
        fs::write(after.path().join("etc/keep/new"), "n").unwrap();
        fs::write(after.path().join("proc/ignored"), "n").unwrap();
        let mut builder = LayerBuilder::new(0);
        diff_dir(before.path(), after.path(), "", &[], &mut builder, Ids { shift: 0 }).unwrap();
        let cas_dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(cas_dir.path()).unwrap();
        let packed = builder.write_to_cas(&cas, Compression::None, 1).unwrap();
        let bytes = cas.read_verified(&packed.blob.digest).unwrap();
        let mut paths = Vec::new();
        let mut archive = tar_paths(&bytes);
        paths.append(&mut archive);
        assert_eq!(paths, [".wh.gone", "etc", "etc/changed", "etc/keep", "etc/keep/new"]);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", root.path().join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        let resolve = |path: &str, follow| resolve_within(root.path(), path, follow).unwrap();
        assert_eq!(resolve("/evil/passwd", true), root.path().join("etc/passwd"));
        assert_eq!(resolve("/up/x", true), root.path().join("x"));
        assert_eq!(resolve("/evil", false), root.path().join("evil"));
        assert!(resolve_within(root.path(), "/loop/x", true).is_err());
        make_dirs(root.path(), "/evil/made", 0, 0).unwrap();
        assert!(root.path().join("etc/made").is_dir());
    }

    /// The entry paths of an uncompressed tar.
    fn tar_paths(bytes: &[u8]) -> Vec<String> {
        let mut paths = Vec::new();
        let mut offset = 0;
        while offset + 512 <= bytes.len() && bytes[offset] != 0 {
            let header = &bytes[offset..offset + 512];
            let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
            let name = String::from_utf8_lossy(&header[..name_end]).to_string();
            let size_text = String::from_utf8_lossy(&header[124..136]).trim_matches(char::from(0)).trim().to_string();
            let size = u64::from_str_radix(&size_text, 8).unwrap_or(0) as usize;
            paths.push(name);
            offset += 512 + size.div_ceil(512) * 512;
        }
        paths
    }
}
