//! `oci_image_index`: a multi-platform index of images.

use crate::actions::WriteIndex;
use crate::analysis::rules::image_build::{repository, string_pairs, tags};
use crate::analysis::{at, Analyzer, IndexInfo, Provider};
use crate::error::Result;
use crate::graph::TargetNode;

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    let mut images = Vec::new();
    for label in target.labels("images") {
        match analyzer.provider(label)? {
            Provider::Image(image) => images.push(image.clone()),
            other => {
                return Err(at(
                    target,
                    format!(
                        "`images` of `{}` names `{label}`, which is {}, not an image",
                        target.label,
                        other.describe()
                    ),
                ))
            }
        }
    }
    let annotations = string_pairs(target, "annotations")?.into_iter().collect();
    let action = WriteIndex {
        images: images.iter().map(|image| image.image).collect(),
        image_labels: target.labels("images").iter().map(|label| label.to_string()).collect(),
        annotations,
    };
    let index = analyzer.actions.add(target.label.clone(), Box::new(action));
    Ok(Provider::Index(IndexInfo { index, images, repository: repository(target), tags: tags(target) }))
}
