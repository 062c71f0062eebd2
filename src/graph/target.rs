//! One target: a rule call recorded during loading, its attributes
//! converted to its kind's typed struct.

use std::collections::HashSet;
use std::fmt;

use crate::graph::{RuleAttrs, RuleKind};
use crate::workspace::Label;

/// Where a target was declared: the call in the BUILD file (not the line in
/// the macro that forwarded it), so errors point at what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Workspace-relative path of the BUILD or `.star` file.
    pub path: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path, self.line, self.column)
    }
}

/// A target as the analysis phase sees it.
#[derive(Debug, Clone)]
pub struct TargetNode {
    pub label: Label,
    /// Every attribute of the kind, defaults filled in.
    pub attrs: RuleAttrs,
    /// Every label the attributes name, in attribute order, without repeats.
    pub deps: Vec<Label>,
    pub location: Location,
}

impl TargetNode {
    /// A target whose `deps` are the labels its attributes name.
    pub fn new(label: Label, attrs: RuleAttrs, location: Location) -> TargetNode {
        let labels = attrs.labels();
        let mut seen = HashSet::with_capacity(labels.len());
        let deps = labels.into_iter().filter(|(_, dep)| seen.insert(*dep)).map(|(_, dep)| dep.clone()).collect();
        TargetNode { label, attrs, deps, location }
    }

    /// The native rule kind (`oci_layer`, `oci_image_build`, ...).
    pub fn kind(&self) -> RuleKind {
        self.attrs.kind()
    }
}
