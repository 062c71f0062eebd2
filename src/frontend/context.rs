//! What a running evaluation knows about where it is: the package whose BUILD
//! file is evaluated (if any) and what its rule calls recorded. Handed to
//! built-ins through `Evaluator::extra`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use starlark::any::ProvidesStaticType;
use starlark::eval::Evaluator;

use crate::frontend::LoadError;
use crate::graph::TargetNode;
use crate::workspace::{Location, WorkspaceSettings};

/// The BUILD file being evaluated.
#[derive(Debug)]
pub(crate) struct PackageContext {
    /// Workspace-relative package path (`""` for the root).
    pub package: String,
    /// Workspace-relative path of the BUILD file, as errors show it.
    pub build_file: String,
    /// Absolute directory of the package, for `glob`.
    pub dir: PathBuf,
    pub targets: RefCell<Vec<TargetNode>>,
    /// Name → index in `targets`, to refuse duplicates.
    pub names: RefCell<HashMap<String, usize>>,
}

/// The `extra` of every evaluator berth runs.
#[derive(Debug, ProvidesStaticType)]
pub(crate) struct EvalContext {
    /// `Some` while a BUILD file is evaluated; `None` for the top level of a
    /// `.star` file, where rules and `glob` may not be called.
    pub package: Option<PackageContext>,
    /// `Some` while `WORKSPACE.star` is evaluated.
    pub settings: Option<RefCell<WorkspaceSettings>>,
    /// A berth error raised inside a built-in. The built-in hands Starlark a
    /// short error to unwind with; the loader reports this one instead, so
    /// the message points at the BUILD file rather than the macro.
    pub error: RefCell<Option<LoadError>>,
}

impl EvalContext {
    pub fn for_package(package: PackageContext) -> EvalContext {
        EvalContext { package: Some(package), settings: None, error: RefCell::new(None) }
    }

    pub fn for_star_file() -> EvalContext {
        EvalContext { package: None, settings: None, error: RefCell::new(None) }
    }

    pub fn for_workspace_file() -> EvalContext {
        EvalContext { package: None, settings: Some(RefCell::default()), error: RefCell::new(None) }
    }

    /// The context of a running evaluation.
    pub fn of<'a>(eval: &Evaluator<'_, 'a, '_>) -> &'a EvalContext {
        eval.extra.and_then(|extra| extra.downcast_ref::<EvalContext>()).expect("berth evaluators carry an EvalContext")
    }

    /// The package being loaded, for the built-in `what`, which may only be
    /// called while a BUILD file is loading.
    pub fn package_for(&self, what: &str) -> starlark::Result<&PackageContext> {
        self.package.as_ref().ok_or_else(|| {
            starlark::Error::new_other(anyhow::anyhow!(
                "`{what}` may only be called while a BUILD file is loading, not at the top level of a `.star` file"
            ))
        })
    }

    /// Records `error` and returns the short error Starlark unwinds with.
    pub fn fail(&self, error: LoadError) -> starlark::Error {
        let summary = error.to_string().lines().next().unwrap_or_default().to_owned();
        self.error.borrow_mut().get_or_insert(error);
        starlark::Error::new_other(anyhow::anyhow!(summary))
    }
}

/// The outermost call-stack location in `file`: for a rule called from a
/// macro called from a BUILD file, the line of the BUILD file.
pub(crate) fn call_site(eval: &Evaluator, file: &str) -> Option<Location> {
    eval.call_stack()
        .frames
        .iter()
        .filter_map(|frame| frame.location.as_ref())
        .find(|span| span.filename() == file)
        .map(|span| {
            let begin = span.resolve_span().begin;
            Location { path: file.to_owned(), line: begin.line as u32 + 1, column: begin.column as u32 + 1 }
        })
}
