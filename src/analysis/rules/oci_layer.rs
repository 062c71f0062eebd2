//! `oci_layer`: a declarative layer from files, inline contents, symlinks
//! and directories.

use crate::analysis::layer_contents::{layer_entries, LayerSource, SourceRef};
use crate::analysis::{at, shared, Analyzer, LayerInfo, Provider};
use crate::error::Result;
use crate::graph::{OciLayerAttrs, TargetNode};

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciLayerAttrs) -> Result<Provider> {
    let mut srcs = Vec::new();
    for label in &attrs.srcs {
        if analyzer.source_path(label).is_some() {
            srcs.push(LayerSource::File(SourceRef::new(label)));
            continue;
        }
        match analyzer.provider(label)? {
            Provider::Files(files) => srcs.push(LayerSource::Entries(files.entries.as_ref().clone())),
            other => {
                return Err(at(
                    target,
                    format!("`srcs` of `{}` names `{label}`, which is {}", target.label, other.describe()),
                )
                .with_hint("`srcs` takes source files and `files` targets; put layers in an image's `layers`"))
            }
        }
    }
    let entries = layer_entries(target, attrs, srcs)?;
    let main_output = entries.first().map(|entry| entry.path.clone());
    Ok(Provider::Layer(LayerInfo::Planned { entries: shared(entries), main_output }))
}
