//! `berth push PATTERN... [--json] [--dry-run] [--repository R] [--tag T]...`:
//! builds every image and index the patterns match that has a `repository`
//! and pushes each, skipping blobs and manifests the registry already holds.
//!
//! stdout: with one image, its manifest digest (the `berth push //app:img`
//! of old); with several, one `LABEL REPOSITORY@DIGEST` line each; with
//! `--json`, a release manifest, one object per image:
//! `[{"label", "repository", "reference", "tags", "digest"}]`, which a deploy
//! job can read. `--dry-run` builds and prints the same without pushing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::Args;

use crate::cache::{BlobRef, Cas, Digest};
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::registry::{BlobSources, Client, ClientOptions, ImageRef, PulledImage, PushOutcome, PushRequest};
use crate::session::TargetOutput;
use crate::workspace::{Label, Pattern, RemoteCacheUrl};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Images to push: labels or patterns (`//...`, `//pkg/...`, `//pkg:all`)
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Push to this repository instead of the target's `repository` (one image only)
    #[arg(long)]
    pub repository: Option<String>,
    /// Tag to push (repeatable; one image only); defaults to the target's `tag`
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Print a JSON release manifest (label, repository, reference, tags, digest per image)
    #[arg(long)]
    pub json: bool,
    /// Build and say what would be pushed, without contacting the registry
    #[arg(long)]
    pub dry_run: bool,
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

/// One image of a release: where it goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseEntry {
    pub label: String,
    pub repository: String,
    /// `repository:first-tag`, or `repository@digest` when untagged.
    pub reference: String,
    pub tags: Vec<String>,
    pub digest: String,
}

pub fn run(args: PushArgs, global: &GlobalArgs) -> Result<i32> {
    let reporter = global.reporter();
    let session = global.session(&reporter)?;
    let package = session.current_package();
    let patterns: Vec<Pattern> =
        args.patterns.iter().map(|text| Pattern::parse_in(text, &package)).collect::<Result<_, _>>()?;
    // Base layers are not fetched: the push mounts them from their
    // repository, or fetches them only if the registry lacks them. Every
    // blob in the cache is checked by content before it is uploaded.
    let built = session.build_checked(&patterns, false, &|_, _, _| false)?;
    let named: Vec<&Label> = patterns
        .iter()
        .filter_map(|pattern| if let Pattern::Target(label) = pattern { Some(label) } else { None })
        .collect();
    let overriding = args.repository.is_some() || !args.tags.is_empty();
    // With an `oci://` remote cache, every blob the build produced may sit in
    // the cache repository: mounted from there when the destination is on
    // the same registry (declined mounts upload).
    let cache_repository = session.exec.remote.as_ref().and_then(|remote| match remote.url() {
        RemoteCacheUrl::Oci { registry, repository } => ImageRef::parse(&format!("{registry}/{repository}")).ok(),
        RemoteCacheUrl::Grpc { .. } => None,
    });
    let cached: Vec<(Digest, ImageRef)> = match &cache_repository {
        Some(cache) => {
            let digests: BTreeSet<Digest> =
                built.result.outputs.values().flat_map(|result| result.blob_refs().map(|blob| blob.digest)).collect();
            digests.into_iter().map(|digest| (digest, cache.clone())).collect()
        }
        None => Vec::new(),
    };

    let mut images: BTreeMap<Label, BuiltImage> = BTreeMap::new();
    for (label, output) in &built.targets {
        let (root, repository, tags) = match output {
            TargetOutput::Image { root, repository, tags } | TargetOutput::Index { root, repository, tags } => {
                (root, repository, tags)
            }
            TargetOutput::Layer { .. } if named.contains(&label) => {
                return Err(Error::user(format!("`{label}` is a layer, not an image"))
                    .with_hint("push an `oci_image_build` or `oci_image_index` target"))
            }
            TargetOutput::Layer { .. } => continue,
        };
        if repository.is_none() && !overriding {
            // A wildcard may match images that are not released; a named
            // one must say where it goes.
            if named.contains(&label) {
                return Err(Error::user(format!("Target `{label}` has no `repository` to push to"))
                    .with_hint("set `repository` on the target or pass `--repository`"));
            }
            continue;
        }
        images.insert(
            label.clone(),
            BuiltImage {
                root: root.blob,
                media_type: root.media_type.clone(),
                repository: repository.clone(),
                tags: tags.clone(),
                pulled: built.analysis.pulled.clone(),
                cached: cached.clone(),
            },
        );
    }
    if images.is_empty() {
        return Err(Error::user(format!("No image matched by `{}` has a `repository`", args.patterns.join(" ")))
            .with_hint("set `repository` (and `tag`) on the images to release"));
    }
    if overriding && images.len() > 1 {
        return Err(Error::user(format!(
            "`--repository` and `--tag` apply to one image, but the patterns match {}: {}",
            images.len(),
            images.keys().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ))
        .with_hint("name one image, or set `repository` and `tag` on each target"));
    }

    let options = ClientOptions {
        registries: session.workspace.settings.registries.clone(),
        workspace_root: Some(session.workspace.root.clone()),
        offline: global.offline,
        ..ClientOptions::default()
    };
    let client = if args.dry_run { None } else { Some(Client::new(options)?) };
    let mut jobs = Vec::new();
    for (label, image) in &images {
        let repository = args.repository.as_ref().or(image.repository.as_ref()).expect("checked above");
        let destination = ImageRef::parse(repository)?;
        let tags = if args.tags.is_empty() { image.tags.clone() } else { args.tags.clone() };
        let digest = image.root.digest.to_string();
        let entry = ReleaseEntry {
            label: label.to_string(),
            repository: destination.to_string(),
            reference: match tags.first() {
                Some(tag) => format!("{destination}:{tag}"),
                None => format!("{destination}@{digest}"),
            },
            tags: tags.clone(),
            digest,
        };
        jobs.push((entry, image, destination, tags));
    }
    match &client {
        None => {
            for (entry, ..) in &jobs {
                if !global.quiet {
                    eprintln!("Would push {} to {} ({})", entry.label, entry.reference, entry.digest);
                }
            }
        }
        Some(client) => {
            let outcomes = push_all(client, &session.cache.cas, &jobs)?;
            for ((entry, ..), outcome) in jobs.iter().zip(outcomes) {
                if !global.quiet {
                    eprintln!(
                        "Pushed {}: {} blobs uploaded ({} bytes), {} mounted, {} already there; {} manifests put, {} already there",
                        entry.repository,
                        outcome.uploaded_blobs,
                        outcome.uploaded_bytes,
                        outcome.mounted_blobs,
                        outcome.existing_blobs,
                        outcome.put_manifests,
                        outcome.existing_manifests
                    );
                }
            }
        }
    }
    let release: Vec<ReleaseEntry> = jobs.into_iter().map(|(entry, ..)| entry).collect();

    let mut stdout = Stdout::lock();
    if args.json {
        let json = serde_json::to_string_pretty(&release)
            .map_err(|error| Error::internal(format!("Cannot write the release manifest: {error}")))?;
        stdout.print(format_args!("{json}\n"))?;
    } else if let [only] = release.as_slice() {
        stdout.print(format_args!("{}\n", only.digest))?;
    } else {
        for entry in &release {
            stdout.print(format_args!("{} {}@{}\n", entry.label, entry.repository, entry.digest))?;
        }
    }
    stdout.flush()?;
    Ok(0)
}

/// How many images of a release are pushed at once (each pushes its blobs
/// in parallel too): round trips of one image overlap uploads of another.
const PARALLEL_IMAGES: usize = 4;

type PushJob<'a> = (ReleaseEntry, &'a BuiltImage, ImageRef, Vec<String>);

/// Pushes every job, [`PARALLEL_IMAGES`] at once; the outcomes in job order,
/// or the first error.
fn push_all(client: &Client, cas: &Cas, jobs: &[PushJob<'_>]) -> Result<Vec<PushOutcome>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PushOutcome>>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_IMAGES.min(jobs.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= jobs.len() || failed.load(Ordering::SeqCst) {
                    return;
                }
                let (_, image, destination, tags) = &jobs[index];
                let result = push_image(client, cas, image, destination.clone(), tags.clone());
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().unwrap()[index] = Some(result);
            });
        }
    });
    let results = results.into_inner().unwrap();
    // The first failure in label order; images after it may not have run.
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Some(Ok(outcome)) => outcomes.push(outcome),
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    if outcomes.len() != jobs.len() {
        return Err(Error::internal("a push stopped without an error".to_owned()));
    }
    Ok(outcomes)
}

/// Pushes one built image to `destination` and points `tags` at it: blobs
/// the registry has are skipped (HEAD), blobs of pulled bases on the same
/// registry are mounted, and a manifest or tag that already has this digest
/// is not put again. The release push above and an `oci_push` target both
/// go through here.
pub fn push_image(
    client: &Client,
    cas: &Cas,
    image: &BuiltImage,
    destination: ImageRef,
    tags: Vec<String>,
) -> Result<PushOutcome> {
    let mut sources = BlobSources::new();
    for pulled in &image.pulled {
        sources.add_image(pulled);
    }
    for (digest, cache) in &image.cached {
        sources.add(*digest, cache, false);
    }
    let request = PushRequest { root: image.root, media_type: image.media_type.clone(), destination, tags, sources };
    Ok(client.push(cas, &request)?)
}
