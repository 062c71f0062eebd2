//! The manifest and index shapes berth reads from registries: OCI image
//! manifests and indexes, and their Docker v2 schema 2 twins (same fields,
//! other media types).
//!
//! Spec: <https://github.com/opencontainers/image-spec/blob/main/manifest.md>
//! and <https://github.com/opencontainers/image-spec/blob/main/image-index.md>.

use crate::oci::{media_types, Descriptor, Platform};
use crate::registry::RegistryError;

/// The `Accept` header for manifest GETs: every manifest and index type.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused before they are read in full
/// (the distribution spec lets registries cap manifests at 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Parses a `platform` attribute: `os/architecture` or `os/architecture/variant`.
pub fn parse_platform(text: &str) -> Result<Platform, RegistryError> {
    Platform::parse(text).ok_or_else(|| RegistryError::BadPlatform { text: text.to_owned() })
}

/// Whether an index entry for `entry` serves a request for `wanted`: os and
/// architecture equal, and the variant equal when `wanted` names one
/// (`arm64` without a variant means `v8`).
pub fn platform_satisfies(entry: &Platform, wanted: &Platform) -> bool {
    let normal = |platform: &Platform| match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_owned()),
        (_, variant) => variant.map(str::to_owned),
    };
    entry.os == wanted.os
        && entry.architecture == wanted.architecture
        && (wanted.variant.is_none() || normal(entry) == normal(wanted))
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Manifest { media_type: String, config: Box<Descriptor>, layers: Vec<Descriptor> },
    Index { media_type: String, manifests: Vec<Descriptor> },
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Parses manifest bytes. The media type comes from the document's
/// `mediaType` if present, else from the HTTP `Content-Type`, else from its
/// shape (`manifests` means an index).
pub(crate) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    if raw.schema_version != Some(2) {
        return Err(format!(
            "`schemaVersion` is {:?}, only 2 is supported (Docker schema 1 manifests are obsolete)",
            raw.schema_version
        ));
    }
    let content_type = content_type.map(|value| value.split(';').next().unwrap_or(value).trim());
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.filter(|t| media_types::is_index(t) || media_types::is_manifest(t)).map(str::to_owned))
        .unwrap_or_else(|| if raw.manifests.is_some() { media_types::INDEX } else { media_types::MANIFEST }.to_owned());
    if media_types::is_index(&media_type) {
        let manifests = raw.manifests.ok_or("an index without `manifests`")?;
        Ok(Parsed::Index { media_type, manifests })
    } else if media_types::is_manifest(&media_type) {
        let config = raw.config.ok_or("a manifest without `config`")?;
        Ok(Parsed::Manifest { media_type, config: Box::new(config), layers: raw.layers.unwrap_or_default() })
    } else {
        Err(format!("unsupported media type `{media_type}`"))
    }
}

/// Picks the index entry for `wanted`; the error lists what is available.
pub(crate) fn select_platform<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, Vec<String>> {
    let images =
        || manifests.iter().filter(|entry| media_types::is_manifest(&entry.media_type) || entry.media_type.is_empty());
    images()
        .find(|entry| entry.platform.as_ref().is_some_and(|platform| platform_satisfies(platform, wanted)))
        .ok_or_else(|| {
            images()
                .filter_map(|entry| entry.platform.as_ref())
                .filter(|platform| platform.os != "unknown")
                .map(Platform::to_string)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::{BlobRef, Digest};

    fn entry(platform: &str) -> Descriptor {
        let mut entry =
            Descriptor::new(media_types::MANIFEST, BlobRef { digest: Digest::of(platform.as_bytes()), size: 1 });
        entry.platform = Some(parse_platform(platform).unwrap());
        entry
    }

    #[test]
    fn selects_platforms_and_lists_the_available_ones() {
        let entries = [entry("linux/amd64"), entry("linux/arm64/v8"), entry("linux/arm/v7"), entry("unknown/unknown")];
        let pick = |text: &str| select_platform(&entries, &parse_platform(text).unwrap()).map(|d| d.digest);
        assert_eq!(pick("linux/amd64").unwrap(), entries[0].digest);
        assert_eq!(pick("linux/arm64").unwrap(), entries[1].digest);
        assert_eq!(pick("linux/arm64/v8").unwrap(), entries[1].digest);
        assert_eq!(pick("linux/arm").unwrap(), entries[2].digest);
        assert_eq!(pick("linux/s390x").unwrap_err(), ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        assert!(pick("linux/arm/v6").is_err());
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/amd64/v2/x").is_err());
    }

    #[test]
    fn parses_oci_and_docker_manifests_and_indexes() {
        let layer = r#"{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3,
            "digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;
        let docker = format!(
            r#"{{"schemaVersion": 2, "mediaType": "{}", "config": {layer}, "layers": [{layer}, {layer}]}}"#,
            media_types::DOCKER_MANIFEST
        );
        match parse(docker.as_bytes(), None).unwrap() {
            Parsed::Manifest { media_type, layers, .. } => {
                assert_eq!((media_type.as_str(), layers.len()), (media_types::DOCKER_MANIFEST, 2))
            }
            other => panic!("{other:?}"),
        }
        let index = format!(r#"{{"schemaVersion": 2, "manifests": [{layer}]}}"#);
        assert!(matches!(parse(index.as_bytes(), None).unwrap(), Parsed::Index { .. }));
        let typed = format!(r#"{{"schemaVersion": 2, "config": {layer}}}"#);
        match parse(typed.as_bytes(), Some("application/vnd.docker.distribution.manifest.v2+json")).unwrap() {
            Parsed::Manifest { media_type, .. } => assert_eq!(media_type, media_types::DOCKER_MANIFEST),
            other => panic!("{other:?}"),
        }
        assert!(parse(br#"{"schemaVersion": 1}"#, None).unwrap_err().contains("schema 1"));
        assert!(parse(b"[]", None).is_err());
    }
}
