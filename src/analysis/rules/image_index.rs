//! `oci_image_index`: a multi-platform index of images.

use crate::actions::WriteIndex;
use crate::analysis::rules::image_build::tags;
use crate::analysis::{at, Analyzer, IndexInfo, Provider, RunAs};
use crate::error::Result;
use crate::graph::{OciImageIndexAttrs, TargetNode};

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciImageIndexAttrs) -> Result<Provider> {
    let mut images = Vec::new();
    for label in &attrs.images {
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
    let action = WriteIndex {
        images: images.iter().map(|image| image.image).collect(),
        image_labels: attrs.images.iter().map(|label| label.to_string()).collect(),
        annotations: attrs.annotations.iter().cloned().collect(),
    };
    let index = analyzer.actions.add(target.label.clone(), Box::new(action));
    let tags = tags(&attrs.tag, &attrs.remote_tags);
    Ok(Provider::Index(IndexInfo { index, images, repository: attrs.repository.clone(), tags, run: RunAs::Container }))
}
