//! The [`ContainerRuntime`] trait: extract an image's layers, stack them
//! into a root, resolve the image's user, run one process with a deadline,
//! and capture outputs from the root afterwards.
//!
//! One deadline covers every stage of a step, so each method takes it: a
//! base that is slow to extract or a hung user lookup fails the step at its
//! `timeout` like a process that runs too long. `None` (for `berth run`)
//! waits as long as it takes.

use std::fmt::Debug;
use std::path::Path;
use std::time::Instant;

use crate::actions::runtime::{capture, resolve_user, Captured};
use crate::cache::{Cas, Digest};
use crate::error::Error;
use crate::oci::{ExtractedLayer, LayerStore};

/// What to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// `argv` of the process (`args[0]` is looked up on the container's PATH).
    pub args: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Share the host's network instead of a loopback-only one.
    pub network: bool,
}

/// How the process's stdio is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// berth's own stdin, stdout and stderr (`berth run`).
    Inherit,
    /// stdin empty, stdout and stderr captured (build steps).
    Capture,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The process's exit code; 128 + N when killed by signal N.
    pub exit_code: i32,
    /// The deadline passed and the container was killed.
    pub timed_out: bool,
    /// Captured stdout (empty with [`Stdio::Inherit`]); its tail if long.
    pub stdout: Vec<u8>,
    /// Captured stderr (empty with [`Stdio::Inherit`]); its tail if long.
    pub stderr: Vec<u8>,
}

/// Why a runtime method failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The deadline passed before or during `stage`, outside the process.
    #[error("The deadline passed while {stage}")]
    DeadlinePassed { stage: &'static str },
    /// The runtime could not start the process (as opposed to the process
    /// failing).
    #[error("`{runtime}` could not start the process: {message}")]
    Start { runtime: &'static str, message: String },
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<RuntimeError> for Error {
    fn from(error: RuntimeError) -> Error {
        match error {
            RuntimeError::Failed(error) => error,
            RuntimeError::DeadlinePassed { .. } => Error::user(error.to_string()),
            RuntimeError::Start { .. } => Error::environment(error.to_string()),
        }
    }
}

/// `Err(DeadlinePassed)` once `deadline` is behind us.
pub fn check_deadline(deadline: Option<Instant>, stage: &'static str) -> Result<(), RuntimeError> {
    match deadline {
        Some(deadline) if Instant::now() >= deadline => Err(RuntimeError::DeadlinePassed { stage }),
        _ => Ok(()),
    }
}

/// A stacked root filesystem; unmounted and removed when dropped.
pub trait ContainerRoot: Debug + Send {
    /// The directory the container sees as `/`.
    fn path(&self) -> &Path;
}

/// Runs processes in containers built from image layers.
pub trait ContainerRuntime: Debug + Send + Sync {
    /// The runtime's name in messages (`runc`).
    fn name(&self) -> &'static str;

    /// Checks that this machine can run containers now (the runtime is
    /// installed, berth has the privileges it needs), so a command can fail
    /// with exit code 3 before any build work.
    fn check(&self) -> Result<(), RuntimeError>;

    /// The host id of uid and gid 0 inside the containers this runtime
    /// starts (their user namespace), 0 without one. Roots from
    /// [`ContainerRuntime::stack`] are owned by host ids `shift + id`; an
    /// action that writes into a root itself owns what it writes the same way.
    fn id_shift(&self) -> Result<u32, RuntimeError> {
        Ok(0)
    }

    /// A hint for a process that failed, when the way this runtime runs
    /// containers may be why (rootless with a single id: no other owner).
    fn failure_hint(&self) -> Option<String> {
        None
    }

    /// The layers `digests` (CAS blobs, lowest first), extracted into
    /// `store` once per digest, in the same order.
    fn extract(
        &self,
        store: &LayerStore,
        cas: &Cas,
        digests: &[Digest],
        deadline: Option<Instant>,
    ) -> Result<Vec<ExtractedLayer>, RuntimeError>;

    /// Stacks `layers` (lowest first) into a root under `dir`, which must
    /// not exist yet. The layers in the store are never written.
    fn stack(
        &self,
        layers: &[ExtractedLayer],
        dir: &Path,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn ContainerRoot>, RuntimeError>;

    /// The uid and gid of the image's `User` (`uid`, `uid:gid`, `name`,
    /// `name:group`; `None` is root), looked up in the root's own
    /// `/etc/passwd` and `/etc/group`.
    fn resolve_user(
        &self,
        root: &Path,
        user: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<(u32, u32), RuntimeError> {
        check_deadline(deadline, "looking up the image's user")?;
        Ok(resolve_user(root, user)?)
    }

    /// Runs `process` in `root` and waits for it, at most until `deadline`
    /// (then the container is killed). `bundle` is a fresh private
    /// directory for the runtime's own files. No container outlives the call.
    fn run(
        &self,
        process: &Process,
        root: &Path,
        bundle: &Path,
        stdio: Stdio,
        deadline: Option<Instant>,
    ) -> Result<Outcome, RuntimeError>;

    /// The entries of `outputs` minus `exclude` in `root` after the process
    /// ended, sorted, as the process left them (see [`capture`]).
    fn capture(
        &self,
        root: &Path,
        outputs: &[String],
        exclude: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<Captured>, RuntimeError> {
        capture(root, outputs, exclude, deadline)
    }
}
