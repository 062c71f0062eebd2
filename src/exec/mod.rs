//! Execution: the scheduler that runs the action DAG against the cache, and
//! the sandboxes actions run in (scratch directories here; runc bundles for
//! in-container steps).

mod error;
mod history;
mod sandbox;
mod scheduler;

pub use error::ExecError;
pub use history::{explain, ActionExplanation, ActionName, BuildLog, HistoryError, LoggedAction, LoggedInput, Reason};
pub use sandbox::{LocalSandbox, Sandbox};
pub use scheduler::{default_jobs, ActionRecord, ActionStatus, BuildResult, Executor};
