//! Execution: the scheduler that runs the action DAG against the cache, the
//! execution context it hands every action (built from the session's
//! [`ExecSettings`]), and the machinery behind it: scratch directories
//! ([`Sandbox`]), and containers with runc ([`RuncRuntime`], which
//! implements `actions::ContainerRuntime`, over `rootfs` and `runc`).

mod cgroup;
mod error;
mod history;
mod lifecycle;
mod rootfs;
mod rootless;
mod run_image;
mod runc;
mod runtime;
mod sandbox;
mod scheduler;
mod settings;
mod userns;

pub use cgroup::release as release_cgroup;
pub use error::ExecError;
pub use history::{explain, ActionExplanation, ActionName, BuildLog, HistoryError, LoggedAction, LoggedInput, Reason};
pub use lifecycle::{install_signal_handlers, owner, run_watchdog, sweep, SweepReport, WATCHDOG_ARG};
pub use rootfs::{RootFs, RootFsError, StackMode};
pub use rootless::{enter as enter_rootless, rootless, Rootless};
pub use run_image::{run_image, RunDir, RunImageRequest};
pub use runc::{config as runc_config, runc_warning, Container, Limits, Runc, RuncError};
pub use runtime::RuncRuntime;
pub use sandbox::{LocalSandbox, Sandbox};
pub use scheduler::{default_jobs, ActionRecord, ActionStatus, BuildResult, Executor};
pub use settings::ExecSettings;
pub use userns::{UserNamespace, UserNamespaceError, RANGE_SIZE, SUBID_NAME};
