//! What `WORKSPACE.star` may set: workspace-wide settings, never targets.

use std::path::PathBuf;

/// The settings of one workspace, as `WORKSPACE.star` declared them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceSettings {
    /// `workspace(name = ...)`.
    pub name: Option<String>,
    /// `registry(host, mirrors = [], insecure = False, ca = ..., client_cert = ...,
    /// client_key = ..., skip_verify = False)`, in declaration order.
    pub registries: Vec<RegistrySetting>,
    /// `source_date_epoch(N)`; the `SOURCE_DATE_EPOCH` environment variable
    /// wins when both are set, as reproducible-builds.org specifies.
    pub source_date_epoch: Option<u64>,
    /// `runc(path)`: the runc binary to use instead of the one on `PATH`.
    pub runc: Option<PathBuf>,
    /// `workspace_status(command = ...)`: the command `--stamp` runs (with
    /// `/bin/sh -c`, at the workspace root) for `KEY VALUE` lines.
    pub workspace_status: Option<String>,
    /// `remote_cache(url, read_only = False)`.
    pub remote_cache: Option<crate::workspace::RemoteCacheSetting>,
    /// `limits(memory_bytes = N, pids = N, output_bytes = N)`.
    pub limits: LimitSettings,
}

/// `limits(...)`: what all running containers of one berth share (`-j`
/// steps together), and the most one step's outputs may hold. `None` keeps
/// berth's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// Memory of all running containers together, in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads of all running containers together.
    pub pids: Option<u64>,
    /// Bytes of regular files one step may capture into its layer.
    pub output_bytes: Option<u64>,
    /// Bytes one container may write (its overlayfs upper directory, on a
    /// tmpfs of this size); `None`: not capped.
    pub upper_bytes: Option<u64>,
}

/// How to reach one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySetting {
    /// `host[:port]`, as it appears in image references.
    pub host: String,
    /// Hosts tried first, in order, for pulls.
    pub mirrors: Vec<String>,
    /// Plain HTTP instead of HTTPS (a local test registry).
    pub insecure: bool,
    /// A PEM file of CA certificates trusted for this host besides the
    /// public roots, as written (relative to the workspace root).
    pub ca: Option<String>,
    /// A PEM client certificate (chain) presented to this host (mTLS).
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<String>,
    /// Accept any server certificate (a throwaway test registry only).
    pub skip_verify: bool,
}
