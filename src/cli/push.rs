//! `berth push LABEL [--repository R] [--tag T]...`: builds the image, pushes
//! it and everything it references, prints the pushed manifest digest.

use clap::Args;

use std::collections::BTreeSet;

use crate::cache::{BlobRef, Cas, Digest};
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::registry::{BlobSources, Client, ClientOptions, ImageRef, PulledImage, PushRequest};
use crate::session::TargetOutput;
use crate::workspace::{RegistrySetting, RemoteCacheUrl};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push
    pub label: String,
    /// Push to this repository instead of the target's `repository`
    #[arg(long)]
    pub repository: Option<String>,
    /// Tag to push (repeatable); defaults to the target's `tag`/`tags`
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

pub fn run(args: PushArgs, global: &GlobalArgs) -> Result<i32> {
    let reporter = global.reporter();
    let session = global.session(&reporter)?;
    // Base layers are not fetched: the push mounts them from their
    // repository, or fetches them only if the registry lacks them.
    let (built, output) = session.build_label(&args.label, false)?;
    let image = match output {
        TargetOutput::Image { root, repository, tags } | TargetOutput::Index { root, repository, tags } => {
            // With an `oci://` remote cache, every blob the build produced
            // may sit in the cache repository: mounted from there when the
            // destination is on the same registry (declined mounts upload).
            let cache = session.exec.remote.as_ref().and_then(|remote| match remote.url() {
                RemoteCacheUrl::Oci { registry, repository } => {
                    ImageRef::parse(&format!("{registry}/{repository}")).ok()
                }
                RemoteCacheUrl::Grpc { .. } => None,
            });
            let cached = cache
                .map(|cache| {
                    let digests: BTreeSet<Digest> = built
                        .result
                        .outputs
                        .values()
                        .flat_map(|result| result.blob_refs().map(|blob| blob.digest))
                        .collect();
                    digests.into_iter().map(|digest| (digest, cache.clone())).collect()
                })
                .unwrap_or_default();
            BuiltImage {
                root: root.blob,
                media_type: root.media_type,
                repository,
                tags,
                pulled: built.analysis.pulled,
                cached,
            }
        }
        TargetOutput::Layer { .. } => {
            return Err(Error::user(format!("`{}` is a layer, not an image", args.label))
                .with_hint("push an `oci_image_build` or `oci_image_index` target"))
        }
    };
    push_built(&args, global, &session.cache.cas, &image, &session.workspace.settings.registries)
}

/// What building a pushable label yields.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The image manifest or index, in the CAS.
    pub root: BlobRef,
    pub media_type: String,
    /// The target's `repository` and `tag`/`tags` attributes.
    pub repository: Option<String>,
    pub tags: Vec<String>,
    /// The pulled base images it is built on: their layers may be missing
    /// from the CAS (lazy pulls) and are mounted or fetched from there.
    pub pulled: Vec<PulledImage>,
    /// Blobs that may also be in another repository (an `oci://` remote
    /// cache), to mount from there; after the pulled images' own.
    pub cached: Vec<(Digest, ImageRef)>,
}

/// Pushes a built image where the flags (or the target) say, printing the
/// manifest digest on stdout.
pub fn push_built(
    args: &PushArgs,
    global: &GlobalArgs,
    cas: &Cas,
    built: &BuiltImage,
    registries: &[RegistrySetting],
) -> Result<i32> {
    let repository = args.repository.as_ref().or(built.repository.as_ref()).ok_or_else(|| {
        Error::user(format!("Target `{}` has no `repository` to push to", args.label))
            .with_hint("set `repository` on the target or pass `--repository`")
    })?;
    let destination = ImageRef::parse(repository)?;
    let tags = if args.tags.is_empty() { built.tags.clone() } else { args.tags.clone() };
    let mut sources = BlobSources::new();
    for pulled in &built.pulled {
        sources.add_image(pulled);
    }
    for (digest, image) in &built.cached {
        sources.add(*digest, image, false);
    }
    let options =
        ClientOptions { registries: registries.to_vec(), offline: global.offline, ..ClientOptions::default() };
    let client = Client::new(options)?;
    let request = PushRequest { root: built.root, media_type: built.media_type.clone(), destination, tags, sources };
    let outcome = client.push(cas, &request)?;
    if !global.quiet {
        eprintln!(
            "Pushed {repository}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
            outcome.uploaded_blobs, outcome.uploaded_bytes, outcome.mounted_blobs, outcome.existing_blobs
        );
    }
    let mut stdout = Stdout::lock();
    stdout.print(format_args!("{}\n", outcome.digest))?;
    stdout.flush()?;
    Ok(0)
}
