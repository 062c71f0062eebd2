//! `oci_layer`: a declarative layer from files, inline contents, symlinks
//! and directories, and one layer from several sources: `srcs` may name
//! other `oci_layer` targets (their entries join this layer's), and
//! `deb_layer` and `oci_build_layer` targets and tar files, whose layers are
//! merged with the declarative parts by a `merge_layers` action, later
//! `srcs` winning.

use crate::actions::MergeLayers;
use crate::analysis::layer_contents::{layer_entries, LayerSource, SourceRef};
use crate::analysis::rules::image_build::is_layer_archive;
use crate::analysis::{at, shared, Analyzer, LayerInfo, Provider};
use crate::error::Result;
use crate::graph::{OciLayerAttrs, TargetNode};
use crate::oci::Compression;

/// A run of `srcs`: declarative entries to plan, or a layer blob to merge.
enum Part {
    Planned(Vec<LayerSource>),
    Blob(crate::actions::ActionId),
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciLayerAttrs) -> Result<Provider> {
    let mut parts: Vec<Part> = vec![Part::Planned(Vec::new())];
    for label in &attrs.srcs {
        if let Some(path) = analyzer.source_path(label).map(str::to_owned) {
            if is_layer_archive(&path) {
                parts.push(Part::Blob(analyzer.import_tar(label, &path)));
            } else {
                planned(&mut parts, LayerSource::File(SourceRef::new(label)));
            }
            continue;
        }
        match analyzer.provider(label)? {
            Provider::Files(files) => planned(&mut parts, LayerSource::Entries(files.entries.as_ref().clone())),
            Provider::Layer(LayerInfo::Planned { entries, .. }) => {
                planned(&mut parts, LayerSource::Layer(entries.as_ref().clone()))
            }
            Provider::Layer(LayerInfo::Built { action, .. }) => parts.push(Part::Blob(*action)),
            other => {
                return Err(at(
                    target,
                    format!("`srcs` of `{}` names `{label}`, which is {}", target.label, other.describe()),
                )
                .with_hint(
                    "`srcs` takes source files, tar files, and `files`, `oci_layer`, `deb_layer` and `oci_build_layer` targets",
                ))
            }
        }
    }
    if !parts.iter().any(|part| matches!(part, Part::Blob(_))) {
        let sources = match parts.pop() {
            Some(Part::Planned(sources)) => sources,
            _ => Vec::new(),
        };
        let entries = layer_entries(target, attrs, sources)?;
        let main_output = entries.first().map(|entry| entry.path.clone());
        return Ok(Provider::Layer(LayerInfo::Planned { entries: shared(entries), main_output }));
    }
    // The layer's own `files`, `contents`, `symlinks` and `directories`
    // come last, as they do in a declarative layer.
    parts.push(Part::Planned(Vec::new()));
    let count = parts.len();
    let mut layers = Vec::new();
    for (index, part) in parts.into_iter().enumerate() {
        match part {
            Part::Blob(action) => layers.push(action),
            Part::Planned(sources) => {
                let own = index + 1 == count;
                if sources.is_empty() && !own {
                    continue;
                }
                let entries =
                    if own { layer_entries(target, attrs, sources)? } else { placed(target, attrs, sources)? };
                if entries.is_empty() {
                    continue;
                }
                let label = target.label.clone();
                layers.push(analyzer.pack_part(&label, index, &entries)?);
            }
        }
    }
    let merge =
        MergeLayers { layers, compression: Compression::Gzip, source_date_epoch: analyzer.ctx.source_date_epoch };
    let action = analyzer.actions.add(target.label.clone(), Box::new(merge));
    Ok(Provider::Layer(LayerInfo::Built { action, main_output: None, output_path: None }))
}

/// Adds a declarative source to the run of `srcs` at the end of `parts`.
fn planned(parts: &mut Vec<Part>, source: LayerSource) {
    match parts.last_mut() {
        Some(Part::Planned(sources)) => sources.push(source),
        _ => parts.push(Part::Planned(vec![source])),
    }
}

/// The entries of a run of `srcs` alone (the layer's own content
/// attributes are planned last, once).
fn placed(
    target: &TargetNode,
    attrs: &OciLayerAttrs,
    sources: Vec<LayerSource>,
) -> Result<Vec<crate::analysis::PlannedEntry>> {
    let only_srcs = OciLayerAttrs {
        files: Vec::new(),
        contents: Vec::new(),
        symlinks: Vec::new(),
        directories: Vec::new(),
        ..attrs.clone()
    };
    layer_entries(target, &only_srcs, sources)
}
