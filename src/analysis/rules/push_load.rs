//! rules_oci's `oci_push` and `oci_load`: targets whose provider is their
//! `image`'s, renamed where they say (`repository`, `remote_tags`) and
//! marked for `berth run` to push or load it instead of running it.

use crate::analysis::{at, Analyzer, Provider, RunAs};
use crate::error::Result;
use crate::graph::{OciLoadAttrs, OciPushAttrs, TargetNode};
use crate::workspace::Label;

/// `oci_push`: the image, pushed by `berth run` (and `berth push`) to
/// `repository` (else the image's) with `remote_tags` (else the image's
/// `tag`/`remote_tags`).
pub fn analyze_push(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciPushAttrs) -> Result<Provider> {
    let provider = image_provider(analyzer, target, &attrs.image)?;
    let tags = (!attrs.remote_tags.is_empty()).then(|| attrs.remote_tags.clone());
    let provider = retarget(provider, attrs.repository.clone(), tags, RunAs::Push);
    let repository = match &provider {
        Provider::Image(image) => image.repository.as_ref(),
        Provider::Index(index) => index.repository.as_ref(),
        Provider::Files(_) | Provider::Layer(_) => None,
    };
    if repository.is_none() {
        return Err(at(target, format!("`oci_push` target `{}` has no `repository` to push to", target.label))
            .with_hint("set `repository` on it (or on its image)"));
    }
    Ok(provider)
}

/// `oci_load`: the image, loaded by `berth run` into the local Docker (or
/// Podman) under `repo_tags` (`repository:tag` names).
pub fn analyze_load(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciLoadAttrs) -> Result<Provider> {
    let provider = image_provider(analyzer, target, &attrs.image)?;
    Ok(retarget(provider, None, None, RunAs::Load { repo_tags: attrs.repo_tags.clone() }))
}

/// The provider of `label`, which must be an image or an index.
fn image_provider(analyzer: &Analyzer<'_>, target: &TargetNode, label: &Label) -> Result<Provider> {
    match analyzer.provider(label)? {
        provider @ (Provider::Image(_) | Provider::Index(_)) => Ok(provider.clone()),
        other => Err(at(
            target,
            format!("`image` of `{}` is `{label}`, which is {}, not an image", target.label, other.describe()),
        )
        .with_hint("name an `oci_image` (`oci_image_build`) or `oci_image_index` target")),
    }
}

/// An image or index provider with a new name, tags and run behaviour.
fn retarget(provider: Provider, repository: Option<String>, tags: Option<Vec<String>>, run: RunAs) -> Provider {
    match provider {
        Provider::Image(mut image) => {
            image.repository = repository.or(image.repository);
            image.tags = tags.unwrap_or(image.tags);
            image.run = run;
            Provider::Image(image)
        }
        Provider::Index(mut index) => {
            index.repository = repository.or(index.repository);
            index.tags = tags.unwrap_or(index.tags);
            index.run = run;
            Provider::Index(index)
        }
        other => other,
    }
}
