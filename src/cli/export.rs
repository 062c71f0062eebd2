//! `berth export LABEL --format oci-archive|docker-archive -o FILE`

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::cache::{BlobRef, Cas};
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::oci;
use crate::session::TargetOutput;
use crate::workspace::Label;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image to export
    pub label: String,
    /// The archive format
    #[arg(long, value_enum)]
    pub format: ArchiveFormat,
    /// Where to write the archive
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (skopeo's `oci-archive:`)
    OciArchive,
    /// `docker save` format, for `docker load` and `podman load`
    DockerArchive,
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
        if args.output.is_dir() {
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
    export_root(&session.cache.cas, root.blob, request.format, &names, &request.output)?;
    Ok(0)
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
