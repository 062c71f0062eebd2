//! `import_tar`: a `.tar`, `.tar.gz` or `.tar.zst` file of the workspace
//! used as a layer as it is (rules_oci's `tars`), its bytes the layer blob.
//!
//! Input: the source file. Executing it unpacks the archive into the
//! scratch directory exactly as extraction does, so an entry extraction
//! would refuse (`..`, a path through a symlink, a device node) fails the
//! build here, and hashes the decompressed tar for the diff_id. Output: a
//! [`LayerOutput`] whose media type follows the compression found in the
//! file's magic bytes, not its name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use crate::actions::{Action, ActionContext, ActionResult, Input, LayerOutput, ResolvedInput};
use crate::cache::CanonicalJson;
use crate::error::{Error, Result};
use crate::oci::{media_types, unpack_with_diff_id, ExtractLimits, OciError};

/// Uses one tar file of the workspace as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportTar {
    /// Workspace-relative path of the archive.
    pub source: PathBuf,
}

impl Action for ImportTar {
    fn kind(&self) -> &'static str {
        "import_tar"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        // The file's digest is the input; where it lives does not change the layer.
        CanonicalJson::of(&serde_json::json!({}))
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::Source(self.source.clone())]
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let Some(ResolvedInput::Source { path, .. }) = ctx.inputs.first() else {
            let reason = "expected the archive as its one input".to_owned();
            return Err(OciError::BadInputs { kind: "import_tar", reason }.into());
        };
        let shown = self.source.display();
        let read_error =
            |error: std::io::Error| Error::user(format!("Cannot read the layer archive `{shown}`: {error}"));
        let mut magic = [0u8; 4];
        let read = File::open(path).and_then(|mut file| read_up_to(&mut file, &mut magic)).map_err(read_error)?;
        let media_type = match &magic[..read] {
            [0x1f, 0x8b, ..] => media_types::LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => media_types::LAYER_ZSTD,
            _ => media_types::LAYER_TAR,
        };
        let root = ctx.scratch.join("check");
        std::fs::create_dir_all(&root).map_err(read_error)?;
        let file = File::open(path).map_err(read_error)?;
        let (_, diff_id) = unpack_with_diff_id(BufReader::new(file), &root, &ExtractLimits::default())
            .map_err(|error| Error::from(error).context(format!("layer archive `{shown}`")))?;
        let mut writer = ctx.cas().writer()?;
        let mut file = File::open(path).map_err(read_error)?;
        std::io::copy(&mut file, &mut writer).map_err(read_error)?;
        let blob = writer.commit()?;
        Ok(LayerOutput { blob, media_type: media_type.to_owned(), diff_id: Some(diff_id) }.to_result())
    }
}

/// Reads until `buf` is full or the file ends; how many bytes it holds.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}
