//! `oci_import`: an image or index from the workspace. Analysis reads the
//! source once to learn what it holds (how many images, their platforms
//! and layer counts) and registers one `import_image` action for the root,
//! one per image of an index, and one per layer, which re-read and check
//! the source when they run.

use std::path::{Path, PathBuf};

use crate::actions::ImportImage;
use crate::analysis::layer_contents::{attr_error, normalise_image_path};
use crate::analysis::{Analyzer, ImageInfo, IndexInfo, Provider, RunAs};
use crate::error::{Error, Result};
use crate::graph::{OciImportAttrs, TargetNode};
use crate::oci::{layout_files, ImageSource};

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciImportAttrs) -> Result<Provider> {
    // `src` is a path in the package; a label of a file (`:image.tar`,
    // `//pkg:image.tar`) names the same thing.
    let (package, written) = match attrs.src.strip_prefix("//") {
        Some(label) => match label.split_once(':') {
            Some((package, name)) => (package.to_owned(), name.to_owned()),
            None => return Err(attr_error(target, "src", &format!("`{}` names no file", attrs.src))),
        },
        None => (target.label.package.clone(), attrs.src.strip_prefix(':').unwrap_or(&attrs.src).to_owned()),
    };
    let package = &package;
    // Inside the package: normalised as an image path is, then made relative.
    let inside = normalise_image_path(target, "src", &written)?;
    let relative = inside.trim_start_matches('/');
    if relative.is_empty() {
        return Err(attr_error(target, "src", "name a layout directory or an archive file of the package"));
    }
    let src = match package.as_str() {
        "" => PathBuf::from(relative),
        package => Path::new(package).join(relative),
    };
    let full = analyzer.ctx.workspace_root.join(&src);
    let shown = src.display().to_string();
    let (layout, source) = if full.is_dir() {
        let files = layout_files(&full).map_err(|error| Error::from(error).at(target.location.clone()))?;
        (files, ImageSource::read(&full, &shown))
    } else if full.is_file() {
        (Vec::new(), ImageSource::read(&full, &shown))
    } else {
        return Err(attr_error(target, "src", &format!("`{shown}` does not exist"))
            .with_hint("`src` is a path in the package: an OCI layout directory, an OCI archive or a docker-archive"));
    };
    let located = |error: crate::oci::OciError| Error::from(error).at(target.location.clone());
    let (images, is_index) = source.and_then(|source| source.describe()).map_err(located)?;

    let owner = &target.label;
    let mut add = |entry: Option<usize>, layer: Option<usize>| {
        let action = ImportImage { src: src.clone(), layout_files: layout.clone(), entry, layer };
        analyzer.actions.add(owner.clone(), Box::new(action))
    };
    let mut infos = Vec::with_capacity(images.len());
    for (index, (platform, layer_count)) in images.into_iter().enumerate() {
        let entry = is_index.then_some(index);
        let layer_blobs = (0..layer_count).map(|layer| add(entry, Some(layer))).collect();
        let image = add(entry, None);
        infos.push(ImageInfo {
            image,
            layer_blobs,
            repository: None,
            tags: vec![],
            platform: Some(platform),
            run: RunAs::Container,
        });
    }
    if !is_index {
        return Ok(Provider::Image(infos.remove(0)));
    }
    let index = add(None, None);
    Ok(Provider::Index(IndexInfo { index, images: infos, repository: None, tags: vec![], run: RunAs::Container }))
}
