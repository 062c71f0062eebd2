//! `berth run LABEL [-- ARG...]`

use std::time::Duration;

use clap::Args;

use crate::cache::{Cas, Digest};
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exec::{run_image, RunImageRequest};
use crate::oci::{media_types, ImageRoot, Index, Manifest, Platform};
use crate::registry::platform_satisfies;
use crate::workspace::Label;

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
            if !entry.split_once('=').is_some_and(|(key, _)| !key.is_empty()) {
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

/// The config and layers of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// The image to run: the root itself, or the host's entry of an index.
fn host_image(cas: &Cas, root: &ImageRoot, label: &Label) -> Result<BuiltImage> {
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
