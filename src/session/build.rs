//! Opens a workspace and its cache, and builds patterns through every phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::actions::{ActionId, ExecutionContext};
use crate::analysis::{analyze, Analysis, AnalysisContext, Provider};
use crate::cache::{Cache, CacheError, FileMemo};
use crate::error::{Error, Result};
use crate::exec::{BuildLog, BuildResult, ExecSettings, Executor, LocalSandbox};
use crate::frontend;
use crate::registry::{ClientOptions, RegistryHandle};
use crate::report::Reporter;
use crate::session::TargetOutput;
use crate::workspace::{Label, Pattern, Workspace};

/// What a session needs from the command line.
pub struct SessionOptions {
    pub cache_dir: PathBuf,
    pub jobs: usize,
    pub offline: bool,
}

/// An open workspace and cache, ready to build.
pub struct Session<'a> {
    pub workspace: Workspace,
    pub cache: Cache,
    pub options: SessionOptions,
    pub reporter: &'a dyn Reporter,
    /// The machine: runc, how roots are stacked, and the registry handle
    /// that analysis and execution share.
    pub exec: ExecSettings,
}

/// Everything a build produced: the analysed targets and their outputs.
pub struct Built {
    pub analysis: Analysis,
    pub result: BuildResult,
    /// The requested targets, sorted, each with what it built.
    pub targets: BTreeMap<Label, TargetOutput>,
}

impl<'a> Session<'a> {
    /// Finds the workspace around `cwd` and opens the cache (taking its
    /// shared lock, so `berth cache gc` waits for this build).
    pub fn open(cwd: &Path, options: SessionOptions, reporter: &'a dyn Reporter) -> Result<Session<'a>> {
        let workspace = crate::frontend::discover_workspace(cwd)?;
        let cache = Cache::open(&options.cache_dir)?;
        // What berth processes killed with SIGKILL left in this cache (and
        // their containers) goes before this one adds its own.
        crate::exec::sweep(cache.dir(), workspace.settings.runc.as_deref());
        let registry = RegistryHandle::new(ClientOptions {
            registries: workspace.settings.registries.clone(),
            offline: options.offline,
            ..ClientOptions::default()
        });
        let exec = ExecSettings {
            runc: workspace.settings.runc.clone(),
            limits: workspace.settings.limits.clone(),
            ..ExecSettings::new(Arc::new(registry))
        };
        Ok(Session { workspace, cache, options, reporter, exec })
    }

    /// `SOURCE_DATE_EPOCH` from the environment, else `source_date_epoch(N)`
    /// of `WORKSPACE.star`, else 0 (as reproducible-builds.org specifies).
    pub fn source_date_epoch(&self) -> Result<u64> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) if !text.is_empty() => text.trim().parse().map_err(|_| {
                Error::user(format!("`SOURCE_DATE_EPOCH` is `{text}`, not a number of seconds"))
                    .with_hint("unset it or set it to an integer such as 1700000000")
            }),
            _ => Ok(self.workspace.settings.source_date_epoch.unwrap_or(0)),
        }
    }

    /// Builds the targets the patterns name; nothing is written to
    /// `berth-out/` here (see [`crate::session::write_outputs`]). With
    /// `fetch_layers`, the layers of pulled bases are fetched too (for
    /// `run` and `export`, which need every byte); otherwise they stay in
    /// their registry.
    pub fn build(&self, patterns: &[Pattern], fetch_layers: bool) -> Result<Built> {
        // The file memo is read while the workspace loads: for a 30,000-file
        // workspace each takes tens of milliseconds.
        std::thread::scope(|scope| {
            let memo = scope.spawn(|| FileMemo::load(self.cache.dir(), &self.workspace.root));
            self.build_with(patterns, fetch_layers, || memo.join().expect("reading the memo does not panic"))
        })
    }

    /// [`Session::build`], given a way to wait for the memo being read.
    fn build_with(
        &self,
        patterns: &[Pattern],
        fetch_layers: bool,
        memo: impl FnOnce() -> std::result::Result<FileMemo, CacheError>,
    ) -> Result<Built> {
        let graph = frontend::load(&self.workspace, patterns)?;
        // Evaluating BUILD files freed the Starlark heaps and glob listings.
        frontend::release_freed_memory();
        let labels = graph.resolve_patterns(patterns)?;
        let ctx = AnalysisContext {
            graph: &graph,
            workspace_root: &self.workspace.root,
            source_date_epoch: self.source_date_epoch()?,
            cas: &self.cache.cas,
            registry: &self.exec.registry,
        };
        let analysis = analyze(&ctx, &labels)?;
        // Analysis holds what execution needs; the graph of a 30,000-file
        // glob is freed before the layer is packed.
        drop(graph);
        let wanted: BTreeMap<Label, ActionId> = analysis.default_outputs.clone();
        let mut actions: Vec<ActionId> = wanted.values().copied().collect();
        if fetch_layers {
            for provider in analysis.providers.values() {
                match provider {
                    Provider::Image(image) => actions.extend(&image.layer_blobs),
                    Provider::Index(index) => actions.extend(index.images.iter().flat_map(|image| &image.layer_blobs)),
                    Provider::Files(_) | Provider::Layer(_) => {}
                }
            }
        }
        let result = self.execute(&analysis, &actions, &memo()?)?;
        let mut targets = BTreeMap::new();
        for label in &labels {
            let output = match (analysis.providers.get(label), wanted.get(label)) {
                (Some(provider), Some(action)) => TargetOutput::of(provider, &result.outputs[action])?,
                _ => continue,
            };
            targets.insert(label.clone(), output);
        }
        Ok(Built { analysis, result, targets })
    }

    /// The package of the current directory (`""` at the root or outside
    /// any package), which relative labels and patterns are resolved in.
    pub fn current_package(&self) -> String {
        std::env::current_dir().ok().and_then(|cwd| self.workspace.package_of(&cwd)).unwrap_or_default()
    }

    /// Builds one label (written relative to the current directory's
    /// package, as `:img` or `//app:img`) and returns its output.
    pub fn build_label(&self, text: &str, fetch_layers: bool) -> Result<(Built, TargetOutput)> {
        let label = Label::parse(text, &self.current_package())?;
        let built = self.build(&[Pattern::Target(label.clone())], fetch_layers)?;
        let output = built
            .targets
            .get(&label)
            .cloned()
            .ok_or_else(|| Error::internal(format!("`{label}` was built but has no output")))?;
        Ok((built, output))
    }

    /// Runs `wanted` (and what they need), then records the build for
    /// `berth explain`.
    fn execute(&self, analysis: &Analysis, wanted: &[ActionId], memo: &FileMemo) -> Result<BuildResult> {
        let sandbox = LocalSandbox::new(self.cache.dir());
        let executor = Executor {
            cache: &self.cache,
            memo,
            sandbox: &sandbox,
            settings: &self.exec,
            reporter: self.reporter,
            jobs: self.options.jobs,
        };
        let result = executor.run(&analysis.actions, wanted)?;
        BuildLog::new(&analysis.actions, &result).save(&self.workspace.out_dir())?;
        Ok(result)
    }
}

impl Session<'_> {
    /// The context a build's actions run with, for commands that use the
    /// machine outside a build (`berth run`'s container).
    pub fn execution_context(&self) -> ExecutionContext {
        self.exec.context(&self.cache)
    }
}

impl Built {
    pub fn provider(&self, label: &Label) -> Option<&Provider> {
        self.analysis.providers.get(label)
    }
}
