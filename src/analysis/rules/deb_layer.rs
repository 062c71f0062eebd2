//! `deb_layer`: a layer from the data archives of `.deb` source files, each
//! pinned by its sha256. The layer is built by one `deb_layer` action
//! (`actions::DebLayer`), gzip-compressed like an image's default layers.

use std::path::PathBuf;

use crate::actions::DebLayer;
use crate::analysis::{at, Analyzer, LayerInfo, Provider};
use crate::error::{Error, Result};
use crate::graph::{DebLayerAttrs, TargetNode};
use crate::oci::Compression;

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &DebLayerAttrs) -> Result<Provider> {
    let mut debs = Vec::new();
    for label in &attrs.debs {
        match analyzer.source_path(label) {
            Some(path) => debs.push(PathBuf::from(path)),
            None => {
                return Err(at(
                    target,
                    format!("`debs` of `{}` names `{label}`, which is a target, not a `.deb` file", target.label),
                )
                .with_hint("`debs` takes the `.deb` files of the package (fetch them with `scripts/fetch-debs.sh`)"))
            }
        }
    }
    let action = DebLayer::new(debs, &attrs.sha256s, Compression::Gzip, analyzer.ctx.source_date_epoch)
        .map_err(|error| Error::from(error).context(format!("`{}`", target.label)).at(target.location.clone()))?;
    let action = analyzer.actions.add(target.label.clone(), Box::new(action));
    Ok(Provider::Layer(LayerInfo::Built { action, main_output: None, output_path: None }))
}
