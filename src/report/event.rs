//! The events the engine emits while it builds, and the [`Reporter`] trait
//! that receives them. No UI here: `report::console` draws them.

use std::time::Duration;

use crate::cache::ActionId;
use crate::workspace::Label;

/// Something that happened during a build, in the order it happened.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Execution starts; `actions` is the number of actions it will visit.
    BuildStarted { actions: usize },
    /// An action missed the cache and starts running.
    ActionStarted { id: ActionId, owner: &'a Label, kind: &'a str },
    /// An action's output came from the action cache.
    ActionCached { id: ActionId, owner: &'a Label, kind: &'a str },
    /// An action's output came from the remote cache (verified, now local).
    ActionRemote { id: ActionId, owner: &'a Label, kind: &'a str },
    /// The remote cache failed or held an entry that did not verify; the
    /// build goes on locally.
    RemoteWarning { message: &'a str },
    /// Bytes the remote cache moved: a hit's downloads as it happens, the
    /// uploads once they are drained at the end of the build.
    RemoteTransferred { downloaded: u64, uploaded: u64 },
    /// An action ran and its output is stored.
    ActionFinished { id: ActionId, owner: &'a Label, kind: &'a str, duration: Duration },
    /// An action failed; the build stops scheduling new work.
    ActionFailed { id: ActionId, owner: &'a Label, kind: &'a str, message: &'a str },
    /// Bytes moved to or from a registry (progress of pulls and pushes).
    BytesTransferred { bytes: u64 },
    /// Something went wrong and was repaired (a corrupt cache blob removed
    /// and rebuilt): the build goes on, the user is told.
    Warning { message: &'a str },
    /// Execution ended, successfully or not.
    BuildFinished { ran: usize, cached: usize, remote: usize, duration: Duration, success: bool },
}

/// Receives engine events. Called from worker threads, so implementations
/// are `Sync` and return quickly.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event<'_>);
}

/// Drops every event (library use, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn report(&self, _event: &Event<'_>) {}
}
