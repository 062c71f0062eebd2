//! Pushes: an image (or index) from the CAS to a repository.
//!
//! Order, as the distribution spec requires: every blob first (HEAD, then a
//! cross-repository mount when the blob is known to live in another
//! repository of the same registry, else an upload; several at once), then
//! each manifest by digest (an index's children before the index), then
//! every tag. A blob the registry already has is never uploaded again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode, Url};

use crate::cache::{BlobRef, Cas, CasError, Digest};
use crate::oci::Descriptor;
use crate::registry::client::{status_error, Call, CallBody, Endpoint, Failure};
use crate::registry::manifest::{self, Parsed};
use crate::registry::reference::validate_tag;
use crate::registry::{Client, ImageRef, PulledImage, RegistryError};

/// Where blobs that a pushed image references came from: the repositories
/// of pulled base images. A blob missing from the CAS (a lazily pulled base
/// layer) is mounted from there when it is on the same registry, else
/// fetched from there and uploaded.
#[derive(Debug, Clone, Default)]
pub struct BlobSources {
    by_digest: BTreeMap<Digest, (ImageRef, bool)>,
}

impl BlobSources {
    pub fn new() -> BlobSources {
        BlobSources::default()
    }

    /// Records that `digest` can be read from `image`.
    pub fn add(&mut self, digest: Digest, image: &ImageRef, anonymous: bool) {
        self.by_digest.entry(digest).or_insert_with(|| (image.clone(), anonymous));
    }

    /// Records the config and every layer of a pulled image.
    pub fn add_image(&mut self, pulled: &PulledImage) {
        self.add(pulled.config.digest, &pulled.image, pulled.anonymous);
        for layer in &pulled.layers {
            self.add(layer.digest, &pulled.image, pulled.anonymous);
        }
    }

    fn get(&self, digest: &Digest) -> Option<&(ImageRef, bool)> {
        self.by_digest.get(digest)
    }
}

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The image manifest or index, in the CAS.
    pub root: BlobRef,
    /// Its media type (sent as `Content-Type`).
    pub media_type: String,
    /// The repository to push to.
    pub destination: ImageRef,
    /// Tags to point at the root after it is pushed.
    pub tags: Vec<String>,
    pub sources: BlobSources,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The digest of the pushed root manifest or index.
    pub digest: Digest,
    /// Blobs the registry had already (HEAD answered 200).
    pub existing_blobs: usize,
    /// Blobs mounted from another repository of the same registry.
    pub mounted_blobs: usize,
    /// Blobs uploaded, and their bytes.
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Manifest PUTs (by digest and by tag) sent.
    pub put_manifests: usize,
    /// Manifests and tags the registry already had exactly (not put again).
    pub existing_manifests: usize,
}

enum BlobOutcome {
    Existing,
    Mounted,
    Uploaded(u64),
}

impl Client {
    /// Pushes `request.root` and everything it references, then tags it.
    pub fn push(&self, cas: &Cas, request: &PushRequest) -> Result<PushOutcome, RegistryError> {
        if self.options.offline {
            return Err(RegistryError::Unreachable {
                host: request.destination.host.clone(),
                reason: "`--offline` forbids pushing".to_owned(),
            });
        }
        for tag in &request.tags {
            validate_tag(&format!("{}:{tag}", request.destination), tag)?;
        }
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        collect(cas, &request.destination, request.root.digest, &request.media_type, &mut manifests, &mut blobs)?;
        let mut seen = HashSet::new();
        blobs.retain(|blob: &Descriptor| seen.insert(blob.digest));

        let endpoint = self.endpoint(&request.destination.host)?;
        let outcomes = self.push_blobs(cas, &endpoint, request, &blobs)?;
        let mut outcome = PushOutcome {
            digest: request.root.digest,
            existing_blobs: 0,
            mounted_blobs: 0,
            uploaded_blobs: 0,
            uploaded_bytes: 0,
            put_manifests: 0,
            existing_manifests: 0,
        };
        for blob in outcomes {
            match blob {
                BlobOutcome::Existing => outcome.existing_blobs += 1,
                BlobOutcome::Mounted => outcome.mounted_blobs += 1,
                BlobOutcome::Uploaded(bytes) => {
                    outcome.uploaded_blobs += 1;
                    outcome.uploaded_bytes += bytes;
                }
            }
        }
        // A manifest (or a tag) the registry already holds with this exact
        // digest is not put again: an unchanged release re-pushes nothing.
        let mut put = |reference: &str, digest: &Digest, media_type: &str, bytes: &Arc<Vec<u8>>| {
            if self.manifest_digest(&endpoint, &request.destination, reference, media_type)? == Some(*digest) {
                outcome.existing_manifests += 1;
            } else {
                self.put_manifest(&endpoint, &request.destination, reference, media_type, bytes)?;
                outcome.put_manifests += 1;
            }
            Ok::<(), RegistryError>(())
        };
        for (digest, media_type, bytes) in &manifests {
            put(&digest.to_string(), digest, media_type, bytes)?;
        }
        let (root_digest, root_type, root_bytes) = manifests.last().expect("the root is always collected");
        for tag in &request.tags {
            put(tag, root_digest, root_type, root_bytes)?;
        }
        Ok(outcome)
    }

    /// Pushes blobs on `parallel_uploads` threads; stops at the first error.
    fn push_blobs(
        &self,
        cas: &Cas,
        endpoint: &Endpoint,
        request: &PushRequest,
        blobs: &[Descriptor],
    ) -> Result<Vec<BlobOutcome>, RegistryError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Result<BlobOutcome, RegistryError>>> = Mutex::new(Vec::new());
        let workers = self.options.parallel_uploads.clamp(1, blobs.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= blobs.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let result = self.push_blob(cas, endpoint, request, &blobs[index]);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock().unwrap().push(result);
                });
            }
        });
        results.into_inner().unwrap().into_iter().collect()
    }

    fn push_blob(
        &self,
        cas: &Cas,
        endpoint: &Endpoint,
        request: &PushRequest,
        blob: &Descriptor,
    ) -> Result<BlobOutcome, RegistryError> {
        let destination = &request.destination;
        let repository = destination.to_string();
        let source = request.sources.get(&blob.digest);
        let mount_from = source
            .map(|(image, _)| image)
            .filter(|image| image.host == destination.host && image.repository != destination.repository);
        let mut scopes = vec![format!("repository:{}:pull,push", destination.repository)];
        if let Some(from) = mount_from {
            scopes.push(format!("repository:{}:pull", from.repository));
        }
        let call = |method: Method, url: Url| Call {
            method,
            url,
            headers: Vec::new(),
            body: None,
            scopes: &scopes,
            anonymous: false,
            repository: &repository,
        };

        let head = call(Method::HEAD, endpoint.url(&format!("{}/blobs/{}", destination.repository, blob.digest)));
        let exists = self.retrying(|| {
            let response = self.send(endpoint, &head)?;
            match response.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Failure::fatal(status_error(endpoint, &head, &head.url, response))),
            }
        })?;
        if exists {
            return Ok(BlobOutcome::Existing);
        }

        // A mount that the registry declines (202) opens an upload session.
        let mut session = None;
        if let Some(from) = mount_from {
            let mut url = endpoint.url(&format!("{}/blobs/uploads/", destination.repository));
            url.query_pairs_mut().append_pair("mount", &blob.digest.to_string()).append_pair("from", &from.repository);
            let mount = call(Method::POST, url);
            let mounted = self.retrying(|| {
                let response = self.send(endpoint, &mount)?;
                match response.status() {
                    StatusCode::CREATED => Ok(None),
                    StatusCode::ACCEPTED => Ok(Some(location(endpoint, &mount, response)?)),
                    _ => Err(Failure::fatal(status_error(endpoint, &mount, &mount.url, response))),
                }
            })?;
            match mounted {
                None => return Ok(BlobOutcome::Mounted),
                Some(url) => session = Some(url),
            }
        }

        if !cas.contains(&blob.digest) {
            let (image, anonymous) = source.ok_or(RegistryError::MissingBlob { digest: blob.digest })?;
            self.fetch_blob(cas, image, blob, *anonymous)?;
        }
        let path = cas.path(&blob.digest);
        self.retrying(|| {
            let start = call(Method::POST, endpoint.url(&format!("{}/blobs/uploads/", destination.repository)));
            let (url, chunk_min) = match session.take() {
                Some(url) => (url, None),
                None => {
                    let response = self.send(endpoint, &start)?;
                    if response.status() != StatusCode::ACCEPTED {
                        return Err(Failure::retriable(status_error(endpoint, &start, &start.url, response)));
                    }
                    let chunk_min = response
                        .headers()
                        .get("OCI-Chunk-Min-Length")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<u64>().ok());
                    (location(endpoint, &start, response)?, chunk_min)
                }
            };
            let url = match chunk_min {
                Some(min) => self.upload_chunks(endpoint, &call, url, &path, blob.size, min)?,
                None => url,
            };
            let mut put_url = url;
            put_url.query_pairs_mut().append_pair("digest", &blob.digest.to_string());
            let mut put = call(Method::PUT, put_url);
            put.headers.push(("Content-Type", "application/octet-stream".to_owned()));
            put.body = Some(match chunk_min {
                Some(_) => CallBody::Bytes(Arc::new(Vec::new())),
                None => CallBody::File { path: path.clone(), offset: 0, len: blob.size },
            });
            let response = self.send(endpoint, &put)?;
            if response.status() != StatusCode::CREATED {
                // The session may have expired or the bytes been damaged in
                // transit (the registry checks the digest): start over.
                return Err(Failure::retriable(status_error(endpoint, &put, &put.url, response)));
            }
            if chunk_min.is_none() {
                self.transferred(blob.size);
            }
            Ok(BlobOutcome::Uploaded(blob.size))
        })
    }

    /// Uploads a blob in `PATCH` chunks of at least the registry's
    /// `OCI-Chunk-Min-Length`; returns the session URL to close with `PUT`.
    fn upload_chunks<'a>(
        &self,
        endpoint: &Endpoint,
        call: &dyn Fn(Method, Url) -> Call<'a>,
        mut url: Url,
        path: &std::path::Path,
        size: u64,
        min: u64,
    ) -> Result<Url, Failure> {
        let chunk = min.max(8 << 20);
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let mut patch = call(Method::PATCH, url.clone());
            patch.headers.push(("Content-Type", "application/octet-stream".to_owned()));
            patch.headers.push(("Content-Range", format!("{offset}-{}", offset + len - 1)));
            patch.body = Some(CallBody::File { path: path.to_owned(), offset, len });
            let response = self.send(endpoint, &patch)?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(Failure::retriable(status_error(endpoint, &patch, &patch.url, response)));
            }
            url = location(endpoint, &patch, response)?;
            self.transferred(len);
            offset += len;
        }
        Ok(url)
    }

    /// The digest `reference` (a tag or digest) points at in `destination`
    /// now, from a HEAD; `None` when there is no such manifest.
    fn manifest_digest(
        &self,
        endpoint: &Endpoint,
        destination: &ImageRef,
        reference: &str,
        media_type: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let scopes = vec![format!("repository:{}:pull,push", destination.repository)];
        let repository = destination.to_string();
        let head = Call {
            method: Method::HEAD,
            url: endpoint.url(&format!("{}/manifests/{reference}", destination.repository)),
            headers: vec![("Accept", format!("{media_type}, {}", manifest::ACCEPT))],
            body: None,
            scopes: &scopes,
            anonymous: false,
            repository: &repository,
        };
        self.retrying(|| {
            let response = self.send(endpoint, &head)?;
            match response.status() {
                StatusCode::OK => Ok(response
                    .headers()
                    .get("Docker-Content-Digest")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<Digest>().ok())),
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(Failure::fatal(status_error(endpoint, &head, &head.url, response))),
            }
        })
    }

    fn put_manifest(
        &self,
        endpoint: &Endpoint,
        destination: &ImageRef,
        reference: &str,
        media_type: &str,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<(), RegistryError> {
        let scopes = vec![format!("repository:{}:pull,push", destination.repository)];
        let repository = destination.to_string();
        let put = Call {
            method: Method::PUT,
            url: endpoint.url(&format!("{}/manifests/{reference}", destination.repository)),
            headers: vec![("Content-Type", media_type.to_owned())],
            body: Some(CallBody::Bytes(bytes.clone())),
            scopes: &scopes,
            anonymous: false,
            repository: &repository,
        };
        let expected = Digest::of(bytes);
        self.retrying(|| {
            let response = self.send(endpoint, &put)?;
            match response.status() {
                StatusCode::CREATED | StatusCode::OK => {
                    // Bytes damaged on the way may still be a valid manifest,
                    // stored under the tag: the registry's digest says so,
                    // and putting it again replaces it.
                    let stored = response
                        .headers()
                        .get("Docker-Content-Digest")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<Digest>().ok());
                    match stored {
                        Some(stored) if stored != expected => Err(Failure::retriable(RegistryError::Status {
                            host: endpoint.host.clone(),
                            method: put.method.to_string(),
                            path: put.url.path().to_owned(),
                            status: response.status().as_u16(),
                            detail: format!(": the registry stored `{stored}`, not `{expected}`"),
                        })),
                        _ => Ok(()),
                    }
                }
                // The manifest comes from the CAS, checked: a registry that
                // finds it invalid or its digest wrong got damaged bytes.
                StatusCode::BAD_REQUEST => Err(Failure::retriable(status_error(endpoint, &put, &put.url, response))),
                _ => Err(Failure::fatal(status_error(endpoint, &put, &put.url, response))),
            }
        })
    }
}

/// The upload session URL from `Location` (absolute or relative).
fn location(endpoint: &Endpoint, call: &Call<'_>, response: reqwest::blocking::Response) -> Result<Url, Failure> {
    let value = response.headers().get(LOCATION).and_then(|value| value.to_str().ok()).map(str::to_owned);
    match value.and_then(|value| call.url.join(&value).ok()) {
        Some(url) => Ok(url),
        None => Err(Failure::retriable(RegistryError::Status {
            host: endpoint.host.clone(),
            method: call.method.to_string(),
            path: call.url.path().to_owned(),
            status: response.status().as_u16(),
            detail: " without a usable `Location` header".to_owned(),
        })),
    }
}

type ManifestToPush = (Digest, String, Arc<Vec<u8>>);

/// Walks a manifest or index in the CAS: manifests in push order (children
/// first), and every blob they reference.
fn collect(
    cas: &Cas,
    destination: &ImageRef,
    digest: Digest,
    media_type: &str,
    manifests: &mut Vec<ManifestToPush>,
    blobs: &mut Vec<Descriptor>,
) -> Result<(), RegistryError> {
    let bytes = cas.read_verified(&digest).map_err(|error| match error {
        CasError::Missing { digest } => RegistryError::MissingBlob { digest },
        error => error.into(),
    })?;
    let parsed = manifest::parse(&bytes, Some(media_type)).map_err(|reason| RegistryError::BadManifest {
        repository: destination.to_string(),
        digest,
        reason,
    })?;
    match parsed {
        Parsed::Index { manifests: children, .. } => {
            for child in children {
                collect(cas, destination, child.digest, &child.media_type, manifests, blobs)?;
            }
        }
        Parsed::Manifest { config, layers, .. } => {
            blobs.push(*config);
            // Non-distributable (foreign) layers stay where their `urls` say.
            blobs.extend(layers.into_iter().filter(|layer| {
                !layer.media_type.contains("nondistributable") && !layer.media_type.contains("foreign")
            }));
        }
    }
    manifests.push((digest, media_type.to_owned(), Arc::new(bytes)));
    Ok(())
}
