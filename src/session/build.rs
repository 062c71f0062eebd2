//! Opens a workspace and its cache, and builds patterns through every phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::actions::{ActionId, ActionResult, ExecutionContext};
use crate::analysis::{analyze, Analysis, AnalysisContext, Provider};
use crate::cache::{Cache, CacheError, Digest, FileMemo};
use crate::error::{Error, Result};
use crate::exec::{BuildLog, BuildResult, ExecSettings, Executor, LocalSandbox};
use crate::frontend;
use crate::registry::{ClientOptions, RegistryHandle};
use crate::remote::{RemoteCache, DEFAULT_DEADLINE};
use crate::report::{Event, Reporter};
use crate::session::published::published_blobs;
use crate::session::{corrupt_published, TargetOutput};
use crate::workspace::{Label, Pattern, RemoteCacheSetting, RemoteCacheUrl, Workspace};

/// The remote cache the options and the workspace ask for; none when
/// offline (`--offline` never touches the network).
fn remote_cache(
    workspace: &Workspace,
    options: &SessionOptions,
    registry: &ClientOptions,
) -> Result<Option<Arc<RemoteCache>>> {
    let setting = match &options.remote_cache {
        _ if options.offline => None,
        RemoteCacheChoice::Off => None,
        RemoteCacheChoice::Url(url) => Some(RemoteCacheSetting { url: url.clone(), read_only: false }),
        RemoteCacheChoice::Workspace => workspace.settings.remote_cache.clone(),
    };
    let Some(RemoteCacheSetting { url, read_only }) = setting else {
        return Ok(None);
    };
    Ok(Some(Arc::new(RemoteCache::new(url, read_only, DEFAULT_DEADLINE, registry.clone())?)))
}

/// What a session needs from the command line.
pub struct SessionOptions {
    pub cache_dir: PathBuf,
    pub jobs: usize,
    pub offline: bool,
    /// `--stamp`: fill `{KEY}` placeholders from the workspace status command.
    pub stamp: bool,
    pub remote_cache: RemoteCacheChoice,
}

/// Which remote cache a session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCacheChoice {
    /// `remote_cache(...)` of `WORKSPACE.star`, if any.
    Workspace,
    /// `--remote-cache URL` / `BERTH_REMOTE_CACHE`: wins over the workspace.
    Url(RemoteCacheUrl),
    /// `--no-remote-cache`.
    Off,
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
            workspace_root: Some(workspace.root.clone()),
            offline: options.offline,
            ..ClientOptions::default()
        });
        let remote = remote_cache(&workspace, &options, registry.options())?;
        let exec = ExecSettings {
            runc: workspace.settings.runc.clone(),
            limits: workspace.settings.limits.clone(),
            remote,
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
        let mut graph = frontend::load(&self.workspace, patterns)?;
        if self.options.stamp {
            let values = crate::session::stamp::workspace_status(&self.workspace)?;
            crate::session::stamp::apply(&mut graph, &values);
        }
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
        let result = self.execute(&analysis, &labels, &actions, &memo()?)?;
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

    /// [`Session::build`], then every blob the command is about to publish
    /// is checked by content (see [`corrupt_published`]; `skip` leaves out
    /// blobs already published). A corrupt blob is removed, the action
    /// results that name it are dropped, and the build runs again, which
    /// rebuilds or fetches it again: a warning, not a failure. A blob
    /// corrupt again after that is an environment error (the disk).
    pub fn build_checked(
        &self,
        patterns: &[Pattern],
        fetch_layers: bool,
        skip: &dyn Fn(&Built, &Label, &Digest) -> bool,
    ) -> Result<Built> {
        let mut built = self.build(patterns, fetch_layers)?;
        // A corrupt manifest hides its children until it is rebuilt: heal in
        // rounds, each blob at most once.
        let mut healed: Vec<Digest> = Vec::new();
        loop {
            let corrupt = corrupt_published(&self.cache.cas, &built, &|label, digest| skip(&built, label, digest))?;
            if corrupt.is_empty() {
                return Ok(built);
            }
            if let Some(digest) = corrupt.iter().find(|digest| healed.contains(digest)) {
                return Err(Error::environment(format!(
                    "Blob `{digest}` is corrupt again after it was rebuilt or fetched again; it was removed"
                ))
                .with_hint("the disk under the cache may be failing; `berth cache verify` checks the whole cache"));
            }
            for digest in &corrupt {
                let message = format!(
                    "Blob `{digest}` in the cache was corrupt (its bytes no longer hash to its digest); it was removed and is being rebuilt or fetched again"
                );
                self.reporter.report(&Event::Warning { message: &message });
            }
            self.drop_results_naming(&built, &corrupt)?;
            healed.extend(corrupt);
            built = self.build(patterns, fetch_layers)?;
        }
    }

    /// Forgets the action results of `built` that name one of `digests`, so
    /// the next build runs those actions again.
    fn drop_results_naming(&self, built: &Built, digests: &[Digest]) -> Result<()> {
        for (id, output) in &built.result.outputs {
            if output.blob_refs().any(|blob| digests.contains(&blob.digest)) {
                if let Some(record) = built.result.records.get(id) {
                    self.cache.ac.remove(&record.key)?;
                }
            }
        }
        Ok(())
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
        // `run`, `export` and `push` read every blob of the image.
        let built = self.build_checked(&[Pattern::Target(label.clone())], fetch_layers, &|_, _, _| false)?;
        let output = built
            .targets
            .get(&label)
            .cloned()
            .ok_or_else(|| Error::internal(format!("`{label}` was built but has no output")))?;
        Ok((built, output))
    }

    /// Runs `wanted` (and what they need), with the blobs `labels` publish
    /// in the local CAS, then records the build for `berth explain`.
    fn execute(
        &self,
        analysis: &Analysis,
        labels: &[Label],
        wanted: &[ActionId],
        memo: &FileMemo,
    ) -> Result<BuildResult> {
        let sandbox = LocalSandbox::new(self.cache.dir());
        let executor = Executor {
            cache: &self.cache,
            memo,
            sandbox: &sandbox,
            settings: &self.exec,
            reporter: self.reporter,
            jobs: self.options.jobs,
        };
        let published = |outputs: &BTreeMap<ActionId, ActionResult>| published_blobs(analysis, labels, outputs);
        let result = executor.run_publishing(&analysis.actions, wanted, &published)?;
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
