//! `merge_layers`: one layer from several (vinci's combined specs,
//! BuildStream's composed elements): an `oci_layer` whose `srcs` name
//! `deb_layer` or `oci_build_layer` targets or tar files.
//!
//! Inputs: layers (each a [`LayerOutput`], any compression), in `srcs`
//! order; the declarative parts of the `oci_layer` come packed uncompressed
//! between them. Executing it reads each layer's tar into one
//! `oci::LayerBuilder`, a later entry replacing an earlier one at the same
//! path as extraction would, and packs the union sorted, with mtimes
//! normalised, so the result does not depend on the order files were read.
//! Output: a [`LayerOutput`].

use std::fs::File;
use std::io::BufReader;

use crate::actions::write_config::action_inputs;
use crate::actions::{Action, ActionContext, ActionId, ActionResult, Input, LayerOutput};
use crate::cache::CanonicalJson;
use crate::error::Result;
use crate::oci::{decoder, Compression, LayerBuilder, OciError};

/// Merges `layers` into one, later entries winning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeLayers {
    pub layers: Vec<ActionId>,
    pub compression: Compression,
    pub source_date_epoch: u64,
}

impl Action for MergeLayers {
    fn kind(&self) -> &'static str {
        "merge_layers"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "compression": self.compression,
            "source_date_epoch": self.source_date_epoch,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.layers.iter().copied().map(Input::Action).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let outputs = action_inputs(ctx, "merge_layers", self.layers.len())?;
        let mut builder = LayerBuilder::new(self.source_date_epoch);
        for (index, output) in outputs.into_iter().enumerate() {
            let layer = LayerOutput::from_result(output)?;
            let path = ctx.blob_path(&layer.blob)?;
            let file = File::open(&path).map_err(OciError::read(&path))?;
            let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| OciError::BadInputs {
                kind: "merge_layers",
                reason: format!("layer media type `{}`", layer.media_type),
            })?;
            let reader = decoder(BufReader::new(file), compression).map_err(OciError::read(&path))?;
            // One spool directory per layer: `add_tar` names spooled files by index.
            let spool = ctx.scratch.join(format!("spool-{index}"));
            std::fs::create_dir_all(&spool).map_err(OciError::write(spool.display().to_string()))?;
            builder.add_tar(reader, &spool)?;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let packed = builder.write_to_cas(ctx.cas(), self.compression, threads)?;
        Ok(LayerOutput::packed(&packed).to_result())
    }
}
