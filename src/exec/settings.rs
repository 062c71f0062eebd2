//! The machine settings of a session, and the [`ExecutionContext`] the
//! scheduler builds from them once per build: the CAS, the registry handle
//! analysis resolved pulls with, the layer store under `<cache>/layers`, and
//! runc as the container runtime; and the remote cache. None of it enters a key: it decides how
//! actions run here, never what they produce.

use std::path::PathBuf;
use std::sync::Arc;

use crate::actions::ExecutionContext;
use crate::cache::Cache;
use crate::exec::{RuncRuntime, StackMode};
use crate::oci::LayerStore;
use crate::registry::{ClientOptions, RegistryHandle};
use crate::remote::RemoteCache;
use crate::workspace::LimitSettings;

/// How this session runs actions on this machine.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// `runc(path)` from `WORKSPACE.star`; `None` searches `PATH`.
    pub runc: Option<PathBuf>,
    pub stack: StackMode,
    /// `limits(...)` from `WORKSPACE.star`.
    pub limits: LimitSettings,
    /// Shared with analysis, which resolves pulls through it: one client,
    /// one connection pool and token cache per session.
    pub registry: Arc<RegistryHandle>,
    /// The remote cache, if one is set (`remote_cache(...)`, `--remote-cache`).
    pub remote: Option<Arc<RemoteCache>>,
}

impl ExecSettings {
    /// Default runc and stacking, pulls through `registry`.
    pub fn new(registry: Arc<RegistryHandle>) -> ExecSettings {
        ExecSettings {
            runc: None,
            stack: StackMode::default(),
            limits: LimitSettings::default(),
            registry,
            remote: None,
        }
    }

    /// The context every action of a build over `cache` runs with.
    pub fn context(&self, cache: &Cache) -> ExecutionContext {
        let context = ExecutionContext::new(cache.cas.clone(), LayerStore::new(cache.dir()))
            .with_registry(self.registry.clone())
            .with_runtime(Arc::new(RuncRuntime::new(self.runc.clone(), self.stack).with_limits(self.limits.clone())));
        match &self.remote {
            // Remote hits are recorded without their bytes: an action that
            // reads one of their blobs fetches it then.
            Some(remote) => context.with_blob_source(remote.clone()),
            None => context,
        }
    }
}

/// Registry settings left at their defaults (no `registry(...)`, online).
impl Default for ExecSettings {
    fn default() -> ExecSettings {
        ExecSettings::new(Arc::new(RegistryHandle::new(ClientOptions::default())))
    }
}
