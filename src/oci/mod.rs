//! OCI formats: layer tars, compression, canonical JSON, configs, manifests, layouts, archives.

pub mod deb;
