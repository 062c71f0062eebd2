//! `write_index`: a multi-platform image index (`oci_image_index`).
//!
//! Inputs: image actions ([`ImageOutput`]s). Output: an [`IndexOutput`].
//! Each entry's platform comes from its image's config; two images of one
//! platform are a user error.

use std::collections::BTreeMap;

use crate::actions::write_config::{action_inputs, read_config};
use crate::actions::{Action, ActionContext, ActionId, ActionResult, ImageOutput, IndexOutput, Input};
use crate::cache::{canonical_json, CanonicalJson};
use crate::error::Result;
use crate::oci::{media_types, read_root, Descriptor, Index, OciError};

/// Writes one image index.
///
/// ```
/// # use berth::actions::{ActionId, WriteIndex};
/// let action = WriteIndex {
///     images: vec![ActionId(4), ActionId(9)],
///     image_labels: vec!["//app:image-amd64".into(), "//app:image-arm64".into()],
///     annotations: Default::default(),
/// };
/// ```
#[derive(Debug, Clone)]
pub struct WriteIndex {
    /// The images, in the order of the `images` attribute (kept in the index).
    pub images: Vec<ActionId>,
    /// The images' labels, for error messages only (not a param).
    pub image_labels: Vec<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Action for WriteIndex {
    fn kind(&self) -> &'static str {
        "write_index"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({ "images": self.images.len(), "annotations": self.annotations }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.images.iter().copied().map(Input::Action).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        const KIND: &str = "write_index";
        let outputs = action_inputs(ctx, KIND, self.images.len())?;
        let mut manifests: Vec<Descriptor> = Vec::new();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (position, output) in outputs.iter().enumerate() {
            let image = ImageOutput::from_result(output)?;
            let manifest = image.manifest;
            // A remote hit's manifest may not be local yet.
            ctx.blob_path(&manifest)?;
            let root = read_root(ctx.cas(), manifest)?;
            if root.is_index() {
                return Err(OciError::NestedIndex { image: self.label(position) }.into());
            }
            let platform = read_config(ctx, &image.config)?.platform();
            let key = platform.to_string();
            if let Some((_, first)) = seen.iter().find(|(existing, _)| *existing == key) {
                return Err(OciError::DuplicatePlatform {
                    platform: key,
                    first: self.label(*first),
                    second: self.label(position),
                }
                .into());
            }
            seen.push((key, position));
            let mut descriptor = Descriptor::new(root.media_type, manifest);
            descriptor.platform = Some(platform);
            manifests.push(descriptor);
        }
        let index = Index::new(manifests, self.annotations.clone());
        let bytes = canonical_json(&index);
        let blob = ctx.cas().put_bytes(&bytes)?;
        Ok(IndexOutput { index: blob, media_type: media_types::INDEX.to_owned() }.to_result())
    }
}

impl WriteIndex {
    fn label(&self, position: usize) -> String {
        self.image_labels.get(position).cloned().unwrap_or_else(|| format!("image #{}", position + 1))
    }
}
