//! [`RuncRuntime`]: the container runtime actions use (`actions::ContainerRuntime`),
//! over runc. Layers are extracted into the layer store, stacked with
//! `exec::rootfs` (overlayfs, or copies), and run as a runc bundle with
//! Docker's defaults (`exec::runc`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::actions::{check_deadline, ContainerRoot, ContainerRuntime, Outcome, Process, RuntimeError, Stdio};
use crate::cache::{BlobRef, Cas, CasError, Digest};
use crate::error::Error;
use crate::exec::runc::start_error;
use crate::exec::{Container, Limits, RootFs, Runc, StackMode};
use crate::oci::{ExtractError, ExtractLimits, ExtractedLayer, LayerStore};

/// Containers with runc: the `runc(path)` setting (else `PATH`) and how to
/// stack roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuncRuntime {
    runc: Option<PathBuf>,
    stack: StackMode,
}

impl RuncRuntime {
    /// `runc` is the `runc(path)` setting of `WORKSPACE.star` (`None`
    /// searches `PATH`). Nothing is looked up until a container runs.
    pub fn new(runc: Option<PathBuf>, stack: StackMode) -> RuncRuntime {
        RuncRuntime { runc, stack }
    }

    fn locate(&self) -> Result<Runc, RuntimeError> {
        Runc::locate(self.runc.as_deref()).map_err(|error| RuntimeError::Failed(error.into()))
    }
}

/// A layer blob that does not hash to its digest, does not decompress or
/// fails mid-stream may be a corrupt CAS blob: then it is removed, and the error says so, so
/// the scheduler rebuilds or fetches again the action that made it (a blob
/// whose bytes are right keeps the extractor's error: the layer itself is
/// broken).
fn extract_failed(cas: &Cas, digest: &Digest, error: ExtractError) -> RuntimeError {
    let reason = match &error {
        ExtractError::Changed { actual, .. } => {
            cas.remove_corrupt(digest);
            format!("its bytes hash to `{actual}`")
        }
        // A read error mid-stream shows up where the entry was being
        // written: hash the blob to tell a broken layer from a broken blob.
        ExtractError::Corrupt { .. } | ExtractError::Io { .. } => {
            let size = std::fs::metadata(cas.path(digest)).map(|metadata| metadata.len()).unwrap_or(0);
            match cas.verify_content(&BlobRef { digest: *digest, size }) {
                Ok(false) => format!("it does not decompress: {error}"),
                _ => return RuntimeError::Failed(Error::from(error)),
            }
        }
        // Refused entries and limits: the layer's bytes are what they claim.
        _ => return RuntimeError::Failed(Error::from(error)),
    };
    RuntimeError::Failed(Error::from(CasError::Removed { digest: *digest, reason }))
}

impl ContainerRoot for RootFs {
    fn path(&self) -> &Path {
        self.merged()
    }
}

impl ContainerRuntime for RuncRuntime {
    fn name(&self) -> &'static str {
        "runc"
    }

    fn check(&self) -> Result<(), RuntimeError> {
        self.locate().map(drop)
    }

    /// In parallel, keeping order. The deadline is checked before each
    /// layer and after the last: a layer being extracted when it passes is
    /// finished (and kept in the store for the next step).
    fn extract(
        &self,
        store: &LayerStore,
        cas: &Cas,
        digests: &[Digest],
        deadline: Option<Instant>,
    ) -> Result<Vec<ExtractedLayer>, RuntimeError> {
        const STAGE: &str = "extracting the base layers";
        let limits = ExtractLimits::default();
        let layers = digests
            .par_iter()
            .map(|digest| {
                check_deadline(deadline, STAGE)?;
                store.extract(cas, digest, &limits).map_err(|error| extract_failed(cas, digest, error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_deadline(deadline, STAGE)?;
        Ok(layers)
    }

    fn stack(
        &self,
        layers: &[ExtractedLayer],
        dir: &Path,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn ContainerRoot>, RuntimeError> {
        check_deadline(deadline, "stacking the root filesystem")?;
        let root = RootFs::stack(layers, dir, self.stack).map_err(|error| RuntimeError::Failed(error.into()))?;
        check_deadline(deadline, "stacking the root filesystem")?;
        Ok(Box::new(root))
    }

    fn run(
        &self,
        process: &Process,
        root: &Path,
        bundle: &Path,
        stdio: Stdio,
        deadline: Option<Instant>,
    ) -> Result<Outcome, RuntimeError> {
        check_deadline(deadline, "starting the container")?;
        let runc = self.locate()?;
        let container = Container {
            args: process.args.clone(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            uid: process.uid,
            gid: process.gid,
            rootfs: root.to_path_buf(),
            network: process.network,
            limits: Limits::default(),
        };
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let outcome =
            runc.run(&container, bundle, stdio, timeout).map_err(|error| RuntimeError::Failed(error.into()))?;
        if let Some(message) = start_error(&outcome) {
            return Err(RuntimeError::Start { runtime: self.name(), message });
        }
        Ok(outcome)
    }
}
