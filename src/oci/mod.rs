//! OCI formats: layer tars, compression, canonical JSON, configs, manifests, layouts, archives.

mod extract;

pub use extract::{
    extract_layer_cached, is_opaque_dir, is_whiteout, unpack, write_tree_layer, ExtractError, ExtractLimits,
    ExtractedLayer, TreeBody, TreeEntry, UnpackStats, OPAQUE_XATTR,
};
