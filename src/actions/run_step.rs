//! `run_step`: the action of `oci_build_layer`. It runs `command` (shell
//! lines) or `argv` in a container made of the base image's layers plus the
//! staged package layers, then captures `outputs` minus `exclude` from the
//! container's root as a new, reproducible layer.
//!
//! The action is data: the machine (which runtime, where layers are
//! extracted) comes from the [`ActionContext`]'s container runtime, and one
//! deadline, `timeout` seconds from the start, covers every stage: extracting
//! and stacking the layers, looking up the image's user, running, capturing.
//!
//! Inputs, in this order: the base image (an [`ImageOutput`], for its
//! config, when analysis has it as an action), the base image's layers
//! lowest first, then the package layers in the order of `packages` (each a
//! [`LayerOutput`]). Output: a [`LayerOutput`].

use std::time::{Duration, Instant};

use crate::actions::{
    merge_env, Action, ActionContext, ActionId, ActionResult, CapturedBody, ImageOutput, ImageRuntimeConfig, Input,
    LayerOutput, Process, ResolvedInput, RuntimeError, Stdio,
};
use crate::cache::{BlobRef, CanonicalJson};
use crate::error::{Error, Result};
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
    Blob(BlobRef),
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
    /// Seconds the whole step may take before it fails (its container, if
    /// running, is killed).
    pub timeout_secs: u64,
    /// Share the host's network; default loopback only.
    pub network: bool,
    /// mtime of every entry of the captured layer (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
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
            BaseConfig::Blob(blob) => serde_json::json!(blob.digest),
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
        let deadline = Some(Instant::now() + Duration::from_secs(self.spec.timeout_secs.max(1)));
        let runtime = ctx.runtime()?;
        // Before any work: a machine that cannot run containers says so.
        runtime.check()?;
        let args = self.process_args()?;
        let (config, layers) = self.resolve_inputs(ctx)?;
        let failed = |error: RuntimeError| self.runtime_error(runtime.name(), error);
        let digests =
            layers.iter().map(|layer| ctx.blob_path(layer).map(|_| layer.digest)).collect::<Result<Vec<_>, _>>()?;
        let extracted = runtime.extract(ctx.layers(), ctx.cas(), &digests, deadline).map_err(failed)?;
        let root = runtime.stack(&extracted, &ctx.scratch.join("rootfs"), deadline).map_err(failed)?;
        let (uid, gid) = runtime.resolve_user(root.path(), config.user.as_deref(), deadline).map_err(failed)?;
        let process = Process {
            args,
            env: merge_env(&config.env, &self.spec.env),
            cwd: self.spec.workdir.clone().or(config.working_dir).unwrap_or_else(|| "/".to_owned()),
            uid,
            gid,
            network: self.spec.network,
        };
        let bundle = ctx.scratch.join("bundle");
        let outcome = runtime.run(&process, root.path(), &bundle, Stdio::Capture, deadline).map_err(failed)?;
        if outcome.timed_out {
            return Err(Error::user(format!(
                "Step `{}` timed out after {}s; its container was killed and deleted{}\nhint: raise `timeout` if the step needs longer",
                self.describe(),
                self.spec.timeout_secs,
                stderr_tail(&outcome.stderr),
            )));
        }
        if outcome.exit_code != 0 {
            return Err(Error::user(format!(
                "Step `{}` failed with exit code {}{}",
                self.describe(),
                outcome.exit_code,
                stderr_tail(&outcome.stderr),
            )));
        }
        let entries = runtime.capture(root.path(), &self.spec.outputs, &self.spec.exclude, deadline).map_err(failed)?;
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
        let packed = builder.write_to_cas(ctx.cas(), Compression::Gzip, threads)?;
        drop(root);
        Ok(LayerOutput::packed(&packed).to_result())
    }
}

impl RunStep {
    /// The config and the layer blobs (base first, then packages), from the
    /// resolved inputs.
    fn resolve_inputs(&self, ctx: &ActionContext<'_>) -> Result<(ImageRuntimeConfig, Vec<BlobRef>)> {
        let mut outputs = ctx.inputs.iter().map(|input| match input {
            ResolvedInput::Action(output) => Ok(*output),
            ResolvedInput::Source { path, .. } => {
                Err(Error::internal(format!("`run_step` got a source file input `{}`", path.display())))
            }
        });
        let mut next = || outputs.next().unwrap_or_else(|| Err(Error::internal("`run_step` got too few inputs")));
        let config_blob = match &self.base_config {
            BaseConfig::Action(_) => Some(ImageOutput::from_result(next()?)?.config),
            BaseConfig::Blob(blob) => Some(*blob),
            BaseConfig::None => None,
        };
        let config = match config_blob {
            Some(blob) => ImageRuntimeConfig::parse(&ctx.read_blob(&blob)?)?,
            None => ImageRuntimeConfig::default(),
        };
        let mut layers = Vec::new();
        for _ in 0..self.base_layers.len() + self.packages.len() {
            layers.push(LayerOutput::from_result(next()?)?.blob);
        }
        Ok((config, layers))
    }

    /// A runtime failure as the step's error: a passed deadline is the
    /// step's timeout.
    fn runtime_error(&self, runtime: &str, error: RuntimeError) -> Error {
        match error {
            RuntimeError::DeadlinePassed { stage } => Error::user(format!(
                "Step `{}` timed out after {}s while {stage}\nhint: raise `timeout` if the step needs longer",
                self.describe(),
                self.spec.timeout_secs,
            )),
            RuntimeError::Start { message, .. } => {
                Error::environment(format!("{runtime} could not start the step `{}`: {message}", self.describe()))
            }
            RuntimeError::Failed(error) => error,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let args = step.process_args().unwrap();
        let status = std::process::Command::new(&args[0]).args(&args[1..]).output().unwrap();
        assert_eq!(status.status.code(), Some(3));
        assert!(status.stdout.is_empty());
    }
}
