//! Action kinds: work with declared inputs and outputs. Rules register
//! actions during analysis; `exec` runs them and `cache` remembers them.

mod action;

pub use action::{Action, ActionContext, ActionGraph, ActionId, ActionNode, ActionOutput, Input, ResolvedInput};
