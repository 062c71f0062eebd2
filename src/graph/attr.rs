//! Attributes as the kinds table declares them (`AttrSpec`: name, type,
//! required, default, choices), the plain value the front-end coerces a
//! Starlark value into (`AttrValue`), and the Rust types a kind's typed
//! attribute struct holds (`AttrField`).
//!
//! Plain Rust: the front-end does the Starlark side, by these specs.

use crate::oci::Compression;
use crate::workspace::Label;

/// The type of one attribute, as the architecture document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    Label,
    Labels,
    String,
    Strings,
    Int,
    Bool,
    /// `0o755` or `"0755"`, becomes `Int`.
    Mode,
    /// A dict, or a list of `"KEY=VALUE"`; becomes `Dict` of strings.
    Env,
    StringDict,
    /// String keys, label values.
    LabelDict,
    /// String keys, any plain value.
    Dict,
    /// An `env` (dict or `"KEY=VALUE"` list), or the label of a file of
    /// `KEY=VALUE` lines (rules_oci's `env = "env.txt"`); becomes `Dict` or
    /// `Label`.
    KeyValues,
}

impl AttrType {
    /// What a value of this type is, for "must be ..." messages.
    pub fn describe(self) -> &'static str {
        match self {
            AttrType::Label => "a label string",
            AttrType::Labels => "a list of label strings",
            AttrType::String => "a string",
            AttrType::Strings => "a list of strings",
            AttrType::Int => "an int",
            AttrType::Bool => "a bool",
            AttrType::Mode => "an octal mode (`0o755` or `\"0755\"`)",
            AttrType::Env => "a dict of strings or a list of `\"KEY=VALUE\"` strings",
            AttrType::StringDict => "a dict from strings to strings",
            AttrType::LabelDict => "a dict from strings to label strings",
            AttrType::Dict => "a dict with string keys",
            AttrType::KeyValues => "a dict of strings, a list of `\"KEY=VALUE\"` strings or the label of a file",
        }
    }
}

/// What an attribute holds when the rule call leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrDefault {
    /// The empty value of the type: `[]`, `{}`, `False`, or `None` for scalars.
    Empty,
    Label(&'static str),
    String(&'static str),
    Int(i64),
}

/// One attribute of a native kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrSpec {
    pub name: &'static str,
    pub ty: AttrType,
    pub required: bool,
    pub default: AttrDefault,
    /// The only strings allowed, when the attribute is an enumeration.
    pub choices: &'static [&'static str],
}

impl AttrSpec {
    /// An attribute the call may leave out; it then holds the empty value.
    pub const fn optional(ty: AttrType) -> AttrSpec {
        AttrSpec { name: "", ty, required: false, default: AttrDefault::Empty, choices: &[] }
    }

    /// An attribute every call must set.
    pub const fn required(ty: AttrType) -> AttrSpec {
        AttrSpec { name: "", ty, required: true, default: AttrDefault::Empty, choices: &[] }
    }

    /// An attribute holding `default` when the call leaves it out.
    pub const fn with_default(ty: AttrType, default: AttrDefault) -> AttrSpec {
        AttrSpec { name: "", ty, required: false, default, choices: &[] }
    }

    /// Allows only `choices` (for a string attribute).
    pub const fn choices(self, choices: &'static [&'static str]) -> AttrSpec {
        AttrSpec { choices, ..self }
    }

    /// Names the attribute (the table names each after its struct field).
    pub const fn named(self, name: &'static str) -> AttrSpec {
        AttrSpec { name, ..self }
    }

    /// The value of the attribute when the call leaves it out.
    pub fn default_value(&self) -> AttrValue {
        match (self.default, self.ty) {
            (AttrDefault::Label(text), _) => {
                AttrValue::Label(Label::parse(text, "").expect("default labels are valid"))
            }
            (AttrDefault::String(text), _) => AttrValue::String(text.to_owned()),
            (AttrDefault::Int(value), _) => AttrValue::Int(value),
            (AttrDefault::Empty, AttrType::Labels | AttrType::Strings) => AttrValue::List(Vec::new()),
            (
                AttrDefault::Empty,
                AttrType::Env | AttrType::StringDict | AttrType::LabelDict | AttrType::Dict | AttrType::KeyValues,
            ) => AttrValue::Dict(Vec::new()),
            (AttrDefault::Empty, AttrType::Bool) => AttrValue::Bool(false),
            (AttrDefault::Empty, AttrType::Label | AttrType::String | AttrType::Int | AttrType::Mode) => {
                AttrValue::None
            }
        }
    }

    /// Whether the field type `F` can hold this attribute: its type fits,
    /// and an attribute that may be left out without a default is optional
    /// in Rust too. The kinds table asserts it for every attribute when it
    /// compiles.
    pub const fn fits<F: AttrField>(&self) -> bool {
        let mut i = 0;
        let mut type_fits = false;
        while i < F::TYPES.len() {
            type_fits |= F::TYPES[i] as u8 == self.ty as u8;
            i += 1;
        }
        let always_set = self.required || !matches!(self.default, AttrDefault::Empty);
        type_fits && (always_set || !F::NEEDS_VALUE)
    }
}

/// An attribute value after coercion by the kind's schema: labels are
/// resolved against the declaring package, modes are ints, `env` lists are
/// dicts. Also what a `dict` attribute's values stay (`healthcheck`).
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

/// A Rust type that a field of a typed attribute struct may have, and how
/// it is made from the coerced `AttrValue`.
pub trait AttrField: Sized {
    /// The attribute types whose values convert to this type.
    const TYPES: &'static [AttrType];
    /// Whether an unset attribute (`AttrValue::None`) has no value of this
    /// type, so the attribute must be required or have a default.
    const NEEDS_VALUE: bool;

    /// The value, if `value` has the shape coercion gives `TYPES`.
    fn from_value(value: AttrValue) -> Option<Self>;

    /// Calls `visit` with every label the value names, in order.
    fn visit_labels<'a>(&'a self, _visit: &mut dyn FnMut(&'a Label)) {}
}

impl AttrField for Label {
    const TYPES: &'static [AttrType] = &[AttrType::Label];
    const NEEDS_VALUE: bool = true;

    fn from_value(value: AttrValue) -> Option<Self> {
        match value {
            AttrValue::Label(label) => Some(label),
            _ => None,
        }
    }

    fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'a Label)) {
        visit(self);
    }
}

impl AttrField for Vec<Label> {
    const TYPES: &'static [AttrType] = &[AttrType::Labels];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        list(value, Label::from_value)
    }

    fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'a Label)) {
        self.iter().for_each(visit);
    }
}

impl AttrField for String {
    const TYPES: &'static [AttrType] = &[AttrType::String];
    const NEEDS_VALUE: bool = true;

    fn from_value(value: AttrValue) -> Option<Self> {
        match value {
            AttrValue::String(text) => Some(text),
            _ => None,
        }
    }
}

impl AttrField for Option<String> {
    const TYPES: &'static [AttrType] = &[AttrType::String];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        optional(value, String::from_value)
    }
}

impl AttrField for Vec<String> {
    const TYPES: &'static [AttrType] = &[AttrType::Strings];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        list(value, String::from_value)
    }
}

impl AttrField for i64 {
    const TYPES: &'static [AttrType] = &[AttrType::Int, AttrType::Mode];
    const NEEDS_VALUE: bool = true;

    fn from_value(value: AttrValue) -> Option<Self> {
        match value {
            AttrValue::Int(number) => Some(number),
            _ => None,
        }
    }
}

impl AttrField for Option<i64> {
    const TYPES: &'static [AttrType] = &[AttrType::Int, AttrType::Mode];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        optional(value, i64::from_value)
    }
}

impl AttrField for bool {
    const TYPES: &'static [AttrType] = &[AttrType::Bool];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        match value {
            AttrValue::Bool(flag) => Some(flag),
            _ => None,
        }
    }
}

/// `env`, `labels`, `contents`...: string pairs in the user's order.
impl AttrField for Vec<(String, String)> {
    const TYPES: &'static [AttrType] = &[AttrType::Env, AttrType::StringDict];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        dict(value, String::from_value)
    }
}

/// `env`, `labels`, `annotations` of an image: pairs written in the BUILD
/// file, or a file of `KEY=VALUE` lines that analysis reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValues {
    Pairs(Vec<(String, String)>),
    File(Label),
}

impl KeyValues {
    /// The pairs written in the BUILD file (none for a file).
    pub fn pairs(&self) -> &[(String, String)] {
        match self {
            KeyValues::Pairs(pairs) => pairs,
            KeyValues::File(_) => &[],
        }
    }

    /// The pairs written in the BUILD file, to rewrite in place (`None`
    /// for a file, read only by analysis).
    pub fn pairs_mut(&mut self) -> Option<&mut Vec<(String, String)>> {
        match self {
            KeyValues::Pairs(pairs) => Some(pairs),
            KeyValues::File(_) => None,
        }
    }
}

impl AttrField for KeyValues {
    const TYPES: &'static [AttrType] = &[AttrType::KeyValues];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        match value {
            AttrValue::Label(label) => Some(KeyValues::File(label)),
            value => dict(value, String::from_value).map(KeyValues::Pairs),
        }
    }

    fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'a Label)) {
        if let KeyValues::File(label) = self {
            visit(label);
        }
    }
}

/// `files = {"/dest": "src"}` of `oci_layer`.
impl AttrField for Vec<(String, Label)> {
    const TYPES: &'static [AttrType] = &[AttrType::LabelDict];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        dict(value, Label::from_value)
    }

    fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'a Label)) {
        self.iter().for_each(|(_, label)| visit(label));
    }
}

/// A `dict` attribute: its values stay plain values (`healthcheck`).
impl AttrField for Vec<(String, AttrValue)> {
    const TYPES: &'static [AttrType] = &[AttrType::Dict];
    const NEEDS_VALUE: bool = false;

    fn from_value(value: AttrValue) -> Option<Self> {
        dict(value, Some)
    }
}

/// `compression` of `oci_image_build`, whose choices are the names
/// `Compression` parses.
impl AttrField for Compression {
    const TYPES: &'static [AttrType] = &[AttrType::String];
    const NEEDS_VALUE: bool = true;

    fn from_value(value: AttrValue) -> Option<Self> {
        String::from_value(value)?.parse().ok()
    }
}

fn optional<T>(value: AttrValue, item: impl Fn(AttrValue) -> Option<T>) -> Option<Option<T>> {
    match value {
        AttrValue::None => Some(None),
        value => item(value).map(Some),
    }
}

fn list<T>(value: AttrValue, item: impl Fn(AttrValue) -> Option<T>) -> Option<Vec<T>> {
    match value {
        AttrValue::List(items) => items.into_iter().map(item).collect(),
        _ => None,
    }
}

fn dict<T>(value: AttrValue, item: impl Fn(AttrValue) -> Option<T>) -> Option<Vec<(String, T)>> {
    match value {
        AttrValue::Dict(entries) => entries.into_iter().map(|(key, value)| Some((key, item(value)?))).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_empty_value_of_the_type() {
        assert_eq!(AttrSpec::optional(AttrType::Labels).default_value(), AttrValue::List(vec![]));
        assert_eq!(AttrSpec::optional(AttrType::Env).default_value(), AttrValue::Dict(vec![]));
        assert_eq!(AttrSpec::optional(AttrType::Bool).default_value(), AttrValue::Bool(false));
        assert_eq!(AttrSpec::optional(AttrType::Mode).default_value(), AttrValue::None);
        let base = AttrSpec::with_default(AttrType::Label, AttrDefault::Label("//:empty"));
        assert_eq!(base.default_value(), AttrValue::Label(Label::new("", "empty")));
    }

    #[test]
    fn fields_fit_only_their_types() {
        assert!(AttrSpec::required(AttrType::Label).fits::<Label>());
        assert!(AttrSpec::optional(AttrType::Mode).fits::<Option<i64>>());
        assert!(AttrSpec::optional(AttrType::Env).fits::<Vec<(String, String)>>());
        assert!(!AttrSpec::optional(AttrType::Labels).fits::<Vec<String>>());
        assert!(!AttrSpec::optional(AttrType::LabelDict).fits::<Vec<(String, String)>>());
        // Left out without a default, a plain `String` would have no value.
        assert!(!AttrSpec::optional(AttrType::String).fits::<String>());
        assert!(AttrSpec::with_default(AttrType::String, AttrDefault::String("gzip")).fits::<String>());
        assert!(AttrSpec::with_default(AttrType::String, AttrDefault::String("gzip")).fits::<Compression>());
    }

    #[test]
    fn conversion_is_strict_about_shapes() {
        let label = AttrValue::Label(Label::new("app", "x"));
        assert_eq!(Vec::<Label>::from_value(AttrValue::List(vec![label.clone()])), Some(vec![Label::new("app", "x")]));
        assert_eq!(Vec::<String>::from_value(AttrValue::List(vec![label])), None);
        assert_eq!(Option::<String>::from_value(AttrValue::None), Some(None));
        assert_eq!(String::from_value(AttrValue::None), None);
        assert_eq!(Compression::from_value(AttrValue::String("zstd".into())), Some(Compression::Zstd));
        assert_eq!(Compression::from_value(AttrValue::String("brotli".into())), None);
    }
}
