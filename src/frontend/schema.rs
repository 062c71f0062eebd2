//! The coercion of Starlark values into `graph::AttrValue`s by the
//! attribute specs of `graph::RuleKind` (labels resolved, modes parsed,
//! `env` lists made dicts), with the messages users see when a value does
//! not fit.

use starlark::values::dict::DictRef;
use starlark::values::list::ListRef;
use starlark::values::tuple::TupleRef;
use starlark::values::{UnpackValue, Value};

use crate::graph::{AttrSpec, AttrType as T, AttrValue};
use crate::workspace::Label;

/// Why a value does not fit an attribute; the caller adds the target and
/// location.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CoerceError {
    pub message: String,
    pub hint: Option<String>,
}

impl CoerceError {
    fn wrong_type(attr: &AttrSpec, value: Value, detail: &str) -> CoerceError {
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

/// Coerces `value` for `attr`, resolving labels against `package`. `None`
/// means "unset": the attribute's default.
pub(crate) fn coerce(attr: &AttrSpec, value: Value, package: &str) -> Result<AttrValue, CoerceError> {
    if value.is_none() {
        return Ok(attr.default_value());
    }
    let wrong = |detail: &str| CoerceError::wrong_type(attr, value, detail);
    let coerced = match attr.ty {
        T::Label => AttrValue::Label(label(attr, single(attr, value)?, package)?),
        T::Labels => AttrValue::List(
            list_items(value)
                .ok_or_else(|| wrong(""))?
                .iter()
                .map(|item| label(attr, *item, package).map(AttrValue::Label))
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
        // A string names a file of `KEY=VALUE` lines (rules_oci's `env = "env.txt"`).
        T::KeyValues if value.unpack_str().is_some() => AttrValue::Label(label(attr, value, package)?),
        T::KeyValues => env(attr, value)?,
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
                .map(|(key, item)| Ok((key, AttrValue::Label(label(attr, item, package)?))))
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

fn label(attr: &AttrSpec, value: Value, package: &str) -> Result<Label, CoerceError> {
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
    Ok(label)
}

/// `base = [":img"]`, the Pants plugin's spelling of one base, is that
/// one label; a list of another length is not one base.
fn single<'v>(attr: &AttrSpec, value: Value<'v>) -> Result<Value<'v>, CoerceError> {
    match list_items(value) {
        Some([item]) if attr.name == "base" => Ok(*item),
        Some(items) if attr.name == "base" => Err(CoerceError {
            message: format!("Attribute `base` names one image, not a list of {}", items.len()),
            hint: Some("write `base = \":img\"` (or `base = [\":img\"]`, as Pants does)".to_owned()),
        }),
        _ => Ok(value),
    }
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

fn mode(attr: &AttrSpec, value: Value) -> Result<i64, CoerceError> {
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

fn env(attr: &AttrSpec, value: Value) -> Result<AttrValue, CoerceError> {
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

fn dict_entries<'v>(attr: &AttrSpec, value: Value<'v>) -> Result<Vec<(String, Value<'v>)>, CoerceError> {
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

fn plain(attr: &AttrSpec, value: Value, depth: usize) -> Result<AttrValue, CoerceError> {
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
    use crate::graph::RuleKind;

    /// Evaluates `expr` and coerces it for `kind.attr` in package `app`.
    fn coerce_expr(kind_name: &str, attr_name: &str, expr: &str) -> Result<AttrValue, CoerceError> {
        let attr = RuleKind::from_name(kind_name).unwrap().attr(attr_name).unwrap();
        let ast = AstModule::parse("test.star", expr.to_owned(), &Dialect::Standard).unwrap();
        Module::with_temp_heap(|module| {
            let mut eval = Evaluator::new(&module);
            let value = eval.eval_module(ast, &Globals::standard()).unwrap();
            coerce(attr, value, "app")
        })
    }

    fn s(text: &str) -> AttrValue {
        AttrValue::String(text.to_owned())
    }

    #[test]
    fn labels_resolve_against_the_package() {
        let value = coerce_expr("files", "srcs", r#"["a.txt", ":gen", "//lib:x", "a.txt"]"#).unwrap();
        let labels = [Label::new("app", "a.txt"), Label::new("app", "gen"), Label::new("lib", "x")];
        // Every mention, in order; the target drops repeats from its deps.
        let mentioned = labels.iter().chain([&labels[0]]).cloned().map(AttrValue::Label).collect();
        assert_eq!(value, AttrValue::List(mentioned));
    }

    #[test]
    fn modes_accept_ints_and_octal_strings() {
        assert_eq!(coerce_expr("oci_layer", "mode", "0o755").unwrap(), AttrValue::Int(0o755));
        assert_eq!(coerce_expr("oci_layer", "mode", r#""0644""#).unwrap(), AttrValue::Int(0o644));
        assert_eq!(coerce_expr("oci_layer", "mode", r#""0o700""#).unwrap(), AttrValue::Int(0o700));
        for bad in [r#""rwx""#, r#""0789""#, r#""""#, "0o17777", "-1"] {
            let error = coerce_expr("oci_layer", "mode", bad).unwrap_err();
            assert!(error.message.contains("is not a file mode"), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn env_accepts_dicts_and_key_value_lists_in_order() {
        let expected = AttrValue::Dict(vec![("B".into(), s("1")), ("A".into(), s("x=y"))]);
        assert_eq!(coerce_expr("oci_image_build", "env", r#"{"B": "1", "A": "x=y"}"#).unwrap(), expected);
        assert_eq!(coerce_expr("oci_image_build", "env", r#"["B=1", "A=x=y"]"#).unwrap(), expected);
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
        let value = coerce_expr("oci_image_build", "base", "None").unwrap();
        assert_eq!(value, AttrValue::Label(Label::new("", "empty")));
        assert_eq!(coerce_expr("oci_build_layer", "timeout", "None").unwrap(), AttrValue::Int(600));
    }

    #[test]
    fn plain_dicts_refuse_runaway_nesting() {
        let deep = "def deep():\n    x = {}\n    for i in range(10000):\n        x = {\"a\": x}\n    return x\ndeep()";
        let error = coerce_expr("oci_image_build", "healthcheck", deep).unwrap_err();
        assert_eq!(error.message, "Attribute `healthcheck` nests deeper than 32 levels");
    }

    #[test]
    fn plain_dicts_keep_nested_values() {
        let value =
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
