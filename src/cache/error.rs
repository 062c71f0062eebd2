//! Errors of the cache layer (action cache, file-digest memo, lock, gc).

use std::io;
use std::path::PathBuf;

use crate::cache::CasError;
use crate::error::{Diagnose, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Cache I/O error at `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Cas(#[from] CasError),
    #[error("Source file `{path}` not found")]
    SourceMissing { path: PathBuf },
    #[error("Cannot read source file `{path}`: {source}")]
    SourceUnreadable { path: PathBuf, source: io::Error },
    #[error("Source file `{path}` changed while berth was reading it")]
    SourceChanged { path: PathBuf },
    #[error("No cache directory: neither `--cache-dir`, `BERTH_CACHE_DIR`, `XDG_CACHE_HOME` nor `HOME` is set")]
    NoCacheDir,
    #[error("Cannot lock the cache at `{path}`: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("Garbage collection needs the cache's exclusive lock")]
    NotExclusive,
}

impl Diagnose for CacheError {
    fn kind(&self) -> ErrorKind {
        match self {
            CacheError::Cas(error) => error.kind(),
            CacheError::SourceMissing { .. } | CacheError::SourceChanged { .. } => ErrorKind::User,
            CacheError::NotExclusive => ErrorKind::Internal,
            CacheError::Io { .. }
            | CacheError::SourceUnreadable { .. }
            | CacheError::NoCacheDir
            | CacheError::Lock { .. } => ErrorKind::Environment,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            CacheError::Cas(error) => return error.hint(),
            CacheError::SourceMissing { .. } => "check the `srcs` of the target that declares it",
            CacheError::SourceChanged { .. } => "run the build again once the file stops changing",
            _ => return None,
        };
        Some(hint.to_owned())
    }
}

/// Shorthand for mapping an `io::Error` at `path` into [`CacheError::Io`].
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.into();
    move |source| CacheError::Io { path, source }
}
