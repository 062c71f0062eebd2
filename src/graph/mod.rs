//! The target graph: what loading produced, as plain Rust values (no
//! Starlark value leaves the front-end), plus `query` over it.

mod query;
mod suggest;
mod target;
mod target_graph;

pub use query::{render_query, QueryExpr, QueryOutput};
pub use suggest::closest;
pub use target::{AttrValue, Location, TargetNode};
pub use target_graph::{GraphError, Node, SourceFile, TargetGraph};
