//! [`RuncRuntime`]: the container runtime actions use (`actions::ContainerRuntime`),
//! over runc. Layers are extracted into the layer store, stacked with
//! `exec::rootfs` (overlayfs, or copies), and run as a runc bundle with
//! Docker's defaults (`exec::runc`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::actions::{
    capture, check_deadline, Captured, ContainerRoot, ContainerRuntime, Outcome, Process, RuntimeError, Stdio,
};
use crate::cache::{Cas, Digest};
use crate::error::Error;
use crate::exec::runc::start_error;
use crate::exec::{Container, Limits, RootFs, RootFsError, Runc, StackMode, UserNamespace};
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

    /// The user namespace every container runs in: the `berth` ranges of
    /// `/etc/subuid` and `/etc/subgid` (read each time: two small files).
    fn userns(&self) -> Result<UserNamespace, RuntimeError> {
        UserNamespace::from_subid_files().map_err(|error| RuntimeError::Failed(error.into()))
    }
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
        self.locate()?;
        self.userns().map(drop)
    }

    /// In parallel, keeping order. The deadline is checked before each
    /// layer, before each entry of a layer being extracted (the half-made
    /// layer is removed; the next step extracts it again) and after the last.
    fn extract(
        &self,
        store: &LayerStore,
        cas: &Cas,
        digests: &[Digest],
        deadline: Option<Instant>,
    ) -> Result<Vec<ExtractedLayer>, RuntimeError> {
        const STAGE: &str = "extracting the base layers";
        let limits = ExtractLimits { deadline, ..ExtractLimits::default() };
        // Owned by the ids the container's user namespace maps to.
        let store = &store.with_id_shift(self.userns()?.host);
        let layers = digests
            .par_iter()
            .map(|digest| {
                check_deadline(deadline, STAGE)?;
                store.extract(cas, digest, &limits).map_err(|error| match error {
                    ExtractError::DeadlinePassed { .. } => RuntimeError::DeadlinePassed { stage: STAGE },
                    error => RuntimeError::Failed(Error::from(error)),
                })
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
        let shift = self.userns()?.host;
        let root = RootFs::stack(layers, dir, self.stack, deadline, shift).map_err(|error| match error {
            RootFsError::DeadlinePassed => RuntimeError::DeadlinePassed { stage: "stacking the root filesystem" },
            error => RuntimeError::Failed(error.into()),
        })?;
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
            userns: Some(self.userns()?),
        };
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let outcome =
            runc.run(&container, bundle, stdio, timeout).map_err(|error| RuntimeError::Failed(error.into()))?;
        if let Some(message) = start_error(&outcome) {
            return Err(RuntimeError::Start { runtime: self.name(), message });
        }
        Ok(outcome)
    }

    /// As the trait's, with owners moved back from the host's range to the
    /// ids inside the container, so a layer's digest does not depend on the
    /// host's range.
    fn capture(
        &self,
        root: &Path,
        outputs: &[String],
        exclude: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<Captured>, RuntimeError> {
        let userns = self.userns()?;
        let mut entries = capture(root, outputs, exclude, deadline)?;
        for entry in &mut entries {
            entry.uid = userns.to_inside(entry.uid);
            entry.gid = userns.to_inside(entry.gid);
        }
        Ok(entries)
    }
}
