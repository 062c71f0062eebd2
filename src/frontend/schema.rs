//! The native rule kinds and their attribute schemas, and the coercion of
//! Starlark values into `graph::AttrValue` by those schemas.
//!
//! One entry of `KINDS` per row of the native-kinds table in
//! `docs/ARCHITECTURE.md`; `globals` exposes each as `native.<kind>`.

use starlark::values::dict::DictRef;
use starlark::values::list::ListRef;
use starlark::values::tuple::TupleRef;
use starlark::values::{UnpackValue, Value};

use crate::graph::AttrValue;
use crate::workspace::Label;

/// The type of one attribute, as the architecture document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrType {
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
}

impl AttrType {
    fn describe(self) -> &'static str {
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
        }
    }
}

/// What an attribute holds when the rule call leaves it out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Default {
    /// The empty value of the type: `[]`, `{}`, `False`, or `None` for scalars.
    Empty,
    Label(&'static str),
    String(&'static str),
    Int(i64),
}

#[derive(Debug)]
pub(crate) struct Attr {
    pub name: &'static str,
    pub ty: AttrType,
    pub required: bool,
    pub default: Default,
    /// The only strings allowed, when the attribute is an enumeration.
    pub choices: &'static [&'static str],
}

const fn attr(name: &'static str, ty: AttrType) -> Attr {
    Attr { name, ty, required: false, default: Default::Empty, choices: &[] }
}

const fn required(name: &'static str, ty: AttrType) -> Attr {
    Attr { name, ty, required: true, default: Default::Empty, choices: &[] }
}

const fn with_default(name: &'static str, ty: AttrType, default: Default) -> Attr {
    Attr { name, ty, required: false, default, choices: &[] }
}

/// One native rule kind.
#[derive(Debug)]
pub(crate) struct Kind {
    pub name: &'static str,
    pub attrs: &'static [Attr],
}

impl Kind {
    pub fn attr(&self, name: &str) -> Option<&'static Attr> {
        self.attrs.iter().find(|attr| attr.name == name)
    }
}

use AttrType as T;

/// The label of the implicit empty image every `oci_image_build` starts from.
pub(crate) const EMPTY_IMAGE: &str = "//:empty";

pub(crate) const KINDS: &[Kind] = &[
    Kind {
        name: "files",
        attrs: &[required("srcs", T::Labels), attr("prefix", T::String), attr("strip_prefix", T::String)],
    },
    Kind {
        name: "oci_layer",
        attrs: &[
            attr("srcs", T::Labels),
            attr("files", T::LabelDict),
            attr("contents", T::StringDict),
            attr("symlinks", T::StringDict),
            attr("directories", T::Strings),
            attr("prefix", T::String),
            attr("strip_prefix", T::String),
            attr("mode", T::Mode),
            attr("uid", T::Int),
            attr("gid", T::Int),
            attr("mtime", T::Int),
        ],
    },
    Kind {
        name: "oci_image_empty",
        attrs: &[attr("os", T::String), attr("architecture", T::String), attr("variant", T::String)],
    },
    Kind {
        name: "oci_image_build",
        attrs: &[
            with_default("base", T::Label, Default::Label(EMPTY_IMAGE)),
            attr("packages", T::Labels),
            attr("layers", T::Labels),
            attr("entrypoint", T::Strings),
            attr("cmd", T::Strings),
            attr("env", T::Env),
            attr("workdir", T::String),
            attr("user", T::String),
            attr("exposed_ports", T::Strings),
            attr("volumes", T::Strings),
            attr("labels", T::StringDict),
            attr("annotations", T::StringDict),
            attr("stop_signal", T::String),
            attr("healthcheck", T::Dict),
            attr("author", T::String),
            attr("comment", T::String),
            attr("os", T::String),
            attr("architecture", T::String),
            attr("variant", T::String),
            attr("platform", T::String),
            attr("repository", T::String),
            attr("tag", T::String),
            attr("tags", T::Strings),
            Attr {
                name: "compression",
                ty: T::String,
                required: false,
                default: Default::String("gzip"),
                choices: &["gzip", "zstd", "none"],
            },
            attr("python_main", T::String),
        ],
    },
    Kind {
        name: "oci_build_layer",
        attrs: &[
            required("base", T::Label),
            attr("packages", T::Labels),
            attr("env", T::Env),
            attr("command", T::Strings),
            attr("argv", T::Strings),
            required("outputs", T::Strings),
            attr("exclude", T::Strings),
            attr("workdir", T::String),
            attr("output_path", T::String),
            with_default("timeout", T::Int, Default::Int(600)),
            attr("network", T::Bool),
        ],
    },
    Kind {
        name: "oci_image_index",
        attrs: &[
            required("images", T::Labels),
            attr("annotations", T::StringDict),
            attr("repository", T::String),
            attr("tag", T::String),
            attr("tags", T::Strings),
        ],
    },
    Kind {
        name: "oci_pull_image",
        attrs: &[
            required("repository", T::String),
            attr("sha", T::String),
            attr("digest", T::String),
            attr("anonymous", T::Bool),
            attr("platform", T::String),
        ],
    },
    Kind { name: "deb_layer", attrs: &[required("debs", T::Labels), attr("sha256s", T::Strings)] },
];

/// The kind named `name`.
pub(crate) fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.name == name)
}

/// Why a value does not fit an attribute; the caller adds the target and
/// location.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CoerceError {
    pub message: String,
    pub hint: Option<String>,
}

impl CoerceError {
    fn wrong_type(attr: &Attr, value: Value, detail: &str) -> CoerceError {
        CoerceError {
            message: format!(
                "Attribute `{}` must be {}, not `{}`{detail}",
                attr.name,
                attr.ty.describe(),
                value.get_type()
            ),
            hint: None,
        }
    }
}

/// Coerces `value` for `attr`, resolving labels against `package` and
/// appending every label named to `deps`. `None` means "unset".
pub(crate) fn coerce(
    attr: &Attr,
    value: Value,
    package: &str,
    deps: &mut Vec<Label>,
) -> Result<AttrValue, CoerceError> {
    if value.is_none() {
        return Ok(default_value(attr, deps));
    }
    let wrong = |detail: &str| CoerceError::wrong_type(attr, value, detail);
    let coerced = match attr.ty {
        T::Label => AttrValue::Label(label(attr, value, package, deps)?),
        T::Labels => AttrValue::List(
            list_items(value)
                .ok_or_else(|| wrong(""))?
                .iter()
                .map(|item| label(attr, *item, package, deps).map(AttrValue::Label))
                .collect::<Result<_, _>>()?,
        ),
        T::String => {
            let text = value.unpack_str().ok_or_else(|| wrong(""))?;
            if !attr.choices.is_empty() && !attr.choices.contains(&text) {
                return Err(CoerceError {
                    message: format!("Attribute `{}` must be one of {}, not `{text}`", attr.name, quoted(attr.choices)),
                    hint: None,
                });
            }
            AttrValue::String(text.to_owned())
        }
        T::Strings => AttrValue::List(
            list_items(value)
                .ok_or_else(|| wrong(""))?
                .iter()
                .map(|item| item.unpack_str().map(|text| AttrValue::String(text.to_owned())))
                .collect::<Option<_>>()
                .ok_or_else(|| wrong(" (every item must be a string)"))?,
        ),
        T::Int => AttrValue::Int(int(value).ok_or_else(|| wrong(""))?),
        T::Bool => AttrValue::Bool(value.unpack_bool().ok_or_else(|| wrong(""))?),
        T::Mode => AttrValue::Int(mode(attr, value)?),
        T::Env => env(attr, value)?,
        T::StringDict => AttrValue::Dict(
            dict_entries(attr, value)?
                .into_iter()
                .map(|(key, item)| match item.unpack_str() {
                    Some(text) => Ok((key, AttrValue::String(text.to_owned()))),
                    None => Err(wrong(&format!(" (the value of `{key}` is a `{}`)", item.get_type()))),
                })
                .collect::<Result<_, _>>()?,
        ),
        T::LabelDict => AttrValue::Dict(
            dict_entries(attr, value)?
                .into_iter()
                .map(|(key, item)| Ok((key, AttrValue::Label(label(attr, item, package, deps)?))))
                .collect::<Result<_, CoerceError>>()?,
        ),
        T::Dict => AttrValue::Dict(
            dict_entries(attr, value)?
                .into_iter()
                .map(|(key, item)| Ok((key, plain(attr, item, 1)?)))
                .collect::<Result<_, CoerceError>>()?,
        ),
    };
    Ok(coerced)
}

/// The value of an attribute the call left out.
pub(crate) fn default_value(attr: &Attr, deps: &mut Vec<Label>) -> AttrValue {
    match (attr.default, attr.ty) {
        (Default::Label(text), _) => {
            let label = Label::parse(text, "").expect("default labels are valid");
            push_dep(deps, &label);
            AttrValue::Label(label)
        }
        (Default::String(text), _) => AttrValue::String(text.to_owned()),
        (Default::Int(value), _) => AttrValue::Int(value),
        (Default::Empty, T::Labels | T::Strings) => AttrValue::List(Vec::new()),
        (Default::Empty, T::Env | T::StringDict | T::LabelDict | T::Dict) => AttrValue::Dict(Vec::new()),
        (Default::Empty, T::Bool) => AttrValue::Bool(false),
        (Default::Empty, T::Label | T::String | T::Int | T::Mode) => AttrValue::None,
    }
}

/// Repeats are removed once, by the caller, when the target is complete: a
/// `contains` check here would be quadratic in a 30,000-file `glob`.
fn push_dep(deps: &mut Vec<Label>, label: &Label) {
    deps.push(label.clone());
}

fn label(attr: &Attr, value: Value, package: &str, deps: &mut Vec<Label>) -> Result<Label, CoerceError> {
    let text = value.unpack_str().ok_or_else(|| CoerceError::wrong_type(attr, value, ""))?;
    let label = Label::parse(text, package).map_err(|error| CoerceError {
        message: format!("Attribute `{}`: {error}", attr.name),
        hint: Some("labels look like `//pkg:name`, `:name` or `file.txt`".to_owned()),
    })?;
    if label.repo.is_some() {
        return Err(CoerceError {
            message: format!("Attribute `{}` names `{label}`, which is not a target", attr.name),
            hint: Some("`@berth` holds only `.star` files for `load`".to_owned()),
        });
    }
    push_dep(deps, &label);
    Ok(label)
}

fn list_items<'v>(value: Value<'v>) -> Option<&'v [Value<'v>]> {
    ListRef::from_value(value).map(|list| list.content()).or_else(|| TupleRef::from_value(value).map(|t| t.content()))
}

fn int(value: Value) -> Option<i64> {
    // Bools are not ints here, though Starlark would compare them equal.
    if value.unpack_bool().is_some() {
        return None;
    }
    i64::unpack_value(value).ok().flatten()
}

fn mode(attr: &Attr, value: Value) -> Result<i64, CoerceError> {
    let bad = |shown: String| CoerceError {
        message: format!("Attribute `{}`: `{shown}` is not a file mode", attr.name),
        hint: Some("write an octal mode such as `0o755` or `\"0755\"`".to_owned()),
    };
    let mode = if let Some(text) = value.unpack_str() {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(bad(format!("\"{text}\"")));
        }
        i64::from_str_radix(digits, 8).map_err(|_| bad(format!("\"{text}\"")))?
    } else if let Some(number) = int(value) {
        number
    } else {
        return Err(CoerceError::wrong_type(attr, value, ""));
    };
    if !(0..=0o7777).contains(&mode) {
        return Err(bad(format!("{mode:#o}")));
    }
    Ok(mode)
}

fn env(attr: &Attr, value: Value) -> Result<AttrValue, CoerceError> {
    if let Some(items) = list_items(value) {
        let mut entries: Vec<(String, AttrValue)> = Vec::new();
        for item in items {
            let text = item.unpack_str().ok_or_else(|| CoerceError::wrong_type(attr, value, ""))?;
            let (key, val) = text.split_once('=').filter(|(key, _)| !key.is_empty()).ok_or_else(|| CoerceError {
                message: format!("Attribute `{}`: `{text}` is not `KEY=VALUE`", attr.name),
                hint: None,
            })?;
            // A later entry for the same key wins, as in a shell.
            entries.retain(|(existing, _)| existing != key);
            entries.push((key.to_owned(), AttrValue::String(val.to_owned())));
        }
        return Ok(AttrValue::Dict(entries));
    }
    let entries = dict_entries(attr, value)?;
    let mut coerced = Vec::with_capacity(entries.len());
    for (key, item) in entries {
        let text = item.unpack_str().ok_or_else(|| {
            CoerceError::wrong_type(attr, value, &format!(" (the value of `{key}` is a `{}`)", item.get_type()))
        })?;
        coerced.push((key, AttrValue::String(text.to_owned())));
    }
    Ok(AttrValue::Dict(coerced))
}

fn dict_entries<'v>(attr: &Attr, value: Value<'v>) -> Result<Vec<(String, Value<'v>)>, CoerceError> {
    let dict = DictRef::from_value(value).ok_or_else(|| CoerceError::wrong_type(attr, value, ""))?;
    dict.iter()
        .map(|(key, item)| match key.unpack_str() {
            Some(key) => Ok((key.to_owned(), item)),
            None => Err(CoerceError::wrong_type(attr, value, &format!(" (a key is a `{}`)", key.get_type()))),
        })
        .collect()
}

/// How deep a `dict` attribute may nest (a Docker healthcheck needs 2).
const MAX_PLAIN_DEPTH: usize = 32;

fn plain(attr: &Attr, value: Value, depth: usize) -> Result<AttrValue, CoerceError> {
    if depth > MAX_PLAIN_DEPTH {
        return Err(CoerceError {
            message: format!("Attribute `{}` nests deeper than {MAX_PLAIN_DEPTH} levels", attr.name),
            hint: None,
        });
    }
    if value.is_none() {
        Ok(AttrValue::None)
    } else if let Some(flag) = value.unpack_bool() {
        Ok(AttrValue::Bool(flag))
    } else if let Some(number) = int(value) {
        Ok(AttrValue::Int(number))
    } else if let Some(text) = value.unpack_str() {
        Ok(AttrValue::String(text.to_owned()))
    } else if let Some(items) = list_items(value) {
        Ok(AttrValue::List(items.iter().map(|item| plain(attr, *item, depth + 1)).collect::<Result<_, _>>()?))
    } else if DictRef::from_value(value).is_some() {
        Ok(AttrValue::Dict(
            dict_entries(attr, value)?
                .into_iter()
                .map(|(key, item)| Ok((key, plain(attr, item, depth + 1)?)))
                .collect::<Result<_, CoerceError>>()?,
        ))
    } else {
        Err(CoerceError::wrong_type(attr, value, " (only None, bools, ints, strings, lists and dicts)"))
    }
}

fn quoted(items: &[&str]) -> String {
    items.iter().map(|item| format!("`{item}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use starlark::environment::{Globals, Module};
    use starlark::eval::Evaluator;
    use starlark::syntax::{AstModule, Dialect};

    use super::*;

    /// Evaluates `expr` and coerces it for `kind.attr` in package `app`.
    fn coerce_expr(kind_name: &str, attr_name: &str, expr: &str) -> Result<(AttrValue, Vec<Label>), CoerceError> {
        let attr = kind(kind_name).unwrap().attr(attr_name).unwrap();
        let ast = AstModule::parse("test.star", expr.to_owned(), &Dialect::Standard).unwrap();
        Module::with_temp_heap(|module| {
            let mut eval = Evaluator::new(&module);
            let value = eval.eval_module(ast, &Globals::standard()).unwrap();
            let mut deps = Vec::new();
            coerce(attr, value, "app", &mut deps).map(|coerced| (coerced, deps))
        })
    }

    fn s(text: &str) -> AttrValue {
        AttrValue::String(text.to_owned())
    }

    #[test]
    fn every_kind_of_the_architecture_table_is_declared() {
        let names: Vec<_> = KINDS.iter().map(|kind| kind.name).collect();
        assert_eq!(
            names,
            [
                "files",
                "oci_layer",
                "oci_image_empty",
                "oci_image_build",
                "oci_build_layer",
                "oci_image_index",
                "oci_pull_image",
                "deb_layer"
            ]
        );
    }

    #[test]
    fn labels_resolve_against_the_package_and_become_deps() {
        let (value, deps) = coerce_expr("files", "srcs", r#"["a.txt", ":gen", "//lib:x", "a.txt"]"#).unwrap();
        let labels = [Label::new("app", "a.txt"), Label::new("app", "gen"), Label::new("lib", "x")];
        let mentioned: Vec<Label> = labels.iter().chain([&labels[0]]).cloned().collect();
        assert_eq!(value, AttrValue::List(mentioned.iter().cloned().map(AttrValue::Label).collect()));
        // Every mention, in order; the target drops repeats once it is complete.
        assert_eq!(deps, mentioned);
    }

    #[test]
    fn modes_accept_ints_and_octal_strings() {
        assert_eq!(coerce_expr("oci_layer", "mode", "0o755").unwrap().0, AttrValue::Int(0o755));
        assert_eq!(coerce_expr("oci_layer", "mode", r#""0644""#).unwrap().0, AttrValue::Int(0o644));
        assert_eq!(coerce_expr("oci_layer", "mode", r#""0o700""#).unwrap().0, AttrValue::Int(0o700));
        for bad in [r#""rwx""#, r#""0789""#, r#""""#, "0o17777", "-1"] {
            let error = coerce_expr("oci_layer", "mode", bad).unwrap_err();
            assert!(error.message.contains("is not a file mode"), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn env_accepts_dicts_and_key_value_lists_in_order() {
        let expected = AttrValue::Dict(vec![("B".into(), s("1")), ("A".into(), s("x=y"))]);
        assert_eq!(coerce_expr("oci_image_build", "env", r#"{"B": "1", "A": "x=y"}"#).unwrap().0, expected);
        assert_eq!(coerce_expr("oci_image_build", "env", r#"["B=1", "A=x=y"]"#).unwrap().0, expected);
        assert!(coerce_expr("oci_image_build", "env", r#"["NOVALUE"]"#).is_err());
        assert!(coerce_expr("oci_image_build", "env", r#"{"A": 1}"#).is_err());
    }

    #[test]
    fn wrong_types_name_the_expected_type() {
        let error = coerce_expr("files", "srcs", r#""a.txt""#).unwrap_err();
        assert_eq!(error.message, "Attribute `srcs` must be a list of label strings, not `string`");
        let error = coerce_expr("oci_image_build", "compression", r#""brotli""#).unwrap_err();
        assert_eq!(error.message, "Attribute `compression` must be one of `gzip`, `zstd`, `none`, not `brotli`");
        assert!(coerce_expr("oci_layer", "uid", "True").is_err());
        assert!(coerce_expr("oci_layer", "uid", "1 << 70").is_err());
    }

    #[test]
    fn none_means_the_default() {
        let (value, deps) = coerce_expr("oci_image_build", "base", "None").unwrap();
        assert_eq!(value, AttrValue::Label(Label::new("", "empty")));
        assert_eq!(deps, [Label::new("", "empty")]);
        assert_eq!(coerce_expr("oci_build_layer", "timeout", "None").unwrap().0, AttrValue::Int(600));
    }

    #[test]
    fn plain_dicts_refuse_runaway_nesting() {
        let deep = "def deep():\n    x = {}\n    for i in range(10000):\n        x = {\"a\": x}\n    return x\ndeep()";
        let error = coerce_expr("oci_image_build", "healthcheck", deep).unwrap_err();
        assert_eq!(error.message, "Attribute `healthcheck` nests deeper than 32 levels");
    }

    #[test]
    fn plain_dicts_keep_nested_values() {
        let (value, _) =
            coerce_expr("oci_image_build", "healthcheck", r#"{"test": ["CMD", "true"], "retries": 3}"#).unwrap();
        assert_eq!(
            value,
            AttrValue::Dict(vec![
                ("test".into(), AttrValue::List(vec![s("CMD"), s("true")])),
                ("retries".into(), AttrValue::Int(3)),
            ])
        );
    }
}
