//! `pack_layer`: a declarative layer (`oci_layer`, `files` used as a package)
//! packed from its source files into a compressed layer blob.
//!
//! Output: a [`LayerOutput`], as every kind that makes a layer.

use std::path::PathBuf;

use crate::actions::{Action, ActionContext, ActionResult, Input, LayerOutput, ResolvedInput};
use crate::cache::CanonicalJson;
use crate::error::Result;
use crate::oci::{Body, Compression, EntryKind, EntryMeta, FileSource, LayerBuilder, LayerEntry, OciError, Origin};

/// Packs `entries` into one layer.
///
/// Built by analysis:
/// ```
/// # use berth::actions::PackLayer;
/// # use berth::oci::{Compression, LayerEntry};
/// let action = PackLayer {
///     sources: vec!["app/main.py".into()],
///     entries: vec![
///         LayerEntry::file("/app/main.py", 0, false),
///         LayerEntry::contents("/etc/motd", "hello\n").with_mode(0o600),
///         LayerEntry::symlink("/usr/bin/app", "/app/main.py"),
///     ],
///     compression: Compression::Gzip,
///     source_date_epoch: 0,
///     threads: 0,
/// };
/// ```
#[derive(Debug, Clone)]
pub struct PackLayer {
    /// Workspace-relative source files, in the order `EntryKind::File { source }`
    /// indexes them; they become the action's inputs in that order.
    pub sources: Vec<PathBuf>,
    /// The layer's entries; missing parent directories are added (0755).
    pub entries: Vec<LayerEntry>,
    pub compression: Compression,
    /// The mtime of entries that set none (the workspace's
    /// `source_date_epoch(N)`, else 0).
    pub source_date_epoch: u64,
    /// Threads compressing gzip blocks; 0 means every core. Not a param: it
    /// never changes the bytes.
    pub threads: usize,
}

impl PackLayer {
    /// An empty layer; add entries with [`PackLayer::push`] and
    /// [`PackLayer::push_source`].
    pub fn new(compression: Compression, source_date_epoch: u64) -> PackLayer {
        PackLayer { sources: Vec::new(), entries: Vec::new(), compression, source_date_epoch, threads: 0 }
    }

    /// Adds a file at `path` with the bytes of the workspace-relative
    /// `source` as a new input, and returns the entry to set its mode, owner
    /// or mtime. (Callers that use one source at several paths may instead
    /// push [`LayerEntry::file`] entries that share an index.)
    pub fn push_source(
        &mut self,
        path: impl Into<String>,
        source: impl Into<PathBuf>,
        executable: bool,
    ) -> &mut LayerEntry {
        self.sources.push(source.into());
        let index = self.sources.len() - 1;
        self.push(LayerEntry::file(path, index, executable))
    }

    /// Adds an entry that reads no source (contents, symlink, directory).
    pub fn push(&mut self, entry: LayerEntry) -> &mut LayerEntry {
        self.entries.push(entry);
        self.entries.last_mut().expect("just pushed")
    }
}

impl Action for PackLayer {
    fn kind(&self) -> &'static str {
        "pack_layer"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        /// Borrowed: a 30,000-entry layer's entries are written straight to
        /// canonical text, never copied into a JSON tree.
        #[derive(serde::Serialize)]
        struct Params<'a> {
            entries: &'a [LayerEntry],
            compression: Compression,
            source_date_epoch: u64,
        }
        CanonicalJson::of(&Params {
            entries: &self.entries,
            compression: self.compression,
            source_date_epoch: self.source_date_epoch,
        })
    }

    fn inputs(&self) -> Vec<Input> {
        self.sources.iter().cloned().map(Input::Source).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let bad_inputs = |reason: String| OciError::BadInputs { kind: "pack_layer", reason };
        if ctx.inputs.len() != self.sources.len() {
            return Err(bad_inputs(format!("{} inputs for {} sources", ctx.inputs.len(), self.sources.len())).into());
        }
        let mut builder = LayerBuilder::new(self.source_date_epoch);
        for entry in &self.entries {
            let body = match &entry.kind {
                EntryKind::File { source, executable } => match ctx.inputs.get(*source) {
                    Some(ResolvedInput::Source { path, digest, size, settled }) => Body::File {
                        source: FileSource::Path {
                            path: path.clone(),
                            size: *size,
                            origin: if *settled { Origin::Source } else { Origin::UnsettledSource(*digest) },
                        },
                        executable: *executable,
                    },
                    _ => return Err(bad_inputs(format!("entry `{}` names no source file", entry.path)).into()),
                },
                EntryKind::Contents { contents } => {
                    Body::File { source: FileSource::Bytes(contents.as_bytes().to_vec()), executable: false }
                }
                EntryKind::Symlink { target } => Body::Symlink { target: target.clone() },
                EntryKind::Directory => Body::Directory,
            };
            let meta: EntryMeta = entry.meta();
            builder.add(&entry.path, meta, body)?;
        }
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            threads => threads,
        };
        let packed = builder.write_to_cas(ctx.cas(), self.compression, threads)?;
        Ok(LayerOutput::packed(&packed).to_result())
    }
}
