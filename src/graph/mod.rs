//! The target graph: what loading produced, as plain Rust values (no
//! Starlark value leaves the front-end), plus `query` over it. The native
//! rule kinds and their typed attributes are declared here, in `rule_kind`.

mod attr;
mod query;
mod rule_kind;
mod suggest;
mod target;
mod target_graph;

pub use attr::{AttrDefault, AttrField, AttrSpec, AttrType, AttrValue, KeyValues};
pub use query::{render_query, CommonAttr, QueryExpr, QueryOutput};
pub use rule_kind::{
    AttrShapeError, DebLayerAttrs, FilesAttrs, OciBuildLayerAttrs, OciDockerfileAttrs, OciImageBuildAttrs,
    OciImageEmptyAttrs, OciImageIndexAttrs, OciImportAttrs, OciLayerAttrs, OciLoadAttrs, OciPullImageAttrs,
    OciPushAttrs, RuleAttrs, RuleKind, EMPTY_IMAGE,
};
pub use suggest::closest;
pub use target::{CommonAttrs, TargetNode};
pub use target_graph::{GraphError, Node, SourceFile, TargetGraph};
