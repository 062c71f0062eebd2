//! The registry client: pulls and pushes images over the OCI distribution
//! API (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>).
//!
//! Analysis calls [`Client::resolve`] to turn a pinned `oci_pull_image` into a
//! manifest and a config in the CAS (no network when they are cached: pinned
//! digests are immutable); the `fetch_blob` action calls
//! [`Client::fetch_blob`] when a layer's bytes are needed; `berth push` calls
//! [`Client::push`] and `berth pin` calls [`Client::resolve_tag`]. Every byte
//! that comes off the network is checked against its digest and size before
//! it reaches the CAS.

mod auth;
mod client;
mod credentials;
mod error;
mod manifest;
mod pull;
mod push;
mod reference;

pub use client::{Client, ClientOptions};
pub use credentials::Credentials;
pub use error::RegistryError;
pub use manifest::{parse_platform, platform_satisfies, ACCEPT, MAX_MANIFEST_SIZE};
pub use pull::PulledImage;
pub use push::{BlobSources, PushOutcome, PushRequest};
pub use reference::{ImageRef, Reference};
