//! `fetch_blob`: a layer of a pulled image, fetched from its
//! registry when some action needs its bytes.
//!
//! The key holds the blob's digest, size and media type, not the repository:
//! where the bytes come from does not change them, so the same layer pulled
//! through two repositories or a mirror is one cache entry.

use crate::actions::{Action, ActionContext, ActionResult, Input, LayerOutput};
use crate::cache::CanonicalJson;
use crate::error::Result;
use crate::oci::Descriptor;
use crate::registry::ImageRef;

/// Fetches one layer of `image` into the CAS. Output: a [`LayerOutput`]
/// without a diff_id (the image's config has it).
#[derive(Debug)]
pub struct FetchBlob {
    /// Where to fetch from; not part of the key.
    pub image: ImageRef,
    pub anonymous: bool,
    /// The layer's descriptor from the pulled manifest.
    pub descriptor: Descriptor,
}

impl Action for FetchBlob {
    fn kind(&self) -> &'static str {
        "fetch_blob"
    }

    /// 2: the blob is named `layer`, as every other layer's (it was `blob`).
    fn kind_version(&self) -> u32 {
        2
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "digest": self.descriptor.digest,
            "size": self.descriptor.size,
            "media_type": self.descriptor.media_type,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        Vec::new()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let blob = ctx.registry()?.fetch_blob(ctx.cas(), &self.image, &self.descriptor, self.anonymous)?;
        Ok(LayerOutput { blob, media_type: self.descriptor.media_type.clone(), diff_id: None }.to_result())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::actions::ExecutionContext;
    use crate::cache::{BlobRef, Cas, Digest};
    use crate::oci::LayerStore;
    use crate::registry::{ClientOptions, RegistryHandle};

    fn action(repository: &str, bytes: &[u8]) -> FetchBlob {
        FetchBlob {
            image: ImageRef::parse(repository).unwrap(),
            anonymous: true,
            descriptor: Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                BlobRef { digest: Digest::of(bytes), size: bytes.len() as u64 },
            ),
        }
    }

    #[test]
    fn the_repository_is_not_part_of_the_key() {
        let a = action("127.0.0.1:5000/a", b"layer");
        let b = action("127.0.0.1:5000/b", b"layer");
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), action("127.0.0.1:5000/a", b"other").params());
        assert_eq!(a.params().to_value()["digest"], Digest::of(b"layer").to_string());
    }

    #[test]
    fn a_cached_blob_needs_no_network_and_a_missing_one_fails_offline() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let fetch = action("127.0.0.1:9/a", b"layer");
        let offline = RegistryHandle::new(ClientOptions { offline: true, ..ClientOptions::default() });
        let exec = ExecutionContext::new(cas.clone(), LayerStore::new(dir.path())).with_registry(Arc::new(offline));
        let ctx = ActionContext::new(&exec, Vec::new(), dir.path());
        let error = fetch.execute(&ctx).unwrap_err();
        assert!(error.message.contains("--offline"), "{}", error.message);

        let blob = cas.put_bytes(b"layer").unwrap();
        let output = LayerOutput::from_result(&fetch.execute(&ctx).unwrap()).unwrap();
        assert_eq!(output.blob, blob);
        assert_eq!(output.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    }
}
