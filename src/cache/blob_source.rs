//! [`BlobSource`]: where the bytes of a blob that an action result names
//! but the CAS lacks come from: the remote cache, whose hits are recorded
//! without their bytes ("build without the bytes"). `actions` reads input
//! blobs through it and `exec` fetches what a build publishes; `remote`
//! implements it.

use crate::cache::{BlobRef, Cas, Digest};

/// A store that can fill the local CAS on demand.
pub trait BlobSource: Send + Sync {
    /// Downloads `blobs` into `cas`, each checked against its digest before
    /// it is committed. Returns the digests it could not get (lost by the
    /// server, corrupt, or the server down); nothing of those is in `cas`.
    fn fetch(&self, blobs: &[BlobRef], cas: &Cas) -> Vec<Digest>;

    /// Whether a fetch of `digest` failed, or would, during this session:
    /// the action that produced it must run again locally.
    fn is_lost(&self, digest: &Digest) -> bool;
}
