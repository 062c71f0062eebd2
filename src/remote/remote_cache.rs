//! [`RemoteCache`]: the blocking face of the remote cache that the
//! scheduler calls, and its failure policy (Bazel's):
//!
//! - a remote entry is used only if it verifies: exit code 0, an
//!   `output.json` that is berth's canonical `ActionResult`, every blob it
//!   names listed among the outputs with the same digest and present on the
//!   server, and every byte downloaded matching its digest. Anything else is
//!   a miss and a warning, and nothing of it enters the local CAS;
//! - an unreachable, slow or failing server costs at most one deadline per
//!   call in flight, then the circuit breaker opens: no more calls, one
//!   warning, and the build goes on locally;
//! - uploads run in the background, after an action ran locally, and are
//!   drained at the end of the build.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use sha2::{Digest as _, Sha256};

use crate::cache::{canonical_json, ActionResult, BlobRef, BlobSource, Cas, Digest};
use crate::registry::ClientOptions;
use crate::remote::client::{Capabilities, Client};
use crate::remote::oci::OciCache;
use crate::remote::wrap::{digest_of, from_reapi, to_reapi, BLOBS_DIR, OUTPUT_JSON};
use crate::remote::{RemoteError, WrappedAction};
use crate::workspace::RemoteCacheUrl;

/// The deadline of one remote call (and of each message of a transfer).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3);

/// Reads at once (batches and ByteStream streams): enough to fill the
/// link, few enough to stay under a small server's concurrent-call limit
/// (BuildGrid's default is 5 per core).
const READS_IN_FLIGHT: usize = 4;

/// What the remote cache did during a build.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteStats {
    pub lookups: u64,
    pub hits: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Actions whose result was stored on the server.
    pub uploads: u64,
}

impl RemoteStats {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &RemoteStats) -> RemoteStats {
        RemoteStats {
            lookups: self.lookups - before.lookups,
            hits: self.hits - before.hits,
            downloaded: self.downloaded - before.downloaded,
            uploaded: self.uploaded - before.uploaded,
            uploads: self.uploads - before.uploads,
        }
    }
}

/// The remote cache of the last build that used one, and what it did:
/// `<cache>/remote-last-build.json`, for `berth cache stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRemoteBuild {
    pub remote: String,
    pub stats: RemoteStats,
}

const LAST_BUILD_FILE: &str = "remote-last-build.json";

impl LastRemoteBuild {
    /// Records it under `cache_dir`; best effort (it is a report, not state).
    pub fn save(&self, cache_dir: &std::path::Path) {
        let _ =
            crate::sys::write_atomic(&cache_dir.join("tmp"), &cache_dir.join(LAST_BUILD_FILE), &canonical_json(self));
    }

    pub fn load(cache_dir: &std::path::Path) -> Option<LastRemoteBuild> {
        serde_json::from_slice(&std::fs::read(cache_dir.join(LAST_BUILD_FILE)).ok()?).ok()
    }
}

/// A remote cache for one session. Cheap to share (`Arc`); every method
/// blocks the calling thread, never a runtime's.
pub struct RemoteCache {
    inner: Arc<Inner>,
    uploads: Mutex<Uploads>,
}

struct Inner {
    url: RemoteCacheUrl,
    read_only: bool,
    backend: Backend,
    /// The circuit breaker: set by the first failure of the server.
    broken: AtomicBool,
    warnings: Mutex<Vec<String>>,
    lookups: AtomicU64,
    hits: AtomicU64,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
    uploads: AtomicU64,
    /// Blobs a fetch could not get this session: a result naming one is a
    /// miss, so that its producer runs again locally.
    lost: Mutex<HashSet<Digest>>,
}

enum Backend {
    Grpc(Grpc),
    Oci(OciCache),
}

/// A REAPI server.
struct Grpc {
    /// The remote cache's own runtime: tonic needs one; berth's workers and
    /// the blocking registry client never run on it.
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// Asked once, by the first call; `None` when the server failed it.
    capabilities: Mutex<Option<Option<Capabilities>>>,
}

#[derive(Default)]
struct Uploads {
    queue: Arc<Mutex<VecDeque<Upload>>>,
    worker: Option<JoinHandle<()>>,
}

struct Upload {
    key_json: Vec<u8>,
    result: ActionResult,
    cas: Cas,
}

impl RemoteCache {
    /// A remote cache at `url`; `read_only` never uploads. Connects on first
    /// use. An `oci://` cache reaches its registry with `registry` (the
    /// session's `registry(...)` settings), one attempt per request.
    pub fn new(
        url: RemoteCacheUrl,
        read_only: bool,
        deadline: Duration,
        registry: ClientOptions,
    ) -> Result<RemoteCache, RemoteError> {
        let backend = match &url {
            RemoteCacheUrl::Grpc { .. } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("berth-remote")
                    .enable_all()
                    .build()
                    .map_err(|error| RemoteError::Unavailable {
                        remote: url.to_string(),
                        message: error.to_string(),
                    })?;
                let client = {
                    let _entered = runtime.enter();
                    Client::new(&url, deadline)?
                };
                Backend::Grpc(Grpc { runtime, client, capabilities: Mutex::new(None) })
            }
            RemoteCacheUrl::Oci { registry: host, repository } => {
                Backend::Oci(OciCache::new(host, repository, registry, deadline)?)
            }
        };
        let inner = Inner {
            url,
            read_only,
            backend,
            broken: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            lost: Mutex::new(HashSet::new()),
        };
        Ok(RemoteCache { inner: Arc::new(inner), uploads: Mutex::new(Uploads::default()) })
    }

    pub fn url(&self) -> &RemoteCacheUrl {
        &self.inner.url
    }

    /// The verified remote result for the action whose key is the sha256 of
    /// `key_json`; `None` on a miss, on an entry that does not verify,
    /// whenever the server fails (see [`RemoteCache::take_warnings`]) and
    /// for an entry naming a blob a fetch already lost. Its blobs are known
    /// to be on the server but stay there ("build without the bytes"):
    /// [`BlobSource::fetch`] downloads those something reads.
    pub fn lookup(&self, key_json: &[u8], cas: &Cas) -> Option<ActionResult> {
        let inner = &self.inner;
        let answer = match &inner.backend {
            Backend::Grpc(grpc) => {
                inner.capabilities(grpc)?;
                inner.lookups.fetch_add(1, Ordering::Relaxed);
                let wrapped = WrappedAction::new(key_json.to_vec());
                grpc.runtime.block_on(inner.lookup(grpc, &wrapped, cas))
            }
            Backend::Oci(oci) => {
                if inner.broken.load(Ordering::Relaxed) {
                    return None;
                }
                inner.lookups.fetch_add(1, Ordering::Relaxed);
                oci.lookup(&Digest::of(key_json), cas)
            }
        };
        match answer {
            Ok(Some(result)) => {
                let lost = inner.lost.lock().expect("lost lock");
                if result.blob_refs().any(|blob| lost.contains(&blob.digest) && !cas.contains(&blob.digest)) {
                    return None;
                }
                inner.hits.fetch_add(1, Ordering::Relaxed);
                Some(result)
            }
            Ok(None) => None,
            Err(error) => {
                inner.failed(error);
                None
            }
        }
    }

    /// Queues the upload of a result that ran locally (its blobs are in
    /// `cas`), unless the cache is read-only or broken. Runs in the
    /// background; [`RemoteCache::drain`] waits for it.
    pub fn upload(&self, key_json: Vec<u8>, result: &ActionResult, cas: &Cas) {
        if self.inner.read_only || self.inner.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut uploads = self.uploads.lock().expect("upload queue lock");
        uploads.queue.lock().expect("upload queue lock").push_back(Upload {
            key_json,
            result: result.clone(),
            cas: cas.clone(),
        });
        if uploads.worker.as_ref().is_none_or(|worker| worker.is_finished()) {
            let (inner, queue) = (self.inner.clone(), uploads.queue.clone());
            uploads.worker = Some(std::thread::spawn(move || inner.upload_all(&queue)));
        }
    }

    /// Waits until every queued upload is done (or given up).
    pub fn drain(&self) {
        let (worker, queue) = {
            let mut uploads = self.uploads.lock().expect("upload queue lock");
            (uploads.worker.take(), uploads.queue.clone())
        };
        if let Some(worker) = worker {
            let _ = worker.join();
        }
        // A worker that found the queue empty just before an upload was
        // queued has exited without it: what is left is uploaded here.
        self.inner.upload_all(&queue);
    }

    /// The warnings since the last call: one when the server failed (the
    /// breaker opened), one per entry that did not verify.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.warnings.lock().expect("warnings lock"))
    }

    pub fn stats(&self) -> RemoteStats {
        let inner = &self.inner;
        RemoteStats {
            lookups: inner.lookups.load(Ordering::Relaxed),
            hits: inner.hits.load(Ordering::Relaxed),
            downloaded: inner.downloaded.load(Ordering::Relaxed),
            uploaded: inner.uploaded.load(Ordering::Relaxed),
            uploads: inner.uploads.load(Ordering::Relaxed),
        }
    }
}

impl BlobSource for RemoteCache {
    fn fetch(&self, blobs: &[BlobRef], cas: &Cas) -> Vec<Digest> {
        let inner = &self.inner;
        let mut wanted: Vec<BlobRef> = Vec::new();
        let mut known_lost = Vec::new();
        for blob in blobs {
            if cas.contains(&blob.digest) || wanted.iter().any(|seen| seen.digest == blob.digest) {
                continue;
            }
            // Asked for and not had once this session: not asked again.
            if self.is_lost(&blob.digest) {
                known_lost.push(blob.digest);
            } else {
                wanted.push(*blob);
            }
        }
        if wanted.is_empty() {
            return known_lost;
        }
        let answer = if inner.broken.load(Ordering::Relaxed) {
            Err(None)
        } else {
            match &inner.backend {
                Backend::Grpc(grpc) => match inner.capabilities(grpc) {
                    Some(capabilities) => {
                        grpc.runtime.block_on(inner.download(grpc, capabilities, &wanted, cas)).map_err(Some)
                    }
                    None => Err(None),
                },
                Backend::Oci(oci) => oci.fetch(&wanted, cas).map_err(Some),
            }
        };
        let lost: Vec<(Digest, String)> = match answer {
            Ok((downloaded, lost)) => {
                inner.downloaded.fetch_add(downloaded, Ordering::Relaxed);
                lost
            }
            Err(error) => {
                // The server failed: its one warning says so (the breaker).
                if let Some(error) = error {
                    inner.failed(error);
                }
                let unfetched = wanted.iter().filter(|blob| !cas.contains(&blob.digest)).map(|blob| blob.digest);
                let digests: Vec<Digest> = unfetched.collect();
                inner.lost.lock().expect("lost lock").extend(digests.iter().copied());
                return known_lost.into_iter().chain(digests).collect();
            }
        };
        if let Some((digest, reason)) = lost.first() {
            let others = match lost.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            inner.warnings.lock().expect("warnings lock").push(format!(
                "Blob {digest}{others} could not be downloaded from the remote cache: {reason}; its action runs again locally"
            ));
        }
        let digests: Vec<Digest> = lost.into_iter().map(|(digest, _)| digest).collect();
        inner.lost.lock().expect("lost lock").extend(digests.iter().copied());
        known_lost.into_iter().chain(digests).collect()
    }

    /// Once the breaker is open every blob still on the server is lost.
    fn is_lost(&self, digest: &Digest) -> bool {
        self.inner.broken.load(Ordering::Relaxed) || self.inner.lost.lock().expect("lost lock").contains(digest)
    }
}

impl Drop for RemoteCache {
    fn drop(&mut self) {
        self.drain();
    }
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache").field("url", &self.inner.url).field("read_only", &self.inner.read_only).finish()
    }
}

impl Inner {
    /// The server's capabilities, asked once; `None` once the breaker is open.
    fn capabilities(&self, grpc: &Grpc) -> Option<Capabilities> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        // Held while asking: the other workers wait for this one answer
        // instead of each spending a deadline on a dead server.
        let mut capabilities = grpc.capabilities.lock().expect("capabilities lock");
        if capabilities.is_none() {
            let answer = grpc.runtime.block_on(grpc.client.capabilities());
            *capabilities = Some(answer.map_err(|error| self.failed(error)).ok());
        }
        capabilities.expect("just asked").filter(|_| !self.broken.load(Ordering::Relaxed))
    }

    /// Uploads what `queue` holds until it is empty; once the breaker is
    /// open the rest is dropped.
    fn upload_all(&self, queue: &Mutex<VecDeque<Upload>>) {
        loop {
            let Some(upload) = queue.lock().expect("upload queue lock").pop_front() else {
                return;
            };
            if self.broken.load(Ordering::Relaxed) {
                continue;
            }
            let stored = match &self.backend {
                Backend::Grpc(grpc) => grpc.runtime.block_on(self.upload(grpc, &upload)),
                Backend::Oci(oci) => {
                    oci.upload(&Digest::of(&upload.key_json), &upload.result, &upload.cas).map(|uploaded| {
                        self.uploaded.fetch_add(uploaded, Ordering::Relaxed);
                        self.uploads.fetch_add(1, Ordering::Relaxed);
                    })
                }
            };
            match stored {
                // Not the server's fault: this one upload is skipped.
                Err(RemoteError::Invalid { message }) => {
                    self.warnings.lock().expect("warnings lock").push(format!("Remote cache upload skipped: {message}"))
                }
                Err(error) => self.failed(error),
                Ok(()) => {}
            }
        }
    }

    /// Applies the failure policy to `error`: a server failure opens the
    /// breaker and warns once; an entry that does not verify warns.
    fn failed(&self, error: RemoteError) {
        let message = match error {
            RemoteError::Invalid { .. } => format!("{error}; running the action locally"),
            _ => {
                if self.broken.swap(true, Ordering::Relaxed) {
                    return;
                }
                format!("{error}; building without the remote cache")
            }
        };
        self.warnings.lock().expect("warnings lock").push(message);
    }

    async fn lookup(
        &self,
        grpc: &Grpc,
        wrapped: &WrappedAction,
        cas: &Cas,
    ) -> Result<Option<ActionResult>, RemoteError> {
        let Some(remote) = grpc.client.get_action_result(&wrapped.action_digest).await? else {
            return Ok(None);
        };
        // Whether the server still has the blobs this machine lacks is
        // asked while `output.json` is read: one round trip, not two. Blobs
        // already lost are not asked about: the caller drops such a hit.
        let lost = self.lost.lock().expect("lost lock").clone();
        let absent: Vec<reapi::Digest> = remote
            .output_files
            .iter()
            .filter(|file| file.path.starts_with(BLOBS_DIR))
            .filter_map(|file| file.digest.clone())
            .filter(|digest| {
                from_reapi(digest).is_some_and(|(digest, _)| !cas.contains(&digest) && !lost.contains(&digest))
            })
            .collect();
        let presence = {
            let client = grpc.client.clone();
            tokio::spawn(async move {
                if absent.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.find_missing(absent).await
                }
            })
        };
        let mut prefetched = HashMap::new();
        let output = remote.output_files.iter().find(|file| file.path == OUTPUT_JSON);
        if let Some(digest) = output.filter(|file| file.contents.is_empty()).and_then(|file| file.digest.clone()) {
            for (digest, data) in grpc.client.batch_read(vec![digest]).await? {
                if let Some(data) = data {
                    prefetched.insert(digest.hash, data);
                }
            }
        }
        let verified = self.verify(&grpc.client, &remote, &prefetched).await;
        let missing = presence.await.map_err(|error| grpc.client.unavailable(error))??;
        let result = verified?;
        if let Some(digest) = missing.first() {
            return Err(RemoteError::Invalid {
                message: format!("the server lost blob sha256:{} named by the action result", digest.hash),
            });
        }
        Ok(Some(result))
    }

    /// The berth `ActionResult` a remote entry holds, if it is one: exit code
    /// 0, a canonical `output.json` with the right digest, and exactly its
    /// blobs among the outputs, each on the server.
    async fn verify(
        &self,
        client: &Client,
        remote: &reapi::ActionResult,
        prefetched: &HashMap<String, Vec<u8>>,
    ) -> Result<ActionResult, RemoteError> {
        let invalid = |message: String| RemoteError::Invalid { message };
        if remote.exit_code != 0 {
            return Err(invalid(format!("the action result has exit code {}", remote.exit_code)));
        }
        let outputs: BTreeMap<&str, &reapi::OutputFile> =
            remote.output_files.iter().map(|file| (file.path.as_str(), file)).collect();
        let output =
            outputs.get(OUTPUT_JSON).ok_or_else(|| invalid(format!("the action result has no `{OUTPUT_JSON}`")))?;
        let (digest, size) = output
            .digest
            .as_ref()
            .and_then(from_reapi)
            .ok_or_else(|| invalid(format!("`{OUTPUT_JSON}` has no valid SHA-256 digest")))?;
        let bytes = if !output.contents.is_empty() || size == 0 {
            output.contents.clone()
        } else if let Some(bytes) = prefetched.get(&digest.hex()) {
            bytes.clone()
        } else {
            let read = client.batch_read(vec![output.digest.clone().expect("checked above")]).await?;
            read.into_iter()
                .next()
                .and_then(|(_, data)| data)
                .ok_or_else(|| invalid(format!("the server does not have `{OUTPUT_JSON}` ({digest})")))?
        };
        if bytes.len() as u64 != size || Digest::of(&bytes) != digest {
            return Err(invalid(format!("`{OUTPUT_JSON}` does not match its digest {digest}")));
        }
        let result: ActionResult = serde_json::from_slice(&bytes)
            .map_err(|error| invalid(format!("`{OUTPUT_JSON}` is not a berth action result: {error}")))?;
        if canonical_json(&result) != bytes {
            return Err(invalid(format!("`{OUTPUT_JSON}` is not in canonical form")));
        }
        if outputs.len() != result.blobs.len() + 1 {
            return Err(invalid("the action result's outputs are not the blobs its `output.json` names".to_owned()));
        }
        for (name, blob) in &result.blobs {
            let path = format!("{BLOBS_DIR}/{name}");
            let named = outputs.get(path.as_str()).and_then(|file| file.digest.as_ref()).and_then(from_reapi);
            if named != Some((blob.digest, blob.size)) {
                return Err(invalid(format!(
                    "output `{path}` is not the blob `{OUTPUT_JSON}` names ({})",
                    blob.digest
                )));
            }
        }
        Ok(result)
    }

    /// Downloads `wanted` into `cas`: small blobs in batches under the
    /// server's limit, large ones streamed, all at once (a few streams at a
    /// time). Each is checked against its digest before it is committed.
    /// Returns the bytes moved and the blobs the server did not have or
    /// served wrong; an error is the server's failure.
    async fn download(
        &self,
        grpc: &Grpc,
        capabilities: Capabilities,
        wanted: &[BlobRef],
        cas: &Cas,
    ) -> Result<(u64, Vec<(Digest, String)>), RemoteError> {
        let (small, large): (Vec<BlobRef>, Vec<BlobRef>) =
            wanted.iter().copied().partition(|blob| blob.size <= capabilities.batch_limit / 4);
        let reads: Vec<Vec<BlobRef>> = batches(&small, capabilities.batch_limit)
            .into_iter()
            .map(<[BlobRef]>::to_vec)
            .chain(large.into_iter().map(|blob| vec![blob]))
            .collect();
        let mut outcomes = Vec::new();
        for wave in reads.chunks(READS_IN_FLIGHT) {
            let mut tasks = Vec::new();
            for read in wave {
                let (client, cas, read, batched) =
                    (grpc.client.clone(), cas.clone(), read.clone(), read[0].size <= capabilities.batch_limit / 4);
                tasks.push(tokio::spawn(async move {
                    if batched {
                        read_batch(&client, &read, &cas).await
                    } else {
                        read_large(&client, read[0], &cas).await.map(|one| vec![one])
                    }
                }));
            }
            for task in tasks {
                outcomes.extend(task.await.map_err(|error| grpc.client.unavailable(error))??);
            }
        }
        let mut downloaded = 0;
        let mut lost = Vec::new();
        for (blob, outcome) in outcomes {
            match outcome {
                Ok(()) => downloaded += blob.size,
                Err(reason) => lost.push((blob.digest, reason)),
            }
        }
        Ok((downloaded, lost))
    }

    /// Stores one result on the server: the wrapping's blobs, `output.json`
    /// and every blob the server lacks (small ones in batches, large ones
    /// through ByteStream), then the action result.
    async fn upload(&self, grpc: &Grpc, upload: &Upload) -> Result<(), RemoteError> {
        let client = &grpc.client;
        let Some(capabilities) = *grpc.capabilities.lock().expect("capabilities lock") else {
            return Ok(());
        };
        let Some(capabilities) = capabilities.filter(|caps| caps.update_enabled) else {
            return Ok(());
        };
        let wrapped = WrappedAction::new(upload.key_json.clone());
        let output_json = canonical_json(&upload.result);
        let output_digest = digest_of(&output_json);

        let mut small: BTreeMap<String, (reapi::Digest, Vec<u8>)> = wrapped
            .blobs
            .iter()
            .cloned()
            .chain([(output_digest.clone(), output_json)])
            .map(|(digest, bytes)| (digest.hash.clone(), (digest, bytes)))
            .collect();
        let blobs: BTreeMap<String, reapi::Digest> =
            upload.result.blob_refs().map(|blob| (blob.digest.hex(), to_reapi(&blob.digest, blob.size))).collect();
        let all = small.values().map(|(digest, _)| digest.clone()).chain(blobs.values().cloned()).collect();
        let missing = client.find_missing(all).await?;

        let mut batch: Vec<(reapi::Digest, Vec<u8>)> = Vec::new();
        let mut batch_size = 0u64;
        for digest in missing {
            let size = u64::try_from(digest.size_bytes).unwrap_or(u64::MAX);
            let bytes = if let Some((_, bytes)) = small.remove(&digest.hash) {
                bytes
            } else if size <= capabilities.batch_limit / 4 {
                let (parsed, _) = from_reapi(&digest).expect("our own digest");
                upload.cas.read_verified(&parsed).map_err(|error| self.unusable(error))?
            } else {
                let (parsed, _) = from_reapi(&digest).expect("our own digest");
                client.write_blob(&digest, &upload.cas.path(&parsed), &upload_id(&digest)).await?;
                self.uploaded.fetch_add(size, Ordering::Relaxed);
                continue;
            };
            if batch_size + size > capabilities.batch_limit && !batch.is_empty() {
                client.batch_update(std::mem::take(&mut batch)).await?;
                batch_size = 0;
            }
            batch_size += size;
            self.uploaded.fetch_add(size, Ordering::Relaxed);
            batch.push((digest, bytes));
        }
        if !batch.is_empty() {
            client.batch_update(batch).await?;
        }

        let mut output_files =
            vec![reapi::OutputFile { path: OUTPUT_JSON.to_owned(), digest: Some(output_digest), ..Default::default() }];
        for (name, blob) in &upload.result.blobs {
            output_files.push(reapi::OutputFile {
                path: format!("{BLOBS_DIR}/{name}"),
                digest: Some(to_reapi(&blob.digest, blob.size)),
                ..Default::default()
            });
        }
        output_files.sort_by(|a, b| a.path.cmp(&b.path));
        let result = reapi::ActionResult { output_files, exit_code: 0, ..Default::default() };
        client.update_action_result(&wrapped.action_digest, result).await?;
        self.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A local blob that cannot be read for upload: that upload is skipped
    /// (the local cache is not the remote's to repair).
    fn unusable(&self, error: impl std::fmt::Display) -> RemoteError {
        RemoteError::Invalid { message: format!("a local blob could not be read for upload: {error}") }
    }
}

/// What became of one blob a fetch asked for: in the CAS, or why not.
type Fetched = (BlobRef, Result<(), String>);

/// Reads `batch` in one `BatchReadBlobs` and commits each blob whose bytes
/// match its digest.
async fn read_batch(client: &Client, batch: &[BlobRef], cas: &Cas) -> Result<Vec<Fetched>, RemoteError> {
    let read = client.batch_read(batch.iter().map(|blob| to_reapi(&blob.digest, blob.size)).collect()).await?;
    let mut data: HashMap<String, Vec<u8>> =
        read.into_iter().filter_map(|(digest, data)| Some((digest.hash, data?))).collect();
    let mut outcomes = Vec::new();
    for blob in batch {
        let outcome = match data.remove(&blob.digest.hex()) {
            None => Err("the server does not have it".to_owned()),
            Some(bytes) if bytes.len() as u64 != blob.size || Digest::of(&bytes) != blob.digest => {
                Err("what the server sent does not match its digest".to_owned())
            }
            Some(bytes) => cas.put_bytes(&bytes).map(drop).map_err(|error| error.to_string()),
        };
        outcomes.push((*blob, outcome));
    }
    Ok(outcomes)
}

/// Streams one blob through ByteStream into the CAS, committed only if
/// its bytes match its digest (otherwise nothing of it stays).
async fn read_large(client: &Client, blob: BlobRef, cas: &Cas) -> Result<Fetched, RemoteError> {
    let mut writer = match cas.writer() {
        Ok(writer) => writer,
        Err(error) => return Ok((blob, Err(error.to_string()))),
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let found = client
        .read_blob(&to_reapi(&blob.digest, blob.size), |bytes| {
            hasher.update(bytes);
            size += bytes.len() as u64;
            std::io::Write::write_all(&mut writer, bytes)
        })
        .await?;
    let outcome = if !found {
        Err("the server does not have it".to_owned())
    } else if size != blob.size || Digest::from_bytes(hasher.finalize().into()) != blob.digest {
        Err("what the server sent does not match its digest".to_owned())
    } else {
        writer.commit().map(drop).map_err(|error| error.to_string())
    };
    Ok((blob, outcome))
}

/// `blobs` in consecutive groups whose sizes add up to at most `limit`.
fn batches(blobs: &[BlobRef], limit: u64) -> Vec<&[BlobRef]> {
    let mut groups = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (index, blob) in blobs.iter().enumerate() {
        if total + blob.size > limit && index > start {
            groups.push(&blobs[start..index]);
            (start, total) = (index, 0);
        }
        total += blob.size;
    }
    if start < blobs.len() {
        groups.push(&blobs[start..]);
    }
    groups
}

/// A fresh ByteStream upload id in UUID form (REAPI asks for a UUID so that
/// two clients writing the same blob do not collide): random bytes from
/// the kernel, and the digest and a counter should it not answer.
fn upload_id(digest: &reapi::Digest) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static RANDOM: OnceLock<[u8; 16]> = OnceLock::new();
    let random = RANDOM.get_or_init(|| {
        let mut bytes = [0u8; 16];
        let _ = File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes));
        bytes
    });
    let mut hasher = Sha256::new();
    hasher.update(random);
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(digest.hash.as_bytes());
    let mut bytes: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::remote::fake_server::{FakeServer, Faults};

    const DEADLINE: Duration = Duration::from_millis(500);

    /// A change to a stored result.
    type Poison = Box<dyn Fn(&mut reapi::ActionResult)>;

    /// A result of two blobs in a fresh CAS: a small config and a 2.5 MiB
    /// layer (ByteStream, three chunks).
    fn produced(dir: &std::path::Path) -> (Cas, ActionResult) {
        let cas = Cas::open(dir).unwrap();
        let layer: Vec<u8> = (0..(5u32 << 19)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let blobs = BTreeMap::from([
            ("config".to_owned(), cas.put_bytes(br#"{"config":true}"#).unwrap()),
            ("layer".to_owned(), cas.put_bytes(&layer).unwrap()),
        ]);
        (cas, ActionResult { blobs, metadata: serde_json::json!({"media_type": "x"}) })
    }

    fn key_json(n: u32) -> Vec<u8> {
        format!(r#"{{"berth_format_version":1,"inputs":[],"kind":"test","kind_version":{n},"params":{{}}}}"#)
            .into_bytes()
    }

    /// The server holds the result of `key_json(1)` (uploaded by berth).
    fn seeded() -> (FakeServer, ActionResult) {
        let server = FakeServer::start();
        let dir = tempfile::tempdir().unwrap();
        let (cas, result) = produced(dir.path());
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert!(remote.lookup(&key_json(1), &cas).is_none(), "empty server: a miss");
        remote.upload(key_json(1), &result, &cas);
        remote.drain();
        assert_eq!(remote.take_warnings(), Vec::<String>::new());
        assert_eq!(remote.stats().uploads, 1);
        (server, result)
    }

    #[test]
    fn uploads_then_serves_a_verified_hit_to_another_cache() {
        let (server, result) = seeded();
        assert!(server.state.lock().unwrap().write_messages >= 3, "the layer went through ByteStream in 1 MiB chunks");

        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        let hit = remote.lookup(&key_json(1), &cas).expect("a hit");
        assert_eq!(hit, result);
        for blob in result.blob_refs() {
            assert!(!cas.contains(&blob.digest), "a hit downloads no blob by itself");
        }
        let blobs: Vec<BlobRef> = result.blob_refs().copied().collect();
        assert_eq!(remote.fetch(&blobs, &cas), Vec::<Digest>::new());
        for blob in result.blob_refs() {
            assert!(cas.verify(blob).unwrap());
        }
        let downloaded = result.blob_refs().map(|blob| blob.size).sum::<u64>();
        assert!(remote.lookup(&key_json(2), &cas).is_none(), "another key: a miss");
        assert_eq!(remote.take_warnings(), Vec::<String>::new());
        assert_eq!(remote.stats(), RemoteStats { lookups: 2, hits: 1, downloaded, uploaded: 0, uploads: 0 });
        assert_eq!(remote.fetch(&blobs, &cas), Vec::<Digest>::new(), "local blobs are not asked for");
        assert_eq!(remote.stats().downloaded, downloaded);
    }

    #[test]
    fn a_broken_off_upload_resumes_where_the_server_stopped() {
        let server = FakeServer::start();
        server.faults(Faults { break_write_at: Some(1 << 20), ..Faults::default() });
        let dir = tempfile::tempdir().unwrap();
        let (cas, result) = produced(dir.path());
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert!(remote.lookup(&key_json(1), &cas).is_none());
        remote.upload(key_json(1), &result, &cas);
        remote.drain();
        assert_eq!(remote.take_warnings(), Vec::<String>::new());
        assert_eq!(server.state.lock().unwrap().resumed_writes, 1);
        let layer = result.blobs["layer"];
        assert_eq!(server.state.lock().unwrap().blobs[&layer.digest.hex()].len() as u64, layer.size);
        let other = tempfile::tempdir().unwrap();
        let other = Cas::open(other.path()).unwrap();
        let hit = remote.lookup(&key_json(1), &other).expect("stored whole");
        assert_eq!(hit, result);
        assert_eq!(remote.fetch(&[layer], &other), Vec::<Digest>::new());
        assert!(other.verify(&layer).unwrap());
    }

    #[test]
    fn a_read_only_cache_never_uploads() {
        let server = FakeServer::start();
        let dir = tempfile::tempdir().unwrap();
        let (cas, result) = produced(dir.path());
        let remote = RemoteCache::new(server.url(), true, DEADLINE, ClientOptions::default()).unwrap();
        remote.upload(key_json(1), &result, &cas);
        remote.drain();
        assert!(server.state.lock().unwrap().results.is_empty());
        assert_eq!(server.calls(), 0);
    }

    #[test]
    fn unavailable_after_k_calls_opens_the_breaker_with_one_warning() {
        let (server, _) = seeded();
        server.faults(Faults { unavailable_after: Some(server.calls() + 1), ..Faults::default() });
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        // Capabilities answer; GetActionResult fails.
        assert!(remote.lookup(&key_json(1), &cas).is_none());
        let calls = server.calls();
        for n in 0..5 {
            assert!(remote.lookup(&key_json(n), &cas).is_none());
        }
        let (_, result) = produced(dir.path());
        remote.upload(key_json(9), &result, &cas);
        remote.drain();
        assert_eq!(server.calls(), calls, "the breaker asks nothing more");
        let warnings = remote.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("the fake is down") && warnings[0].contains("building without the remote cache"));
    }

    #[test]
    fn a_stalled_read_costs_one_deadline_and_the_blob_is_lost() {
        let (server, result) = seeded();
        server.faults(Faults { read_delay: Some(Duration::from_secs(30)), ..Faults::default() });
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert_eq!(remote.lookup(&key_json(1), &cas), Some(result.clone()), "the stall is in ByteStream only");
        let layer = result.blobs["layer"];
        let started = Instant::now();
        assert_eq!(remote.fetch(&[layer], &cas), vec![layer.digest]);
        assert!(started.elapsed() < DEADLINE * 4, "bounded by the deadline: {:?}", started.elapsed());
        assert!(remote.is_lost(&layer.digest));
        assert!(!cas.contains(&layer.digest));
        let warnings = remote.take_warnings();
        assert!(warnings.len() == 1 && warnings[0].contains("building without the remote cache"), "{warnings:?}");
        assert!(remote.lookup(&key_json(1), &cas).is_none(), "the breaker is open");
        assert!(remote.is_lost(&result.blobs["config"].digest), "with the breaker open every remote blob is lost");
    }

    #[test]
    fn a_blob_evicted_after_a_hit_is_lost_and_its_entry_a_miss_from_then_on() {
        let (server, result) = seeded();
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert_eq!(remote.lookup(&key_json(1), &cas), Some(result.clone()));
        let (config, layer) = (result.blobs["config"], result.blobs["layer"]);
        server.state.lock().unwrap().blobs.remove(&layer.digest.hex());
        assert_eq!(remote.fetch(&[config, layer], &cas), vec![layer.digest]);
        assert!(cas.verify(&config).unwrap(), "what the server still has is downloaded");
        assert!(!cas.contains(&layer.digest));
        let warnings = remote.take_warnings();
        assert!(warnings.len() == 1 && warnings[0].contains("does not have it"), "{warnings:?}");
        assert!(remote.is_lost(&layer.digest) && !remote.is_lost(&config.digest));
        // Not a server failure: the server is still asked, and the entry
        // naming the lost blob is a miss, so that its producer runs here.
        let calls = server.calls();
        assert!(remote.lookup(&key_json(1), &cas).is_none());
        assert!(server.calls() > calls);
        assert_eq!(remote.take_warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_blob_evicted_before_the_lookup_is_a_miss_not_a_breakdown() {
        let (server, _) = seeded();
        server.faults(Faults { evict_after_lookup: true, ..Faults::default() });
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert!(remote.lookup(&key_json(1), &cas).is_none());
        let warnings = remote.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("lost blob"), "{warnings:?}");
        // Not a server failure: the next lookup still asks.
        let calls = server.calls();
        assert!(remote.lookup(&key_json(2), &cas).is_none());
        assert!(server.calls() > calls);
    }

    #[test]
    fn wrong_bytes_for_a_blob_are_lost_and_stay_out_of_the_cas() {
        let (server, result) = seeded();
        let layer = result.blobs["layer"];
        let garbage = vec![0x5a; layer.size as usize];
        server.faults(Faults { serve_instead: Some((layer.digest.hex(), garbage.clone())), ..Faults::default() });
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
        assert_eq!(remote.lookup(&key_json(1), &cas), Some(result.clone()), "the entry itself verifies");
        assert_eq!(remote.fetch(&[layer], &cas), vec![layer.digest]);
        assert!(remote.take_warnings()[0].contains("does not match its digest"));
        assert!(!cas.contains(&layer.digest));
        assert!(!cas.contains(&Digest::of(&garbage)), "not even under its own digest");
        assert_eq!(std::fs::read_dir(dir.path().join("cas/tmp")).unwrap().count(), 0, "no temp file left");
    }

    #[test]
    fn entries_that_are_not_berths_are_misses() {
        let (server, _) = seeded();
        let action = WrappedAction::new(key_json(1)).action_digest.hash;
        let stored = server.state.lock().unwrap().results[&action].clone();
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let pretty = b"{\n  \"blobs\": {},\n  \"metadata\": {}\n}".to_vec();
        let pretty_digest = digest_of(&pretty);
        let cases: Vec<(&str, Poison)> = vec![
            ("exit code 1", Box::new(|result| result.exit_code = 1)),
            ("has no `berth/output.json`", Box::new(|result| result.output_files.retain(|f| f.path != OUTPUT_JSON))),
            (
                "not the blob",
                Box::new(|result| {
                    let file = result.output_files.iter_mut().find(|f| f.path == "berth/blobs/layer").unwrap();
                    file.digest = Some(digest_of(b"other"));
                }),
            ),
            (
                "not in canonical form",
                Box::new(move |result| {
                    let file = result.output_files.iter_mut().find(|f| f.path == OUTPUT_JSON).unwrap();
                    file.digest = Some(pretty_digest.clone());
                    result.output_files.retain(|f| !f.path.starts_with("berth/blobs/"));
                }),
            ),
        ];
        server.state.lock().unwrap().blobs.insert(digest_of(&pretty).hash, pretty);
        for (wanted, poison) in cases {
            let mut result = stored.clone();
            poison(&mut result);
            server.state.lock().unwrap().results.insert(action.clone(), result);
            let remote = RemoteCache::new(server.url(), false, DEADLINE, ClientOptions::default()).unwrap();
            assert!(remote.lookup(&key_json(1), &cas).is_none(), "{wanted}");
            let warnings = remote.take_warnings();
            assert!(warnings.len() == 1 && warnings[0].contains(wanted), "{wanted}: {warnings:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("cas/sha256")).unwrap().count(), 0, "nothing downloaded");
    }

    #[test]
    fn an_unreachable_server_costs_one_warning() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = crate::workspace::RemoteCacheUrl::parse(&format!("grpc://127.0.0.1:{port}")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let remote = RemoteCache::new(url, false, DEADLINE, ClientOptions::default()).unwrap();
        for n in 0..3 {
            assert!(remote.lookup(&key_json(n), &cas).is_none());
        }
        assert_eq!(remote.take_warnings().len(), 1);
    }
}
