//! OCI formats: layer tars and their compression, canonical JSON, image
//! configs, manifests and indexes, image layouts and archives, and the layer
//! store that container runtimes extract base layers into. Actions
//! (`crate::actions`) call into this module; nothing else touches tar,
//! compression or the OCI wire formats (`registry` aside).

mod add_archive;
mod archive;
mod compress;
mod config;
pub mod deb;
mod error;
mod extract;
mod import;
mod layer;
mod layout;
mod manifest;
pub mod media_types;
mod tree;

pub use add_archive::{added_archive, unpack_added_archive};
pub use archive::{write_docker_archive, write_oci_archive};

pub use compress::{decoder, Compression, Compressor, GZIP_BLOCK_SIZE, GZIP_LEVEL, ZSTD_LEVEL};
pub use config::{
    rfc3339, ConfigSettings, EmptyObject, ExecConfig, Healthcheck, History, ImageConfig, NewLayer, RootFs,
};
pub use error::OciError;
pub use extract::{
    is_opaque_dir, is_whiteout, unpack, unpack_with_diff_id, ExtractError, ExtractLimits, ExtractedLayer, LayerStore,
    UnpackStats, OPAQUE_XATTR, USER_OPAQUE_XATTR,
};
pub use import::{layout_files, ImageSource, Imported, ImportedImage};
pub use layer::{
    normalize_path, validate_path, Body, EntryKind, EntryMeta, FileSource, LayerBuilder, LayerEntry, LayerTar, Origin,
    Ownership, PackedLayer, DIR_MODE, FILE_MODE, SYMLINK_MODE,
};
pub use layout::{image_blobs, missing_blobs, read_root, write_layout, write_lazy_layout, ImageRoot};
pub use manifest::{Descriptor, Index, Manifest, Platform, REF_NAME_ANNOTATION};
pub use tree::{tree_digest, verify_layer_store, LayerStoreCheck};
