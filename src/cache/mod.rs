//! The content-addressed store (CAS), the action cache, and the digests that
//! name everything in them.

mod cas;
mod digest;

pub use cas::{BlobRef, Cas, CasError, CasWriter};
pub use digest::{Digest, DigestError, Sha256Writer};
