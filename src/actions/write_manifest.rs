//! `write_manifest`: the image manifest of an `oci_image_build` target: the
//! config, then the base image's layers followed by the new ones.
//!
//! Inputs: the `write_config` action (a [`ConfigOutput`]), the base image
//! (optional, an [`ImageOutput`]), the new layers ([`LayerOutput`]s).
//! Output: an [`ImageOutput`] with the layer descriptors and the platform.

use std::collections::BTreeMap;

use crate::actions::write_config::{action_inputs, read_config};
use crate::actions::{Action, ActionContext, ActionId, ActionResult, ConfigOutput, ImageOutput, Input, LayerOutput};
use crate::cache::{canonical_json, CanonicalJson};
use crate::error::Result;
use crate::oci::{media_types, Descriptor, Manifest, OciError};

/// The annotation naming the base image's manifest digest
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/annotations.md#pre-defined-annotation-keys>).
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// Writes one image manifest.
///
/// ```
/// # use berth::actions::{ActionId, WriteManifest};
/// let action = WriteManifest {
///     config: ActionId(3),
///     base: Some(ActionId(0)),
///     layers: vec![ActionId(1), ActionId(2)],
///     annotations: [("org.opencontainers.image.title".to_owned(), "app".to_owned())].into(),
/// };
/// ```
#[derive(Debug, Clone)]
pub struct WriteManifest {
    /// The `write_config` action of the same image (same base, same layers).
    pub config: ActionId,
    pub base: Option<ActionId>,
    /// The new layers, bottom first, as given to `write_config`.
    pub layers: Vec<ActionId>,
    /// The manifest's annotations (the `annotations` attribute). With a base,
    /// `org.opencontainers.image.base.digest` is added unless set here.
    pub annotations: BTreeMap<String, String>,
}

impl Action for WriteManifest {
    fn kind(&self) -> &'static str {
        "write_manifest"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "has_base": self.base.is_some(),
            "layers": self.layers.len(),
            "annotations": self.annotations,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        std::iter::once(self.config).chain(self.base).chain(self.layers.iter().copied()).map(Input::Action).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        const KIND: &str = "write_manifest";
        let has_base = self.base.is_some() as usize;
        let outputs = action_inputs(ctx, KIND, 1 + has_base + self.layers.len())?;
        let config_blob = ConfigOutput::from_result(outputs[0])?.config;
        let config = read_config(ctx, &config_blob)?;

        let mut annotations = self.annotations.clone();
        let mut layers = Vec::new();
        if let Some(base) = outputs[1..].first().filter(|_| has_base == 1) {
            let manifest_blob = ImageOutput::from_result(base)?.manifest;
            let bytes = ctx.read_blob(&manifest_blob)?;
            let base_manifest: Manifest = serde_json::from_slice(&bytes).map_err(|error| OciError::BadBlob {
                digest: manifest_blob.digest,
                what: "image manifest",
                reason: error.to_string(),
            })?;
            for mut layer in base_manifest.layers {
                // Same bytes, OCI name: the manifest is OCI, so are its layer types.
                layer.media_type = media_types::oci_layer_media_type(&layer.media_type).to_owned();
                layers.push(layer);
            }
            annotations.entry(BASE_DIGEST_ANNOTATION.to_owned()).or_insert_with(|| manifest_blob.digest.to_string());
        }
        for output in &outputs[1 + has_base..] {
            let layer = LayerOutput::from_result(output)?;
            layers.push(Descriptor::new(layer.media_type, layer.blob));
        }
        // The config lists one diff_id per layer, in the same order: a
        // mismatch means the base's manifest and config disagree.
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(OciError::DiffIdCount { layers: layers.len(), diff_ids: config.rootfs.diff_ids.len() }.into());
        }
        let manifest = Manifest::new(Descriptor::new(media_types::CONFIG, config_blob), layers, annotations);
        let bytes = canonical_json(&manifest);
        let manifest_blob = ctx.cas().put_bytes(&bytes)?;
        let output = ImageOutput {
            manifest: manifest_blob,
            config: config_blob,
            media_type: media_types::MANIFEST.to_owned(),
            layers: Some(manifest.layers),
            platform: Some(config.platform()),
        };
        Ok(output.to_result())
    }
}
