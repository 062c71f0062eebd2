//! `import_image`: an image or index from the workspace (`oci_import`): an
//! OCI image layout directory, an OCI archive or a docker-archive.
//!
//! Inputs: the archive file, or every file of the layout directory. The
//! action reads them with `oci::ImageSource`, checks every blob against
//! what references it, and puts the blobs in the CAS. Output: with `layer`,
//! that layer of the image ([`LayerOutput`]; one action per layer, so an
//! image's layers are named by results as those of built images are);
//! otherwise the image ([`ImageOutput`]) or, for a source of several images
//! without `entry`, the index ([`IndexOutput`]).

use std::path::PathBuf;

use crate::actions::{
    Action, ActionContext, ActionResult, ImageOutput, IndexOutput, Input, LayerOutput, ResolvedInput,
};
use crate::cache::CanonicalJson;
use crate::error::Result;
use crate::oci::{media_types, ImageConfig, ImageSource, Imported, ImportedImage, Manifest, OciError};

/// Imports one image, index or layer of an image source of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportImage {
    /// The source as the user named it (workspace-relative).
    pub src: PathBuf,
    /// For a layout directory, each file's path inside it, in input order;
    /// empty for an archive (the one input is `src`).
    pub layout_files: Vec<String>,
    /// Which image of an index; `None`: the source's root.
    pub entry: Option<usize>,
    /// Which layer of that image, for a layer action.
    pub layer: Option<usize>,
}

impl ImportImage {
    fn source(&self, ctx: &ActionContext<'_>) -> Result<ImageSource> {
        let shown = self.src.display().to_string();
        let paths: Vec<PathBuf> = ctx
            .inputs
            .iter()
            .map(|input| match input {
                ResolvedInput::Source { path, .. } => Ok(path.clone()),
                ResolvedInput::Action(_) => {
                    Err(OciError::BadInputs { kind: "import_image", reason: "an action among its inputs".to_owned() })
                }
            })
            .collect::<Result<_, _>>()?;
        if self.layout_files.is_empty() {
            let [path] = paths.as_slice() else {
                return Err(
                    OciError::BadInputs { kind: "import_image", reason: format!("{} inputs", paths.len()) }.into()
                );
            };
            return Ok(ImageSource::read(path, &shown)?);
        }
        let files: Vec<(String, PathBuf)> = self.layout_files.iter().cloned().zip(paths).collect();
        Ok(ImageSource::from_files(&files, &shown)?)
    }
}

impl Action for ImportImage {
    fn kind(&self) -> &'static str {
        "import_image"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({
            "layout_files": self.layout_files,
            "entry": self.entry,
            "layer": self.layer,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        if self.layout_files.is_empty() {
            return vec![Input::Source(self.src.clone())];
        }
        self.layout_files.iter().map(|name| Input::Source(self.src.join(name))).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let source = self.source(ctx)?;
        let imported = source.import(ctx.cas(), self.entry)?;
        let image = match (imported, self.layer) {
            (Imported::Index { index, .. }, None) => {
                return Ok(IndexOutput { index, media_type: media_types::INDEX.to_owned() }.to_result())
            }
            (Imported::Index { .. }, Some(_)) => {
                let reason = "a layer of an index".to_owned();
                return Err(OciError::BadInputs { kind: "import_image", reason }.into());
            }
            (Imported::Image(image), _) => image,
        };
        if let Some(layer) = self.layer {
            let (blob, media_type) = image.layers.get(layer).cloned().ok_or_else(|| OciError::BadInputs {
                kind: "import_image",
                reason: format!("no layer {layer} in `{}`", self.src.display()),
            })?;
            return Ok(LayerOutput { blob, media_type, diff_id: None }.to_result());
        }
        image_output(ctx, &image)
    }
}

fn image_output(ctx: &ActionContext<'_>, image: &ImportedImage) -> Result<ActionResult> {
    let manifest: Manifest = serde_json::from_slice(&ctx.read_blob(&image.manifest)?).map_err(|error| {
        OciError::BadBlob { digest: image.manifest.digest, what: "manifest", reason: error.to_string() }
    })?;
    let config: ImageConfig = serde_json::from_slice(&ctx.read_blob(&image.config)?).map_err(|error| {
        OciError::BadBlob { digest: image.config.digest, what: "config", reason: error.to_string() }
    })?;
    let media_type = match manifest.media_type.as_str() {
        "" => media_types::MANIFEST.to_owned(),
        stored => stored.to_owned(),
    };
    let output = ImageOutput {
        manifest: image.manifest,
        config: image.config,
        media_type,
        layers: Some(manifest.layers),
        platform: Some(config.platform()),
    };
    Ok(output.to_result())
}
