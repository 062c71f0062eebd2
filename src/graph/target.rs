//! One target: a rule call recorded during loading, its attributes
//! converted to its kind's typed struct.

use std::collections::HashSet;

use crate::graph::{RuleAttrs, RuleKind};
use crate::workspace::{Label, Location};

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
