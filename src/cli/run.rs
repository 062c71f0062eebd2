//! `berth run LABEL [-- ARG...]`

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::cache::{resolve_cache_dir, Cas, Digest};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::exec::{run_image, RunImageRequest, Runc, StackMode};
use crate::oci::{media_types, Index, Manifest, Platform};
use crate::workspace::{Label, Workspace};

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
}

impl RunRequest {
    /// Checks the flags; `package` is the package of the current directory
    /// (for relative labels such as `:image`).
    pub fn new(args: RunArgs, package: &str) -> Result<RunRequest, Error> {
        let label = Label::parse(&args.label, package).map_err(|error| Error::user(error.to_string()))?;
        for entry in &args.env {
            if !entry.split_once('=').is_some_and(|(key, _)| !key.is_empty()) {
                return Err(Error::user(format!(
                    "`--env {entry}` is not KEY=VALUE\nhint: write it as `--env {entry}=value`"
                )));
            }
        }
        Ok(RunRequest { label, env: args.env, network: args.network, args: args.args })
    }
}

pub fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir().context("Cannot read the current directory")?;
    let workspace = Workspace::discover(&cwd)?;
    let package = cwd.strip_prefix(&workspace.root).ok().and_then(Path::to_str).map(str::to_owned).unwrap_or_default();
    let request = RunRequest::new(args, &package)?;
    // Before any build work: a machine that cannot run containers says so
    // at once (exit 3).
    let runc = Runc::locate(workspace.settings.runc.as_deref()).map_err(Error::from)?;
    let cache_dir = resolve_cache_dir(global.cache_dir.as_deref()).map_err(Error::from)?;
    let cas = Cas::open(&cache_dir).map_err(Error::from)?;
    let layout = workspace.out_dir().join(request.label.path());
    let image = read_built_image(&layout, &cas, &request.label)?;
    let config = cas.read_verified(&image.config).map_err(Error::from)?;
    let code = run_image(&RunImageRequest {
        cas: &cas,
        cache_dir: &cache_dir,
        config: &config,
        layers: &image.layers,
        args: request.args,
        env: request.env,
        network: request.network,
        runc: &runc,
        stack: StackMode::Auto,
    })?;
    Ok(code)
}

/// The config and layers of an image `berth build` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// Reads the image of the OCI layout `berth build` wrote at `layout`
/// (`berth-out/<package>/<name>/`), picking the host's platform from an
/// index, and makes sure its config and layers are in the CAS (copied from
/// the layout, checked, when the cache was cleaned since).
pub fn read_built_image(layout: &Path, cas: &Cas, label: &Label) -> Result<BuiltImage, Error> {
    let not_built = || {
        Error::user(format!(
            "Image `{label}` has not been built (no `{}`)\nhint: run `berth build {label}` first",
            layout.join("index.json").display()
        ))
    };
    let index: Index = read_json(&layout.join("index.json")).map_err(|_| not_built())?;
    let mut descriptor = index.manifests.first().cloned().ok_or_else(not_built)?;
    // An index of platforms: follow it to the host's manifest.
    while media_types::is_index(&descriptor.media_type) {
        let nested: Index = read_json(&blob_path(layout, &descriptor.digest))?;
        let host = Platform::host();
        descriptor = nested
            .manifests
            .iter()
            .find(|entry| entry.platform.as_ref().is_some_and(|p| p.os == host.os && p.architecture == host.architecture))
            .cloned()
            .ok_or_else(|| {
                Error::user(format!(
                    "Image index `{label}` has no manifest for `{}/{}`\nhint: `berth run` runs images of the host's platform",
                    host.os, host.architecture
                ))
            })?;
    }
    let manifest: Manifest = read_json(&blob_path(layout, &descriptor.digest))?;
    let mut digests = vec![manifest.config.digest];
    digests.extend(manifest.layers.iter().map(|layer| layer.digest));
    for digest in &digests {
        import_blob(layout, cas, digest)?;
    }
    Ok(BuiltImage { config: manifest.config.digest, layers: digests.split_off(1) })
}

fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let file = File::open(path).map_err(|error| Error::user(format!("Cannot read `{}`: {error}", path.display())))?;
    serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|error| Error::user(format!("`{}` is not valid JSON: {error}", path.display())))
}

fn import_blob(layout: &Path, cas: &Cas, digest: &Digest) -> Result<(), Error> {
    if cas.contains(digest) {
        return Ok(());
    }
    let path = blob_path(layout, digest);
    let mut file = File::open(&path).map_err(|error| {
        Error::user(format!(
            "Blob `{digest}` is missing from `{}`: {error}\nhint: run `berth build` again",
            layout.display()
        ))
    })?;
    let mut writer = cas.writer().map_err(Error::from)?;
    std::io::copy(&mut file, &mut writer)
        .map_err(|error| Error::environment(format!("Cannot copy `{}` into the cache: {error}", path.display())))?;
    let blob = writer.commit().map_err(Error::from)?;
    if blob.digest != *digest {
        let _ = std::fs::remove_file(cas.path(&blob.digest));
        return Err(Error::user(format!(
            "Blob `{}` does not match its digest `{digest}`\nhint: run `berth build` again",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(label: &str, env: &[&str]) -> RunArgs {
        RunArgs { label: label.into(), env: env.iter().map(|e| e.to_string()).collect(), network: false, args: vec![] }
    }

    #[test]
    fn requests_check_labels_and_env() {
        let request = RunRequest::new(args(":img", &["A=1", "B="]), "app").unwrap();
        assert_eq!(request.label, Label::new("app", "img"));
        assert!(RunRequest::new(args(":img", &["NOVALUE"]), "app").unwrap_err().message.contains("KEY=VALUE"));
        assert!(RunRequest::new(args(":img", &["=x"]), "app").is_err());
    }

    #[test]
    fn built_layouts_give_config_and_layers_and_refill_the_cache() {
        use crate::oci::{canonical_json, write_layout, Descriptor, ImageRoot};
        let dir = tempfile::tempdir().unwrap();
        let build_cas = Cas::open(&dir.path().join("build-cache")).unwrap();
        let config = build_cas.put_bytes(br#"{"config":{"Cmd":["true"]}}"#).unwrap();
        let layers = [build_cas.put_bytes(b"layer one").unwrap(), build_cas.put_bytes(b"layer two").unwrap()];
        let manifest = crate::oci::Manifest::new(
            Descriptor::new(media_types::CONFIG, config),
            layers.iter().map(|layer| Descriptor::new(media_types::LAYER_GZIP, *layer)).collect(),
            Default::default(),
        );
        let manifest = build_cas.put_bytes(&canonical_json(&manifest).unwrap()).unwrap();
        let layout = dir.path().join("berth-out/app/img");
        let root = ImageRoot { blob: manifest, media_type: media_types::MANIFEST.to_owned() };
        write_layout(&build_cas, &root, None, &layout).unwrap();

        // A cache cleaned since the build: the blobs come back from the layout.
        let cas = Cas::open(&dir.path().join("fresh-cache")).unwrap();
        let image = read_built_image(&layout, &cas, &Label::new("app", "img")).unwrap();
        assert_eq!(image, BuiltImage { config: config.digest, layers: layers.map(|layer| layer.digest).to_vec() });
        assert!(cas.contains(&config.digest) && cas.contains(&layers[1].digest));

        // A layout blob that does not match its name is refused.
        let fresh = Cas::open(&dir.path().join("third-cache")).unwrap();
        let blob = layout.join("blobs/sha256").join(layers[0].digest.hex());
        std::fs::remove_file(&blob).unwrap();
        std::fs::write(&blob, b"tampered").unwrap();
        let error = read_built_image(&layout, &fresh, &Label::new("app", "img")).unwrap_err();
        assert!(error.message.contains("does not match its digest"), "{}", error.message);
    }

    #[test]
    fn unbuilt_images_say_how_to_build_them() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(&dir.path().join("cache")).unwrap();
        let label = Label::new("app", "img");
        let error = read_built_image(&dir.path().join("berth-out/app/img"), &cas, &label).unwrap_err();
        assert!(error.message.contains("berth build //app:img"), "{}", error.message);
    }
}
