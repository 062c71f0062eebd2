//! One analysis function per native kind: a target's typed attributes and
//! its dependencies' providers in, its provider (and registered actions)
//! out.

mod build_layer;
mod deb_layer;
mod dockerfile;
mod files;
mod image_build;
mod image_index;
mod import_image;
mod oci_layer;
mod push_load;
mod pull_image;

pub use pull_image::PulledIndexBase;

use crate::analysis::{Analyzer, Provider};
use crate::error::Result;
use crate::graph::{RuleAttrs, TargetNode};

pub fn analyze_target(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    match &target.attrs {
        RuleAttrs::Files(attrs) => files::analyze(analyzer, target, attrs),
        RuleAttrs::OciLayer(attrs) => oci_layer::analyze(analyzer, target, attrs),
        RuleAttrs::OciImageEmpty(attrs) => image_build::analyze_empty(analyzer, target, attrs),
        RuleAttrs::OciImageBuild(attrs) => image_build::analyze(analyzer, target, attrs),
        RuleAttrs::OciImageIndex(attrs) => image_index::analyze(analyzer, target, attrs),
        RuleAttrs::OciPullImage(attrs) => pull_image::analyze(analyzer, target, attrs),
        RuleAttrs::OciBuildLayer(attrs) => build_layer::analyze(analyzer, target, attrs),
        RuleAttrs::DebLayer(attrs) => deb_layer::analyze(analyzer, target, attrs),
        RuleAttrs::OciImport(attrs) => import_image::analyze(analyzer, target, attrs),
        RuleAttrs::OciPush(attrs) => push_load::analyze_push(analyzer, target, attrs),
        RuleAttrs::OciLoad(attrs) => push_load::analyze_load(analyzer, target, attrs),
        RuleAttrs::OciDockerfile(attrs) => dockerfile::analyze(analyzer, target, attrs),
    }
}
