//! Action kinds: work with declared inputs and outputs. Rules register
//! actions during analysis; `exec` runs them and `cache` remembers them.

mod action;
mod fetch_blob;

pub use action::{Action, ActionContext, ActionGraph, ActionId, ActionNode, ActionOutput, Input, ResolvedInput};
pub use fetch_blob::FetchBlob;
