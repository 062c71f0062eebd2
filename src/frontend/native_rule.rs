//! `native.<kind>(name = ..., **attrs)`: one callable value per
//! `graph::RuleKind`, which checks a call against the kind's attribute specs
//! (unknown attribute with a did-you-mean, missing required attribute,
//! wrong type, choices), converts the attributes to the kind's typed struct
//! and records the target in the package being loaded.

use std::fmt;

use allocative::Allocative;
use starlark::collections::SmallMap;
use starlark::eval::{Arguments, Evaluator};
use starlark::starlark_simple_value;
use starlark::values::{starlark_value, NoSerialize, ProvidesStaticType, StarlarkValue, Value};

use crate::error::Error;
use crate::frontend::context::{call_site, EvalContext, PackageContext};
use crate::frontend::error::LoadError;
use crate::frontend::schema;
use crate::graph::{closest, AttrSpec, AttrValue, CommonAttrs, RuleAttrs, RuleKind, TargetNode};
use crate::workspace::{Label, Location};

/// The callable `native.<kind>`.
#[derive(Debug, ProvidesStaticType, NoSerialize, Allocative)]
pub(crate) struct NativeRule {
    #[allocative(skip)]
    kind: RuleKind,
}

starlark_simple_value!(NativeRule);

impl NativeRule {
    pub fn new(kind: RuleKind) -> NativeRule {
        NativeRule { kind }
    }
}

/// Shown as the kind's name, as a native function shows its own.
impl fmt::Display for NativeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())
    }
}

// `function`: what `type(native.files)` has always said.
#[starlark_value(type = "function")]
impl<'v> StarlarkValue<'v> for NativeRule {
    fn invoke(
        &self,
        _me: Value<'v>,
        args: &Arguments<'v, '_>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        // Keyword arguments only, checked in the order a native function
        // taking `**kwargs` checks them, so the errors read the same.
        args.no_positional_args(eval.heap())?;
        let kwargs: SmallMap<String, Value<'v>> =
            args.names_map()?.into_iter().map(|(key, value)| (key.as_str().to_owned(), value)).collect();
        record(eval, self.kind, kwargs)?;
        Ok(Value::new_none())
    }
}

/// Checks a native rule call against its kind and records the target.
fn record<'v>(
    eval: &mut Evaluator<'v, '_, '_>,
    kind: RuleKind,
    kwargs: SmallMap<String, Value<'v>>,
) -> starlark::Result<()> {
    let context = EvalContext::of(eval);
    let package = context.package_for(&format!("native.{kind}"))?;
    let location = call_site(eval, &package.build_file).unwrap_or_else(|| Location {
        path: package.build_file.clone(),
        line: 1,
        column: 1,
    });
    let generated = caller_generates_names(eval);
    let rule = user_rule(eval, &package.build_file).unwrap_or_else(|| kind.name().to_owned());
    let call = Call { kind, rule: &rule, package, location: &location, generated };
    let target = check(&call, &kwargs).map_err(|error| context.fail(error))?;
    let mut names = package.names.borrow_mut();
    let mut targets = package.targets.borrow_mut();
    if let Some(&first) = names.get(&target.label.name) {
        let first = &targets[first].location;
        let diagnostic = Error::user(format!("Target `{}` is declared twice", target.label))
            .at(location)
            .with_hint(format!("the first declaration is at {first}; give each target its own `name`"));
        return Err(context.fail(diagnostic.into()));
    }
    names.insert(target.label.name.clone(), targets.len());
    targets.push(target);
    Ok(())
}

/// Whether the native rule was called by a rule of the embedded library
/// that generates `name#variant` targets (`oci_pull_images`): only those
/// names may hold `#`.
fn caller_generates_names(eval: &Evaluator) -> bool {
    let frames = eval.call_stack().frames;
    let [.., caller, native] = frames.as_slice() else { return false };
    // `native`'s location is the line that called it, inside `caller`.
    let in_library = native.location.as_ref().is_some_and(|span| span.filename().starts_with("@berth//"));
    in_library
        && GENERATORS
            .iter()
            .any(|generator| caller.name == *generator || caller.name.ends_with(&format!(".{generator}")))
}

/// The library rules that declare `name#variant` targets.
const GENERATORS: &[&str] = &["oci_pull_images"];

/// The rule the BUILD file called (`oci_python_image`, `oci_image`, a
/// macro of the user's own), which errors name: the function called from
/// the BUILD file itself. `None` when `native.<kind>` was called there
/// directly.
fn user_rule(eval: &Evaluator, build_file: &str) -> Option<String> {
    let frames = eval.call_stack().frames;
    let frame =
        frames.iter().find(|frame| frame.location.as_ref().is_some_and(|span| span.filename() == build_file))?;
    let name = frame.name.rsplit('.').next().unwrap_or(&frame.name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// One native rule call: the kind it records and what the user wrote.
struct Call<'a> {
    kind: RuleKind,
    /// The rule the BUILD file called, for messages.
    rule: &'a str,
    package: &'a PackageContext,
    location: &'a Location,
    generated: bool,
}

/// The target a call declares, or why the call is wrong (at its location).
fn check(call: &Call, kwargs: &SmallMap<String, Value>) -> Result<TargetNode, LoadError> {
    let location = call.location;
    let (label, values, common) =
        check_values(call, kwargs).map_err(|diagnostic| LoadError::from(diagnostic.at(location.clone())))?;
    let attrs =
        RuleAttrs::from_values(call.kind, values).map_err(|error| LoadError::Internal(format!("{error} ({label})")))?;
    let common = CommonAttrs::from_values(common)
        .ok_or_else(|| LoadError::Internal(format!("common attributes of `{label}` have the wrong shape")))?;
    if let RuleAttrs::OciPullImage(pull) = &attrs {
        if pull.sha.is_none() && pull.digest.is_none() {
            return Err(Error::user(format!("`{}` target `{label}` needs `digest` (or `sha`)", call.rule))
                .at(location.clone())
                .with_hint("pin the image by digest: `berth pin IMAGE:TAG` prints a ready `oci_pull_image(...)`")
                .into());
        }
    }
    Ok(TargetNode::new(label, attrs, location.clone()).with_common(common))
}

/// The target's label, one coerced value per attribute of the kind, in
/// `kind.attrs()` order, and one per common attribute, in
/// `CommonAttrs::SPECS` order (defaults filled in).
fn check_values(
    call: &Call,
    kwargs: &SmallMap<String, Value>,
) -> Result<(Label, Vec<AttrValue>, Vec<AttrValue>), Error> {
    let (kind, rule, package) = (call.kind, call.rule, call.package);
    let name = match kwargs.get("name").filter(|value| !value.is_none()) {
        None => {
            return Err(Error::user(format!("Missing required attribute `name` of `{rule}`"))
                .with_hint("every target needs a `name`, unique in its package"))
        }
        Some(value) => value.unpack_str().ok_or_else(|| {
            Error::user(format!("Attribute `name` of `{rule}` must be a string, not `{}`", value.get_type()))
        })?,
    };
    let label = target_label(&package.package, name, call.generated).map_err(|reason| {
        let hint = if name.contains('#') {
            "declare `name#variant` targets with `oci_pull_images(name = ..., variants = {...})`"
        } else {
            "target names are file-like: letters, digits, `-`, `_`, `.`, `/`"
        };
        Error::user(format!("Invalid target name `{name}`: {reason}")).with_hint(hint)
    })?;
    let known = |key: &str| key == "name" || kind.attr(key).is_some() || common_attr(key).is_some();
    if let Some(key) = kwargs.keys().find(|key| !known(key)) {
        // Other tools' spellings the rule macros take are near misses too.
        let peer = PEER_SPELLINGS.iter().filter(|(of, _)| *of == rule).map(|(_, name)| *name);
        let names = kind.attrs().iter().chain(CommonAttrs::SPECS).map(|attr| attr.name).chain(peer);
        let hint = match closest(key, names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "`{rule}` takes {}",
                kind.attrs().iter().map(|attr| format!("`{}`", attr.name)).collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(Error::user(format!("Unknown attribute `{key}` of `{rule}` target `{label}`")).with_hint(hint));
    }
    let coerce = |attr: &AttrSpec| -> Result<AttrValue, Error> {
        match kwargs.get(attr.name).filter(|value| !value.is_none()) {
            Some(value) => schema::coerce(attr, *value, &package.package).map_err(|error| {
                Error::user(format!("{} (in `{rule}` target `{label}`)", error.message)).maybe_hint(error.hint)
            }),
            None if attr.required => Err(missing(kind, rule, attr.name, &label)),
            None => Ok(attr.default_value()),
        }
    };
    let values = kind.attrs().iter().map(coerce).collect::<Result<_, _>>()?;
    let common = CommonAttrs::SPECS.iter().map(coerce).collect::<Result<_, _>>()?;
    Ok((label, values, common))
}

/// Attributes the library's macros take under another tool's name and
/// rename before the native rule sees them: offered by did-you-mean.
const PEER_SPELLINGS: &[(&str, &str)] = &[
    ("oci_python_image", "main"),
    ("oci_build_layer", "commands"),
    ("oci_image_build", "tars"),
    ("oci_image_build", "args"),
    ("oci_image", "tars"),
    ("oci_image", "args"),
    ("oci_layer", "packages"),
];

fn common_attr(name: &str) -> Option<&'static AttrSpec> {
    CommonAttrs::SPECS.iter().find(|attr| attr.name == name)
}

fn missing(kind: RuleKind, rule: &str, attr: &str, label: &Label) -> Error {
    let required: Vec<String> =
        kind.attrs().iter().filter(|attr| attr.required).map(|attr| format!("`{}`", attr.name)).collect();
    Error::user(format!("Missing required attribute `{attr}` of `{rule}` target `{label}`"))
        .with_hint(format!("`{rule}` requires `name`, {}", required.join(", ")))
}

fn target_label(package: &str, name: &str, generated: bool) -> Result<Label, &'static str> {
    if name.contains('#') && !generated {
        return Err("`#` is reserved for targets generated by rules such as `oci_pull_images`");
    }
    if name.is_empty() || name.contains(':') || name.starts_with("//") || name.starts_with('@') {
        return Err("a name is not a label; write `name = \"img\"`, not `\":img\"`");
    }
    let label = Label::parse(name, package).map_err(|_| "it is not a valid file-like name")?;
    if label.package != package || label.name != name || label.repo.is_some() {
        return Err("it is not a valid file-like name");
    }
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_file_like_and_hash_is_reserved() {
        assert_eq!(target_label("app", "img", false).unwrap(), Label::new("app", "img"));
        assert_eq!(target_label("app", "sub/x.txt", false).unwrap(), Label::new("app", "sub/x.txt"));
        assert_eq!(target_label("base", "py#slim", true).unwrap(), Label::new("base", "py#slim"));
        assert!(target_label("base", "py#slim", false).is_err());
        for bad in [":img", "//app:img", "a/../b", "", "a:b"] {
            assert!(target_label("app", bad, false).is_err(), "{bad}");
        }
    }
}
