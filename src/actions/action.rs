//! The contract between analysis (which registers actions), the scheduler
//! (which runs them) and the cache (which remembers their results). An
//! action is pure data, its params and its input ids; the machine it runs
//! on reaches it through `actions::context` when it executes.
//!
//! The key of an action mirrors the Remote Execution API's Action: a command
//! (`kind`, `kind_version`, `params`) plus an input root (the digests of
//! `inputs`), so a remote cache can be added without changing keys.

use std::fmt::Debug;
use std::path::PathBuf;

use crate::actions::ActionContext;
use crate::cache::{ActionId, ActionResult, CanonicalJson};
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

    /// Does the work. Reads only `ctx.inputs` (and the blobs they name);
    /// writes only to `ctx.scratch` and the CAS; reaches registries and
    /// containers only through `ctx`.
    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult>;
}

/// A registered action and the target that registered it.
#[derive(Debug)]
pub struct ActionNode {
    pub owner: Label,
    pub action: Box<dyn Action>,
}

/// All actions of one build. Edges are the `Input::Action` references, which
/// always point at lower ids ([`ActionGraph::add`] refuses anything else),
/// so the graph is acyclic by construction and ascending ids are a
/// dependency order.
#[derive(Debug, Default)]
pub struct ActionGraph {
    nodes: Vec<ActionNode>,
}

impl ActionGraph {
    /// Registers `action` for `owner` and returns its id.
    ///
    /// # Panics
    ///
    /// If an input names an action that is not registered yet: rules
    /// register an action after its inputs, and the scheduler relies on it.
    pub fn add(&mut self, owner: Label, action: Box<dyn Action>) -> ActionId {
        let id = ActionId(self.nodes.len());
        for input in action.inputs() {
            if let Input::Action(dep) = input {
                assert!(
                    dep < id,
                    "action `{}` of `{owner}` names input #{} before it was registered (as #{})",
                    action.kind(),
                    dep.0,
                    id.0
                );
            }
        }
        self.nodes.push(ActionNode { owner, action });
        id
    }

    /// The action registered as `id`, if any.
    pub fn get(&self, id: ActionId) -> Option<&ActionNode> {
        self.nodes.get(id.0)
    }

    /// Every action with its id, in registration (dependency) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ActionId, &ActionNode)> {
        self.nodes.iter().enumerate().map(|(index, node)| (ActionId(index), node))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// `graph[id]` for an id this graph handed out.
impl std::ops::Index<ActionId> for ActionGraph {
    type Output = ActionNode;

    fn index(&self, id: ActionId) -> &ActionNode {
        &self.nodes[id.0]
    }
}
