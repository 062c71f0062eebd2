//! Media types of the OCI image spec v1.1
//! (<https://github.com/opencontainers/image-spec/blob/v1.1.0/media-types.md>)
//! and the Docker v2 equivalents that pulled base images may use.

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";

pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const LAYER_NONDISTRIBUTABLE_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const LAYER_NONDISTRIBUTABLE_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const LAYER_NONDISTRIBUTABLE_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The OCI media type with the same bytes as a (possibly Docker) layer media
/// type, so a manifest that mixes base and new layers is all OCI.
pub fn oci_layer_media_type(media_type: &str) -> &str {
    match media_type {
        DOCKER_LAYER_TAR => LAYER_TAR,
        DOCKER_LAYER_GZIP => LAYER_GZIP,
        DOCKER_LAYER_ZSTD => LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER_GZIP => LAYER_NONDISTRIBUTABLE_GZIP,
        other => other,
    }
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST || media_type == DOCKER_MANIFEST
}

pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX || media_type == DOCKER_MANIFEST_LIST
}
