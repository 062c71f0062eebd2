//! `fetch_image`: the manifest and config of a pinned, pulled image, as the
//! [`ImageOutput`] every image action has, so a
//! pulled base plugs into `write_config` and `write_manifest` like a built
//! one. Its layers stay in the registry until a `fetch_blob` needs them.

use crate::actions::{Action, ActionContext, ActionResult, ImageOutput, Input};
use crate::cache::CanonicalJson;
use crate::error::Result;
use crate::oci::Descriptor;
use crate::registry::PulledImage;

#[derive(Debug)]
pub struct FetchImage {
    /// Resolved during analysis; the key holds only its digests.
    pub pulled: PulledImage,
}

impl Action for FetchImage {
    fn kind(&self) -> &'static str {
        "fetch_image"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "manifest": self.pulled.manifest,
            "manifest_media_type": self.pulled.manifest_media_type,
            "config": self.pulled.config,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        Vec::new()
    }

    /// Analysis put both blobs in the CAS; fetching again covers a cache
    /// trimmed by `berth cache gc` in between (a no-op when they are there).
    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let pulled = &self.pulled;
        let config = Descriptor::new(pulled.config_media_type.clone(), pulled.config);
        let client = ctx.registry()?;
        let config = client.fetch_blob(ctx.cas(), &pulled.image, &config, pulled.anonymous)?;
        // By its own digest: resolving the pinned digest again would pick
        // the host's image of an index, not necessarily this one.
        let manifest = client.fetch_manifest(ctx.cas(), &pulled.image, pulled.manifest, pulled.anonymous)?;
        let image = ImageOutput {
            manifest,
            config,
            media_type: pulled.manifest_media_type.clone(),
            layers: None,
            platform: None,
        };
        Ok(image.to_result())
    }
}
