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

/// The hint of a step that timed out, inside or outside its container.
const RAISE_TIMEOUT: &str = "raise `timeout` if the step needs longer";

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

impl BaseConfig {
    /// What the key holds of it: the blob's digest, or where it comes from.
    pub fn param(&self) -> serde_json::Value {
        match self {
            BaseConfig::Action(_) => serde_json::json!("input"),
            BaseConfig::Blob(blob) => serde_json::json!(blob.digest),
            BaseConfig::None => serde_json::Value::Null,
        }
    }

    /// The image action whose output is the first input, if any.
    pub fn action(&self) -> Option<ActionId> {
        match self {
            BaseConfig::Action(id) => Some(*id),
            _ => None,
        }
    }

    /// Reads the config; `image` is the first input's result when it is an
    /// action's.
    pub fn read<'r>(
        &self,
        ctx: &ActionContext<'_>,
        image: impl FnOnce() -> Result<&'r ActionResult>,
    ) -> Result<ImageRuntimeConfig> {
        let blob = match self {
            BaseConfig::Action(_) => ImageOutput::from_result(image()?)?.config,
            BaseConfig::Blob(blob) => *blob,
            BaseConfig::None => return Ok(ImageRuntimeConfig::default()),
        };
        ImageRuntimeConfig::parse(&ctx.read_blob(&blob)?)
    }
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
        CanonicalJson::of(&serde_json::json!({
            "spec": self.spec,
            "base_config": self.base_config.param(),
            "base_layers": self.base_layers.len(),
            "packages": self.packages.len(),
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.base_config
            .action()
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
        if !matches!(self.base_config, BaseConfig::None) {
            config.check_diff_ids(&extracted[..self.base_layers.len().min(extracted.len())])?;
        }
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
                "Step `{}` timed out after {}s; its container was killed and deleted{}",
                self.describe(),
                self.spec.timeout_secs,
                stderr_tail(&outcome.stderr),
            ))
            .with_hint(RAISE_TIMEOUT));
        }
        if outcome.exit_code != 0 {
            let error = Error::user(format!(
                "Step `{}` failed with exit code {}{}",
                self.describe(),
                outcome.exit_code,
                stderr_tail(&outcome.stderr),
            ));
            return Err(match runtime.failure_hint() {
                Some(hint) => error.with_hint(hint),
                None => error,
            });
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
        let config = self.base_config.read(ctx, &mut next)?;
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
                "Step `{}` timed out after {}s while {stage}",
                self.describe(),
                self.spec.timeout_secs,
            ))
            .with_hint(RAISE_TIMEOUT),
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

/// The last lines of a failed process's stderr, for its error.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
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
    use std::fs;
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::sync::{mpsc, Arc, Mutex};

    use super::*;
    use crate::actions::{check_deadline, ContainerRoot, ContainerRuntime, ExecutionContext, Outcome};
    use crate::cache::{Cas, Digest};
    use crate::error::ErrorKind;
    use crate::oci::deb::{read_data_entries, DebEntryKind};
    use crate::oci::{decoder, ExtractedLayer, LayerStore};

    type Step = dyn Fn(&Process, &Path) -> Outcome + Send + Sync;

    /// A container runtime without containers or root: a layer blob is
    /// `path=contents` lines, extracted into the layer store and stacked by
    /// copying, lowest layer first; the "process" is a closure that reads
    /// and writes the stacked root. It keeps the deadline as runc does:
    /// checked around each stage, and a process still running at the
    /// deadline is abandoned as timed out.
    struct FakeRuntime {
        step: Arc<Step>,
        /// Extraction time per layer.
        extract_delay: Duration,
        /// The digests extracted, in the order asked for.
        extracted: Mutex<Vec<Digest>>,
        /// The processes run.
        ran: Mutex<Vec<Process>>,
    }

    impl FakeRuntime {
        fn new(step: impl Fn(&Process, &Path) -> Outcome + Send + Sync + 'static) -> FakeRuntime {
            FakeRuntime {
                step: Arc::new(step),
                extract_delay: Duration::ZERO,
                extracted: Mutex::default(),
                ran: Mutex::default(),
            }
        }
    }

    impl std::fmt::Debug for FakeRuntime {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("FakeRuntime")
        }
    }

    #[derive(Debug)]
    struct FakeRoot(PathBuf);

    impl ContainerRoot for FakeRoot {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    impl ContainerRuntime for FakeRuntime {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn check(&self) -> Result<(), RuntimeError> {
            Ok(())
        }

        fn extract(
            &self,
            store: &LayerStore,
            cas: &Cas,
            digests: &[Digest],
            deadline: Option<Instant>,
        ) -> Result<Vec<ExtractedLayer>, RuntimeError> {
            let mut layers = Vec::new();
            for digest in digests {
                check_deadline(deadline, "extracting the base layers")?;
                std::thread::sleep(self.extract_delay);
                let text = String::from_utf8(cas.read_verified(digest).map_err(Error::from)?).unwrap();
                let root = store.dir().join(digest.hex()).join("root");
                for line in text.lines() {
                    let (path, contents) = line.split_once('=').unwrap();
                    let path = root.join(path.trim_start_matches('/'));
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, contents).unwrap();
                }
                fs::create_dir_all(&root).unwrap();
                self.extracted.lock().unwrap().push(*digest);
                layers.push(ExtractedLayer { digest: *digest, diff_id: *digest, opaque_root: false, tree: None, root });
            }
            check_deadline(deadline, "extracting the base layers")?;
            Ok(layers)
        }

        fn stack(
            &self,
            layers: &[ExtractedLayer],
            dir: &Path,
            deadline: Option<Instant>,
        ) -> Result<Box<dyn ContainerRoot>, RuntimeError> {
            check_deadline(deadline, "stacking the root filesystem")?;
            let merged = dir.join("merged");
            fs::create_dir_all(&merged).unwrap();
            for layer in layers {
                copy_tree(&layer.root, &merged);
            }
            Ok(Box::new(FakeRoot(merged)))
        }

        fn run(
            &self,
            process: &Process,
            root: &Path,
            _bundle: &Path,
            _stdio: Stdio,
            deadline: Option<Instant>,
        ) -> Result<Outcome, RuntimeError> {
            self.ran.lock().unwrap().push(process.clone());
            let (step, process, root) = (self.step.clone(), process.clone(), root.to_path_buf());
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = sender.send(step(&process, &root));
            });
            let waited = match deadline {
                Some(deadline) => receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok(),
                None => receiver.recv().ok(),
            };
            Ok(waited.unwrap_or(Outcome {
                exit_code: 137,
                timed_out: true,
                stdout: Vec::new(),
                stderr: b"still running".to_vec(),
            }))
        }
    }

    fn success() -> Outcome {
        Outcome { exit_code: 0, timed_out: false, stdout: Vec::new(), stderr: Vec::new() }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn spec(command: &[&str], outputs: &[&str]) -> RunStepSpec {
        RunStepSpec { command: strings(command), outputs: strings(outputs), timeout_secs: 60, ..RunStepSpec::default() }
    }

    /// A cache, the fake runtime, and fake layers as the inputs of a step.
    struct Fixture {
        dir: tempfile::TempDir,
        cas: Cas,
        runtime: Arc<FakeRuntime>,
    }

    impl Fixture {
        fn new(runtime: FakeRuntime) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let cas = Cas::open(dir.path()).unwrap();
            Fixture { dir, cas, runtime: Arc::new(runtime) }
        }

        /// A layer of `path=contents` lines, as a `fetch_blob` result.
        fn layer(&self, lines: &str) -> ActionResult {
            let blob = self.cas.put_bytes(lines.as_bytes()).unwrap();
            LayerOutput { blob, media_type: "test/lines".into(), diff_id: None }.to_result()
        }

        fn blob_count(&self) -> usize {
            fs::read_dir(self.dir.path().join("cas/sha256")).unwrap().count()
        }

        /// Runs `step` as the scheduler would: its declared inputs, in
        /// order, resolved to `results` (indexed by action id).
        fn run(&self, step: &RunStep, results: &[&ActionResult]) -> Result<ActionResult> {
            let exec = ExecutionContext::new(self.cas.clone(), LayerStore::new(self.dir.path()))
                .with_runtime(self.runtime.clone());
            let scratch = tempfile::tempdir_in(self.dir.path()).unwrap();
            let inputs = step
                .inputs()
                .into_iter()
                .map(|input| match input {
                    Input::Action(id) => ResolvedInput::Action(results[id.0]),
                    Input::Source(path) => panic!("a step has no source input: {}", path.display()),
                })
                .collect();
            step.execute(&ActionContext::new(&exec, inputs, scratch.path()))
        }

        /// The entries of the layer a step produced: path, mode, and the
        /// file contents or the link target.
        fn entries(&self, result: &ActionResult) -> Vec<(String, u32, String)> {
            let layer = LayerOutput::from_result(result).unwrap();
            let blob = self.cas.read_verified(&layer.blob.digest).unwrap();
            let mut tar = Vec::new();
            decoder(&blob[..], Compression::Gzip).unwrap().read_to_end(&mut tar).unwrap();
            assert_eq!(layer.diff_id, Some(Digest::of(&tar)));
            let body = |kind: &DebEntryKind| match kind {
                DebEntryKind::File(bytes) => String::from_utf8(bytes.clone()).unwrap(),
                DebEntryKind::Directory => String::new(),
                DebEntryKind::Symlink(target) | DebEntryKind::HardLink(target) => target.clone(),
            };
            let entries = read_data_entries("layer", &tar).unwrap();
            entries.iter().map(|entry| (entry.path.clone(), entry.mode, body(&entry.kind))).collect()
        }
    }

    fn step(base_layers: usize, packages: usize, spec: RunStepSpec) -> RunStep {
        RunStep {
            base_config: BaseConfig::None,
            base_layers: (0..base_layers).map(ActionId).collect(),
            packages: (base_layers..base_layers + packages).map(ActionId).collect(),
            spec,
        }
    }

    fn read(root: &Path, path: &str) -> String {
        fs::read_to_string(root.join(path)).unwrap_or_else(|_| "-".to_owned())
    }

    #[test]
    fn base_layers_then_packages_are_staged_in_order() {
        let fixture = Fixture::new(FakeRuntime::new(|process, root| {
            let seen = [read(root, "etc/motd"), read(root, "bin/tool"), read(root, "src/main.txt")].join("|");
            fs::create_dir_all(root.join("out")).unwrap();
            fs::write(root.join("out/seen"), format!("{seen}|{}|{}", process.cwd, process.uid)).unwrap();
            success()
        }));
        let base = [
            fixture.layer("/etc/motd=base\n/bin/tool=v1\n/etc/passwd=app:x:1000:1001::/app:/bin/sh"),
            fixture.layer("/etc/motd=base, patched"),
        ];
        let packages = [fixture.layer("/src/main.txt=package source"), fixture.layer("/bin/tool=v2")];
        // The fake runtime's diff_id of a layer is its digest.
        let diff_ids: Vec<String> =
            base.iter().map(|layer| LayerOutput::from_result(layer).unwrap().blob.digest.to_string()).collect();
        let config = serde_json::json!({
            "config": {"User": "app", "WorkingDir": "/w", "Env": ["A=1"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = fixture.cas.put_bytes(config.to_string().as_bytes()).unwrap();
        let step = RunStep {
            base_config: BaseConfig::Blob(config),
            spec: RunStepSpec { env: strings(&["B=2"]), ..spec(&["true"], &["/out"]) },
            ..step(2, 2, RunStepSpec::default())
        };
        let inputs: Vec<&ActionResult> = base.iter().chain(&packages).collect();
        let result = fixture.run(&step, &inputs).unwrap();
        assert_eq!(
            fixture.entries(&result),
            [
                ("/out".to_owned(), 0o755, String::new()),
                ("/out/seen".to_owned(), 0o644, "base, patched|v2|package source|/w|1000".to_owned()),
            ]
        );
        let order: Vec<Digest> =
            inputs.iter().map(|result| LayerOutput::from_result(result).unwrap().blob.digest).collect();
        assert_eq!(*fixture.runtime.extracted.lock().unwrap(), order, "base layers first, then packages");
        let ran = fixture.runtime.ran.lock().unwrap();
        assert_eq!((ran[0].uid, ran[0].gid), (1000, 1001), "the image's user, from its own /etc/passwd");
        assert_eq!(ran[0].env, [format!("PATH={}", crate::actions::DEFAULT_PATH), "A=1".into(), "B=2".into()]);
        assert_eq!(ran[0].args[..2], ["/bin/sh", "-c"]);

        // A config whose diff_ids do not describe the layers is refused
        // before anything runs.
        let lying = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff_ids[1], diff_ids[0]]}});
        let lying = fixture.cas.put_bytes(lying.to_string().as_bytes()).unwrap();
        drop(ran);
        let step = RunStep { base_config: BaseConfig::Blob(lying), ..step };
        let error = fixture.run(&step, &inputs).unwrap_err();
        assert!(error.message.contains("unpacks to diff_id"), "{error}");
        assert_eq!(fixture.runtime.ran.lock().unwrap().len(), 1, "the refused step ran nothing");
    }

    #[test]
    fn outputs_minus_exclude_are_captured_with_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let fixture = Fixture::new(FakeRuntime::new(|_, root| {
            for dir in ["out/sub", "out/cache", "elsewhere"] {
                fs::create_dir_all(root.join(dir)).unwrap();
            }
            for (path, contents) in [
                ("out/run", "#!/bin/sh"),
                ("out/a.o", "obj"),
                ("out/cache/junk", "j"),
                ("out/sub/c", "c"),
                ("elsewhere/x", "x"),
            ] {
                fs::write(root.join(path), contents).unwrap();
            }
            fs::set_permissions(root.join("out/run"), fs::Permissions::from_mode(0o751)).unwrap();
            std::os::unix::fs::symlink("run", root.join("out/link")).unwrap();
            success()
        }));
        let base = fixture.layer("/etc/motd=base");
        let spec = RunStepSpec {
            exclude: strings(&["*.o", "/out/cache"]),
            source_date_epoch: 7,
            ..spec(&["make"], &["/out"])
        };
        let result = fixture.run(&step(1, 0, spec.clone()), &[&base]).unwrap();
        let paths: Vec<(String, u32, String)> = fixture.entries(&result);
        assert_eq!(
            paths,
            [
                ("/out".to_owned(), 0o755, String::new()),
                ("/out/link".to_owned(), 0o777, "run".to_owned()),
                ("/out/run".to_owned(), 0o751, "#!/bin/sh".to_owned()),
                ("/out/sub".to_owned(), 0o755, String::new()),
                ("/out/sub/c".to_owned(), 0o644, "c".to_owned()),
            ]
        );
        // Same inputs, same layer.
        assert_eq!(fixture.run(&step(1, 0, spec), &[&base]).unwrap(), result);

        let missing = RunStepSpec { outputs: strings(&["/out", "/never"]), ..RunStepSpec::default() };
        let missing = RunStepSpec { command: strings(&["make"]), timeout_secs: 60, ..missing };
        let error = fixture.run(&step(1, 0, missing), &[&base]).unwrap_err();
        assert_eq!(error.message, "Output `/never` was not created by the step");
    }

    #[test]
    fn a_failing_step_names_its_exit_code_and_stderr_tail_and_stores_nothing() {
        let fixture = Fixture::new(FakeRuntime::new(|_, root| {
            fs::write(root.join("partial"), "half").unwrap();
            Outcome {
                exit_code: 7,
                timed_out: false,
                stdout: b"ignored".to_vec(),
                stderr: b"compiling\ncompiler says no\n".to_vec(),
            }
        }));
        let base = fixture.layer("/etc/motd=base");
        let before = fixture.blob_count();
        let error = fixture.run(&step(1, 0, spec(&["make", "make install"], &["/partial"])), &[&base]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::User);
        assert_eq!(
            error.message,
            "Step `make; make install` failed with exit code 7\nstderr:\n  compiling\n  compiler says no"
        );
        assert_eq!(fixture.blob_count(), before, "a failing step writes no blob");
    }

    #[test]
    fn a_step_past_its_timeout_fails_whichever_stage_it_is_in() {
        // The process outlives the deadline.
        let fixture = Fixture::new(FakeRuntime::new(|_, _| {
            std::thread::sleep(Duration::from_secs(3));
            success()
        }));
        let base = fixture.layer("/etc/motd=base");
        let slow = RunStepSpec { timeout_secs: 1, ..spec(&["sleep 3"], &["/out"]) };
        let error = fixture.run(&step(1, 0, slow.clone()), &[&base]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::User);
        assert_eq!(
            error.to_string(),
            "Step `sleep 3` timed out after 1s; its container was killed and deleted\nstderr:\n  still running\nhint: raise `timeout` if the step needs longer"
        );

        // Extraction alone takes longer than the whole timeout.
        let runtime = FakeRuntime { extract_delay: Duration::from_millis(1100), ..FakeRuntime::new(|_, _| success()) };
        let fixture = Fixture::new(runtime);
        let base = fixture.layer("/etc/motd=base");
        let error = fixture.run(&step(1, 0, slow), &[&base]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Step `sleep 3` timed out after 1s while extracting the base layers\nhint: raise `timeout` if the step needs longer"
        );
        assert!(fixture.runtime.ran.lock().unwrap().is_empty(), "the process never started");
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
        };
        let args = step.process_args().unwrap();
        let status = std::process::Command::new(&args[0]).args(&args[1..]).output().unwrap();
        assert_eq!(status.status.code(), Some(3));
        assert!(status.stdout.is_empty());
    }
}
