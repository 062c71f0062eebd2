//! The errors of the `oci` layer: bad layer entries (the user's), unreadable
//! inputs and unwritable outputs (the machine's), and malformed blobs.

use std::io;
use std::path::PathBuf;

use crate::cache::{CasError, Digest};
use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("Invalid layer path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("Duplicate path `{path}` in the layer\nhint: every destination may appear once; remove or rename one of the entries")]
    DuplicatePath { path: String },
    #[error("`{parent}` is not a directory in the layer, but `{path}` is inside it")]
    NotADirectory { parent: String, path: String },
    #[error("Hard link `{path}` points at `{target}`, which is not a regular file of the layer")]
    BadHardLink { path: String, target: String },
    #[error("Unsupported file type at `{path}`: {what}\nhint: layers hold regular files, directories, symlinks and hard links only")]
    UnsupportedFile { path: String, what: String },
    #[error("Input `{path}` changed while it was read (expected `{expected}`, read `{actual}`)\nhint: do not edit sources during a build; rerun it")]
    InputChanged { path: PathBuf, expected: String, actual: String },
    #[error("Cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("Cannot write {what}: {source}")]
    Write { what: String, source: io::Error },
    #[error("Blob `{digest}` is not a valid {what}: {reason}")]
    BadBlob { digest: Digest, what: &'static str, reason: String },
    #[error("{} blob(s) of the image are not in the cache: {}", digests.len(), join(digests))]
    MissingBlobs { digests: Vec<Digest> },
    #[error("Two images of the index have the platform `{platform}`: `{first}` and `{second}`\nhint: an index holds one image per platform; set `os`/`architecture`/`variant` on one of them")]
    DuplicatePlatform { platform: String, first: String, second: String },
    #[error("Invalid image setting `{name}`: {reason}")]
    BadSetting { name: &'static str, reason: String },
    #[error("Action `{kind}` got unexpected inputs: {reason}")]
    BadInputs { kind: &'static str, reason: String },
    #[error("{0}")]
    Unsupported(String),
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

impl From<OciError> for Error {
    fn from(error: OciError) -> Error {
        match error {
            OciError::Cas(error) => error.into(),
            OciError::InvalidPath { .. }
            | OciError::DuplicatePath { .. }
            | OciError::NotADirectory { .. }
            | OciError::BadHardLink { .. }
            | OciError::UnsupportedFile { .. }
            | OciError::InputChanged { .. }
            | OciError::BadBlob { .. }
            | OciError::DuplicatePlatform { .. }
            | OciError::BadSetting { .. }
            | OciError::Unsupported(_) => Error::user(error.to_string()),
            OciError::Read { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Error::user(error.to_string())
            }
            OciError::Read { .. } | OciError::Write { .. } => Error::environment(error.to_string()),
            OciError::MissingBlobs { .. } | OciError::BadInputs { .. } => Error::internal(error.to_string()),
        }
    }
}
