//! What an action sees while it runs. The scheduler builds one
//! [`ExecutionContext`] per build from the session's settings (the machine:
//! CAS, registry handle, layer store, container runtime) and hands each
//! action an [`ActionContext`] over it, with the action's resolved inputs
//! and a fresh scratch directory. Actions hold no client, path or runtime of
//! their own, so the same action runs the same way wherever the context
//! comes from.
//!
//! Input blobs are read through [`ActionContext::read_blob`] and
//! [`ActionContext::blob_path`] rather than the CAS directly: they are the
//! place where a blob that is not local yet (a remote cache hit whose bytes
//! were never downloaded) can be fetched on demand.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::actions::ContainerRuntime;
use crate::cache::{ActionResult, BlobRef, BlobSource, Cas, CasError, Digest};
use crate::error::{Error, Result};
use crate::oci::LayerStore;
use crate::registry::{Client, RegistryHandle};

/// The machine every action of one build runs on. Cheap to clone.
#[derive(Clone)]
pub struct ExecutionContext {
    cas: Cas,
    layers: LayerStore,
    registry: Option<Arc<RegistryHandle>>,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    /// Where input blobs that are not local yet come from (the remote cache).
    blobs: Option<Arc<dyn BlobSource>>,
}

impl ExecutionContext {
    /// A context over `cas` and `layers` that reaches no registry and runs
    /// no container; add them with [`ExecutionContext::with_registry`] and
    /// [`ExecutionContext::with_runtime`].
    pub fn new(cas: Cas, layers: LayerStore) -> ExecutionContext {
        ExecutionContext { cas, layers, registry: None, runtime: None, blobs: None }
    }

    /// Pulls go through `registry` (the handle analysis resolved them with).
    pub fn with_registry(mut self, registry: Arc<RegistryHandle>) -> ExecutionContext {
        self.registry = Some(registry);
        self
    }

    /// Containers (`run_step`, `berth run`) run on `runtime`.
    pub fn with_runtime(mut self, runtime: Arc<dyn ContainerRuntime>) -> ExecutionContext {
        self.runtime = Some(runtime);
        self
    }

    /// Input blobs missing from the CAS are fetched from `blobs` when an
    /// action reads them.
    pub fn with_blob_source(mut self, blobs: Arc<dyn BlobSource>) -> ExecutionContext {
        self.blobs = Some(blobs);
        self
    }

    pub fn cas(&self) -> &Cas {
        &self.cas
    }

    /// Makes `blob` local: fetched from the blob source when the CAS lacks
    /// it. Fails with [`CasError::Missing`] when it cannot be had.
    pub fn ensure_local(&self, blob: &BlobRef) -> Result<(), CasError> {
        if self.cas.contains(&blob.digest) {
            return Ok(());
        }
        match &self.blobs {
            Some(source) if source.fetch(std::slice::from_ref(blob), &self.cas).is_empty() => Ok(()),
            _ => Err(CasError::Missing { digest: blob.digest }),
        }
    }

    /// Base layers extracted once per digest, for the container runtime.
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }

    /// The session's registry client, made on first use.
    pub fn registry(&self) -> Result<Arc<Client>> {
        let handle = self
            .registry
            .as_ref()
            .ok_or_else(|| Error::internal("This execution context reaches no registry, but an action pulls"))?;
        Ok(handle.client()?)
    }

    /// The container runtime.
    pub fn runtime(&self) -> Result<&dyn ContainerRuntime> {
        self.runtime
            .as_deref()
            .ok_or_else(|| Error::internal("This execution context runs no containers, but an action needs one"))
    }
}

impl fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("cas", &self.cas)
            .field("layers", &self.layers)
            .field("registry", &self.registry)
            .field("runtime", &self.runtime)
            .field("blobs", &self.blobs.is_some())
            .finish()
    }
}

/// An input as the action sees it when it runs, in declaration order.
#[derive(Debug)]
pub enum ResolvedInput<'a> {
    Source {
        /// Absolute path to read from; its bytes must still hash to `digest`.
        path: PathBuf,
        digest: Digest,
        size: u64,
        /// The file was last written long enough ago that its stamp, which
        /// the scheduler checks again after the action, proves its bytes
        /// unchanged. When false, a reader must hash the bytes it copies.
        settled: bool,
    },
    Action(&'a ActionResult),
}

/// Everything one action may touch while it runs: its resolved inputs, a
/// fresh scratch directory that is deleted afterwards, and the build's
/// [`ExecutionContext`].
pub struct ActionContext<'a> {
    pub inputs: Vec<ResolvedInput<'a>>,
    pub scratch: &'a Path,
    exec: &'a ExecutionContext,
}

impl<'a> ActionContext<'a> {
    pub fn new(exec: &'a ExecutionContext, inputs: Vec<ResolvedInput<'a>>, scratch: &'a Path) -> ActionContext<'a> {
        ActionContext { inputs, scratch, exec }
    }

    /// The CAS, to write output blobs into.
    pub fn cas(&self) -> &'a Cas {
        &self.exec.cas
    }

    /// The bytes of an input blob, checked against its digest (a corrupt
    /// blob is removed, so its producer runs again).
    pub fn read_blob(&self, blob: &BlobRef) -> Result<Vec<u8>, CasError> {
        self.exec.ensure_local(blob)?;
        self.exec.cas.read_verified(&blob.digest)
    }

    /// The local path of an input blob, for readers that stream it
    /// (extraction). Its bytes are checked by whoever reads them.
    pub fn blob_path(&self, blob: &BlobRef) -> Result<PathBuf, CasError> {
        self.exec.ensure_local(blob)?;
        Ok(self.exec.cas.path(&blob.digest))
    }

    /// The session's registry client.
    pub fn registry(&self) -> Result<Arc<Client>> {
        self.exec.registry()
    }

    /// The container runtime.
    pub fn runtime(&self) -> Result<&'a dyn ContainerRuntime> {
        self.exec.runtime()
    }

    /// The layer store the runtime extracts into.
    pub fn layers(&self) -> &'a LayerStore {
        &self.exec.layers
    }
}
