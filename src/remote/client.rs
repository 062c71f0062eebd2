//! The REAPI v2 calls berth makes, each bounded by a deadline: a stalled
//! server costs one deadline, never a hung build. Async, on the remote
//! cache's own runtime; [`RemoteCache`](crate::remote::RemoteCache) is the
//! blocking face the scheduler sees.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::bytestream::{self, byte_stream_client::ByteStreamClient};
use reapi::action_cache_client::ActionCacheClient;
use reapi::capabilities_client::CapabilitiesClient;
use reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use crate::remote::RemoteError;
use crate::workspace::RemoteCacheUrl;

/// A PEM file of a certificate authority trusted for `grpcs://` besides
/// the system's roots (a private CA).
const CA_ENV: &str = "BERTH_REMOTE_CACHE_CA";

/// ByteStream chunks: 1 MiB, well under gRPC's default 4 MiB message limit.
pub(crate) const CHUNK: usize = 1 << 20;
/// What berth assumes of a server that states no batch limit: gRPC's
/// default message size, minus room for the request's own fields.
const DEFAULT_BATCH_LIMIT: u64 = 4 * 1024 * 1024 - 64 * 1024;
/// The largest message berth accepts from a server.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// TLS for `grpcs://`: the system's roots, and the CA of
/// `BERTH_REMOTE_CACHE_CA` when set.
fn tls_config() -> Result<ClientTlsConfig, RemoteError> {
    let config = ClientTlsConfig::new().with_native_roots();
    let Some(path) = std::env::var_os(CA_ENV).filter(|path| !path.is_empty()) else {
        return Ok(config);
    };
    let bad = |reason: String| RemoteError::BadCa { path: Path::new(&path).display().to_string(), reason };
    let pem = std::fs::read(&path).map_err(|error| bad(error.to_string()))?;
    if !pem.windows(27).any(|window| window == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad("it holds no PEM certificate".to_owned()));
    }
    Ok(config.ca_certificate(Certificate::from_pem(pem)))
}

/// What the server said it can do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capabilities {
    /// The most bytes one `BatchUpdateBlobs` / `BatchReadBlobs` may carry.
    pub batch_limit: u64,
    /// Whether `UpdateActionResult` is allowed.
    pub update_enabled: bool,
}

/// A connection to one REAPI server and instance.
#[derive(Clone)]
pub(crate) struct Client {
    channel: Channel,
    instance: String,
    /// The URL, for messages.
    remote: String,
    /// The deadline of every call, and of every message of a stream.
    deadline: Duration,
}

impl Client {
    /// A lazily connecting client; call within the runtime (the channel's
    /// worker is spawned on it).
    pub fn new(url: &RemoteCacheUrl, deadline: Duration) -> Result<Client, RemoteError> {
        let RemoteCacheUrl::Grpc { tls, instance, .. } = url else {
            return Err(RemoteError::BadUrl { url: url.to_string(), reason: "it is not a gRPC URL".to_owned() });
        };
        let bad =
            |error: tonic::transport::Error| RemoteError::BadUrl { url: url.to_string(), reason: error.to_string() };
        let mut endpoint = Endpoint::from_shared(url.endpoint().expect("a gRPC URL has an endpoint"))
            .map_err(bad)?
            .connect_timeout(deadline)
            .tcp_nodelay(true);
        if *tls {
            endpoint = endpoint.tls_config(tls_config()?).map_err(bad)?;
        }
        Ok(Client { channel: endpoint.connect_lazy(), instance: instance.clone(), remote: url.to_string(), deadline })
    }

    pub(crate) fn unavailable(&self, message: impl std::fmt::Display) -> RemoteError {
        RemoteError::Unavailable { remote: self.remote.clone(), message: message.to_string() }
    }

    /// Runs one call under the deadline; a status or a timeout is the
    /// remote's failure.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, RemoteError> {
        self.call_within(what, self.deadline, call).await
    }

    async fn call_within<T>(
        &self,
        what: &str,
        deadline: Duration,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, RemoteError> {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(self.unavailable(format_args!("{what}: {}", status_text(&status)))),
            Err(_) => Err(self.unavailable(format_args!("{what}: no answer within {:.1}s", deadline.as_secs_f64()))),
        }
    }

    pub async fn capabilities(&self) -> Result<Capabilities, RemoteError> {
        let mut client = CapabilitiesClient::new(self.channel.clone());
        let request = reapi::GetCapabilitiesRequest { instance_name: self.instance.clone() };
        let caps = self.call("GetCapabilities", client.get_capabilities(request)).await?.into_inner();
        let cache = caps.cache_capabilities.unwrap_or_default();
        let sha256 = reapi::digest_function::Value::Sha256 as i32;
        // An empty list predates the field: such servers speak SHA-256.
        if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&sha256) {
            return Err(self.unavailable("the server does not accept SHA-256 digests"));
        }
        let batch_limit = match u64::try_from(cache.max_batch_total_size_bytes) {
            Ok(0) | Err(_) => DEFAULT_BATCH_LIMIT,
            Ok(limit) => limit.min(DEFAULT_BATCH_LIMIT),
        };
        // Absent capabilities mean updates are allowed (REAPI's default).
        let update_enabled = cache.action_cache_update_capabilities.is_none_or(|update| update.update_enabled);
        Ok(Capabilities { batch_limit, update_enabled })
    }

    /// The stored result of `action`, or `None` when the server has none.
    pub async fn get_action_result(&self, action: &reapi::Digest) -> Result<Option<reapi::ActionResult>, RemoteError> {
        let mut client = ActionCacheClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let request = reapi::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            inline_output_files: vec![crate::remote::wrap::OUTPUT_JSON.to_owned()],
            digest_function: reapi::digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        match tokio::time::timeout(self.deadline, client.get_action_result(request)).await {
            Ok(Ok(response)) => Ok(Some(response.into_inner())),
            Ok(Err(status)) if status.code() == Code::NotFound => Ok(None),
            Ok(Err(status)) => Err(self.unavailable(format_args!("GetActionResult: {}", status_text(&status)))),
            Err(_) => {
                Err(self
                    .unavailable(format_args!("GetActionResult: no answer within {:.1}s", self.deadline.as_secs_f64())))
            }
        }
    }

    pub async fn update_action_result(
        &self,
        action: &reapi::Digest,
        result: reapi::ActionResult,
    ) -> Result<(), RemoteError> {
        let mut client = ActionCacheClient::new(self.channel.clone());
        let request = reapi::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            action_result: Some(result),
            digest_function: reapi::digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        self.call("UpdateActionResult", client.update_action_result(request)).await?;
        Ok(())
    }

    /// Which of `digests` the server lacks.
    pub async fn find_missing(&self, digests: Vec<reapi::Digest>) -> Result<Vec<reapi::Digest>, RemoteError> {
        let mut client = ContentAddressableStorageClient::new(self.channel.clone());
        let request = reapi::FindMissingBlobsRequest {
            instance_name: self.instance.clone(),
            blob_digests: digests,
            digest_function: reapi::digest_function::Value::Sha256 as i32,
        };
        Ok(self.call("FindMissingBlobs", client.find_missing_blobs(request)).await?.into_inner().missing_blob_digests)
    }

    /// Uploads small blobs in one batch (their total under the batch limit).
    pub async fn batch_update(&self, blobs: Vec<(reapi::Digest, Vec<u8>)>) -> Result<(), RemoteError> {
        let mut client = ContentAddressableStorageClient::new(self.channel.clone());
        let request = reapi::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| reapi::batch_update_blobs_request::Request {
                    digest: Some(digest),
                    data,
                    ..Default::default()
                })
                .collect(),
            digest_function: reapi::digest_function::Value::Sha256 as i32,
        };
        let response = self.call("BatchUpdateBlobs", client.batch_update_blobs(request)).await?.into_inner();
        for entry in response.responses {
            if let Some(status) = entry.status.filter(|status| status.code != Code::Ok as i32) {
                return Err(self.unavailable(format_args!("BatchUpdateBlobs: {} ({})", status.message, status.code)));
            }
        }
        Ok(())
    }

    /// Downloads small blobs in one batch; a blob the server does not have
    /// (or failed to read) comes back as `None`.
    pub async fn batch_read(
        &self,
        digests: Vec<reapi::Digest>,
    ) -> Result<Vec<(reapi::Digest, Option<Vec<u8>>)>, RemoteError> {
        let mut client =
            ContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let request = reapi::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests,
            digest_function: reapi::digest_function::Value::Sha256 as i32,
            ..Default::default()
        };
        let response = self.call("BatchReadBlobs", client.batch_read_blobs(request)).await?.into_inner();
        Ok(response
            .responses
            .into_iter()
            .map(|entry| {
                let ok = entry.status.is_none_or(|status| status.code == Code::Ok as i32);
                (entry.digest.unwrap_or_default(), ok.then_some(entry.data))
            })
            .collect())
    }

    /// Streams one blob into `sink` through ByteStream `Read`, each message
    /// under the deadline (a slow but moving transfer goes on). `Ok(false)`
    /// when the server does not have it.
    pub async fn read_blob(
        &self,
        digest: &reapi::Digest,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<bool, RemoteError> {
        let mut client = ByteStreamClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let request = bytestream::ReadRequest { resource_name: self.resource(digest, None), ..Default::default() };
        let mut stream = match tokio::time::timeout(self.deadline, client.read(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if status.code() == Code::NotFound => return Ok(false),
            Ok(Err(status)) => return Err(self.unavailable(format_args!("ByteStream.Read: {}", status_text(&status)))),
            Err(_) => return Err(self.unavailable("ByteStream.Read: no answer within the deadline")),
        };
        loop {
            match tokio::time::timeout(self.deadline, stream.message()).await {
                Ok(Ok(Some(message))) => {
                    sink(&message.data).map_err(|error| self.unavailable(format_args!("ByteStream.Read: {error}")))?
                }
                Ok(Ok(None)) => return Ok(true),
                Ok(Err(status)) if status.code() == Code::NotFound => return Ok(false),
                Ok(Err(status)) => {
                    return Err(self.unavailable(format_args!("ByteStream.Read: {}", status_text(&status))))
                }
                Err(_) => return Err(self.unavailable("ByteStream.Read: the transfer stalled")),
            }
        }
    }

    /// Uploads one blob from the file at `path` through ByteStream `Write`,
    /// in 1 MiB chunks. The deadline grows with the size (one deadline plus
    /// a second per MiB). A write that breaks off is resumed once from what
    /// the server says it kept (`QueryWriteStatus`).
    pub async fn write_blob(&self, digest: &reapi::Digest, path: &Path, upload_id: &str) -> Result<(), RemoteError> {
        let size = u64::try_from(digest.size_bytes).unwrap_or(0);
        let resource_name = self.resource(digest, Some(upload_id));
        let mut offset = 0;
        loop {
            let error = match self.write_from(&resource_name, path, offset, size).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if offset > 0 {
                return Err(error);
            }
            let mut client = ByteStreamClient::new(self.channel.clone());
            let query = bytestream::QueryWriteStatusRequest { resource_name: resource_name.clone() };
            match self.call("ByteStream.QueryWriteStatus", client.query_write_status(query)).await {
                Ok(status) => {
                    let committed = u64::try_from(status.into_inner().committed_size).unwrap_or(0);
                    if committed == 0 || committed >= size {
                        return Err(error);
                    }
                    offset = committed;
                }
                Err(_) => return Err(error),
            }
        }
    }

    /// One `Write` stream of the bytes of `path` from `offset` on.
    async fn write_from(&self, resource_name: &str, path: &Path, offset: u64, size: u64) -> Result<(), RemoteError> {
        let mut file = File::open(path)
            .map_err(|error| self.unavailable(format_args!("reading `{}`: {error}", path.display())))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|error| self.unavailable(format_args!("reading `{}`: {error}", path.display())))?;
        let chunks = Chunks {
            source: file.take(size - offset),
            resource_name: resource_name.to_owned(),
            offset,
            size,
            done: false,
        };
        let deadline = self.deadline + Duration::from_secs((size - offset) / CHUNK as u64 + 1);
        let mut client = ByteStreamClient::new(self.channel.clone());
        let response = self
            .call_within("ByteStream.Write", deadline, client.write(tokio_stream::iter(chunks)))
            .await?
            .into_inner();
        if u64::try_from(response.committed_size).ok() != Some(size) {
            return Err(self.unavailable(format_args!(
                "ByteStream.Write: the server committed {} of {size} bytes",
                response.committed_size
            )));
        }
        Ok(())
    }

    /// `[instance/]blobs/<hash>/<size>`, or for an upload
    /// `[instance/]uploads/<uuid>/blobs/<hash>/<size>`.
    fn resource(&self, digest: &reapi::Digest, upload_id: Option<&str>) -> String {
        let mut name = String::new();
        if !self.instance.is_empty() {
            name.push_str(&self.instance);
            name.push('/');
        }
        if let Some(id) = upload_id {
            name.push_str(&format!("uploads/{id}/"));
        }
        name.push_str(&format!("blobs/{}/{}", digest.hash, digest.size_bytes));
        name
    }
}

/// A blob's bytes as ByteStream `WriteRequest`s: the resource name on the
/// first, `finish_write` on the last. A read error ends the stream early,
/// which the server sees as a short write.
struct Chunks<R> {
    source: R,
    resource_name: String,
    offset: u64,
    size: u64,
    done: bool,
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = bytestream::WriteRequest;

    fn next(&mut self) -> Option<bytestream::WriteRequest> {
        if self.done {
            return None;
        }
        let want = (self.size - self.offset).min(CHUNK as u64) as usize;
        let mut data = vec![0; want];
        if self.source.read_exact(&mut data).is_err() {
            self.done = true;
            return None;
        }
        let request = bytestream::WriteRequest {
            // The first message of a stream names the resource.
            resource_name: std::mem::take(&mut self.resource_name),
            write_offset: self.offset as i64,
            finish_write: self.offset + want as u64 == self.size,
            data,
        };
        self.offset += want as u64;
        self.done = request.finish_write;
        Some(request)
    }
}

/// A status as a short text: its code and message.
fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{} ({:?})", status.message(), status.code())
    }
}
