//! OCI descriptors, image manifests, image indexes and platforms (image spec
//! v1.1), with `BTreeMap`s for annotations so serialization is canonical.
//! They also parse Docker v2 manifests and manifest lists, which have the
//! same shape, for pulled base images.

use std::collections::BTreeMap;
use std::fmt;

use crate::cache::{BlobRef, Digest};
use crate::oci::media_types;

/// A reference to a blob
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/descriptor.md#properties>):
/// `mediaType`, `digest` and `size` are REQUIRED; the size "SHOULD be
/// verified", which the CAS does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Only in indexes: "This OPTIONAL property describes the minimum runtime
    /// requirements of the image".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, blob: BlobRef) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: blob.digest,
            size: blob.size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    pub fn blob(&self) -> BlobRef {
        BlobRef { digest: self.digest, size: self.size }
    }
}

/// The platform of an image (index entries, and the config's top-level
/// fields): <https://github.com/opencontainers/image-spec/blob/v1.1.0/image-index.md#image-index-property-descriptions>.
/// `architecture` and `os` are REQUIRED and use Go's `GOARCH`/`GOOS` values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: impl Into<String>, architecture: impl Into<String>, variant: Option<String>) -> Platform {
        Platform {
            architecture: architecture.into(),
            os: os.into(),
            os_version: None,
            os_features: Vec::new(),
            variant,
        }
    }

    /// The machine berth runs on, in `GOOS`/`GOARCH` terms (the default of
    /// `oci_image_empty` and of `platform` for pulled indexes).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8".to_owned())),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7".to_owned())),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform::new("linux", architecture, variant)
    }

    /// Parses `os/arch[/variant]` (`linux/arm64/v8`), as `platform` attributes spell it.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|part| !part.is_empty())?;
        let architecture = parts.next().filter(|part| !part.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform::new(os, architecture, variant))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// An image manifest
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md#image-manifest-property-descriptions>):
/// "`schemaVersion` ... MUST be `2`", "`mediaType` ... SHOULD be used ... MUST
/// be `application/vnd.oci.image.manifest.v1+json`", `config` REQUIRED, and
/// in `layers` "the base layer MUST be at index 0. Subsequent layers MUST then
/// follow in stack order".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: media_types::MANIFEST.to_owned(),
            artifact_type: None,
            config,
            layers,
            annotations,
        }
    }
}

/// An image index
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/image-index.md#image-index-property-descriptions>):
/// `schemaVersion` MUST be 2; `manifests` REQUIRED; each entry's `platform`
/// "SHOULD" be set for image manifests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> Index {
        Index { schema_version: 2, media_type: media_types::INDEX.to_owned(), manifests, annotations }
    }
}

/// The annotation that names a manifest in an image layout's `index.json`
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/annotations.md#pre-defined-annotation-keys>).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Only the `mediaType` of a manifest or index, to tell which one a blob is.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MediaTypeProbe {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
}
