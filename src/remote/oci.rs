//! An OCI registry as a remote cache, as BuildKit's registry cache: the
//! entry of an action is a manifest in the cache repository tagged
//! `ac-<key hex>`, whose config is the action result's canonical JSON and
//! whose layers are its blobs (in name order, each annotated with its name).
//! Talks through berth's blocking registry client (never on the gRPC
//! runtime), with one attempt per request: the remote cache's failure
//! policy, not the registry client's retries, decides what a failure costs.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{canonical_json, ActionResult, BlobRef, Cas, Digest};
use crate::oci::{media_types, Descriptor};
use crate::registry::{BlobSources, Client, ClientOptions, ImageRef, PushRequest, Reference, RegistryError};
use crate::remote::RemoteError;

/// The config media type of a cache entry: berth's canonical `ActionResult`.
pub const ACTION_RESULT_MEDIA_TYPE: &str = "application/vnd.berth.action-result.v1+json";
/// The media type of a blob in a cache entry (its bytes are whatever the
/// action produced).
pub const BLOB_MEDIA_TYPE: &str = "application/vnd.berth.blob.v1";
/// The annotation naming a layer's blob in the action result.
pub const BLOB_NAME_ANNOTATION: &str = "dev.berth.blob.name";

pub(crate) struct OciCache {
    client: Arc<Client>,
    image: ImageRef,
    remote: String,
    deadline: Duration,
}

impl OciCache {
    /// A cache in `registry/repository`, reached with `options` (the
    /// session's `registry(...)` settings and credentials).
    pub fn new(
        registry: &str,
        repository: &str,
        options: ClientOptions,
        deadline: Duration,
    ) -> Result<OciCache, RemoteError> {
        let remote = format!("oci://{registry}/{repository}");
        let bad = |reason: String| RemoteError::BadUrl { url: remote.clone(), reason };
        let image = ImageRef::parse(&format!("{registry}/{repository}")).map_err(|error| bad(error.to_string()))?;
        let options = ClientOptions { max_attempts: 1, ..options };
        let client = Client::new(options).map_err(|error| bad(error.to_string()))?;
        Ok(OciCache { client: Arc::new(client), image, remote, deadline })
    }

    fn tag(key: &Digest) -> String {
        format!("ac-{}", key.hex())
    }

    /// What a registry error means for the cache: the server failing (the
    /// breaker opens) or an entry that cannot be trusted (a miss).
    fn classify(&self, error: RegistryError) -> RemoteError {
        match error {
            RegistryError::Unreachable { .. }
            | RegistryError::Status { .. }
            | RegistryError::Transfer { .. }
            | RegistryError::Token { .. }
            | RegistryError::Denied { .. }
            | RegistryError::DockerConfig { .. }
            | RegistryError::CredentialHelper { .. } => {
                RemoteError::Unavailable { remote: self.remote.clone(), message: error.to_string() }
            }
            error => RemoteError::Invalid { message: error.to_string() },
        }
    }

    /// The verified entry for `key`. Its manifest and config come into
    /// `cas`; its blobs stay in the registry (which holds every layer a
    /// manifest it accepted names) until [`OciCache::fetch`].
    pub fn lookup(&self, key: &Digest, cas: &Cas) -> Result<Option<ActionResult>, RemoteError> {
        let invalid = |message: String| RemoteError::Invalid { message };
        let reference = Reference { image: self.image.clone(), tag: Some(Self::tag(key)), digest: None };
        let (client, image, cas_for_call) = (self.client.clone(), self.image.clone(), cas.clone());
        // The first answer under the deadline: a hung registry costs it
        // once (the breaker opens), not the client's minute-long read timeout.
        let pulled = within(self.deadline, move || {
            let (digest, _) = client.resolve_tag(&reference, false)?;
            client.resolve(&cas_for_call, &image, digest, None, false).map(Some)
        })
        .ok_or_else(|| RemoteError::Unavailable {
            remote: self.remote.clone(),
            message: format!("no answer within {:.1}s", self.deadline.as_secs_f64()),
        })?;
        let pulled = match pulled {
            Ok(Some(pulled)) => pulled,
            Ok(None) | Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.classify(error)),
        };
        if pulled.config_media_type != ACTION_RESULT_MEDIA_TYPE {
            return Err(invalid(format!("the cache entry's config is `{}`, not berth's", pulled.config_media_type)));
        }
        let bytes = cas.read_verified(&pulled.config.digest).map_err(|error| invalid(error.to_string()))?;
        let result: ActionResult = serde_json::from_slice(&bytes)
            .map_err(|error| invalid(format!("the cache entry's config is not a berth action result: {error}")))?;
        if canonical_json(&result) != bytes {
            return Err(invalid("the cache entry's config is not in canonical form".to_owned()));
        }
        let named: BTreeMap<&str, &Descriptor> = pulled
            .layers
            .iter()
            .filter_map(|layer| layer.annotations.get(BLOB_NAME_ANNOTATION).map(|name| (name.as_str(), layer)))
            .collect();
        if pulled.layers.len() != result.blobs.len() || named.len() != result.blobs.len() {
            return Err(invalid("the cache entry's layers are not the blobs its config names".to_owned()));
        }
        for (name, blob) in &result.blobs {
            let layer = named.get(name.as_str()).filter(|layer| layer.digest == blob.digest && layer.size == blob.size);
            layer.ok_or_else(|| invalid(format!("layer `{name}` is not the blob the config names")))?;
        }
        Ok(Some(result))
    }

    /// Downloads `blobs` of cache entries into `cas`, each checked against
    /// its digest by the registry client. Returns the bytes moved and the
    /// blobs the registry did not have or served wrong; an error is the
    /// registry's failure.
    pub fn fetch(&self, blobs: &[BlobRef], cas: &Cas) -> Result<(u64, Vec<(Digest, String)>), RemoteError> {
        let mut downloaded = 0;
        let mut lost = Vec::new();
        for blob in blobs {
            let descriptor = Descriptor::new(BLOB_MEDIA_TYPE.to_owned(), *blob);
            match self.client.fetch_blob(cas, &self.image, &descriptor, false) {
                Ok(_) => downloaded += blob.size,
                // Not found or wrong bytes: this blob is lost, the registry is fine.
                Err(error) => match self.classify(error) {
                    RemoteError::Invalid { message } => lost.push((blob.digest, message)),
                    failure => return Err(failure),
                },
            }
        }
        Ok((downloaded, lost))
    }

    /// Pushes the entry for `key`; returns the bytes uploaded.
    pub fn upload(&self, key: &Digest, result: &ActionResult, cas: &Cas) -> Result<u64, RemoteError> {
        let local = |error: crate::cache::CasError| RemoteError::Invalid {
            message: format!("a local blob could not be read for upload: {error}"),
        };
        let config = cas.put_bytes(&canonical_json(result)).map_err(local)?;
        let layers: Vec<serde_json::Value> = result
            .blobs
            .iter()
            .map(|(name, blob)| {
                serde_json::json!({
                    "mediaType": BLOB_MEDIA_TYPE,
                    "digest": blob.digest,
                    "size": blob.size,
                    "annotations": {BLOB_NAME_ANNOTATION: name},
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::MANIFEST,
            "config": {"mediaType": ACTION_RESULT_MEDIA_TYPE, "digest": config.digest, "size": config.size},
            "layers": layers,
        });
        let root = cas.put_bytes(&canonical_json(&manifest)).map_err(local)?;
        let request = PushRequest {
            root,
            media_type: media_types::MANIFEST.to_owned(),
            destination: self.image.clone(),
            tags: vec![Self::tag(key)],
            sources: BlobSources::new(),
        };
        let outcome = self.client.push(cas, &request).map_err(|error| self.classify(error))?;
        Ok(outcome.uploaded_bytes)
    }
}

/// Runs `call` on its own thread and waits at most `deadline` for it; a
/// call that overruns finishes (or times out) in the background.
fn within<T: Send + 'static>(deadline: Duration, call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver.recv_timeout(deadline).ok()
}
