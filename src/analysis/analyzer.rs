//! The analysis phase: walks the requested targets in dependency order, asks
//! each rule for its provider, and collects the actions they register.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::actions::{ActionGraph, ActionId, ImportTar, PackLayer};
use crate::analysis::rules;
use crate::analysis::rules::PulledIndexBase;
use crate::analysis::{FilesInfo, LayerInfo, PlannedContent, PlannedEntry, Provider};
use crate::cache::Cas;
use crate::error::{Error, Result};
use crate::graph::{TargetGraph, TargetNode};
use crate::oci::{Compression, LayerEntry};
use crate::registry::{Client, PulledImage, RegistryHandle};
use crate::workspace::Label;

/// What analysis needs besides the target graph.
pub struct AnalysisContext<'a> {
    pub graph: &'a TargetGraph,
    pub workspace_root: &'a Path,
    /// `created` of configs and the mtime of layer entries that set none.
    pub source_date_epoch: u64,
    /// Pulled manifests and configs are resolved into it during analysis.
    pub cas: &'a Cas,
    /// The session's registry client (`registry(...)` settings,
    /// `--offline`), made on the first pull and shared with execution.
    pub registry: &'a RegistryHandle,
}

/// The result of analysis: every registered action, each requested
/// target's provider, and the action that makes its main artifact.
#[derive(Debug)]
pub struct Analysis {
    pub actions: ActionGraph,
    pub providers: BTreeMap<Label, Provider>,
    /// Image → its manifest action; index → its index action; layer and
    /// `files` → the action packing it (gzip, as an image would by default).
    pub default_outputs: BTreeMap<Label, ActionId>,
    /// Every pulled image analysed: where a push mounts or fetches the
    /// layers that were never downloaded.
    pub pulled: Vec<PulledImage>,
}

/// Runs analysis for `labels` (and everything they depend on).
pub fn analyze(ctx: &AnalysisContext<'_>, labels: &[Label]) -> Result<Analysis> {
    let mut analyzer = Analyzer {
        ctx,
        actions: ActionGraph::default(),
        providers: HashMap::new(),
        packed: HashMap::new(),
        imported: HashMap::new(),
        // Loading learnt each source's execute bit.
        executable: ctx.graph.source_files().map(|source| (source.path.clone(), source.executable)).collect(),
        pulled: Vec::new(),
        pulled_indexes: HashMap::new(),
    };
    // Dependencies first, so each rule finds its deps' providers ready.
    for target in ctx.graph.dependency_order(labels) {
        let provider = rules::analyze_target(&mut analyzer, target)?;
        analyzer.providers.insert(target.label.clone(), provider);
    }
    let mut providers = BTreeMap::new();
    let mut default_outputs = BTreeMap::new();
    for label in labels {
        let provider = analyzer.provider(label)?.clone();
        let action = match &provider {
            Provider::Image(image) => image.image,
            Provider::Index(index) => index.index,
            Provider::Layer(LayerInfo::Built { action, .. }) => *action,
            Provider::Files(FilesInfo { entries }) | Provider::Layer(LayerInfo::Planned { entries, .. }) => {
                analyzer.pack(label, &entries.clone(), Compression::Gzip)?
            }
        };
        default_outputs.insert(label.clone(), action);
        providers.insert(label.clone(), provider);
    }
    Ok(Analysis { actions: analyzer.actions, providers, default_outputs, pulled: analyzer.pulled })
}

/// The state rules work against while analysis runs.
pub struct Analyzer<'a> {
    pub ctx: &'a AnalysisContext<'a>,
    pub actions: ActionGraph,
    providers: HashMap<Label, Provider>,
    /// One `pack_layer` per (layer, compression), however many images use it.
    packed: HashMap<(Label, Compression), ActionId>,
    /// One `import_tar` per archive, by workspace path.
    imported: HashMap<String, ActionId>,
    /// Whether a source file has an execute bit, by workspace path.
    executable: FxHashMap<String, bool>,
    pub pulled: Vec<PulledImage>,
    /// Pulls whose digest names an index, for `base_index` and `platform`
    /// picks of the images built on them.
    pub pulled_indexes: HashMap<Label, PulledIndexBase>,
}

impl Analyzer<'_> {
    /// The provider of a dependency (analysed earlier, in dependency order).
    pub fn provider(&self, label: &Label) -> Result<&Provider> {
        self.providers
            .get(label)
            .ok_or_else(|| Error::internal(format!("`{label}` was not analysed before its dependents")))
    }

    /// The registry client, made on first use.
    pub fn registry(&self) -> Result<Arc<Client>> {
        Ok(self.ctx.registry.client()?)
    }

    /// Whether `label` names a source file rather than a target.
    pub fn source_path(&self, label: &Label) -> Option<&str> {
        self.ctx.graph.source_file(label).map(|source| source.path.as_str())
    }

    /// Registers (once per file) the action that uses the archive `label`,
    /// a source file at the workspace-relative `path`, as a layer.
    pub fn import_tar(&mut self, label: &Label, path: &str) -> ActionId {
        if let Some(id) = self.imported.get(path) {
            return *id;
        }
        let id = self.actions.add(label.clone(), Box::new(ImportTar { source: PathBuf::from(path) }));
        self.imported.insert(path.to_owned(), id);
        id
    }

    /// Registers the action that packs one declarative run of an
    /// `oci_layer`'s `srcs` (the `part`-th), uncompressed, for
    /// `merge_layers` to merge with the layers around it.
    pub fn pack_part(&mut self, layer: &Label, part: usize, entries: &[PlannedEntry]) -> Result<ActionId> {
        let key = Label { name: format!("{}#part{part}", layer.name), ..layer.clone() };
        let id = self.pack(&key, entries, Compression::None)?;
        Ok(id)
    }

    /// Registers (once per layer target and compression) the action that
    /// packs planned entries into a layer blob.
    /// The action belongs to the layer target, whichever image asked first.
    pub fn pack(&mut self, layer: &Label, entries: &[PlannedEntry], compression: Compression) -> Result<ActionId> {
        if let Some(id) = self.packed.get(&(layer.clone(), compression)) {
            return Ok(*id);
        }
        let mut sources: Vec<PathBuf> = Vec::new();
        let mut source_index: FxHashMap<&str, usize> = FxHashMap::default();
        let mut layer_entries = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut layer_entry = match &entry.content {
                PlannedContent::Source(path) => {
                    let index = *source_index.entry(path).or_insert_with(|| {
                        sources.push(PathBuf::from(path));
                        sources.len() - 1
                    });
                    let executable = match self.executable.get(path.as_str()) {
                        Some(executable) => *executable,
                        None => is_executable(self.ctx.workspace_root, layer, path)?,
                    };
                    LayerEntry::file(&entry.path, index, executable)
                }
                PlannedContent::Contents(text) => LayerEntry::contents(&entry.path, text.as_str()),
                PlannedContent::Symlink(target) => LayerEntry::symlink(&entry.path, target.as_str()),
                PlannedContent::Directory => LayerEntry::directory(&entry.path),
            };
            if let Some(mode) = entry.mode {
                layer_entry = layer_entry.with_mode(mode);
            }
            if entry.uid != 0 || entry.gid != 0 {
                layer_entry = layer_entry.with_owner(entry.uid, entry.gid);
            }
            if let Some(mtime) = entry.mtime {
                layer_entry = layer_entry.with_mtime(mtime);
            }
            layer_entries.push(layer_entry);
        }
        let action = PackLayer {
            sources,
            entries: layer_entries,
            compression,
            source_date_epoch: self.ctx.source_date_epoch,
            threads: 0,
        };
        let id = self.actions.add(layer.clone(), Box::new(action));
        self.packed.insert((layer.clone(), compression), id);
        Ok(id)
    }
}

/// Executable sources are packed 0755, others 0644; the bit is part of the
/// action's params, so `chmod +x` rebuilds the layer. Loading learnt it for
/// every source label; this asks the file system for any other path.
fn is_executable(root: &Path, layer: &Label, path: &str) -> Result<bool> {
    let metadata = std::fs::metadata(root.join(path)).map_err(|error| {
        Error::user(format!("Source file `{path}` of `{layer}` cannot be read: {error}"))
            .with_hint("check that the file exists and is readable")
    })?;
    if !metadata.is_file() {
        return Err(Error::user(format!("Source `{path}` of `{layer}` is not a regular file"))
            .with_hint(format!("name files, or use `glob([\"{path}/**\"])` for a directory's files")));
    }
    Ok(metadata.permissions().mode() & 0o111 != 0)
}

/// A user error about `target`, pointing at the target's declaration (the
/// front-end points its own errors the same way); add a hint with
/// `.with_hint(..)`.
pub fn at(target: &TargetNode, message: impl Into<String>) -> Error {
    Error::user(message).at(target.location.clone())
}

/// The label of a target as the history's `created_by` and errors show it.
pub fn created_by(target: &TargetNode) -> String {
    format!("berth {} {}", target.kind(), target.label)
}

/// Shares an entry list between the providers that hold it.
pub fn shared(entries: Vec<PlannedEntry>) -> Rc<Vec<PlannedEntry>> {
    Rc::new(entries)
}
