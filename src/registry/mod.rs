//! The registry client: pulls and pushes images over the OCI distribution
//! API (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>).
//!
//! One [`RegistryHandle`] per session makes the client on first use.
//! Analysis calls [`Client::resolve`] to turn a pinned `oci_pull_image` into a
//! manifest and a config in the CAS (no network when they are cached: pinned
//! digests are immutable); the `fetch_blob` action calls
//! [`Client::fetch_blob`] when a layer's bytes are needed; `berth push` calls
//! [`Client::push`] and `berth pin` calls [`Client::resolve_tag`]. Every byte
//! that comes off the network is checked against its digest and size before
//! it reaches the CAS.
//!
//! Around that: TLS per host (a private CA, a client certificate, in
//! `tls`), Docker Hub's names (`reference`), where a token realm may send
//! credentials (`auth`), and where credentials come from (`credentials`:
//! Podman's `auth.json`, Docker's `config.json`, helpers, identity tokens).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use berth::cache::{Cas, Digest};
//! # use berth::registry::{BlobSources, Client, ClientOptions, ImageRef, PushRequest};
//! # fn main() -> Result<(), berth::registry::RegistryError> {
//! # let cas = Cas::open(std::path::Path::new("/tmp/cache"))?;
//! # let settings = Vec::new();
//! // One client per build (`registry(...)` settings from WORKSPACE.star).
//! let client = Arc::new(Client::new(ClientOptions { registries: settings, ..ClientOptions::default() })?);
//!
//! // Analysis: an `oci_pull_image(repository, digest, platform, anonymous)`.
//! let image = ImageRef::parse("127.0.0.1:5000/library/base")?;
//! let digest = Digest::parse_lenient("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
//! let pulled = client.resolve(&cas, &image, digest, Some("linux/amd64"), false)?;
//! // pulled.manifest and pulled.config are in the CAS; each of pulled.layers
//! // becomes a `FetchBlob` action (crate::actions) where its bytes are needed.
//!
//! // Push: the built root, with the pulled images as sources of base layers.
//! let mut sources = BlobSources::new();
//! sources.add_image(&pulled);
//! let request = PushRequest {
//!     root: pulled.manifest,
//!     media_type: pulled.manifest_media_type.clone(),
//!     destination: ImageRef::parse("127.0.0.1:5000/team/app")?,
//!     tags: vec!["v1".to_owned()],
//!     sources,
//! };
//! let outcome = client.push(&cas, &request)?;
//! println!("{}", outcome.digest);
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod credentials;
mod error;
mod handle;
mod manifest;
mod pull;
mod push;
mod reference;
mod tls;
mod url;

pub use auth::{check_realm_of, parse_challenge, Challenge};
pub use client::{Client, ClientOptions};
pub use credentials::Credentials;
pub use error::RegistryError;
pub use handle::RegistryHandle;
pub use manifest::{parse_platform, platform_satisfies, ACCEPT, MAX_MANIFEST_SIZE};
pub use pull::{PulledImage, PulledIndex, PulledRoot};
pub use push::{BlobSources, PushOutcome, PushRequest};
pub use reference::{ImageRef, Reference, DOCKER_HUB};
pub use tls::{env_key as tls_env_key, env_variable as tls_env_variable};
