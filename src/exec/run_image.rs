//! Running an image's process (`berth run`) on the execution context's
//! container runtime, the same one build steps use.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};

use crate::actions::{merge_env, ExecutionContext, ImageRuntimeConfig, Process, RuntimeError, Stdio};
use crate::cache::Digest;
use crate::error::{Error, Result};
use crate::exec::lifecycle;
use crate::sys;

/// A fresh private directory for one container run under `<cache>/run/`,
/// removed when dropped.
#[derive(Debug)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(cache_dir: &Path) -> Result<RunDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let runs = cache_dir.join("run");
        std::fs::create_dir_all(&runs)
            .map_err(|error| Error::environment(format!("Cannot create `{}`: {error}", runs.display())))?;
        // The owner in the name lets a later command's sweep remove what a
        // killed berth left (`exec::lifecycle::sweep`).
        let dir = runs.join(format!("{}-{}", lifecycle::owner(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let _ = sys::remove_tree(&dir);
        Ok(RunDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = sys::remove_tree(&self.0);
    }
}

/// What `berth run` runs.
#[derive(Debug, Clone)]
pub struct RunImageRequest<'a> {
    /// The cache directory; the container's root and bundle go under
    /// `<cache>/run/`.
    pub cache_dir: &'a Path,
    /// The image config blob (JSON bytes).
    pub config: &'a [u8],
    /// The image's layer blobs in the CAS, lowest first.
    pub layers: &'a [Digest],
    /// Replace the image's `cmd` (the entrypoint stays) when non-empty.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing) the image's env.
    pub env: Vec<String>,
    pub network: bool,
    /// How long everything may take (extraction, stacking, the process);
    /// `None` waits as long as it takes.
    pub timeout: Option<Duration>,
}

/// Runs the image's entrypoint + cmd on the context's container runtime,
/// stdio attached, and returns its exit code (128 + N when killed by
/// signal N). Past `timeout` the container is killed and deleted and the
/// run fails.
pub fn run_image(context: &ExecutionContext, request: &RunImageRequest<'_>) -> Result<i32> {
    let deadline = request.timeout.map(|timeout| Instant::now() + timeout);
    let config = ImageRuntimeConfig::parse(request.config)?;
    let mut args = config.entrypoint.clone();
    args.extend(if request.args.is_empty() { config.cmd.clone() } else { request.args.clone() });
    if args.is_empty() {
        return Err(Error::user("The image has no entrypoint or cmd to run")
            .with_hint("name the program after `--`: berth run LABEL -- /bin/sh"));
    }
    let runtime = context.runtime()?;
    let timed_out = |error: RuntimeError| match (error, request.timeout) {
        (RuntimeError::DeadlinePassed { stage }, Some(timeout)) => timeout_error(timeout, stage),
        (error, _) => error.into(),
    };
    let layers = runtime.extract(context.layers(), context.cas(), request.layers, deadline).map_err(timed_out)?;
    config.check_diff_ids(&layers)?;
    let run_dir = RunDir::new(request.cache_dir)?;
    let root = runtime.stack(&layers, &run_dir.path().join("rootfs"), deadline).map_err(timed_out)?;
    let (uid, gid) = runtime.resolve_user(root.path(), config.user.as_deref(), deadline).map_err(timed_out)?;
    let process = Process {
        args,
        env: merge_env(&config.env, &request.env),
        cwd: config.working_dir.unwrap_or_else(|| "/".to_owned()),
        uid,
        gid,
        network: request.network,
    };
    let outcome = runtime
        .run(&process, root.path(), &run_dir.path().join("bundle"), Stdio::Inherit, deadline)
        .map_err(timed_out)?;
    if let (true, Some(timeout)) = (outcome.timed_out, request.timeout) {
        return Err(timeout_error(timeout, "running"));
    }
    Ok(outcome.exit_code)
}

fn timeout_error(timeout: Duration, stage: &str) -> Error {
    Error::user(format!(
        "`berth run` timed out after {}s while {stage}; its container was killed and deleted",
        timeout.as_secs()
    ))
    .with_hint("raise `--timeout`")
}
