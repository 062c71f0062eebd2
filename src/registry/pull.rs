//! Pulls: resolving a pinned image to its manifest and config at analysis
//! time, and fetching layer blobs lazily when an action needs their bytes.
//!
//! Every manifest and blob is checked against its digest and size before it
//! is used or written to the CAS: blobs stream through a hasher into a
//! [`crate::cache::CasWriter`] that is committed only when the digest
//! matches. A mismatch is retried (the corruption may be in transit) and
//! ends in [`RegistryError::DigestMismatch`] naming the blob.

use std::cell::RefCell;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use crate::cache::{BlobRef, Cas, CasError, CasWriter, Digest, Sha256Writer};
use crate::oci::{Descriptor, Platform};
use crate::registry::client::{status_error, Call, Endpoint, Failure};
use crate::registry::manifest::{self, Parsed, ACCEPT};
use crate::registry::{Client, ImageRef, Reference, RegistryError, MAX_MANIFEST_SIZE};

/// A pinned image resolved at analysis time: its manifest and config are in
/// the CAS, its layers are only described (fetch them with
/// [`Client::fetch_blob`] or the `fetch_blob` action).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PulledImage {
    /// Where it came from (and where its layers are fetched or mounted from).
    pub image: ImageRef,
    /// The pinned digest: of the index when `index` is set, else of `manifest`.
    pub digest: Digest,
    /// The index the manifest was picked from, when the digest named one.
    pub index: Option<BlobRef>,
    /// The image manifest, in the CAS.
    pub manifest: BlobRef,
    pub manifest_media_type: String,
    /// The image config, in the CAS.
    pub config: BlobRef,
    pub config_media_type: String,
    /// The layers, base first; their blobs are not fetched yet.
    pub layers: Vec<Descriptor>,
    /// The platform of the index entry, when picked from an index.
    pub platform: Option<Platform>,
    /// Pulled without credentials (`anonymous = True`).
    pub anonymous: bool,
}

impl Client {
    /// A GET with pull scope whose only good answer is 200; a 404 names
    /// `what` and `reference`, any other status is reported as sent.
    #[allow(clippy::too_many_arguments)]
    fn pull_get(
        &self,
        endpoint: &Endpoint,
        image: &ImageRef,
        path: &str,
        headers: Vec<(&'static str, String)>,
        anonymous: bool,
        what: &'static str,
        reference: &str,
    ) -> Result<reqwest::blocking::Response, Failure> {
        let scopes = pull_scope(image);
        let repository = image.to_string();
        let call = Call {
            method: Method::GET,
            url: endpoint.url(path),
            headers,
            body: None,
            scopes: &scopes,
            anonymous,
            repository: &repository,
        };
        let response = self.send(endpoint, &call)?;
        match response.status() {
            // 206 only answers a `Range` request (a resumed blob download).
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
            StatusCode::NOT_FOUND => {
                Err(Failure::fatal(RegistryError::NotFound { what, repository, reference: reference.to_owned() }))
            }
            _ => Err(Failure::fatal(status_error(endpoint, &call, &call.url, response))),
        }
    }
}

fn pull_scope(image: &ImageRef) -> Vec<String> {
    vec![format!("repository:{}:pull", image.repository)]
}

/// A verified manifest: its bytes, the media type the registry gave it.
struct FetchedManifest {
    bytes: Vec<u8>,
    content_type: Option<String>,
}

/// What a pinned digest names, resolved into the CAS: an image (manifest
/// and config), or an index whose entries are only described.
#[derive(Debug, Clone)]
pub enum PulledRoot {
    Image(Box<PulledImage>),
    Index(PulledIndex),
}

/// A pinned index: the index manifest is in the CAS, none of its images is
/// fetched until [`Client::resolve_entry`] picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledIndex {
    pub image: ImageRef,
    /// The pinned digest, of the index.
    pub digest: Digest,
    pub blob: BlobRef,
    /// The index's `manifests`, in its order.
    pub entries: Vec<Descriptor>,
    pub anonymous: bool,
}

impl PulledIndex {
    /// The position of the image for `wanted` (default the host's platform);
    /// the error lists the platforms there are.
    pub fn select(&self, wanted: Option<&Platform>) -> Result<usize, RegistryError> {
        let wanted = wanted.cloned().unwrap_or_else(Platform::host);
        let entry = manifest::select_platform(&self.entries, &wanted).map_err(|available| {
            RegistryError::NoMatchingPlatform {
                repository: self.image.to_string(),
                digest: self.digest,
                platform: wanted.to_string(),
                available,
            }
        })?;
        let position = self.entries.iter().position(|candidate| std::ptr::eq(candidate, entry));
        Ok(position.expect("`select_platform` picks one of the entries"))
    }
}

impl Client {
    /// Resolves a pinned image: puts its manifest (and index) and config in
    /// the CAS and describes its layers. No network access when they are
    /// cached already. For an index, `platform` (`os/arch[/variant]`,
    /// default the host's) picks the manifest.
    pub fn resolve(
        &self,
        cas: &Cas,
        image: &ImageRef,
        digest: Digest,
        platform: Option<&str>,
        anonymous: bool,
    ) -> Result<PulledImage, RegistryError> {
        let wanted = platform.map(manifest::parse_platform).transpose()?;
        let index = match self.resolve_root(cas, image, digest, anonymous)? {
            PulledRoot::Image(pulled) => return Ok(*pulled),
            PulledRoot::Index(index) => index,
        };
        let position = index.select(wanted.as_ref())?;
        self.resolve_entry(cas, &index, position)
    }

    /// Resolves what a pinned digest names: an image, as [`Client::resolve`]
    /// does, or an index, of which only the index manifest is fetched.
    pub fn resolve_root(
        &self,
        cas: &Cas,
        image: &ImageRef,
        digest: Digest,
        anonymous: bool,
    ) -> Result<PulledRoot, RegistryError> {
        let (root, parsed) = self.manifest_blob(cas, image, digest, None, anonymous)?;
        Ok(match parsed {
            Parsed::Manifest { media_type, config, layers } => {
                let (config_ref, config_media_type) =
                    (self.fetch_blob(cas, image, &config, anonymous)?, config.media_type);
                PulledRoot::Image(Box::new(PulledImage {
                    image: image.clone(),
                    digest,
                    index: None,
                    manifest: root,
                    manifest_media_type: media_type,
                    config: config_ref,
                    config_media_type,
                    layers,
                    platform: None,
                    anonymous,
                }))
            }
            Parsed::Index { manifests, .. } => PulledRoot::Index(PulledIndex {
                image: image.clone(),
                digest,
                blob: root,
                entries: manifests,
                anonymous,
            }),
        })
    }

    /// Resolves the `position`-th image of a pulled index: its manifest
    /// (checked against the entry's digest and size) and config.
    pub fn resolve_entry(&self, cas: &Cas, index: &PulledIndex, position: usize) -> Result<PulledImage, RegistryError> {
        let image = &index.image;
        let entry = index.entries.get(position).ok_or_else(|| RegistryError::BadManifest {
            repository: image.to_string(),
            digest: index.digest,
            reason: format!("no entry {position}: the index has {}", index.entries.len()),
        })?;
        let (manifest, parsed) = self.manifest_blob(cas, image, entry.digest, Some(entry.size), index.anonymous)?;
        let Parsed::Manifest { media_type, config, layers } = parsed else {
            return Err(RegistryError::BadManifest {
                repository: image.to_string(),
                digest: manifest.digest,
                reason: "an index entry names another index, not an image manifest".to_owned(),
            });
        };
        let config_ref = self.fetch_blob(cas, image, &config, index.anonymous)?;
        Ok(PulledImage {
            image: image.clone(),
            digest: index.digest,
            index: Some(index.blob),
            manifest,
            manifest_media_type: media_type,
            config: config_ref,
            config_media_type: config.media_type,
            layers,
            platform: entry.platform.clone(),
            anonymous: index.anonymous,
        })
    }

    /// Puts a manifest already resolved once back in the CAS (after a
    /// `berth cache gc`), checked against its digest and size.
    pub fn fetch_manifest(
        &self,
        cas: &Cas,
        image: &ImageRef,
        manifest: BlobRef,
        anonymous: bool,
    ) -> Result<BlobRef, RegistryError> {
        let (blob, _) = self.manifest_blob(cas, image, manifest.digest, Some(manifest.size), anonymous)?;
        Ok(blob)
    }

    /// Resolves a tag (or checks a digest): with the mirrors first, as the
    /// Docker daemon's `registry-mirrors` do (a mirror is a pull-through cache
    /// that follows its registry's tags), then the registry itself.
    /// Returns the manifest's digest and media type.
    pub fn resolve_tag(&self, reference: &Reference, anonymous: bool) -> Result<(Digest, String), RegistryError> {
        let name = reference.manifest_reference().unwrap_or_else(|| "latest".to_owned());
        let image = &reference.image;
        if self.options.offline {
            return Err(RegistryError::Unreachable {
                host: image.host.clone(),
                reason: "`--offline` forbids resolving tags".to_owned(),
            });
        }
        let fetched = self.pull_from(image, &mut |endpoint| {
            self.fetch_manifest_once(endpoint, image, &name, reference.digest, anonymous)
        })?;
        let digest = Digest::of(&fetched.bytes);
        let parsed = manifest::parse(&fetched.bytes, fetched.content_type.as_deref())
            .map_err(|reason| RegistryError::BadManifest { repository: image.to_string(), digest, reason })?;
        let media_type = match parsed {
            Parsed::Manifest { media_type, .. } | Parsed::Index { media_type, .. } => media_type,
        };
        Ok((digest, media_type))
    }

    /// Fetches a blob into the CAS unless it is there already, checking its
    /// digest and size; a blob that fails is fetched again and never cached.
    pub fn fetch_blob(
        &self,
        cas: &Cas,
        image: &ImageRef,
        descriptor: &Descriptor,
        anonymous: bool,
    ) -> Result<BlobRef, RegistryError> {
        let blob = BlobRef { digest: descriptor.digest, size: descriptor.size };
        let path = cas.path(&blob.digest);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.len() == blob.size => return Ok(blob),
            // A torn or foreign file under this name: fetch it again.
            Ok(_) => std::fs::remove_file(&path).map_err(|source| CasError::Io { path: path.clone(), source })?,
            Err(_) => {}
        }
        if self.options.offline {
            return Err(RegistryError::Offline { what: "Blob", repository: image.to_string(), digest: blob.digest });
        }
        let deadline = Instant::now() + download_deadline(self.options.download_grace, descriptor.size);
        let download = Download { deadline, partial: None };
        let download = RefCell::new(download);
        self.pull_from(image, &mut |endpoint| {
            self.fetch_blob_once(cas, endpoint, image, descriptor, anonymous, &mut download.borrow_mut())
        })
    }

    /// Tries each mirror briefly, then the registry with full retries.
    fn pull_from<T>(
        &self,
        image: &ImageRef,
        attempt: &mut dyn FnMut(&Endpoint) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let endpoints = self.pull_endpoints(&image.host)?;
        let (registry, mirrors) = endpoints.split_last().expect("the registry itself is always an endpoint");
        for mirror in mirrors {
            if let Ok(value) = self.retrying_n(2, &mut || attempt(mirror)) {
                return Ok(value);
            }
        }
        self.retrying(|| attempt(registry))
    }

    /// The manifest `digest` from the CAS, or fetched, checked and stored.
    fn manifest_blob(
        &self,
        cas: &Cas,
        image: &ImageRef,
        digest: Digest,
        size: Option<u64>,
        anonymous: bool,
    ) -> Result<(BlobRef, Parsed), RegistryError> {
        let cached = match cas.read_verified(&digest) {
            Ok(bytes) => Some(bytes),
            Err(CasError::Missing { .. } | CasError::Corrupt { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let (bytes, content_type) = match cached {
            Some(bytes) => (bytes, None),
            None => {
                if self.options.offline {
                    return Err(RegistryError::Offline { what: "Manifest", repository: image.to_string(), digest });
                }
                let reference = digest.to_string();
                let fetched = self.pull_from(image, &mut |endpoint| {
                    self.fetch_manifest_once(endpoint, image, &reference, Some(digest), anonymous)
                })?;
                (fetched.bytes, fetched.content_type)
            }
        };
        if let Some(size) = size.filter(|size| *size != bytes.len() as u64) {
            return Err(RegistryError::SizeMismatch {
                what: "manifest",
                repository: image.to_string(),
                digest,
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let parsed = manifest::parse(&bytes, content_type.as_deref()).map_err(|reason| RegistryError::BadManifest {
            repository: image.to_string(),
            digest,
            reason,
        })?;
        let blob = cas.put_bytes(&bytes)?;
        Ok((blob, parsed))
    }

    fn fetch_manifest_once(
        &self,
        endpoint: &Endpoint,
        image: &ImageRef,
        reference: &str,
        expected: Option<Digest>,
        anonymous: bool,
    ) -> Result<FetchedManifest, Failure> {
        let repository = image.to_string();
        let path = format!("{}/manifests/{reference}", image.repository);
        let accept = vec![("Accept", ACCEPT.to_owned())];
        let response = self.pull_get(endpoint, image, &path, accept, anonymous, "Manifest", reference)?;
        let too_large = || {
            Failure::fatal(RegistryError::TooLarge {
                what: "Manifest",
                repository: repository.clone(),
                limit: MAX_MANIFEST_SIZE,
            })
        };
        if response.content_length().is_some_and(|length| length > MAX_MANIFEST_SIZE) {
            return Err(too_large());
        }
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let header_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<Digest>().ok());
        let mut bytes = Vec::new();
        response
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| Failure::retriable(transfer_error(endpoint, &error)))?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(too_large());
        }
        let actual = Digest::of(&bytes);
        // A tag has no digest to check against but the registry's own header.
        if let Some(expected) = expected.or(header_digest) {
            if actual != expected {
                return Err(Failure::retriable(RegistryError::DigestMismatch {
                    what: "manifest",
                    repository,
                    expected,
                    actual,
                    size: bytes.len() as u64,
                }));
            }
        }
        Ok(FetchedManifest { bytes, content_type })
    }

    fn fetch_blob_once<'a>(
        &self,
        cas: &'a Cas,
        endpoint: &Endpoint,
        image: &ImageRef,
        descriptor: &Descriptor,
        anonymous: bool,
        download: &mut Download<'a>,
    ) -> Result<BlobRef, Failure> {
        let repository = image.to_string();
        let path = format!("{}/blobs/{}", image.repository, descriptor.digest);
        let digest = descriptor.digest.to_string();
        // Bytes already written by an attempt that broke off, from the same
        // endpoint: ask only for the rest.
        let mut partial = download.partial.take().filter(|partial| partial.base == endpoint.base);
        let mut headers = Vec::new();
        if let Some(partial) = &partial {
            headers.push(("Range", format!("bytes={}-", partial.written)));
        }
        let response = self.pull_get(endpoint, image, &path, headers, anonymous, "Blob", &digest)?;
        if let Some(resumed) = &partial {
            if response.status() == StatusCode::PARTIAL_CONTENT {
                let range = response.headers().get(CONTENT_RANGE).and_then(|value| value.to_str().ok());
                let expected = format!("bytes {}-", resumed.written);
                if !range.is_some_and(|range| range.starts_with(&expected)) {
                    return Err(Failure::retriable(RegistryError::Transfer {
                        host: endpoint.host.clone(),
                        reason: format!("a resumed download answered `Content-Range: {}`", range.unwrap_or("")),
                    }));
                }
            } else {
                // The registry ignored `Range`: start again from the first byte.
                partial = None;
            }
        }
        let (mut writer, written) = match partial {
            Some(partial) => (partial.writer, partial.written),
            None => (Sha256Writer::new(cas.writer().map_err(RegistryError::from)?), 0),
        };
        // One byte more than expected is enough to know the body is too long.
        let remaining = (descriptor.size + 1).saturating_sub(written);
        let mut body = Progress::new(response.take(remaining), self, download.deadline);
        let copied = io::copy(&mut body, &mut writer);
        self.transferred(body.unreported);
        let written = written + body.total;
        if let Err(error) = copied {
            if Instant::now() >= download.deadline {
                return Err(Failure::fatal(RegistryError::Transfer {
                    host: endpoint.host.clone(),
                    reason: format!(
                        "blob `{}` ({} bytes) was not downloaded within its deadline of {} s",
                        descriptor.digest,
                        descriptor.size,
                        download_deadline(self.options.download_grace, descriptor.size).as_secs()
                    ),
                }));
            }
            if written > 0 && written <= descriptor.size {
                download.partial = Some(Partial { base: endpoint.base.clone(), writer, written });
            }
            return Err(Failure::retriable(transfer_error(endpoint, &error)));
        }
        let (actual, size, cas_writer) = writer.finish();
        if size != descriptor.size {
            return Err(Failure::retriable(RegistryError::SizeMismatch {
                what: "blob",
                repository,
                digest: descriptor.digest,
                expected: descriptor.size,
                actual: size,
            }));
        }
        if actual != descriptor.digest {
            // Dropping the writer uncommitted leaves nothing in the CAS.
            return Err(Failure::retriable(RegistryError::DigestMismatch {
                what: "blob",
                repository,
                expected: descriptor.digest,
                actual,
                size,
            }));
        }
        Ok(cas_writer.commit().map_err(RegistryError::from)?)
    }
}

/// One blob download across its attempts.
struct Download<'a> {
    /// When the whole download must be done, resumes included.
    deadline: Instant,
    /// What a broken-off attempt already wrote.
    partial: Option<Partial<'a>>,
}

/// The first `written` bytes of a blob, hashed and in an uncommitted CAS
/// file, fetched from the endpoint at `base`.
struct Partial<'a> {
    base: reqwest::Url,
    writer: Sha256Writer<CasWriter<'a>>,
    written: u64,
}

/// How long a blob of `size` bytes may take in all: `grace` (a minute by
/// default), plus the time at 256 KiB/s. A server trickling a byte a minute
/// cannot hold a build forever; a slow but honest link still finishes.
pub fn download_deadline(grace: Duration, size: u64) -> Duration {
    grace + Duration::from_secs(size / (256 << 10))
}

/// Reports bytes read from a body every MiB, for progress on large blobs;
/// counts them; and fails once the download's deadline has passed.
pub(super) struct Progress<'a, R> {
    inner: R,
    client: &'a Client,
    /// Read but not yet reported: the caller reports it when the copy ends.
    pub(super) unreported: u64,
    /// Read in all.
    pub(super) total: u64,
    deadline: Instant,
}

impl<'a, R> Progress<'a, R> {
    pub(super) fn new(inner: R, client: &'a Client, deadline: Instant) -> Self {
        Progress { inner, client, unreported: 0, total: 0, deadline }
    }
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the download's deadline has passed"));
        }
        let read = self.inner.read(buf)?;
        self.unreported += read as u64;
        self.total += read as u64;
        if self.unreported >= 1 << 20 {
            self.client.transferred(std::mem::take(&mut self.unreported));
        }
        Ok(read)
    }
}

fn transfer_error(endpoint: &Endpoint, error: &io::Error) -> RegistryError {
    RegistryError::Transfer { host: endpoint.host.clone(), reason: crate::registry::client::error_chain(error) }
}
