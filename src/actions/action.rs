//! The contract between analysis (which registers actions), the scheduler
//! (which runs them) and the cache (which remembers their outputs).
//!
//! The key of an action mirrors the Remote Execution API's Action: a command
//! (`kind`, `kind_version`, `params`) plus an input root (the digests of
//! `inputs`), so a remote cache can be added without changing keys.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::cache::{ActionId, ActionResult, CanonicalJson, Cas, Digest};
use crate::error::Result;
use crate::workspace::Label;

/// A declared input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A source file, by workspace-relative path.
    Source(PathBuf),
    /// The whole output (blobs and metadata) of another action.
    Action(ActionId),
}

/// An input as the action sees it when it runs, in declaration order.
#[derive(Debug)]
pub enum ResolvedInput<'a> {
    Source {
        /// Absolute path to read from; its bytes must still hash to `digest`.
        path: PathBuf,
        digest: Digest,
        size: u64,
        /// The file was last written long enough ago that its stamp, which
        /// the scheduler checks again after the action, proves its bytes
        /// unchanged. When false, a reader must hash the bytes it copies.
        settled: bool,
    },
    Action(&'a ActionResult),
}

/// Everything an action may touch while it runs: its resolved inputs, the
/// CAS to read input blobs from and write output blobs to, and a fresh
/// scratch directory that is deleted afterwards.
pub struct ActionContext<'a> {
    pub inputs: Vec<ResolvedInput<'a>>,
    pub cas: &'a Cas,
    pub scratch: &'a Path,
}

/// One kind of work. Implementations are pure: the same params and the same
/// input bytes give the same output bytes, whatever the machine or clock.
pub trait Action: Debug + Send + Sync {
    /// Stable name that goes into the key (`pack_layer`, `write_config`, ...).
    fn kind(&self) -> &'static str;

    /// Bumped whenever the kind's output bytes change for the same inputs.
    fn kind_version(&self) -> u32;

    /// Everything besides input bytes that decides the output, as canonical
    /// JSON. No absolute path, time, user or host name.
    fn params(&self) -> CanonicalJson;

    /// Declared inputs, in a stable order.
    fn inputs(&self) -> Vec<Input>;

    /// Does the work. Reads only `ctx.inputs`; writes only to `ctx.scratch`
    /// and `ctx.cas`.
    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult>;
}

/// A registered action and the target that registered it.
#[derive(Debug)]
pub struct ActionNode {
    pub owner: Label,
    pub action: Box<dyn Action>,
}

/// All actions of one build. Edges are the `Input::Action` references, which
/// always point at lower ids (an action is registered after its inputs), so
/// the graph is acyclic by construction.
#[derive(Debug, Default)]
pub struct ActionGraph {
    pub nodes: Vec<ActionNode>,
}

impl ActionGraph {
    pub fn add(&mut self, owner: Label, action: Box<dyn Action>) -> ActionId {
        let id = ActionId(self.nodes.len());
        debug_assert!(action.inputs().iter().all(|input| match input {
            Input::Action(dep) => dep.0 < id.0,
            Input::Source(_) => true,
        }));
        self.nodes.push(ActionNode { owner, action });
        id
    }
}
