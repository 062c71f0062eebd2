//! The typed view of each action kind's result. The action cache stores one
//! generic form ([`ActionResult`]: named blobs plus JSON metadata); this
//! module is the only place that knows the names and fields, so no consumer
//! looks a blob up by a string and each concept has one name (a layer's
//! blob is `layer`, whoever made or fetched it).
//!
//! | view | kinds | blobs | metadata |
//! |---|---|---|---|
//! | [`LayerOutput`] | `pack_layer`, `run_step`, `fetch_blob` | `layer` | `media_type`, `diff_id` (not for a fetched layer) |
//! | [`DebLayerOutput`] | `deb_layer` | `layer` | as a layer, plus `packages` |
//! | [`ConfigOutput`] | `write_config` | `config` | `media_type`, `diff_ids`, `platform` |
//! | [`ImageOutput`] | `write_manifest`, `fetch_image` | `manifest`, `config` | `media_type` (the manifest's); `layers` and `platform` from `write_manifest` |
//! | [`IndexOutput`] | `write_index` | `index` | `media_type` |
//!
//! Converting a view to an `ActionResult` gives the canonical JSON these
//! kinds have always stored, so output digests (and the keys of every
//! dependent) do not change; the golden tests below hold that in place.

use serde::{Deserialize, Serialize};

use crate::cache::{ActionResult, BlobRef, Digest};
use crate::error::{Diagnose, ErrorKind};
use crate::oci::{Descriptor, PackedLayer, Platform};

const LAYER: &str = "layer";
const CONFIG: &str = "config";
const MANIFEST: &str = "manifest";
const INDEX: &str = "index";

/// A result that does not have the shape its reader expects: a bug in
/// berth (or a foreign action cache entry), never the user's input.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("The result read as {view} has no `{name}` blob (it has {found})")]
    MissingBlob { view: &'static str, name: &'static str, found: String },
    #[error("The result read as {view} has malformed metadata: {reason}")]
    BadMetadata { view: &'static str, reason: String },
    #[error("The layer `{digest}` has no diff_id (a fetched layer's is in its image's config)")]
    NoDiffId { digest: Digest },
}

impl Diagnose for OutputError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

fn blob(result: &ActionResult, view: &'static str, name: &'static str) -> Result<BlobRef, OutputError> {
    result.blobs.get(name).copied().ok_or_else(|| OutputError::MissingBlob {
        view,
        name,
        found: format!("{:?}", result.blobs.keys().collect::<Vec<_>>()),
    })
}

fn metadata<'a, T: Deserialize<'a>>(result: &'a ActionResult, view: &'static str) -> Result<T, OutputError> {
    T::deserialize(&result.metadata).map_err(|error| OutputError::BadMetadata { view, reason: error.to_string() })
}

fn result(blobs: &[(&str, BlobRef)], metadata: &impl Serialize) -> ActionResult {
    ActionResult {
        blobs: blobs.iter().map(|(name, blob)| ((*name).to_owned(), *blob)).collect(),
        metadata: serde_json::to_value(metadata).expect("metadata serializes to JSON"),
    }
}

/// A layer blob, made (`pack_layer`, `run_step`, `deb_layer`) or fetched
/// from a registry (`fetch_blob`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOutput {
    pub blob: BlobRef,
    pub media_type: String,
    /// The digest of the uncompressed tar. Known for the layers berth
    /// makes; a fetched layer has none (its image's config lists it).
    pub diff_id: Option<Digest>,
}

#[derive(Serialize, Deserialize)]
struct LayerMetadata {
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_id: Option<Digest>,
}

impl LayerOutput {
    const VIEW: &'static str = "a layer";

    /// The layer `oci::LayerBuilder` just wrote.
    pub fn packed(packed: &PackedLayer) -> LayerOutput {
        LayerOutput { blob: packed.blob, media_type: packed.media_type().to_owned(), diff_id: Some(packed.diff_id) }
    }

    /// Reads the layer of any kind that makes or fetches one.
    pub fn from_result(result: &ActionResult) -> Result<LayerOutput, OutputError> {
        let blob = blob(result, Self::VIEW, LAYER)?;
        let LayerMetadata { media_type, diff_id } = metadata(result, Self::VIEW)?;
        Ok(LayerOutput { blob, media_type, diff_id })
    }

    pub fn to_result(&self) -> ActionResult {
        result(&[(LAYER, self.blob)], &self.metadata())
    }

    fn metadata(&self) -> LayerMetadata {
        LayerMetadata { media_type: self.media_type.clone(), diff_id: self.diff_id }
    }

    /// The diff_id, which only a layer berth made has.
    pub fn required_diff_id(&self) -> Result<Digest, OutputError> {
        self.diff_id.ok_or(OutputError::NoDiffId { digest: self.blob.digest })
    }
}

/// One package of a `deb_layer`, as its `control` file names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebPackage {
    pub package: String,
    pub version: String,
    pub architecture: String,
}

/// A layer made from `.deb` files, with the packages it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebLayerOutput {
    pub layer: LayerOutput,
    pub packages: Vec<DebPackage>,
}

impl DebLayerOutput {
    const VIEW: &'static str = "a deb layer";

    pub fn from_result(result: &ActionResult) -> Result<DebLayerOutput, OutputError> {
        #[derive(Deserialize)]
        struct Packages {
            packages: Vec<DebPackage>,
        }
        let Packages { packages } = metadata(result, Self::VIEW)?;
        Ok(DebLayerOutput { layer: LayerOutput::from_result(result)?, packages })
    }

    pub fn to_result(&self) -> ActionResult {
        #[derive(Serialize)]
        struct Metadata<'a> {
            #[serde(flatten)]
            layer: LayerMetadata,
            packages: &'a [DebPackage],
        }
        let metadata = Metadata { layer: self.layer.metadata(), packages: &self.packages };
        result(&[(LAYER, self.layer.blob)], &metadata)
    }
}

/// An image config written for an `oci_image_build` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOutput {
    pub config: BlobRef,
    pub media_type: String,
    /// Every layer's diff_id, the base image's first.
    pub diff_ids: Vec<Digest>,
    pub platform: Platform,
}

#[derive(Serialize, Deserialize)]
struct ConfigMetadata {
    media_type: String,
    diff_ids: Vec<Digest>,
    platform: Platform,
}

impl ConfigOutput {
    const VIEW: &'static str = "an image config";

    pub fn from_result(result: &ActionResult) -> Result<ConfigOutput, OutputError> {
        let config = blob(result, Self::VIEW, CONFIG)?;
        let ConfigMetadata { media_type, diff_ids, platform } = metadata(result, Self::VIEW)?;
        Ok(ConfigOutput { config, media_type, diff_ids, platform })
    }

    pub fn to_result(&self) -> ActionResult {
        let metadata = ConfigMetadata {
            media_type: self.media_type.clone(),
            diff_ids: self.diff_ids.clone(),
            platform: self.platform.clone(),
        };
        result(&[(CONFIG, self.config)], &metadata)
    }
}

/// An image: its manifest and config, built (`write_manifest`) or pulled
/// (`fetch_image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutput {
    pub manifest: BlobRef,
    pub config: BlobRef,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's layer descriptors (built images only).
    pub layers: Option<Vec<Descriptor>>,
    /// The platform from the config (built images only).
    pub platform: Option<Platform>,
}

#[derive(Serialize, Deserialize)]
struct ImageMetadata {
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

impl ImageOutput {
    const VIEW: &'static str = "an image";

    pub fn from_result(result: &ActionResult) -> Result<ImageOutput, OutputError> {
        let manifest = blob(result, Self::VIEW, MANIFEST)?;
        let config = blob(result, Self::VIEW, CONFIG)?;
        let ImageMetadata { media_type, layers, platform } = metadata(result, Self::VIEW)?;
        Ok(ImageOutput { manifest, config, media_type, layers, platform })
    }

    pub fn to_result(&self) -> ActionResult {
        let metadata = ImageMetadata {
            media_type: self.media_type.clone(),
            layers: self.layers.clone(),
            platform: self.platform.clone(),
        };
        result(&[(MANIFEST, self.manifest), (CONFIG, self.config)], &metadata)
    }
}

/// A multi-platform image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOutput {
    pub index: BlobRef,
    pub media_type: String,
}

#[derive(Serialize, Deserialize)]
struct IndexMetadata {
    media_type: String,
}

impl IndexOutput {
    const VIEW: &'static str = "an image index";

    pub fn from_result(result: &ActionResult) -> Result<IndexOutput, OutputError> {
        let index = blob(result, Self::VIEW, INDEX)?;
        let IndexMetadata { media_type } = metadata(result, Self::VIEW)?;
        Ok(IndexOutput { index, media_type })
    }

    pub fn to_result(&self) -> ActionResult {
        result(&[(INDEX, self.index)], &IndexMetadata { media_type: self.media_type.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::canonical_json;

    fn blob(bytes: &[u8]) -> BlobRef {
        BlobRef { digest: Digest::of(bytes), size: bytes.len() as u64 }
    }

    fn text(result: &ActionResult) -> String {
        String::from_utf8(canonical_json(result)).unwrap()
    }

    /// `{"digest":"sha256:<hex of bytes>","size":N}`.
    fn blob_json(bytes: &[u8]) -> String {
        format!(r#"{{"digest":"{}","size":{}}}"#, Digest::of(bytes), bytes.len())
    }

    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    /// The stored form of every kind, as berth has always written it: a
    /// change here changes every output digest and the key of every
    /// dependent action (then bump the kind's `kind_version`).
    #[test]
    fn results_keep_their_stored_form() {
        let layer = LayerOutput { blob: blob(b"tar.gz"), media_type: GZIP.into(), diff_id: Some(Digest::of(b"tar")) };
        assert_eq!(
            text(&layer.to_result()),
            format!(
                r#"{{"blobs":{{"layer":{}}},"metadata":{{"diff_id":"{}","media_type":"{GZIP}"}}}}"#,
                blob_json(b"tar.gz"),
                Digest::of(b"tar")
            )
        );
        let fetched = LayerOutput { diff_id: None, ..layer.clone() };
        assert_eq!(
            text(&fetched.to_result()),
            format!(r#"{{"blobs":{{"layer":{}}},"metadata":{{"media_type":"{GZIP}"}}}}"#, blob_json(b"tar.gz"))
        );
        let deb = DebLayerOutput {
            layer: layer.clone(),
            packages: vec![DebPackage {
                package: "busybox".into(),
                version: "1.0".into(),
                architecture: "amd64".into(),
            }],
        };
        assert_eq!(
            text(&deb.to_result()),
            format!(
                r#"{{"blobs":{{"layer":{}}},"metadata":{{"diff_id":"{}","media_type":"{GZIP}","packages":[{{"architecture":"amd64","package":"busybox","version":"1.0"}}]}}}}"#,
                blob_json(b"tar.gz"),
                Digest::of(b"tar")
            )
        );
        let platform = Platform::new("linux", "arm64", Some("v8".into()));
        let config = ConfigOutput {
            config: blob(b"config"),
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            diff_ids: vec![Digest::of(b"tar")],
            platform: platform.clone(),
        };
        assert_eq!(
            text(&config.to_result()),
            format!(
                r#"{{"blobs":{{"config":{}}},"metadata":{{"diff_ids":["{}"],"media_type":"application/vnd.oci.image.config.v1+json","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}}}"#,
                blob_json(b"config"),
                Digest::of(b"tar")
            )
        );
        let built = ImageOutput {
            manifest: blob(b"manifest"),
            config: blob(b"config"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            layers: Some(vec![Descriptor::new(GZIP, blob(b"tar.gz"))]),
            platform: Some(platform),
        };
        assert_eq!(
            text(&built.to_result()),
            format!(
                r#"{{"blobs":{{"config":{},"manifest":{}}},"metadata":{{"layers":[{{"digest":"{}","mediaType":"{GZIP}","size":6}}],"media_type":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}}}"#,
                blob_json(b"config"),
                blob_json(b"manifest"),
                Digest::of(b"tar.gz")
            )
        );
        let pulled = ImageOutput { layers: None, platform: None, ..built.clone() };
        assert_eq!(
            text(&pulled.to_result()),
            format!(
                r#"{{"blobs":{{"config":{},"manifest":{}}},"metadata":{{"media_type":"application/vnd.oci.image.manifest.v1+json"}}}}"#,
                blob_json(b"config"),
                blob_json(b"manifest")
            )
        );
        let index = IndexOutput { index: blob(b"index"), media_type: "application/vnd.oci.image.index.v1+json".into() };
        assert_eq!(
            text(&index.to_result()),
            format!(
                r#"{{"blobs":{{"index":{}}},"metadata":{{"media_type":"application/vnd.oci.image.index.v1+json"}}}}"#,
                blob_json(b"index")
            )
        );

        // And each reads back as itself.
        assert_eq!(LayerOutput::from_result(&layer.to_result()).unwrap(), layer);
        assert_eq!(LayerOutput::from_result(&fetched.to_result()).unwrap(), fetched);
        assert_eq!(DebLayerOutput::from_result(&deb.to_result()).unwrap(), deb);
        assert_eq!(LayerOutput::from_result(&deb.to_result()).unwrap(), layer, "a deb layer is a layer");
        assert_eq!(ConfigOutput::from_result(&config.to_result()).unwrap(), config);
        assert_eq!(ImageOutput::from_result(&built.to_result()).unwrap(), built);
        assert_eq!(ImageOutput::from_result(&pulled.to_result()).unwrap(), pulled);
        assert_eq!(IndexOutput::from_result(&index.to_result()).unwrap(), index);
    }

    #[test]
    fn a_result_of_another_shape_is_refused_by_name() {
        let index = IndexOutput { index: blob(b"index"), media_type: "x".into() }.to_result();
        let error = ImageOutput::from_result(&index).unwrap_err();
        assert_eq!(error.to_string(), r#"The result read as an image has no `manifest` blob (it has ["index"])"#);
        let mut layer =
            LayerOutput { blob: blob(b"l"), media_type: GZIP.into(), diff_id: Some(Digest::of(b"t")) }.to_result();
        layer.metadata = serde_json::json!({"diff_id": "not a digest", "media_type": GZIP});
        assert!(matches!(LayerOutput::from_result(&layer), Err(OutputError::BadMetadata { .. })));
        let fetched = LayerOutput { blob: blob(b"l"), media_type: GZIP.into(), diff_id: None };
        assert!(matches!(fetched.required_diff_id(), Err(OutputError::NoDiffId { .. })));
        assert_eq!(
            crate::error::Error::from(fetched.required_diff_id().unwrap_err()).kind,
            crate::error::ErrorKind::Internal
        );
    }
}
