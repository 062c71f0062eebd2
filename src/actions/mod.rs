//! Action kinds: work with declared inputs and outputs. Rules register
//! actions during analysis; `exec` runs them and `cache` remembers them.

mod action;
mod run_step;

pub use action::{Action, ActionContext, ActionGraph, ActionId, ActionNode, ActionOutput, Input, ResolvedInput};
pub use run_step::{capture, BaseConfig, RunStep, RunStepRuntime, RunStepSpec, LAYER_MEDIA_TYPE};
