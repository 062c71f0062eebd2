//! `write_config`: the image config of an `oci_image_build` target, its base
//! image's config merged with the target's settings and new layers.
//!
//! Inputs: the base image (optional; an [`ImageOutput`]), then the new
//! layers (each a [`LayerOutput`] with a diff_id). Output: a
//! [`ConfigOutput`] (its `diff_ids` are all of them, base first).

use crate::actions::{
    Action, ActionContext, ActionId, ActionResult, ConfigOutput, ImageOutput, Input, LayerOutput, ResolvedInput,
};
use crate::cache::{canonical_json, BlobRef, CanonicalJson};
use crate::error::Result;
use crate::oci::{media_types, ConfigSettings, ImageConfig, NewLayer, OciError};

/// Writes one image config.
///
/// ```
/// # use berth::actions::{ActionId, ConfigLayer, WriteConfig};
/// # use berth::oci::ConfigSettings;
/// let action = WriteConfig {
///     base: Some(ActionId(0)),
///     layers: vec![ConfigLayer { action: ActionId(1), created_by: "berth oci_layer //app:files".into() }],
///     settings: ConfigSettings { cmd: Some(vec!["/app".into()]), ..ConfigSettings::default() },
/// };
/// ```
#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// The base image's action (`None` for `//:empty`: then
    /// `settings.architecture` is required and `os` defaults to `linux`).
    pub base: Option<ActionId>,
    /// The new layers, bottom first.
    pub layers: Vec<ConfigLayer>,
    pub settings: ConfigSettings,
}

/// A new layer of an image and its history line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLayer {
    pub action: ActionId,
    /// The history's `created_by`, e.g. `berth oci_layer //app:files`.
    pub created_by: String,
}

impl Action for WriteConfig {
    fn kind(&self) -> &'static str {
        "write_config"
    }

    /// 2: `$VAR` and `${VAR}` in `env` values expand against the base's env.
    fn kind_version(&self) -> u32 {
        2
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "has_base": self.base.is_some(),
            "created_by": self.layers.iter().map(|layer| &layer.created_by).collect::<Vec<_>>(),
            "settings": self.settings,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.base.iter().copied().chain(self.layers.iter().map(|layer| layer.action)).map(Input::Action).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let outputs = action_inputs(ctx, "write_config", self.base.is_some() as usize + self.layers.len())?;
        let (base, layers) = outputs.split_at(self.base.is_some() as usize);
        let base_config = match base.first() {
            Some(base) => Some(read_config(ctx, &ImageOutput::from_result(base)?.config)?),
            None => None,
        };
        let new_layers = layers
            .iter()
            .zip(&self.layers)
            .map(|(output, layer)| {
                let diff_id = LayerOutput::from_result(output)?.required_diff_id()?;
                Ok(NewLayer { diff_id, created_by: layer.created_by.clone() })
            })
            .collect::<Result<Vec<_>>>()?;
        let config = ImageConfig::derive(base_config.as_ref(), &self.settings, &new_layers)?;
        let bytes = canonical_json(&config);
        let blob = ctx.cas().put_bytes(&bytes)?;
        let output = ConfigOutput {
            config: blob,
            media_type: media_types::CONFIG.to_owned(),
            platform: config.platform(),
            diff_ids: config.rootfs.diff_ids,
        };
        Ok(output.to_result())
    }
}

/// The action outputs among `ctx.inputs`, checking there are `expected`.
pub(crate) fn action_inputs<'a>(
    ctx: &'a ActionContext<'_>,
    kind: &'static str,
    expected: usize,
) -> Result<Vec<&'a ActionResult>, OciError> {
    let outputs: Vec<&ActionResult> = ctx
        .inputs
        .iter()
        .map(|input| match input {
            ResolvedInput::Action(output) => Ok(*output),
            ResolvedInput::Source { path, .. } => Err(OciError::BadInputs {
                kind,
                reason: format!("source file `{}` among image inputs", path.display()),
            }),
        })
        .collect::<Result<_, _>>()?;
    if outputs.len() != expected {
        return Err(OciError::BadInputs { kind, reason: format!("{} inputs, expected {expected}", outputs.len()) });
    }
    Ok(outputs)
}

/// An image config blob, parsed.
pub(crate) fn read_config(ctx: &ActionContext<'_>, blob: &BlobRef) -> Result<ImageConfig, OciError> {
    let bytes = ctx.read_blob(blob)?;
    serde_json::from_slice(&bytes).map_err(|error| OciError::BadBlob {
        digest: blob.digest,
        what: "image config",
        reason: error.to_string(),
    })
}
