//! The errors of the `oci` layer: bad layer entries (the user's), unreadable
//! inputs and unwritable outputs (the machine's), and malformed blobs.

use std::io;
use std::path::PathBuf;

use crate::cache::{CasError, Digest};
use crate::error::{Diagnose, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("Invalid layer path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("Duplicate path `{path}` in the layer")]
    DuplicatePath { path: String },
    #[error("`{parent}` is not a directory in the layer, but `{path}` is inside it")]
    NotADirectory { parent: String, path: String },
    #[error("Hard link `{path}` points at `{target}`, which is not a regular file of the layer")]
    BadHardLink { path: String, target: String },
    #[error("Unsupported file type at `{path}`: {what}")]
    UnsupportedFile { path: String, what: String },
    #[error("Input `{path}` changed while it was read (expected `{expected}`, read `{actual}`)")]
    InputChanged { path: PathBuf, expected: String, actual: String },
    #[error("Cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("Cannot write {what}: {source}")]
    Write { what: String, source: io::Error },
    #[error("Blob `{digest}` is not a valid {what}: {reason}")]
    BadBlob { digest: Digest, what: &'static str, reason: String },
    #[error("{} blob(s) of the image are not in the cache: {}", digests.len(), join(digests))]
    MissingBlobs { digests: Vec<Digest> },
    #[error("Two images of the index have the platform `{platform}`: `{first}` and `{second}`")]
    DuplicatePlatform { platform: String, first: String, second: String },
    #[error("Invalid image setting `{name}`: {reason}")]
    BadSetting { name: &'static str, reason: String },
    #[error("Action `{kind}` got unexpected inputs: {reason}")]
    BadInputs { kind: &'static str, reason: String },
    #[error("Image `{image}` of the index is itself an index")]
    NestedIndex { image: String },
    #[error("The image has {layers} layers but its config lists {diff_ids} diff_ids")]
    DiffIdCount { layers: usize, diff_ids: usize },
    #[error("A docker-archive cannot hold zstd layers: Docker v2 images have no zstd media type and `docker load` before Docker 25 cannot read them")]
    DockerArchiveZstd,
    #[error("`{source_path}` is not an image berth can import: {reason}")]
    BadImport { source_path: String, reason: String },
    #[error(transparent)]
    Cas(#[from] CasError),
}

fn join(digests: &[Digest]) -> String {
    digests.iter().map(Digest::to_string).collect::<Vec<_>>().join(", ")
}

impl OciError {
    pub(crate) fn write(what: impl Into<String>) -> impl FnOnce(io::Error) -> OciError {
        let what = what.into();
        move |source| OciError::Write { what, source }
    }

    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Read { path, source }
    }
}

impl Diagnose for OciError {
    fn kind(&self) -> ErrorKind {
        match self {
            OciError::Cas(error) => error.kind(),
            OciError::InvalidPath { .. }
            | OciError::DuplicatePath { .. }
            | OciError::NotADirectory { .. }
            | OciError::BadHardLink { .. }
            | OciError::UnsupportedFile { .. }
            | OciError::InputChanged { .. }
            | OciError::BadBlob { .. }
            | OciError::DuplicatePlatform { .. }
            | OciError::BadSetting { .. }
            | OciError::NestedIndex { .. }
            | OciError::DiffIdCount { .. }
            | OciError::DockerArchiveZstd
            | OciError::BadImport { .. } => ErrorKind::User,
            OciError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorKind::User,
            OciError::Read { .. } | OciError::Write { .. } => ErrorKind::Environment,
            OciError::MissingBlobs { .. } | OciError::BadInputs { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            OciError::Cas(error) => return error.hint(),
            OciError::DuplicatePath { .. } => "every destination may appear once; remove or rename one of the entries",
            OciError::UnsupportedFile { .. } => "layers hold regular files, directories, symlinks and hard links only",
            OciError::InputChanged { .. } => "do not edit sources during a build; rerun it",
            OciError::DuplicatePlatform { .. } => {
                "an index holds one image per platform; set `os`/`architecture`/`variant` on one of them"
            }
            OciError::NestedIndex { .. } => "give `oci_image_index` single-platform images",
            OciError::DiffIdCount { .. } => "the base image's manifest and config disagree",
            OciError::BadImport { .. } => {
                "`oci_import` reads an OCI image layout, an OCI archive or a docker-archive (`docker save`)"
            }
            OciError::DockerArchiveZstd => "set `compression = \"gzip\"` on the image, or use `--format oci-archive`",
            _ => return None,
        };
        Some(hint.to_owned())
    }
}
