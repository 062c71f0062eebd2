//! `berth run LABEL [-- ARG...]`: runs an image with runc; pushes an
//! `oci_push` target and loads an `oci_load` target, as `bazel run` does.

use std::time::Duration;

use clap::Args;

use crate::analysis::{ImageInfo, IndexInfo, Provider, RunAs};
use crate::cache::{Cas, Digest};
use crate::cli::export::{export_root, ArchiveFormat};
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exec::{run_image, RunImageRequest};
use crate::graph::RuleKind;
use crate::oci::{media_types, ImageRoot, Index, Manifest, Platform};
use crate::registry::{platform_satisfies, BlobSources, ImageRef, PushRequest};
use crate::session::{Session, TargetOutput};
use crate::workspace::{Label, Pattern};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run
    pub label: String,
    /// Set an environment variable in the container (KEY=VALUE)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Give the container the host's network (default: loopback only)
    #[arg(long)]
    pub network: bool,
    /// Kill the container and fail after this many seconds (covers
    /// extracting and stacking the image too)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Arguments that replace the image's `cmd`
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `berth run`'s flags, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub label: Label,
    pub env: Vec<String>,
    pub network: bool,
    pub args: Vec<String>,
    pub timeout: Option<Duration>,
}

impl RunRequest {
    /// Checks the flags; `package` is the package of the current directory
    /// (for relative labels such as `:image`).
    pub fn new(args: RunArgs, package: &str) -> Result<RunRequest> {
        let label = Label::parse(&args.label, package)?;
        for entry in &args.env {
            if entry.split_once('=').is_none_or(|(key, _)| key.is_empty()) {
                return Err(Error::user(format!("`--env {entry}` is not KEY=VALUE"))
                    .with_hint(format!("write it as `--env {entry}=value`")));
            }
        }
        if args.timeout == Some(0) {
            return Err(Error::user("`--timeout 0` would kill the container before it starts")
                .with_hint("give a number of seconds of at least 1"));
        }
        let timeout = args.timeout.map(Duration::from_secs);
        Ok(RunRequest { label, env: args.env, network: args.network, args: args.args, timeout })
    }
}

pub fn run(args: RunArgs, global: &GlobalArgs) -> Result<i32> {
    let reporter = global.reporter();
    let session = global.session(&reporter)?;
    let request = RunRequest::new(args, &session.current_package())?;
    if let Some(code) = run_push_or_load(&session, &request, global)? {
        return Ok(code);
    }
    // Before any build work: a machine that cannot run containers says so
    // at once (exit 3).
    let context = session.execution_context();
    context.runtime()?.check()?;
    let (_, output) = session.build_label(&request.label.to_string(), true)?;
    let root = output.root().ok_or_else(|| {
        Error::user(format!("`{}` is a layer, not an image", request.label))
            .with_hint("run an `oci_image_build` target")
    })?;
    let cas = &session.cache.cas;
    let image = host_image(cas, root, &request.label)?;
    let config = cas.read_verified(&image.config)?;
    let code = run_image(
        &context,
        &RunImageRequest {
            cache_dir: session.cache.dir(),
            config: &config,
            layers: &image.layers,
            args: request.args,
            env: request.env,
            network: request.network,
            timeout: request.timeout,
        },
    )?;
    Ok(code)
}

/// rules_oci's `oci_push` and `oci_load` targets, which `berth run` pushes
/// or loads as `bazel run` does: the exit code, or `None` for a target to
/// run as a container. Only the target's kind is read before building, so
/// a plain image still reaches the runc check first.
fn run_push_or_load(session: &Session<'_>, request: &RunRequest, global: &GlobalArgs) -> Result<Option<i32>> {
    let graph = crate::frontend::load(&session.workspace, &[Pattern::Target(request.label.clone())])?;
    let kind = graph.target(&request.label).map(|target| target.kind());
    drop(graph);
    let label = request.label.to_string();
    match kind {
        Some(RuleKind::OciPush) => {
            if !request.args.is_empty() || !request.env.is_empty() || request.network {
                return Err(Error::user(format!("`{label}` is an `oci_push` target: it takes no arguments or flags"))
                    .with_hint("set `repository` and `remote_tags` on the target, or use `berth push --tag`"));
            }
            // Base layers stay in their registry: the push mounts them.
            let (built, output) = session.build_label(&label, false)?;
            let (root, repository, tags) = match output {
                TargetOutput::Image { root, repository, tags } | TargetOutput::Index { root, repository, tags } => {
                    (root, repository, tags)
                }
                TargetOutput::Layer { .. } => return Err(Error::internal(format!("`{label}` built no image"))),
            };
            let repository =
                repository.ok_or_else(|| Error::internal(format!("`oci_push` target `{label}` has no repository")))?;
            let mut sources = BlobSources::new();
            for pulled in &built.analysis.pulled {
                sources.add_image(pulled);
            }
            let destination = ImageRef::parse(&repository)?;
            let request = PushRequest { root: root.blob, media_type: root.media_type, destination, tags, sources };
            // The session's client: the workspace's `registry(...)` settings and `--offline`.
            let outcome = session.execution_context().registry()?.push(&session.cache.cas, &request)?;
            if !global.quiet {
                eprintln!(
                    "Pushed {repository}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
                    outcome.uploaded_blobs, outcome.uploaded_bytes, outcome.mounted_blobs, outcome.existing_blobs
                );
            }
            let mut stdout = Stdout::lock();
            stdout.print(format_args!("{}\n", outcome.digest))?;
            stdout.flush()?;
            Ok(Some(0))
        }
        Some(RuleKind::OciLoad) => {
            let (built, output) = session.build_label(&label, true)?;
            let repo_tags = match built.provider(&request.label) {
                Some(Provider::Image(ImageInfo { run: RunAs::Load { repo_tags }, .. }))
                | Some(Provider::Index(IndexInfo { run: RunAs::Load { repo_tags }, .. })) => repo_tags.clone(),
                _ => return Err(Error::internal(format!("`{label}` is not a load target after analysis"))),
            };
            let root = output.root().ok_or_else(|| Error::internal(format!("`{label}` built no image")))?;
            let names = if repo_tags.is_empty() { vec![default_name(&request.label)] } else { repo_tags };
            load_into_engine(&session.cache.cas, root, &names, &request.args).map(Some)
        }
        _ => Ok(None),
    }
}

/// The name `oci_load` gives an image without `repo_tags`: its label as a
/// repository, tag `latest`.
fn default_name(label: &Label) -> String {
    let path: String = label
        .path()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-') { c } else { '-' })
        .collect();
    format!("{path}:latest")
}

/// Writes the image as a docker-archive and streams it into `docker load`
/// (or `podman load` where there is no `docker`); the loader's exit code.
/// `extra` arguments go to the loader (`berth run //pkg:load -- --quiet`).
fn load_into_engine(cas: &Cas, root: &ImageRoot, names: &[String], extra: &[String]) -> Result<i32> {
    let loader = ["docker", "podman"].into_iter().find(|program| on_path(program)).ok_or_else(|| {
        Error::environment("Neither `docker` nor `podman` is on `PATH` to load the image into").with_hint(
            "install Docker or Podman, or export the archive: `berth export LABEL --format docker-archive -o FILE`",
        )
    })?;
    let dir = tempfile::tempdir()
        .map_err(|error| Error::environment(format!("Cannot create a temporary directory: {error}")))?;
    let archive = dir.path().join("image.tar");
    export_root(cas, root.blob, ArchiveFormat::DockerArchive, names, &archive)?;
    let file = std::fs::File::open(&archive)
        .map_err(|error| Error::environment(format!("Cannot read `{}`: {error}", archive.display())))?;
    let status = std::process::Command::new(loader)
        .arg("load")
        .args(extra)
        .stdin(file)
        .status()
        .map_err(|error| Error::environment(format!("Cannot start `{loader} load`: {error}")))?;
    match status.code() {
        Some(0) => Ok(0),
        Some(code) => Err(Error::environment(format!("`{loader} load` exited with {code}"))
            .with_hint(format!("is the {loader} daemon running and may this user reach it?"))),
        None => Err(Error::environment(format!("`{loader} load` was killed by a signal"))),
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The config and layers of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// The image to run: the root itself, or the host's entry of an index.
pub(crate) fn host_image(cas: &Cas, root: &ImageRoot, label: &Label) -> Result<BuiltImage> {
    let mut descriptor_digest = root.blob.digest;
    let mut media_type = root.media_type.clone();
    while media_types::is_index(&media_type) {
        let index: Index = read_json(cas, &descriptor_digest)?;
        let host = Platform::host();
        let entry = index
            .manifests
            .iter()
            .find(|entry| entry.platform.as_ref().is_some_and(|platform| platform_satisfies(platform, &host)))
            .ok_or_else(|| {
                Error::user(format!("Image index `{label}` has no manifest for `{}/{}`", host.os, host.architecture))
                    .with_hint("`berth run` runs images of the host's platform")
            })?;
        descriptor_digest = entry.digest;
        media_type = entry.media_type.clone();
    }
    let manifest: Manifest = read_json(cas, &descriptor_digest)?;
    Ok(BuiltImage {
        config: manifest.config.digest,
        layers: manifest.layers.iter().map(|layer| layer.digest).collect(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(cas: &Cas, digest: &Digest) -> Result<T> {
    let bytes = cas.read_verified(digest)?;
    serde_json::from_slice(&bytes)
        .map_err(|error| Error::internal(format!("Blob `{digest}` is not valid JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(label: &str, env: &[&str]) -> RunArgs {
        RunArgs {
            label: label.into(),
            env: env.iter().map(|e| e.to_string()).collect(),
            network: false,
            args: vec![],
            timeout: None,
        }
    }

    #[test]
    fn requests_check_labels_and_env() {
        let request = RunRequest::new(args(":img", &["A=1", "B="]), "app").unwrap();
        assert_eq!(request.label, Label::new("app", "img"));
        assert!(RunRequest::new(args(":img", &["NOVALUE"]), "app").unwrap_err().message.contains("KEY=VALUE"));
        assert!(RunRequest::new(args(":img", &["=x"]), "app").is_err());
    }
}
