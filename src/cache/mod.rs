//! The content-addressed store (CAS), the action cache and the
//! [`ActionResult`]s it holds, the file-digest memo, and the digests and keys
//! that name everything in them. It sits below `actions` ([`ActionId`] lives
//! here so `report` can name an action without them). `exec` reads and
//! writes it; `cli cache` measures and trims it.

mod ac;
mod action_result;
mod blob_source;
mod canonical;
mod check;
mod cas;
mod digest;
mod dir;
mod error;
mod gc;
mod key;
mod lock;
mod memo;
mod verify;

pub use ac::ActionCache;
pub use action_result::{ActionId, ActionResult};
pub use blob_source::BlobSource;
pub use canonical::{canonical_json, CanonicalJson};
pub use cas::{BlobRef, Cas, CasError, CasWriter};
pub use check::{verify_cache, CacheCheck};
pub use digest::{Digest, DigestError, Sha256Writer};
pub use dir::{resolve_cache_dir, Cache};
pub use error::CacheError;
pub use gc::{gc, stats, CacheStats, GcReport};
pub use key::{KeyInput, KeyInputs, BERTH_FORMAT_VERSION};
pub use lock::CacheLock;
pub use memo::{FileDigest, FileMemo, FileStamp};
pub use verify::VerifiedReader;
