//! `oci_pull_image`: a base image pinned by digest. Its manifest and config
//! are resolved now (cached by digest, so no network once they are in the
//! CAS); each layer gets a `fetch_blob` action that runs only if something
//! needs the layer's bytes.

use crate::actions::{FetchBlob, FetchImage};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::{Analyzer, ImageInfo, Provider, RunAs};
use crate::cache::Digest;
use crate::error::{Error, Result};
use crate::graph::{OciPullImageAttrs, TargetNode};
use crate::oci::ImageConfig;
use crate::registry::ImageRef;

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciPullImageAttrs) -> Result<Provider> {
    let image =
        ImageRef::parse(&attrs.repository).map_err(|error| attr_error(target, "repository", &error.to_string()))?;
    let digest = pinned_digest(target, attrs)?;
    let anonymous = attrs.anonymous;
    let client = analyzer.registry()?;
    let pulled = client
        .resolve(analyzer.ctx.cas, &image, digest, attrs.platform.as_deref(), anonymous)
        .map_err(|error| Error::from(error).context(format!("Pulling `{}` ({})", target.label, target.location)))?;

    let owner = &target.label;
    let layer_blobs = pulled
        .layers
        .iter()
        .map(|descriptor| {
            let fetch = FetchBlob { image: image.clone(), anonymous, descriptor: descriptor.clone() };
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
    Ok(Provider::Image(ImageInfo {
        image,
        layer_blobs,
        repository: None,
        tags: vec![],
        platform,
        run: RunAs::Container,
    }))
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
