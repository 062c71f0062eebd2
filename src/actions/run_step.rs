//! `run_step`: the action of `oci_build_layer`. It runs `command` (shell
//! lines) or `argv` with runc in the base image's layers plus the staged
//! package layers, then captures `outputs` minus `exclude` from the
//! container's root as a new, reproducible layer.
//!
//! Inputs, in this order: the base image's config (when analysis has it as
//! an action output), the base image's layers lowest first, then the
//! package layers in the order of `packages`. Output: blob `layer`, metadata
//! `diff_id` and `media_type`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::actions::{Action, ActionContext, ActionId, ActionResult, ImageOutput, Input, LayerOutput, ResolvedInput};
use crate::cache::{CanonicalJson, Cas, Digest};
use crate::error::{Error, Result};
use crate::exec::{
    extract_layers, merge_env, resolve_user, Container, ImageRuntimeConfig, Limits, RootFs, Runc, StackMode, StdioMode,
};
use crate::oci::{Body, Compression, EntryMeta, FileSource, LayerBuilder, Origin};

/// Lines of a failing step's stderr shown in the error.
const STDERR_TAIL_LINES: usize = 40;

/// Where the base image's config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseConfig {
    /// The config of an image action's [`ImageOutput`].
    Action(ActionId),
    /// A config blob already in the CAS (a pulled image resolved during
    /// analysis); its digest goes into the key.
    Blob(Digest),
    /// No config (the empty image): root, `/`, default `PATH`.
    None,
}

/// The attributes of `oci_build_layer` that decide the output; all of them
/// go into the action key.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RunStepSpec {
    /// Shell lines run by `/bin/sh -c`, in order, stopping at the first
    /// failure. Ignored when `argv` is set.
    pub command: Vec<String>,
    /// One program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing) the base image's env.
    pub env: Vec<String>,
    /// Absolute paths inside the container captured into the layer.
    pub outputs: Vec<String>,
    /// Globs matched against captured paths and their basenames.
    pub exclude: Vec<String>,
    /// The working directory (default: the base image's, else `/`).
    pub workdir: Option<String>,
    /// Seconds before the container is killed.
    pub timeout_secs: u64,
    /// Share the host's network; default loopback only.
    pub network: bool,
    /// mtime of every entry of the captured layer (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
}

/// How the machine runs steps; not part of the key (it does not change the
/// output of a successful step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStepRuntime {
    /// `runc(path)` from WORKSPACE.star; `None` searches `PATH`.
    pub runc: Option<PathBuf>,
    /// The cache directory (layers are extracted under `<cache>/layers`);
    /// `None` derives it from the CAS location.
    pub cache_dir: Option<PathBuf>,
    pub stack: StackMode,
}

/// The `run_step` action. Analysis supplies the base config, the base
/// image's layer actions (lowest first) and the package layer actions.
#[derive(Debug, Clone)]
pub struct RunStep {
    pub base_config: BaseConfig,
    /// Actions whose output is a [`LayerOutput`] each.
    pub base_layers: Vec<ActionId>,
    /// Actions whose output is a [`LayerOutput`] each, staged over the base.
    pub packages: Vec<ActionId>,
    pub spec: RunStepSpec,
    pub runtime: RunStepRuntime,
}

impl Action for RunStep {
    fn kind(&self) -> &'static str {
        "run_step"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        let base_config = match &self.base_config {
            BaseConfig::Action(_) => serde_json::json!("input"),
            BaseConfig::Blob(digest) => serde_json::json!(digest),
            BaseConfig::None => serde_json::Value::Null,
        };
        CanonicalJson::of(&serde_json::json!({
            "spec": self.spec,
            "base_config": base_config,
            "base_layers": self.base_layers.len(),
            "packages": self.packages.len(),
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        let config = match self.base_config {
            BaseConfig::Action(id) => Some(id),
            _ => None,
        };
        config
            .into_iter()
            .chain(self.base_layers.iter().copied())
            .chain(self.packages.iter().copied())
            .map(Input::Action)
            .collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let (config, layers) = self.resolve_inputs(ctx)?;
        let runc = Runc::locate(self.runtime.runc.as_deref())?;
        let cache_dir = match &self.runtime.cache_dir {
            Some(dir) => dir.clone(),
            None => cache_dir_of(ctx.cas)?,
        };
        let extracted = extract_layers(ctx.cas, &cache_dir, &layers)?;
        let rootfs = RootFs::stack(&extracted, &ctx.scratch.join("rootfs"), self.runtime.stack)?;
        let (uid, gid) = resolve_user(rootfs.merged(), config.user.as_deref())?;
        let container = Container {
            args: self.process_args()?,
            env: merge_env(&config.env, &self.spec.env),
            cwd: self.spec.workdir.clone().or(config.working_dir).unwrap_or_else(|| "/".to_owned()),
            uid,
            gid,
            rootfs: rootfs.merged().to_path_buf(),
            network: self.spec.network,
            limits: Limits::default(),
        };
        let timeout = Duration::from_secs(self.spec.timeout_secs.max(1));
        let outcome = runc.run(&container, &ctx.scratch.join("bundle"), StdioMode::Capture, Some(timeout))?;
        if outcome.timed_out {
            return Err(Error::user(format!(
                "Step `{}` timed out after {}s; its container was killed and deleted{}\nhint: raise `timeout` if the step needs longer",
                self.describe(),
                self.spec.timeout_secs,
                stderr_tail(&outcome.stderr),
            )));
        }
        if let Some(message) = outcome.runtime_error() {
            return Err(Error::environment(format!("runc could not start the step `{}`: {message}", self.describe())));
        }
        if outcome.exit_code != 0 {
            return Err(Error::user(format!(
                "Step `{}` failed with exit code {}{}",
                self.describe(),
                outcome.exit_code,
                stderr_tail(&outcome.stderr),
            )));
        }
        let entries = capture(rootfs.merged(), &self.spec)?;
        let mut builder = LayerBuilder::new(self.spec.source_date_epoch);
        for entry in entries {
            let meta = EntryMeta { mode: Some(entry.mode), uid: entry.uid, gid: entry.gid, mtime: None };
            let body = match entry.body {
                CapturedBody::Directory => Body::Directory,
                CapturedBody::File { source, size } => Body::File {
                    source: FileSource::Path { path: source, size, origin: Origin::Owned },
                    executable: entry.mode & 0o111 != 0,
                },
                CapturedBody::Symlink { target } => Body::Symlink { target },
            };
            builder.add(&entry.path, meta, body)?;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let packed = builder.write_to_cas(ctx.cas, Compression::Gzip, threads)?;
        drop(rootfs);
        Ok(LayerOutput::packed(&packed).to_result())
    }
}

impl RunStep {
    /// The config and the layer digests, from the resolved inputs.
    fn resolve_inputs(&self, ctx: &ActionContext<'_>) -> Result<(ImageRuntimeConfig, Vec<Digest>)> {
        let mut outputs = ctx.inputs.iter().map(|input| match input {
            ResolvedInput::Action(output) => Ok(*output),
            ResolvedInput::Source { path, .. } => {
                Err(Error::internal(format!("`run_step` got a source file input `{}`", path.display())))
            }
        });
        let mut next = || outputs.next().unwrap_or_else(|| Err(Error::internal("`run_step` got too few inputs")));
        let config_blob = match &self.base_config {
            BaseConfig::Action(_) => Some(ImageOutput::from_result(next()?)?.config.digest),
            BaseConfig::Blob(digest) => Some(*digest),
            BaseConfig::None => None,
        };
        let config = match config_blob {
            Some(digest) => ImageRuntimeConfig::parse(&ctx.cas.read_verified(&digest)?)?,
            None => ImageRuntimeConfig::default(),
        };
        let mut layers = Vec::new();
        for _ in 0..self.base_layers.len() + self.packages.len() {
            layers.push(LayerOutput::from_result(next()?)?.blob.digest);
        }
        Ok((config, layers))
    }

    /// `argv`, or the shell lines joined so that the first failing line ends
    /// the script with its own exit code. Each line is checked on its own
    /// line, so a trailing comment cannot swallow the check.
    fn process_args(&self) -> Result<Vec<String>> {
        if !self.spec.argv.is_empty() {
            return Ok(self.spec.argv.clone());
        }
        if self.spec.command.is_empty() {
            return Err(Error::user("`oci_build_layer` needs `command` (shell lines) or `argv`"));
        }
        let mut script = String::new();
        for line in &self.spec.command {
            script.push_str(line);
            script.push_str("\n__berth_status=$?; [ \"$__berth_status\" -eq 0 ] || exit \"$__berth_status\"\n");
        }
        Ok(vec!["/bin/sh".to_owned(), "-c".to_owned(), script])
    }

    fn describe(&self) -> String {
        let words = if self.spec.argv.is_empty() { &self.spec.command } else { &self.spec.argv };
        let text = words.join(if self.spec.argv.is_empty() { "; " } else { " " });
        if text.chars().count() > 80 {
            format!("{}...", text.chars().take(77).collect::<String>())
        } else {
            text
        }
    }
}

/// One entry of the captured layer, as the step left it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Absolute path in the layer.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub body: CapturedBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapturedBody {
    Directory,
    /// A file of the container's root; files sharing an inode stay hard links.
    File {
        source: PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

/// `<cache>` from `<cache>/cas/sha256/<hex>`.
fn cache_dir_of(cas: &Cas) -> Result<PathBuf> {
    cas.path(&Digest::of(b""))
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::internal("the CAS has no parent cache directory"))
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "\n(no output on stderr)".to_owned();
    }
    let skipped = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let mut tail = String::from("\nstderr:");
    if skipped > 0 {
        tail.push_str(&format!("\n  ... ({skipped} lines before)"));
    }
    for line in &lines[skipped..] {
        tail.push_str("\n  ");
        tail.push_str(line);
    }
    tail
}

/// Splits an absolute container path into components; refuses relative
/// paths and `..`.
fn container_components(path: &str) -> Result<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(Error::user(format!("Output `{path}` is not an absolute path\nhint: write it as `/{path}`")));
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(Error::user(format!("Output `{path}` has a `..` component"))),
            _ => components.push(component),
        }
    }
    Ok(components)
}

fn exclude_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob =
            Glob::new(pattern).map_err(|error| Error::user(format!("Bad `exclude` glob `{pattern}`: {error}")))?;
        builder.add(glob);
    }
    builder.build().map_err(|error| Error::user(format!("Bad `exclude` globs: {error}")))
}

/// The entries of the captured layer: every output (with its parent
/// directories) minus what `exclude` matches, sorted by path, owners and
/// modes as the step left them. Reads the root after the container is gone,
/// never following a symlink: an output below a symlink is refused.
pub fn capture(root: &Path, spec: &RunStepSpec) -> Result<Vec<Captured>> {
    let exclude = exclude_set(&spec.exclude)?;
    let excluded = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        exclude.is_match(path) || exclude.is_match(name)
    };
    let mut entries: BTreeMap<String, Captured> = BTreeMap::new();
    for output in &spec.outputs {
        let components = container_components(output)?;
        let Some((name, parents)) = components.split_last() else {
            return Err(Error::user("Output `/` would capture the whole root\nhint: name the directories to capture"));
        };
        let mut host = root.to_path_buf();
        let mut parent_entries = Vec::new();
        for (index, component) in parents.iter().enumerate() {
            host.push(component);
            let shown = format!("/{}", parents[..=index].join("/"));
            let metadata = fs::symlink_metadata(&host).map_err(|_| {
                Error::user(format!("Output `{output}` was not created by the step (`{shown}` does not exist)"))
            })?;
            if metadata.file_type().is_symlink() {
                return Err(Error::user(format!(
                    "Output `{output}` goes through the symlink `{shown}`\nhint: name the path the symlink points to"
                )));
            }
            if !metadata.is_dir() {
                return Err(Error::user(format!("Output `{output}` is below `{shown}`, which is not a directory")));
            }
            parent_entries.push(directory_entry(shown, &metadata));
        }
        host.push(name);
        let metadata = fs::symlink_metadata(&host)
            .map_err(|_| Error::user(format!("Output `{output}` was not created by the step")))?;
        for entry in parent_entries {
            entries.entry(entry.path.clone()).or_insert(entry);
        }
        let dest = format!("/{}", components.join("/"));
        if excluded(&dest) {
            continue;
        }
        add_tree(&host, dest, &metadata, &excluded, &mut entries)?;
    }
    Ok(entries.into_values().collect())
}

fn directory_entry(path: String, metadata: &fs::Metadata) -> Captured {
    Captured {
        path,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        body: CapturedBody::Directory,
    }
}

fn add_tree(
    host: &Path,
    dest: String,
    metadata: &fs::Metadata,
    excluded: &dyn Fn(&str) -> bool,
    entries: &mut BTreeMap<String, Captured>,
) -> Result<()> {
    let file_type = metadata.file_type();
    let body = if file_type.is_dir() {
        CapturedBody::Directory
    } else if file_type.is_file() {
        CapturedBody::File { source: host.to_path_buf(), size: metadata.len() }
    } else if file_type.is_symlink() {
        let target = fs::read_link(host)
            .map_err(|error| Error::environment(format!("Cannot read the symlink `{dest}`: {error}")))?;
        let Some(target) = target.to_str() else {
            return Err(Error::user(format!("The target of the symlink `{dest}` is not UTF-8")));
        };
        CapturedBody::Symlink { target: target.to_owned() }
    } else {
        // Sockets, fifos and device nodes do not belong in a layer.
        return Ok(());
    };
    let is_dir = body == CapturedBody::Directory;
    entries.insert(
        dest.clone(),
        Captured { path: dest.clone(), mode: metadata.mode() & 0o7777, uid: metadata.uid(), gid: metadata.gid(), body },
    );
    if is_dir {
        let read_error = |error| Error::environment(format!("Cannot read the output directory `{dest}`: {error}"));
        let mut children: Vec<_> =
            fs::read_dir(host).map_err(read_error)?.collect::<Result<_, _>>().map_err(read_error)?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let name = child.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::user(format!("A file name under `{dest}` is not UTF-8")));
            };
            let child_dest = format!("{dest}/{name}");
            if excluded(&child_dest) {
                continue;
            }
            let child_host = child.path();
            let child_metadata = fs::symlink_metadata(&child_host)
                .map_err(|error| Error::environment(format!("Cannot read `{child_dest}`: {error}")))?;
            add_tree(&child_host, child_dest, &child_metadata, excluded, entries)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(outputs: &[&str], exclude: &[&str]) -> RunStepSpec {
        RunStepSpec {
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..RunStepSpec::default()
        }
    }

    #[test]
    fn capture_keeps_outputs_minus_exclude_sorted() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::write(out.join("b.txt"), "b").unwrap();
        fs::write(out.join("a.o"), "o").unwrap();
        fs::write(out.join("sub/c"), "c").unwrap();
        fs::write(root.path().join("other"), "x").unwrap();
        let entries = capture(root.path(), &spec(&["/out"], &["*.o"])).unwrap();
        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["/out", "/out/b.txt", "/out/sub", "/out/sub/c"]);
    }

    #[test]
    fn capture_refuses_symlinked_parents_and_missing_outputs() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
        assert!(capture(root.path(), &spec(&["/out/passwd"], &[])).unwrap_err().message.contains("symlink"));
        assert!(capture(root.path(), &spec(&["/missing"], &[])).is_err());
        assert!(capture(root.path(), &spec(&["relative"], &[])).is_err());
        // The symlink itself is captured as a symlink, not followed.
        let entries = capture(root.path(), &spec(&["/out"], &[])).unwrap();
        assert_eq!(entries[0].body, CapturedBody::Symlink { target: "/etc".into() });
    }

    #[test]
    fn shell_lines_stop_at_the_first_failure() {
        let step = RunStep {
            base_config: BaseConfig::None,
            base_layers: vec![],
            packages: vec![],
            spec: RunStepSpec {
                command: vec!["true # comment".into(), "exit 3".into(), "echo never".into()],
                ..Default::default()
            },
            runtime: RunStepRuntime::default(),
        };
        let args = step.process_args().unwrap();
        let status = std::process::Command::new(&args[0]).args(&args[1..]).output().unwrap();
        assert_eq!(status.status.code(), Some(3));
        assert!(status.stdout.is_empty());
    }
}
