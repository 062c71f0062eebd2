//! One target: a rule call recorded during loading, its attributes
//! converted to its kind's typed struct.

use std::collections::HashSet;

use crate::graph::{AttrField, AttrSpec, AttrType, AttrValue, RuleAttrs, RuleKind};
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
    /// The attributes every rule has (`tags`, `description`).
    pub common: CommonAttrs,
}

/// The attributes every rule takes, whatever its kind: Bazel's and Pants'
/// target `tags` and Pants' `description`. They describe the target, not
/// what it builds, so no action key sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonAttrs {
    /// Target tags: `manual` keeps the target out of wildcard patterns of
    /// `build` (`//...`, `//pkg:all`); a pattern naming it still builds it.
    pub tags: Vec<String>,
    pub description: Option<String>,
}

impl CommonAttrs {
    /// The tag that keeps a target out of wildcard patterns.
    pub const MANUAL: &'static str = "manual";

    /// The specs of the common attributes, checked as a kind's own are.
    pub const SPECS: &'static [AttrSpec] = &[
        AttrSpec::optional(AttrType::Strings).named("tags"),
        AttrSpec::optional(AttrType::String).named("description"),
    ];

    /// Builds them from one coerced value per spec of `SPECS`, in order.
    pub fn from_values(values: Vec<AttrValue>) -> Option<CommonAttrs> {
        let mut values = values.into_iter();
        let tags = Vec::<String>::from_value(values.next()?)?;
        let description = Option::<String>::from_value(values.next()?)?;
        Some(CommonAttrs { tags, description })
    }

    pub fn is_manual(&self) -> bool {
        self.tags.iter().any(|tag| tag == CommonAttrs::MANUAL)
    }
}

impl TargetNode {
    /// A target whose `deps` are the labels its attributes name.
    pub fn new(label: Label, attrs: RuleAttrs, location: Location) -> TargetNode {
        let labels = attrs.labels();
        let mut seen = HashSet::with_capacity(labels.len());
        let deps = labels.into_iter().filter(|(_, dep)| seen.insert(*dep)).map(|(_, dep)| dep.clone()).collect();
        TargetNode { label, attrs, deps, location, common: CommonAttrs::default() }
    }

    /// The target with its common attributes.
    pub fn with_common(self, common: CommonAttrs) -> TargetNode {
        TargetNode { common, ..self }
    }

    /// The native rule kind (`oci_layer`, `oci_image_build`, ...).
    pub fn kind(&self) -> RuleKind {
        self.attrs.kind()
    }
}
