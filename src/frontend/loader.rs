//! The loading phase: finds the packages the patterns need, evaluates their
//! BUILD files (in parallel) and the `.star` files they load (once each,
//! frozen and shared), and resolves every label into the target graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use starlark::environment::{FrozenModule, Module};
use starlark::eval::{Evaluator, ReturnFileLoader};
use starlark::syntax::{AstModule, Dialect, DialectTypes};
use starlark::values::FrozenHeapName;

use crate::error::Error;
use crate::frontend::context::{EvalContext, PackageContext};
use crate::frontend::error::LoadError;
use crate::frontend::limits;
use crate::frontend::prelude::{library_label, Library};
use crate::frontend::tabs::soften_tabs;
use crate::graph::{closest, RuleAttrs, RuleKind, SourceFile, TargetGraph, TargetNode, EMPTY_IMAGE};
use crate::workspace::{Label, Location, Pattern, Workspace, BUILD_FILES};

/// The Starlark dialect of every berth file: standard plus `load`,
/// f-strings, type annotations (checked) and keyword-only arguments.
pub(crate) fn dialect() -> Dialect {
    Dialect {
        enable_keyword_only_arguments: true,
        enable_types: DialectTypes::Enable,
        enable_f_strings: true,
        enable_top_level_stmt: true,
        ..Dialect::Standard
    }
}

/// Loads the packages `patterns` name, and the packages of their
/// dependencies, transitively, into a target graph.
///
/// Only those packages are evaluated. Labels are resolved: each names a
/// target, or else an existing file of its package (a source file); anything
/// else is an error naming the BUILD file, line and column. `//:empty` is
/// always in the graph. Resolve the patterns themselves with
/// `TargetGraph::resolve_patterns`.
pub fn load(workspace: &Workspace, patterns: &[Pattern]) -> Result<TargetGraph, Error> {
    Loader::new(workspace)?.run(patterns).map_err(Error::from)
}

/// One `load` statement, resolved.
struct LoadStmt {
    /// The string as written, which the Starlark loader is asked for.
    id: String,
    label: Label,
    location: Location,
    /// The names it imports from the module.
    symbols: Vec<String>,
}

/// A BUILD file, parsed, with its loads resolved.
struct ParsedBuild {
    package: String,
    build_file: String,
    ast: AstModule,
    loads: Vec<LoadStmt>,
}

struct Loader<'a> {
    workspace: &'a Workspace,
    library: &'static Library,
    /// Evaluated workspace `.star` files, by label.
    star_modules: HashMap<Label, FrozenModule>,
}

impl<'a> Loader<'a> {
    fn new(workspace: &'a Workspace) -> Result<Loader<'a>, LoadError> {
        Ok(Loader { workspace, library: Library::get()?, star_modules: HashMap::new() })
    }

    fn run(mut self, patterns: &[Pattern]) -> Result<TargetGraph, LoadError> {
        let mut pending = self.initial_packages(patterns)?;
        let mut loaded: BTreeMap<String, Vec<TargetNode>> = BTreeMap::new();
        // Large stacks: deeply nested Starlark recurses in the parser, the
        // evaluator and the freezer (only the pages touched are committed).
        let pool = rayon::ThreadPoolBuilder::new()
            .stack_size(limits::STACK_BYTES)
            .thread_name(|index| format!("berth-loading-{index}"))
            .build()
            .map_err(|error| LoadError::Starlark(format!("Cannot start the loading threads: {error}")))?;
        while !pending.is_empty() {
            let batch: Vec<String> = std::mem::take(&mut pending).into_iter().collect();
            let parsed =
                pool.install(|| batch.par_iter().map(|package| self.parse_build(package.as_str())).collect::<Vec<_>>());
            let parsed = parsed.into_iter().collect::<Result<Vec<_>, _>>()?;
            // One at a time (a file loads before its users), on a loading
            // thread for its large stack: freezing deep values recurses.
            pool.install(|| {
                parsed.iter().flat_map(|build| &build.loads).try_for_each(|load| self.load_star(load, &mut Vec::new()))
            })?;
            let this = &self;
            let results =
                pool.install(|| parsed.into_par_iter().map(|build| this.evaluate_build(build)).collect::<Vec<_>>());
            for result in results {
                let (package, targets) = result?;
                loaded.insert(package, targets);
            }
            for package in &batch {
                for dep in loaded[package].iter().flat_map(|target| &target.deps) {
                    if !loaded.contains_key(&dep.package) && self.workspace.build_file(&dep.package).is_some() {
                        pending.insert(dep.package.clone());
                    }
                }
            }
        }
        self.resolve(loaded)
    }

    fn initial_packages(&self, patterns: &[Pattern]) -> Result<BTreeSet<String>, LoadError> {
        let mut packages = BTreeSet::new();
        for pattern in patterns {
            match pattern {
                Pattern::Recursive { package } => packages.extend(self.workspace.packages_under(package)?),
                Pattern::Target(label) if label.to_string() == EMPTY_IMAGE => {
                    packages.extend(self.workspace.build_file("").map(|_| String::new()));
                }
                _ => {
                    self.workspace.require_package(pattern.package())?;
                    packages.insert(pattern.package().to_owned());
                }
            }
        }
        Ok(packages)
    }

    fn parse_build(&self, package: &str) -> Result<ParsedBuild, LoadError> {
        let build_file =
            self.workspace.build_file(package).ok_or_else(|| self.workspace.require_package(package).unwrap_err())?;
        let text = read(&self.workspace.root, &build_file)?;
        limits::check_nesting(&build_file, &text)?;
        let ast = AstModule::parse(&build_file, soften_tabs(text), &dialect())
            .map_err(|error| LoadError::Starlark(limits::starlark_message(&error)))?;
        let context = Label::new(package, BUILD_FILES[0]);
        let loads = resolve_loads(&ast, &context)?;
        Ok(ParsedBuild { package: package.to_owned(), build_file, ast, loads })
    }

    /// Evaluates the `.star` file `load` names (and what it loads), once.
    fn load_star(&mut self, load: &LoadStmt, chain: &mut Vec<Label>) -> Result<(), LoadError> {
        let label = &load.label;
        if label.repo.is_some() {
            let module = self.library.module(label).ok_or_else(|| {
                Error::user(format!("Cannot load `{label}`: the rule library has no such file"))
                    .at(load.location.clone())
                    .with_hint("the library's public entry point is `@berth//rules:defs.star`")
            })?;
            return check_symbols(load, module);
        }
        if let Some(module) = self.star_modules.get(label) {
            return check_symbols(load, module);
        }
        if let Some(start) = chain.iter().position(|other| other == label) {
            let cycle: Vec<String> = chain[start..].iter().chain([label]).map(|label| format!("`{label}`")).collect();
            return Err(Error::user(format!("Load cycle: {}", cycle.join(" -> ")))
                .at(load.location.clone())
                .with_hint("move what both files need into a third `.star` file")
                .into());
        }
        if chain.len() >= limits::MAX_LOAD_DEPTH {
            return Err(LoadError::Limit(
                Error::user(format!(
                    "Load chain deeper than {} files: `{}` loads `{label}`",
                    limits::MAX_LOAD_DEPTH,
                    chain.last().map_or_else(String::new, |last| last.to_string())
                ))
                .at(load.location.clone())
                .with_hint("a `.star` file that loads another that loads another ... this deep is generated or broken"),
            ));
        }
        if !label.name.ends_with(".star") {
            return Err(Error::user(format!("Cannot load `{label}`: only `.star` files can be loaded"))
                .at(load.location.clone())
                .into());
        }
        let path = label.path();
        if !self.workspace.root.join(&path).is_file() {
            return Err(missing_star_file(&self.workspace.root, label, &path).at(load.location.clone()).into());
        }
        let text = read(&self.workspace.root, &path)?;
        limits::check_nesting(&path, &text)?;
        let ast = AstModule::parse(&path, soften_tabs(text), &dialect())
            .map_err(|error| LoadError::Starlark(limits::starlark_message(&error)))?;
        let loads = resolve_loads(&ast, label)?;
        chain.push(label.clone());
        for inner in &loads {
            self.load_star(inner, chain)?;
        }
        chain.pop();
        let context = EvalContext::for_star_file();
        let module = self.evaluate(ast, &loads, &context, label)?;
        let result = check_symbols(load, &module);
        self.star_modules.insert(label.clone(), module);
        result
    }

    fn module(&self, label: &Label) -> &FrozenModule {
        self.library
            .module(label)
            .or_else(|| self.star_modules.get(label))
            .expect("loads are evaluated before their users")
    }

    /// Evaluates a `.star` file whose loads are all evaluated, and freezes it.
    fn evaluate(
        &self,
        ast: AstModule,
        loads: &[LoadStmt],
        context: &EvalContext,
        label: &Label,
    ) -> Result<FrozenModule, LoadError> {
        let modules: HashMap<&str, &FrozenModule> =
            loads.iter().map(|load| (load.id.as_str(), self.module(&load.label))).collect();
        let loader = ReturnFileLoader { modules: &modules };
        let result = Module::with_temp_heap(|module| {
            let evaluated = {
                let mut eval = Evaluator::new(&module);
                eval.set_loader(&loader);
                eval.extra = Some(context);
                limits::apply(&mut eval);
                limits::guarded(&label.path(), || eval.eval_module(ast, &self.library.globals))
            };
            match evaluated {
                Ok(_) => module
                    .freeze_named(FrozenHeapName::User(Box::new(label.to_string())))
                    .map_err(|error| LoadError::Starlark(format!("Cannot freeze `{label}`: {error:?}"))),
                Err(error) => Err(error),
            }
        });
        result.map_err(|error| context.error.take().unwrap_or(error))
    }

    fn evaluate_build(&self, build: ParsedBuild) -> Result<(String, Vec<TargetNode>), LoadError> {
        let ParsedBuild { package, build_file, ast, loads } = build;
        let context = EvalContext::for_package(PackageContext {
            dir: self.workspace.package_dir(&package),
            package: package.clone(),
            build_file: build_file.clone(),
            targets: Default::default(),
            names: Default::default(),
        });
        let modules: HashMap<&str, &FrozenModule> =
            loads.iter().map(|load| (load.id.as_str(), self.module(&load.label))).collect();
        let loader = ReturnFileLoader { modules: &modules };
        let result = Module::with_temp_heap(|module| {
            let mut eval = Evaluator::new(&module);
            eval.set_loader(&loader);
            eval.extra = Some(&context);
            limits::apply(&mut eval);
            limits::guarded(&build_file, || eval.eval_module(ast, &self.library.globals)).map(|_| ())
        });
        if let Err(error) = result {
            return Err(context.error.take().unwrap_or(error));
        }
        let package_context = context.package.expect("a BUILD file is evaluated with its package");
        Ok((package, package_context.targets.into_inner()))
    }

    /// Turns every dependency into a target or a source file, and builds the graph.
    fn resolve(&self, loaded: BTreeMap<String, Vec<TargetNode>>) -> Result<TargetGraph, LoadError> {
        let empty = Label::parse(EMPTY_IMAGE, "").expect("a valid label");
        let mut targets: BTreeMap<Label, TargetNode> =
            loaded.into_values().flatten().map(|target| (target.label.clone(), target)).collect();
        let mut implicit = Vec::new();
        if !targets.contains_key(&empty) {
            targets.insert(empty.clone(), implicit_empty(&empty)?);
            implicit.push(empty);
        }
        // Which other dependencies are files, and executable ones, asked on
        // every core: one glob can name 30,000.
        let others: Vec<&Label> =
            targets.values().flat_map(|target| &target.deps).filter(|dep| !targets.contains_key(*dep)).collect();
        let files: FxHashMap<&Label, Option<bool>> = others
            .into_par_iter()
            .map(|dep| {
                let metadata = fs::metadata(self.workspace.root.join(dep.path())).ok();
                (dep, metadata.filter(|metadata| metadata.is_file()).map(|metadata| metadata.mode() & 0o111 != 0))
            })
            .collect();
        // Which directories of those files hold a BUILD file, asked on every
        // core too: a glob's files sit in thousands of directories. (Their
        // packages are those directories or, once each, asked below.)
        let dirs: FxHashSet<String> = files.par_iter().map(|(dep, _)| parent_dir(&dep.path()).to_owned()).collect();
        let mut package_dirs = PackageDirs {
            is_package: dirs
                .into_par_iter()
                .map(|dir| {
                    let is_package = self.workspace.build_file(&dir).is_some();
                    (dir, is_package)
                })
                .collect(),
            ..PackageDirs::default()
        };
        let mut sources: Vec<SourceFile> = Vec::with_capacity(files.len());
        let mut seen: FxHashSet<&Label> = FxHashSet::default();
        for target in targets.values() {
            for dep in &target.deps {
                if targets.contains_key(dep) || !seen.insert(dep) {
                    continue;
                }
                let source = self
                    .source_file(dep, files[dep], &mut package_dirs)
                    .map_err(|diagnostic| self.unknown_label(&targets, target, dep, diagnostic))?;
                sources.push(source);
            }
        }
        Ok(TargetGraph::new(targets.into_values(), sources, implicit)?)
    }

    /// The source file `label` names (`executable`: `Some` if a regular
    /// file exists there, with its execute bit), or why it names nothing.
    fn source_file(
        &self,
        label: &Label,
        executable: Option<bool>,
        package_dirs: &mut PackageDirs,
    ) -> Result<SourceFile, Option<Error>> {
        if !package_dirs.is_package(self.workspace, &label.package) {
            return Err(Some(self.no_such_package(label)));
        }
        let path = label.path();
        let Some(executable) = executable else { return Err(None) };
        // A file below a subpackage belongs to that package, not this one.
        if package_dirs.nearest_package(self.workspace, parent_dir(&path)) == Some(label.package.as_str()) {
            return Ok(SourceFile { label: label.clone(), path, executable });
        }
        let mut inner = label.package.clone();
        for part in label.name.split('/').collect::<Vec<_>>().split_last().map(|(_, dirs)| dirs).unwrap_or_default() {
            inner = if inner.is_empty() { (*part).to_owned() } else { format!("{inner}/{part}") };
            if package_dirs.is_package(self.workspace, &inner) {
                let rest = &path[inner.len() + 1..];
                return Err(Some(
                    Error::user(format!("`{label}` names a file of another package, `//{inner}`"))
                        .with_hint(format!("write `//{inner}:{rest}`")),
                ));
            }
        }
        Ok(SourceFile { label: label.clone(), path, executable })
    }

    fn no_such_package(&self, label: &Label) -> Error {
        let diagnostic = Error::user(format!("Package `//{}` of `{label}` does not exist", label.package));
        // `//app/data:f.txt` where `app/data/f.txt` belongs to `//app`: walk up to the nearest package.
        let mut package = label.package.as_str();
        while !package.is_empty() {
            let parent = package.rsplit_once('/').map_or("", |(parent, _)| parent);
            if self.workspace.build_file(parent).is_some() {
                let rest = &label.path()[if parent.is_empty() { 0 } else { parent.len() + 1 }..];
                if self.workspace.root.join(label.path()).is_file() {
                    return diagnostic
                        .with_hint(format!("the file belongs to `//{parent}`: write `//{parent}:{rest}`"));
                }
                break;
            }
            package = parent;
        }
        diagnostic.with_hint("a package is a directory holding `BUILD.star`")
    }

    fn unknown_label(
        &self,
        targets: &BTreeMap<Label, TargetNode>,
        target: &TargetNode,
        dep: &Label,
        diagnostic: Option<Error>,
    ) -> LoadError {
        let attr = naming_attr(target, dep).map(|attr| format!("`{attr}` of ")).unwrap_or_default();
        let context = format!(" (named by {attr}`{}`)", target.label);
        let diagnostic = match diagnostic {
            Some(mut diagnostic) => {
                diagnostic.message.push_str(&context);
                diagnostic
            }
            None => {
                let build_file = self.workspace.build_file(&dep.package).unwrap_or_default();
                let names: Vec<&str> = targets
                    .keys()
                    .filter(|label| label.package == dep.package)
                    .map(|label| label.name.as_str())
                    .collect();
                let hint = match closest(&dep.name, names.iter().copied()) {
                    Some(near) => format!("did you mean `{}`?", Label { name: near.to_owned(), ..dep.clone() }),
                    None => "a label names a target, or a file of its package".to_owned(),
                };
                Error::user(format!("Target `{dep}` not found in `{build_file}`{context}")).with_hint(hint)
            }
        };
        diagnostic.at(target.location.clone()).into()
    }
}

/// The attribute of `target` whose value names `dep`: of several, the first
/// in alphabetical order, as berth has always named it.
fn naming_attr(target: &TargetNode, dep: &Label) -> Option<&'static str> {
    target.attrs.labels().into_iter().filter(|(_, label)| *label == dep).map(|(attr, _)| attr).min()
}

/// `//:empty`: an `oci_image_empty` with every attribute at its default.
fn implicit_empty(label: &Label) -> Result<TargetNode, LoadError> {
    let kind = RuleKind::OciImageEmpty;
    let values = kind.attrs().iter().map(|attr| attr.default_value()).collect();
    let attrs = RuleAttrs::from_values(kind, values).map_err(|error| LoadError::Internal(error.to_string()))?;
    let location = Location { path: crate::workspace::WORKSPACE_FILE.to_owned(), line: 1, column: 1 };
    Ok(TargetNode::new(label.clone(), attrs, location))
}

fn read(root: &Path, path: &str) -> Result<String, LoadError> {
    fs::read_to_string(root.join(path)).map_err(|source| LoadError::Io { path: path.to_owned(), source })
}

fn location_of(span: &starlark::codemap::FileSpan) -> Location {
    let begin = span.resolve_span().begin;
    Location { path: span.filename().to_owned(), line: begin.line as u32 + 1, column: begin.column as u32 + 1 }
}

fn resolve_loads(ast: &AstModule, context: &Label) -> Result<Vec<LoadStmt>, LoadError> {
    ast.loads()
        .into_iter()
        .map(|load| {
            let location = location_of(&load.span);
            let label = peer_library(load.module_id).map_or_else(|| Label::parse_in(load.module_id, context), Ok);
            let label = label.map_err(|error| {
                Error::user(format!("Cannot load `{}`: {error}", load.module_id))
                    .at(location.clone())
                    .with_hint("load workspace files as `//pkg:file.star` and the library as `@berth//rules:defs.star`")
            })?;
            let symbols = load.symbols.values().map(|their| (*their).to_owned()).collect();
            Ok(LoadStmt { id: load.module_id.to_owned(), label, location, symbols })
        })
        .collect()
}

/// rules_oci's own load labels, which rules_oci BUILD files start with:
/// berth's library defines the same names (`oci_image`, `oci_pull`,
/// `oci_push`, `oci_load`, `oci_image_index`), so they load from it.
fn peer_library(module_id: &str) -> Option<Label> {
    matches!(module_id, "@rules_oci//oci:defs.bzl" | "@rules_oci//oci:pull.bzl").then(|| library_label("defs.star"))
}

fn check_symbols(load: &LoadStmt, module: &FrozenModule) -> Result<(), LoadError> {
    let names: Vec<String> = module.names().map(|name| name.as_str().to_owned()).collect();
    for symbol in &load.symbols {
        if !names.contains(symbol) {
            let hint = match closest(symbol, names.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None if symbol.starts_with('_') => "names starting with `_` are private to their file".to_owned(),
                None => format!("`{}` defines {}", load.label, list(&names)),
            };
            return Err(Error::user(format!("`{}` has no symbol `{symbol}`", load.label))
                .at(load.location.clone())
                .with_hint(hint)
                .into());
        }
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "nothing public".to_owned();
    }
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

fn missing_star_file(root: &Path, label: &Label, path: &str) -> Error {
    let diagnostic = Error::user(format!("Cannot load `{label}`: `{path}` does not exist"));
    let dir = root.join(&label.package);
    let siblings: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".star") && !BUILD_FILES.contains(&name.as_str()))
        .collect();
    match closest(&label.name, siblings.iter().map(String::as_str)) {
        Some(near) => {
            diagnostic.with_hint(format!("did you mean `{}`?", Label { name: near.to_owned(), ..label.clone() }))
        }
        None => diagnostic.with_hint("load workspace files by label, as in `//tools:defs.star`"),
    }
}

/// The directory of a workspace-relative path (`""` at the root).
fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Which directories hold a BUILD file, and the package each directory
/// belongs to, each asked once: the sources of a 30,000-file glob share a few
/// thousand directories.
#[derive(Default)]
struct PackageDirs {
    is_package: FxHashMap<String, bool>,
    nearest: FxHashMap<String, Option<String>>,
}

impl PackageDirs {
    fn is_package(&mut self, workspace: &Workspace, package: &str) -> bool {
        if let Some(&known) = self.is_package.get(package) {
            return known;
        }
        let known = workspace.build_file(package).is_some();
        self.is_package.insert(package.to_owned(), known);
        known
    }

    /// The deepest package at or above the workspace-relative `dir`.
    fn nearest_package(&mut self, workspace: &Workspace, dir: &str) -> Option<&str> {
        if !self.nearest.contains_key(dir) {
            let nearest = if self.is_package(workspace, dir) {
                Some(dir.to_owned())
            } else if dir.is_empty() {
                None
            } else {
                self.nearest_package(workspace, parent_dir(dir)).map(str::to_owned)
            };
            self.nearest.insert(dir.to_owned(), nearest);
        }
        self.nearest[dir].as_deref()
    }
}
