//! The target graph: what loading produced, as plain Rust values (no
//! Starlark value leaves the front-end), plus `query` over it.

mod target;

pub use target::{AttrValue, Location, TargetNode};
