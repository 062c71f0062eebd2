//! One target: a rule call recorded during loading, its attributes coerced
//! to plain values by the rule's schema.

use std::collections::BTreeMap;
use std::fmt;

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

/// An attribute value after coercion by the rule's schema: labels are
/// resolved against the declaring package, modes are ints, `env` lists are
/// dicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    None,
    Bool(bool),
    Int(i64),
    String(String),
    Label(Label),
    List(Vec<AttrValue>),
    /// Keeps the order the user wrote (it is the order of `Env` in a config).
    Dict(Vec<(String, AttrValue)>),
}

/// A target as the analysis phase sees it.
#[derive(Debug, Clone)]
pub struct TargetNode {
    pub label: Label,
    /// The native rule kind (`oci_layer`, `oci_image_build`, ...).
    pub kind: String,
    /// Every attribute of the rule's schema, defaults filled in.
    pub attrs: BTreeMap<String, AttrValue>,
    /// Every label the attributes name, in attribute order, without repeats.
    pub deps: Vec<Label>,
    pub location: Location,
}

impl TargetNode {
    pub fn attr(&self, name: &str) -> &AttrValue {
        self.attrs.get(name).unwrap_or(&AttrValue::None)
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        match self.attr(name) {
            AttrValue::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.attr(name) {
            AttrValue::Int(value) => Some(*value),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.attr(name), AttrValue::Bool(true))
    }

    pub fn label(&self, name: &str) -> Option<&Label> {
        match self.attr(name) {
            AttrValue::Label(label) => Some(label),
            _ => None,
        }
    }

    /// The items of a list attribute (empty when unset).
    pub fn list(&self, name: &str) -> &[AttrValue] {
        match self.attr(name) {
            AttrValue::List(items) => items,
            _ => &[],
        }
    }

    pub fn labels(&self, name: &str) -> Vec<&Label> {
        self.list(name)
            .iter()
            .filter_map(|item| match item {
                AttrValue::Label(label) => Some(label),
                _ => None,
            })
            .collect()
    }

    pub fn strings(&self, name: &str) -> Vec<&str> {
        self.list(name)
            .iter()
            .filter_map(|item| match item {
                AttrValue::String(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The entries of a dict attribute (empty when unset), in the user's order.
    pub fn dict(&self, name: &str) -> &[(String, AttrValue)] {
        match self.attr(name) {
            AttrValue::Dict(entries) => entries,
            _ => &[],
        }
    }
}
