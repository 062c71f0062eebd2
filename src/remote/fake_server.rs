//! An in-process REAPI server for deterministic fault tests (tests only):
//! CAS, ActionCache, ByteStream and Capabilities in memory, with faults a
//! real server does not make on demand: UNAVAILABLE after k calls, reads
//! that stall, blobs evicted between `GetActionResult` and the download,
//! and wrong bytes served for a blob.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::bytestream as bs;
use reapi::action_cache_server::{ActionCache, ActionCacheServer};
use reapi::capabilities_server::{Capabilities, CapabilitiesServer};
use reapi::content_addressable_storage_server::{ContentAddressableStorage, ContentAddressableStorageServer};
use tonic::{Request, Response, Status};

/// What the fake does wrong, set by a test at any time.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Every call after this many answers UNAVAILABLE.
    pub unavailable_after: Option<u64>,
    /// ByteStream reads wait this long before their first message.
    pub read_delay: Option<Duration>,
    /// Every blob an action result names is dropped right after
    /// `GetActionResult` answers (evicted between lookup and download).
    pub evict_after_lookup: bool,
    /// ByteStream reads of this hash serve these bytes instead.
    pub serve_instead: Option<(String, Vec<u8>)>,
    /// The next ByteStream write breaks off (UNAVAILABLE) once it holds at
    /// least this many bytes, keeping them for `QueryWriteStatus`.
    pub break_write_at: Option<u64>,
}

#[derive(Default)]
pub struct State {
    pub blobs: HashMap<String, Vec<u8>>,
    pub results: HashMap<String, reapi::ActionResult>,
    pub faults: Faults,
    /// ByteStream write messages received (to see chunking).
    pub write_messages: u64,
    /// Bytes of broken-off writes, by resource name.
    pub partial: HashMap<String, Vec<u8>>,
    /// Writes resumed at a non-zero offset.
    pub resumed_writes: u64,
}

/// A running fake; stops when dropped.
pub struct FakeServer {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    pub calls: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = Service { state: Arc::default(), calls: Arc::default() };
        let (state, calls) = (service.state.clone(), service.calls.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(CapabilitiesServer::new(service.clone()))
                .add_service(ActionCacheServer::new(service.clone()))
                .add_service(ContentAddressableStorageServer::new(service.clone()))
                .add_service(bs::byte_stream_server::ByteStreamServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        FakeServer { port, state, calls, runtime: Some(runtime) }
    }

    pub fn url(&self) -> crate::workspace::RemoteCacheUrl {
        crate::workspace::RemoteCacheUrl::parse(&format!("grpc://127.0.0.1:{}", self.port)).unwrap()
    }

    pub fn faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicU64>,
}

impl Service {
    /// Counts the call; UNAVAILABLE once the fault says so.
    fn enter(&self) -> Result<std::sync::MutexGuard<'_, State>, Status> {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let state = self.state.lock().unwrap();
        match state.faults.unavailable_after {
            Some(limit) if calls > limit => Err(Status::unavailable("the fake is down")),
            _ => Ok(state),
        }
    }
}

fn hash_of(resource_name: &str) -> Option<String> {
    let parts: Vec<&str> = resource_name.split('/').collect();
    let at = parts.iter().position(|part| *part == "blobs")?;
    parts.get(at + 1).map(|hash| hash.to_string())
}

type Stream<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

#[tonic::async_trait]
impl Capabilities for Service {
    async fn get_capabilities(
        &self,
        _: Request<reapi::GetCapabilitiesRequest>,
    ) -> Result<Response<reapi::ServerCapabilities>, Status> {
        drop(self.enter()?);
        Ok(Response::new(reapi::ServerCapabilities {
            cache_capabilities: Some(reapi::CacheCapabilities {
                digest_functions: vec![reapi::digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities { update_enabled: true }),
                max_batch_total_size_bytes: 1 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Service {
    async fn get_action_result(
        &self,
        request: Request<reapi::GetActionResultRequest>,
    ) -> Result<Response<reapi::ActionResult>, Status> {
        let mut state = self.enter()?;
        let hash = request.into_inner().action_digest.unwrap_or_default().hash;
        let result = state.results.get(&hash).cloned().ok_or_else(|| Status::not_found("no result"))?;
        if state.faults.evict_after_lookup {
            for file in result.output_files.iter().filter(|file| file.path.starts_with("berth/blobs/")) {
                state.blobs.remove(&file.digest.as_ref().unwrap().hash);
            }
        }
        Ok(Response::new(result))
    }

    async fn update_action_result(
        &self,
        request: Request<reapi::UpdateActionResultRequest>,
    ) -> Result<Response<reapi::ActionResult>, Status> {
        let mut state = self.enter()?;
        let request = request.into_inner();
        let result = request.action_result.unwrap_or_default();
        state.results.insert(request.action_digest.unwrap_or_default().hash, result.clone());
        Ok(Response::new(result))
    }
}

#[tonic::async_trait]
impl ContentAddressableStorage for Service {
    type GetTreeStream = Stream<reapi::GetTreeResponse>;
    type GetChunkMappingStream = Stream<reapi::GetChunkMappingResponse>;

    async fn find_missing_blobs(
        &self,
        request: Request<reapi::FindMissingBlobsRequest>,
    ) -> Result<Response<reapi::FindMissingBlobsResponse>, Status> {
        let state = self.enter()?;
        let digests = request.into_inner().blob_digests;
        let missing = digests.iter().filter(|digest| !state.blobs.contains_key(&digest.hash)).cloned().collect();
        Ok(Response::new(reapi::FindMissingBlobsResponse { missing_blob_digests: missing }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<reapi::BatchUpdateBlobsRequest>,
    ) -> Result<Response<reapi::BatchUpdateBlobsResponse>, Status> {
        let mut state = self.enter()?;
        let mut responses = Vec::new();
        for blob in request.into_inner().requests {
            let digest = blob.digest.unwrap_or_default();
            state.blobs.insert(digest.hash.clone(), blob.data);
            responses.push(reapi::batch_update_blobs_response::Response { digest: Some(digest), status: None });
        }
        Ok(Response::new(reapi::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<reapi::BatchReadBlobsRequest>,
    ) -> Result<Response<reapi::BatchReadBlobsResponse>, Status> {
        let state = self.enter()?;
        let responses = request
            .into_inner()
            .digests
            .into_iter()
            .map(|digest| {
                let data = state.blobs.get(&digest.hash).cloned();
                let status = data.is_none().then(|| bazel_remote_apis::google::rpc::Status {
                    code: tonic::Code::NotFound as i32,
                    ..Default::default()
                });
                reapi::batch_read_blobs_response::Response {
                    digest: Some(digest),
                    data: data.unwrap_or_default(),
                    status,
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(reapi::BatchReadBlobsResponse { responses }))
    }

    async fn get_tree(&self, _: Request<reapi::GetTreeRequest>) -> Result<Response<Self::GetTreeStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn split_blob(
        &self,
        _: Request<reapi::SplitBlobRequest>,
    ) -> Result<Response<reapi::SplitBlobResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_chunk_mapping(
        &self,
        _: Request<reapi::GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn splice_blob(
        &self,
        _: Request<reapi::SpliceBlobRequest>,
    ) -> Result<Response<reapi::SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn register_chunk_mapping(
        &self,
        _: Request<tonic::Streaming<reapi::RegisterChunkMappingRequest>>,
    ) -> Result<Response<reapi::RegisterChunkMappingResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

#[tonic::async_trait]
impl bs::byte_stream_server::ByteStream for Service {
    type ReadStream = Stream<bs::ReadResponse>;

    async fn read(&self, request: Request<bs::ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let (data, delay) = {
            let state = self.enter()?;
            let hash = hash_of(&request.get_ref().resource_name).ok_or_else(|| Status::invalid_argument("name"))?;
            let data = match &state.faults.serve_instead {
                Some((wrong, bytes)) if *wrong == hash => Some(bytes.clone()),
                _ => state.blobs.get(&hash).cloned(),
            };
            (data.ok_or_else(|| Status::not_found("evicted"))?, state.faults.read_delay)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let messages: Vec<_> =
            data.chunks(64 * 1024).map(|chunk| Ok(bs::ReadResponse { data: chunk.to_vec() })).collect();
        Ok(Response::new(tokio_stream::iter(messages)))
    }

    async fn write(
        &self,
        request: Request<tonic::Streaming<bs::WriteRequest>>,
    ) -> Result<Response<bs::WriteResponse>, Status> {
        drop(self.enter()?);
        let mut stream = request.into_inner();
        let (mut name, mut data, mut messages) = (String::new(), Vec::new(), 0);
        while let Some(message) = stream.message().await? {
            if name.is_empty() {
                name = message.resource_name.clone();
                data = self.state.lock().unwrap().partial.remove(&name).unwrap_or_default();
                if message.write_offset > 0 {
                    self.state.lock().unwrap().resumed_writes += 1;
                }
            }
            if message.write_offset as usize != data.len() {
                return Err(Status::invalid_argument("write_offset out of order"));
            }
            data.extend_from_slice(&message.data);
            messages += 1;
            let mut state = self.state.lock().unwrap();
            if state.faults.break_write_at.is_some_and(|limit| data.len() as u64 >= limit) {
                state.faults.break_write_at = None;
                state.partial.insert(name, data);
                return Err(Status::unavailable("the connection broke"));
            }
            if message.finish_write {
                break;
            }
        }
        let hash = hash_of(&name).ok_or_else(|| Status::invalid_argument("name"))?;
        if crate::cache::Digest::of(&data).hex() != hash {
            return Err(Status::invalid_argument("digest mismatch"));
        }
        let mut state = self.state.lock().unwrap();
        state.write_messages += messages;
        let committed_size = data.len() as i64;
        state.blobs.insert(hash, data);
        Ok(Response::new(bs::WriteResponse { committed_size }))
    }

    async fn query_write_status(
        &self,
        request: Request<bs::QueryWriteStatusRequest>,
    ) -> Result<Response<bs::QueryWriteStatusResponse>, Status> {
        let state = self.enter()?;
        let data = state.partial.get(&request.get_ref().resource_name).ok_or_else(|| Status::not_found("no upload"))?;
        Ok(Response::new(bs::QueryWriteStatusResponse { committed_size: data.len() as i64, complete: false }))
    }
}
