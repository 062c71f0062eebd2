//! Loading: evaluates `WORKSPACE.star`, `BUILD.star` and `.star` files with
//! starlark-rust and records the targets they declare as `graph::TargetNode`s.
//! No Starlark value leaves this module.
//!
//! Rules are Starlark macros in `rules/*.star` (embedded, `@berth//rules:...`)
//! over one native primitive per kind, `native.<kind>(name = ..., **attrs)`
//! (`native_rule`), for every kind of the table in `graph::RuleKind`;
//! `schema` coerces the values by that table's attribute specs.

mod context;
mod error;
mod glob;
mod globals;
mod limits;
mod loader;
mod native_rule;
mod prelude;
mod schema;
mod tabs;
mod workspace_file;

pub use error::LoadError;
pub use limits::{
    load_timeout, release_freed_memory, set_load_timeout, set_release_freed_memory, GuardedAllocator,
    DEFAULT_LOAD_TIMEOUT,
};
pub use loader::load;
pub use workspace_file::{discover_workspace, evaluate_workspace_file, open_workspace};
