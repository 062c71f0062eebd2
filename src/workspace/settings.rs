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
