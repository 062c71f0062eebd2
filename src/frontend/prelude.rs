//! The rule library `rules/*.star`, embedded in the binary as
//! `@berth//rules:<file>`, evaluated once per process; and the globals of
//! BUILD and `.star` files, which hold every rule `rules/defs.star` exports.

use std::collections::HashMap;
use std::sync::OnceLock;

use starlark::environment::{FrozenModule, Globals, Module};
use starlark::eval::{Evaluator, ReturnFileLoader};
use starlark::syntax::AstModule;
use starlark::values::FrozenHeapName;

use crate::frontend::context::EvalContext;
use crate::frontend::error::LoadError;
use crate::frontend::globals;
use crate::frontend::loader::dialect;
use crate::workspace::Label;

/// The library's files: name in `rules/` and text.
const RULE_FILES: &[(&str, &str)] = &[
    ("common.star", include_str!("../../rules/common.star")),
    ("defs.star", include_str!("../../rules/defs.star")),
    ("files.star", include_str!("../../rules/files.star")),
    ("image.star", include_str!("../../rules/image.star")),
    ("layer.star", include_str!("../../rules/layer.star")),
    ("pull.star", include_str!("../../rules/pull.star")),
    ("push.star", include_str!("../../rules/push.star")),
];

/// The evaluated library and the globals built from it.
pub(crate) struct Library {
    /// `@berth//rules:<file>` → its frozen module.
    modules: HashMap<Label, FrozenModule>,
    /// Globals of BUILD and `.star` files: the base built-ins plus the rules.
    pub globals: Globals,
}

impl Library {
    /// The library, evaluated on first use.
    pub fn get() -> Result<&'static Library, LoadError> {
        static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
        LIBRARY.get_or_init(|| Library::evaluate().map_err(|error| error.to_string())).as_ref().map_err(|error| {
            LoadError::Starlark(format!("The embedded rule library does not load (a bug in berth):\n{error}"))
        })
    }

    /// The frozen module of a library file, if `label` names one.
    pub fn module(&self, label: &Label) -> Option<&FrozenModule> {
        self.modules.get(label)
    }

    fn evaluate() -> Result<Library, LoadError> {
        let base = globals::base().build();
        let mut modules = HashMap::new();
        for (name, _) in RULE_FILES {
            evaluate_file(&library_label(name), &base, &mut modules, 0)?;
        }
        let defs = &modules[&library_label("defs.star")];
        let mut builder = globals::base();
        for name in defs.names() {
            let owned = defs.get(&name).map_err(|error| LoadError::Starlark(error.to_string()))?;
            // SAFETY: `owned_frozen_value` makes the globals' heap keep the
            // module's heap alive, so the value lives as long as the globals.
            let value = unsafe { owned.owned_frozen_value(builder.frozen_heap()) };
            builder.set(&name, value);
        }
        Ok(Library { modules, globals: builder.build() })
    }
}

/// `@berth//rules:<name>`.
pub(crate) fn library_label(name: &str) -> Label {
    Label { repo: Some("berth".to_owned()), package: "rules".to_owned(), name: name.to_owned() }
}

fn evaluate_file(
    label: &Label,
    globals: &Globals,
    modules: &mut HashMap<Label, FrozenModule>,
    depth: usize,
) -> Result<(), LoadError> {
    if modules.contains_key(label) {
        return Ok(());
    }
    let text = RULE_FILES
        .iter()
        .find(|(name, _)| label.package == "rules" && *name == label.name)
        .map(|(_, text)| *text)
        .ok_or_else(|| LoadError::Starlark(format!("The rule library has no file `{label}`")))?;
    assert!(depth < RULE_FILES.len(), "the rule library loads itself in a cycle");
    let starlark_error = |error: starlark::Error| LoadError::Starlark(error.to_string());
    let ast = AstModule::parse(&label.to_string(), text.to_owned(), &dialect()).map_err(starlark_error)?;
    let mut loads = Vec::new();
    for load in ast.loads() {
        let target =
            Label::parse_in(load.module_id, label).map_err(|error| LoadError::Starlark(format!("{label}: {error}")))?;
        evaluate_file(&target, globals, modules, depth + 1)?;
        loads.push((load.module_id.to_owned(), modules[&target].clone()));
    }
    let loaded = loads.iter().map(|(id, module)| (id.as_str(), module)).collect();
    let loader = ReturnFileLoader { modules: &loaded };
    let context = EvalContext::for_star_file();
    let frozen = Module::with_temp_heap(|module| {
        {
            let mut eval = Evaluator::new(&module);
            eval.set_loader(&loader);
            eval.extra = Some(&context);
            eval.eval_module(ast, globals)?;
        }
        Ok(module.freeze_named(FrozenHeapName::User(Box::new(label.to_string())))?)
    })
    .map_err(starlark_error)?;
    modules.insert(label.clone(), frozen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_rule_of_the_design() {
        let library = Library::get().unwrap();
        let defs = library.module(&library_label("defs.star")).unwrap();
        let mut names: Vec<String> = defs.names().map(|name| name.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "deb_layer",
                "files",
                "oci_build_layer",
                "oci_dockerfile",
                "oci_image",
                "oci_image_build",
                "oci_image_empty",
                "oci_image_index",
                "oci_import",
                "oci_layer",
                "oci_load",
                "oci_pull",
                "oci_pull_image",
                "oci_pull_images",
                "oci_push",
                "oci_python_image"
            ]
        );
        for name in &names {
            assert!(library.globals.names().any(|global| global.as_str() == name), "{name} is not a global");
        }
    }
}
