//! [`RuncRuntime`]: the container runtime actions use (`actions::ContainerRuntime`),
//! over runc. Layers are extracted into the layer store, stacked with
//! `exec::rootfs` (overlayfs, or copies), and run as a runc bundle with
//! Docker's defaults (`exec::runc`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::actions::{
    capture, check_deadline, Captured, CapturedBody, ContainerRoot, ContainerRuntime, Outcome, Process, RuntimeError,
    Stdio,
};
use crate::cache::{BlobRef, Cas, CasError, Digest};
use crate::error::Error;
use crate::exec::cgroup::{self, Budget};
use crate::exec::runc::start_error;
use crate::exec::{rootless, Container, Limits, RootFs, RootFsError, Runc, StackMode, UserNamespace};
use crate::oci::{ExtractError, ExtractLimits, ExtractedLayer, LayerStore};
use crate::sys;
use crate::workspace::LimitSettings;

/// Containers with runc: the `runc(path)` setting (else `PATH`), how to
/// stack roots, and the `limits(...)` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuncRuntime {
    runc: Option<PathBuf>,
    stack: StackMode,
    limits: LimitSettings,
}

/// Processes and threads of all containers together unless `limits(pids)`
/// says otherwise.
const DEFAULT_PIDS: u64 = 8192;

/// Bytes of regular files one step may capture unless
/// `limits(output_bytes)` says otherwise: far above a real layer, far below
/// the sparse terabyte a hostile step can make in a second.
const DEFAULT_OUTPUT_BYTES: u64 = 16 << 30;

impl RuncRuntime {
    /// `runc` is the `runc(path)` setting of `WORKSPACE.star` (`None`
    /// searches `PATH`). Nothing is looked up until a container runs.
    pub fn new(runc: Option<PathBuf>, stack: StackMode) -> RuncRuntime {
        RuncRuntime { runc, stack, limits: LimitSettings::default() }
    }

    /// With the `limits(...)` setting of `WORKSPACE.star`.
    pub fn with_limits(self, limits: LimitSettings) -> RuncRuntime {
        RuncRuntime { limits, ..self }
    }

    /// The budget all running containers share: `limits(...)`, else three
    /// quarters of the machine's memory and [`DEFAULT_PIDS`].
    fn budget(&self) -> Budget {
        let default = Limits::default();
        Budget {
            memory_bytes: self.limits.memory_bytes.or(default.memory_bytes.map(|bytes| bytes as u64)),
            pids: self.limits.pids.unwrap_or(DEFAULT_PIDS),
        }
    }

    fn locate(&self) -> Result<Runc, RuntimeError> {
        Runc::locate(self.runc.as_deref()).map_err(|error| RuntimeError::Failed(error.into()))
    }

    /// The user namespace every container runs in: the `berth` ranges of
    /// `/etc/subuid` and `/etc/subgid` (read each time: two small files),
    /// or rootless, the ids of berth's own namespace.
    fn userns(&self) -> Result<UserNamespace, RuntimeError> {
        UserNamespace::current().map_err(|error| RuntimeError::Failed(error.into()))
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
        self.locate()?;
        self.userns().map(drop)
    }

    fn id_shift(&self) -> Result<u32, RuntimeError> {
        Ok(self.userns()?.host)
    }

    fn failure_hint(&self) -> Option<String> {
        let single = rootless().is_some_and(|rootless| rootless.container_ids().1 == 1);
        single.then(|| {
            "berth runs rootless with a single id (this user has no range in /etc/subuid and /etc/subgid, or \
             newuidmap is missing): a step has uid and gid 0 and no other owner; add a range \
             (`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`) and install `uidmap`"
                .to_owned()
        })
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
        let userns = self.userns()?;
        let mut store = store.with_id_shift(userns.host);
        if rootless().is_some() {
            // Ids past the namespace's cannot be given here.
            store = store.with_id_count(userns.size);
        }
        let store = &store;
        let layers = digests
            .par_iter()
            .map(|digest| {
                check_deadline(deadline, STAGE)?;
                store.extract(cas, digest, &limits).map_err(|error| match error {
                    ExtractError::DeadlinePassed { .. } => RuntimeError::DeadlinePassed { stage: STAGE },
                    error => extract_failed(cas, digest, error),
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
        let upper = self.limits.upper_bytes;
        let root = RootFs::stack(layers, dir, self.stack, deadline, shift, upper).map_err(|error| match error {
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
        let budget = self.budget();
        // Held until the container is gone.
        let parent = cgroup::parent(budget);
        let container = Container {
            args: process.args.clone(),
            env: process.env.clone(),
            cwd: process.cwd.clone(),
            uid: process.uid,
            gid: process.gid,
            rootfs: root.to_path_buf(),
            network: process.network,
            // Each container may use the whole budget; together they share
            // it through the parent cgroup.
            limits: Limits {
                pids: i64::try_from(budget.pids).unwrap_or(i64::MAX),
                memory_bytes: budget.memory_bytes.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            },
            cgroup_parent: parent.path().cloned(),
            userns: Some(self.userns()?),
        };
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let outcome =
            runc.run(&container, bundle, stdio, timeout).map_err(|error| RuntimeError::Failed(error.into()))?;
        if let Some(message) = start_error(&outcome) {
            return Err(RuntimeError::Start { runtime: self.name(), message });
        }
        // A process that failed with its upper directory full failed for that.
        if let (Some(limit), true) = (self.limits.upper_bytes, outcome.exit_code != 0 && !outcome.timed_out) {
            if sys::free_bytes(root).is_ok_and(|free| free == 0) {
                return Err(RuntimeError::Failed(
                    Error::user(format!("The step wrote its limit of {limit} bytes and failed"))
                        .with_hint("raise `limits(upper_bytes = ...)` in WORKSPACE.star, or write less"),
                ));
            }
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
        let limit = self.limits.output_bytes.unwrap_or(DEFAULT_OUTPUT_BYTES);
        let total: u64 = entries
            .iter()
            .map(|entry| match entry.body {
                CapturedBody::File { size, .. } => size,
                _ => 0,
            })
            .sum();
        if total > limit {
            return Err(RuntimeError::Failed(
                Error::user(format!(
                    "The step's outputs hold {total} bytes of files, more than the {limit} a step may capture"
                ))
                .with_hint(
                    "`exclude` what the layer does not need, or raise `limits(output_bytes = ...)` in WORKSPACE.star",
                ),
            ));
        }
        for entry in &mut entries {
            entry.uid = userns.to_inside(entry.uid);
            entry.gid = userns.to_inside(entry.gid);
        }
        Ok(entries)
    }
}
