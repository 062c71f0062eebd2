//! The blobs a command publishes from a build (`berth-out/`, `run`,
//! `export`, `push`): what the scheduler must make local when remote hits
//! were recorded without their bytes. Everything else a remote hit named
//! stays on the server.

use std::collections::BTreeMap;

use crate::actions::{ActionId, ActionResult, ImageOutput, IndexOutput, LayerOutput};
use crate::analysis::{Analysis, ImageInfo, Provider};
use crate::cache::BlobRef;
use crate::workspace::Label;

/// Every blob of the requested targets' main artifacts, given the outputs
/// of the build's actions: an image's manifest, config and layers, an
/// index's and its images', a layer target's blob. Blobs of actions that
/// did not run in this build (a lazily pulled base's layers) are listed
/// too; no action produced them, so nothing fetches them.
pub fn published_blobs(
    analysis: &Analysis,
    labels: &[Label],
    outputs: &BTreeMap<ActionId, ActionResult>,
) -> Vec<BlobRef> {
    let mut blobs = Vec::new();
    for label in labels {
        match analysis.providers.get(label) {
            Some(Provider::Image(image)) => image_blobs(image, outputs, &mut blobs),
            Some(Provider::Index(index)) => {
                if let Some(output) = outputs.get(&index.index).and_then(|out| IndexOutput::from_result(out).ok()) {
                    blobs.push(output.index);
                }
                for image in &index.images {
                    image_blobs(image, outputs, &mut blobs);
                }
            }
            Some(Provider::Files(_) | Provider::Layer(_)) => {
                let output = analysis.default_outputs.get(label).and_then(|id| outputs.get(id));
                if let Some(layer) = output.and_then(|out| LayerOutput::from_result(out).ok()) {
                    blobs.push(layer.blob);
                }
            }
            None => {}
        }
    }
    blobs
}

fn image_blobs(image: &ImageInfo, outputs: &BTreeMap<ActionId, ActionResult>, blobs: &mut Vec<BlobRef>) {
    if let Some(output) = outputs.get(&image.image).and_then(|out| ImageOutput::from_result(out).ok()) {
        blobs.extend([output.manifest, output.config]);
        blobs.extend(output.layers.iter().flatten().map(|layer| layer.blob()));
    }
    let layers = image.layer_blobs.iter().filter_map(|id| outputs.get(id));
    blobs.extend(layers.filter_map(|out| LayerOutput::from_result(out).ok()).map(|layer| layer.blob));
}
