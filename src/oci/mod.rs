//! OCI formats: layer tars, compression, canonical JSON, configs, manifests, layouts, archives.
mod extract;

pub use extract::{
    extract_layer_cached, is_opaque_dir, is_whiteout, unpack, ExtractError, ExtractLimits, ExtractedLayer, UnpackStats,
    OPAQUE_XATTR,
};
