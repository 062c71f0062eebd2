//! One analysis function per native kind: a target's attributes and its
//! dependencies' providers in, its provider (and registered actions) out.

mod build_layer;
mod deb_layer;
mod files;
mod image_build;
mod image_index;
mod oci_layer;
mod pull_image;

use crate::analysis::{Analyzer, Provider};
use crate::error::{Error, Result};
use crate::graph::TargetNode;

pub fn analyze_target(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    match target.kind.as_str() {
        "files" => files::analyze(analyzer, target),
        "oci_layer" => oci_layer::analyze(analyzer, target),
        "oci_image_empty" => image_build::analyze_empty(analyzer, target),
        "oci_image_build" => image_build::analyze(analyzer, target),
        "oci_image_index" => image_index::analyze(analyzer, target),
        "oci_pull_image" => pull_image::analyze(analyzer, target),
        "oci_build_layer" => build_layer::analyze(analyzer, target),
        "deb_layer" => deb_layer::analyze(analyzer, target),
        other => Err(Error::internal(format!("`{}` has the unknown kind `{other}`", target.label))),
    }
}
