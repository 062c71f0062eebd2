//! `oci_pull_image`: a base image pinned by digest. Its manifest and config
//! are resolved now (cached by digest, so no network once they are in the
//! CAS); each layer gets a `fetch_blob` action that runs only if something
//! needs the layer's bytes.
//!
//! A digest that names an index gives the image for the pull's `platform`
//! (default the host's). The index stays known to analysis, so an
//! `oci_image_build` with `base_index = N` or its own `platform` can pick
//! another of its images; only a picked image's manifest and config are
//! fetched.

use std::collections::HashMap;

use crate::actions::{FetchBlob, FetchImage};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::{Analyzer, ImageInfo, Provider, RunAs};
use crate::cache::Digest;
use crate::error::{Error, Result};
use crate::graph::{OciPullImageAttrs, TargetNode};
use crate::oci::{ImageConfig, Platform};
use crate::registry::{parse_platform, ImageRef, PulledImage, PulledIndex, PulledRoot, RegistryError};
use crate::workspace::Label;

/// A pulled index, kept for the images that depend on the pull to pick from.
#[derive(Debug)]
pub struct PulledIndexBase {
    pub index: PulledIndex,
    /// The pull's own `platform`: its dependents see one image, not an index.
    pub platform: Option<String>,
    /// Where the pull is written, for errors.
    location: String,
    /// The images picked so far, by position, so that every image built on
    /// the same one shares its actions.
    picked: HashMap<usize, ImageInfo>,
}

impl PulledIndexBase {
    /// Each entry's platform, in the index's order.
    pub fn platforms(&self) -> Vec<Option<Platform>> {
        self.index.entries.iter().map(|entry| entry.platform.clone()).collect()
    }
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciPullImageAttrs) -> Result<Provider> {
    let image =
        ImageRef::parse(&attrs.repository).map_err(|error| attr_error(target, "repository", &error.to_string()))?;
    let digest = pinned_digest(target, attrs)?;
    let wanted = attrs.platform.as_deref().map(parse_platform).transpose();
    let wanted = wanted.map_err(|error| attr_error(target, "platform", &error.to_string()))?;
    let client = analyzer.registry()?;
    let location = format!("Pulling `{}` ({})", target.label, target.location);
    let in_context = |error: RegistryError| Error::from(error).context(location.clone());
    let root = client.resolve_root(analyzer.ctx.cas, &image, digest, attrs.anonymous).map_err(in_context)?;
    let index = match root {
        PulledRoot::Image(pulled) => return Ok(Provider::Image(image_info(analyzer, &target.label, *pulled))),
        PulledRoot::Index(index) => index,
    };
    let position = index.select(wanted.as_ref()).map_err(in_context)?;
    let base = PulledIndexBase { index, platform: attrs.platform.clone(), location, picked: HashMap::new() };
    analyzer.pulled_indexes.insert(target.label.clone(), base);
    Ok(Provider::Image(pick(analyzer, &target.label, position)?))
}

/// The `position`-th image of the index the pull `label` names, resolved
/// (manifest and config) the first time it is picked.
pub fn pick(analyzer: &mut Analyzer<'_>, label: &Label, position: usize) -> Result<ImageInfo> {
    let base = analyzer
        .pulled_indexes
        .get(label)
        .ok_or_else(|| Error::internal(format!("`{label}` is not a pulled index")))?;
    if let Some(image) = base.picked.get(&position) {
        return Ok(image.clone());
    }
    let client = analyzer.registry()?;
    let pulled = client
        .resolve_entry(analyzer.ctx.cas, &base.index, position)
        .map_err(|error| Error::from(error).context(base.location.clone()))?;
    let image = image_info(analyzer, label, pulled);
    if let Some(base) = analyzer.pulled_indexes.get_mut(label) {
        base.picked.insert(position, image.clone());
    }
    Ok(image)
}

/// Registers the actions of a resolved image: one `fetch_blob` per layer,
/// run only when something needs the bytes, and its `fetch_image`.
fn image_info(analyzer: &mut Analyzer<'_>, owner: &Label, pulled: PulledImage) -> ImageInfo {
    let layer_blobs = pulled
        .layers
        .iter()
        .map(|descriptor| {
            let fetch =
                FetchBlob { image: pulled.image.clone(), anonymous: pulled.anonymous, descriptor: descriptor.clone() };
            analyzer.actions.add(owner.clone(), Box::new(fetch))
        })
        .collect();
    // The config was resolved into the CAS with the manifest.
    let platform = match &pulled.platform {
        Some(platform) => Some(platform.clone()),
        None => analyzer
            .ctx
            .cas
            .read_verified(&pulled.config.digest)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ImageConfig>(&bytes).ok())
            .map(|config| config.platform()),
    };
    analyzer.pulled.push(pulled.clone());
    let image = analyzer.actions.add(owner.clone(), Box::new(FetchImage { pulled }));
    ImageInfo { image, layer_blobs, repository: None, tags: vec![], platform, run: RunAs::Container }
}

/// `digest` or `sha`, with or without `sha256:` (the front-end has already
/// refused a pull with neither: a tag alone would not be reproducible).
fn pinned_digest(target: &TargetNode, attrs: &OciPullImageAttrs) -> Result<Digest> {
    let (attr, text) = match (attrs.digest.as_deref(), attrs.sha.as_deref()) {
        (Some(digest), None) => ("digest", digest),
        (None, Some(sha)) => ("sha", sha),
        (Some(_), Some(_)) => return Err(attr_error(target, "digest", "give `digest` or `sha`, not both")),
        // The front-end refuses an `oci_pull_image` with neither.
        (None, None) => return Err(Error::internal(format!("`{}` reached analysis without a digest", target.label))),
    };
    Digest::parse_lenient(text).map_err(|error| attr_error(target, attr, &error.to_string()))
}
