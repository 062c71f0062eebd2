//! `berth export LABEL --format oci-archive|docker-archive -o FILE`, and
//! `--format rootfs -o DIR` (Concourse's `unpack_rootfs`: `DIR/rootfs/` and
//! `DIR/metadata.json` with the image's `env` and `user`).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::cache::canonical_json;
use crate::cache::{BlobRef, Cas};
use crate::cli::run::host_image;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exec::{RootFs, StackMode};
use crate::oci;
use crate::oci::{ExtractLimits, ImageConfig, ImageRoot};
use crate::session::{Session, TargetOutput};
use crate::workspace::Label;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image to export
    pub label: String,
    /// The archive format
    #[arg(long, value_enum)]
    pub format: ArchiveFormat,
    /// Where to write the archive (for `rootfs`, a directory)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (skopeo's `oci-archive:`)
    OciArchive,
    /// `docker save` format, for `docker load` and `podman load`
    DockerArchive,
    /// A directory: `rootfs/` (the layers applied) and `metadata.json`
    /// (`{"env": [...], "user": "..."}`), as Concourse's `unpack_rootfs`
    Rootfs,
}

/// A validated `berth export` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub label: String,
    pub format: ArchiveFormat,
    pub output: PathBuf,
}

impl ExportRequest {
    pub fn from_args(args: ExportArgs) -> Result<ExportRequest> {
        if args.format == ArchiveFormat::Rootfs {
            let empty_dir = std::fs::read_dir(&args.output).is_ok_and(|mut entries| entries.next().is_none());
            if args.output.exists() && !empty_dir {
                return Err(Error::user(format!("`{}` already exists", args.output.display()))
                    .with_hint("`--format rootfs -o DIR` writes a new (or empty) directory"));
            }
        } else if args.output.is_dir() {
            return Err(Error::user(format!("`{}` is a directory", args.output.display()))
                .with_hint("`-o` names the archive file to write, e.g. `-o image.tar`"));
        }
        let parent = args.output.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Error::user(format!(
                "Cannot write `{}`: directory `{}` does not exist",
                args.output.display(),
                parent.display()
            )));
        }
        Ok(ExportRequest { label: args.label, format: args.format, output: args.output })
    }
}

pub fn run(args: ExportArgs, global: &GlobalArgs) -> Result<i32> {
    let request = ExportRequest::from_args(args)?;
    let reporter = global.reporter();
    let session = global.session(&reporter)?;
    // An archive holds every byte: lazily pulled base layers are fetched.
    let (built, output) = session.build_label(&request.label, true)?;
    let label = built.targets.keys().next().cloned().expect("one label was built");
    let (root, names) = match &output {
        TargetOutput::Image { root, repository, tags } | TargetOutput::Index { root, repository, tags } => {
            (root, image_names(&label, repository.as_deref(), tags))
        }
        TargetOutput::Layer { .. } => {
            return Err(Error::user(format!("`{label}` is a layer, not an image")).with_hint(
                "export an `oci_image_build` or `oci_image_index` target; the layer blob is in `berth-out/`",
            ))
        }
    };
    if request.format == ArchiveFormat::Rootfs {
        export_rootfs(&session, &label, root, &request.output)?;
        return Ok(0);
    }
    export_root(&session.cache.cas, root.blob, request.format, &names, &request.output)?;
    Ok(0)
}

/// Writes the image (the host's entry of an index) as `dir/rootfs/` and
/// `dir/metadata.json`. Everything is made in a temporary directory beside
/// `dir` and renamed into place, so a failure leaves nothing half-written.
fn export_rootfs(session: &Session<'_>, label: &Label, root: &ImageRoot, dir: &Path) -> Result<()> {
    let cas = &session.cache.cas;
    let image = host_image(cas, root, label)?;
    let config: ImageConfig = serde_json::from_slice(&cas.read_verified(&image.config)?)
        .map_err(|error| Error::internal(format!("The config of `{label}` is not valid JSON: {error}")))?;
    let io_error = |what: &Path| {
        let what = what.display().to_string();
        move |error: std::io::Error| Error::environment(format!("Cannot write `{what}`: {error}"))
    };
    let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new().prefix(".berth-export-").tempdir_in(parent).map_err(io_error(parent))?;
    let context = session.execution_context();
    let limits = ExtractLimits::default();
    let layers = image
        .layers
        .iter()
        .map(|digest| context.layers().extract(cas, digest, &limits).map_err(Error::from))
        .collect::<Result<Vec<_>>>()?;
    let stacked = RootFs::stack(&layers, &scratch.path().join("stack"), StackMode::Copy, None, 0, None)
        .map_err(|error| Error::from(error).context(format!("Cannot export `{label}` as a root filesystem")))?;
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).map_err(io_error(&out))?;
    std::fs::rename(stacked.merged(), out.join("rootfs")).map_err(io_error(&out))?;
    drop(stacked);
    #[derive(serde::Serialize)]
    struct Metadata<'a> {
        env: &'a [String],
        user: &'a str,
    }
    let metadata = Metadata { env: &config.config.env, user: config.config.user.as_deref().unwrap_or("") };
    std::fs::write(out.join("metadata.json"), canonical_json(&metadata)).map_err(io_error(&out))?;
    if dir.is_dir() {
        // Checked empty when the request was made.
        std::fs::remove_dir(dir).map_err(io_error(dir))?;
    }
    std::fs::rename(&out, dir).map_err(io_error(dir))?;
    Ok(())
}

/// `repository:tag` for each tag of the target (`latest` without tags); a
/// target without `repository` is named after its label
/// (`//app/web:image` → `app/web/image`), as `docker load` needs a name.
fn image_names(label: &Label, repository: Option<&str>, tags: &[String]) -> Vec<String> {
    let repository = match repository {
        Some(repository) => repository.to_owned(),
        None => label
            .path()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-') { c } else { '-' })
            .collect(),
    };
    if tags.is_empty() {
        vec![format!("{repository}:latest")]
    } else {
        tags.iter().map(|tag| format!("{repository}:{tag}")).collect()
    }
}

/// Writes an image that is in the CAS as an archive at `output`, atomically.
/// `names` are the image's `repository:tag` names: the docker archive's
/// `RepoTags`; the first one's tag is the OCI archive's
/// `org.opencontainers.image.ref.name`.
pub fn export_root(cas: &Cas, root: BlobRef, format: ArchiveFormat, names: &[String], output: &Path) -> Result<()> {
    let result = match format {
        ArchiveFormat::OciArchive => {
            let ref_name = names.first().map(|name| tag_of(name));
            oci::write_oci_archive(cas, root, ref_name, output)
        }
        ArchiveFormat::DockerArchive => oci::write_docker_archive(cas, root, names, output),
        ArchiveFormat::Rootfs => return Err(Error::internal("a root filesystem is not an archive")),
    };
    result.map_err(|error| Error::from(error).context(format_args!("Cannot export to `{}`", output.display())))
}

/// The tag of `repository:tag` (`latest` without one); a `:` before the last
/// `/` is a registry port, not a tag.
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.rsplit_once(':').map_or("latest", |(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_repository_and_tags_or_the_label() {
        let label = Label::parse("//app/Web:image", "").unwrap();
        assert_eq!(image_names(&label, None, &[]), ["app/web/image:latest"]);
        let tags = ["1.0".to_owned(), "latest".to_owned()];
        assert_eq!(
            image_names(&label, Some("registry:5000/web"), &tags),
            ["registry:5000/web:1.0", "registry:5000/web:latest"]
        );
    }

    #[test]
    fn tags_of_names() {
        assert_eq!(tag_of("registry:5000/app:1.0"), "1.0");
        assert_eq!(tag_of("registry:5000/app"), "latest");
        assert_eq!(tag_of("app"), "latest");
    }

    #[test]
    fn exports_atomically_and_names_the_output_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(&dir.path().join("cache")).unwrap();
        let config = cas
            .put_bytes(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)
            .unwrap();
        let manifest =
            oci::Manifest::new(oci::Descriptor::new(oci::media_types::CONFIG, config), Vec::new(), Default::default());
        let root = cas.put_bytes(&crate::cache::canonical_json(&manifest)).unwrap();
        let output = dir.path().join("image.tar");
        export_root(&cas, root, ArchiveFormat::OciArchive, &["app:1.0".into()], &output).unwrap();
        let direct = dir.path().join("direct.tar");
        oci::write_oci_archive(&cas, root, Some("1.0"), &direct).unwrap();
        assert!(std::fs::read(&output).unwrap() == std::fs::read(&direct).unwrap(), "the tag of `app:1.0` is `1.0`");

        std::fs::remove_file(cas.path(&config.digest)).unwrap();
        let error = export_root(&cas, root, ArchiveFormat::DockerArchive, &["app".into()], &dir.path().join("d.tar"));
        let error = error.unwrap_err();
        assert_eq!(error.kind, crate::error::ErrorKind::Internal, "the context keeps the kind");
        let error = error.to_string();
        assert!(error.starts_with("Cannot export to"), "{error}");
        assert!(error.contains("not in the cache"), "{error}");
        assert!(!dir.path().join("d.tar").exists());
    }
}
