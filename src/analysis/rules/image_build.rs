//! `oci_image_build` (and `oci_image_empty`): a base, one layer per package
//! and per layer target, and a config, written as a config blob and a
//! manifest.

use std::collections::BTreeMap;

use crate::actions::{ActionId, ConfigLayer, WriteConfig, WriteManifest};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::rules::pull_image;
use crate::analysis::{
    at, created_by, key_values, shared, Analyzer, ImageInfo, LayerInfo, PlannedContent, PlannedEntry, Provider, RunAs,
};
use crate::error::Result;
use crate::graph::{AttrValue, OciImageBuildAttrs, OciImageEmptyAttrs, RuleAttrs, TargetNode};
use crate::oci::{ConfigSettings, Healthcheck, Platform};
use crate::registry::platform_satisfies;
use crate::workspace::Label;

/// `oci_image_empty`: no layers, a config naming only the platform.
pub fn analyze_empty(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciImageEmptyAttrs) -> Result<Provider> {
    let (os, architecture, variant) = empty_platform(attrs);
    let settings = ConfigSettings {
        os: Some(os),
        architecture: Some(architecture),
        variant,
        source_date_epoch: analyzer.ctx.source_date_epoch,
        ..ConfigSettings::default()
    };
    let owner = &target.label;
    let config = analyzer.actions.add(owner.clone(), Box::new(WriteConfig { base: None, layers: vec![], settings }));
    let manifest = WriteManifest { config, base: None, layers: vec![], annotations: BTreeMap::new() };
    let image = analyzer.actions.add(owner.clone(), Box::new(manifest));
    Ok(Provider::Image(ImageInfo {
        image,
        layer_blobs: vec![],
        repository: None,
        tags: vec![],
        platform: Some(Platform::new(os_of(attrs), architecture_of(attrs), attrs.variant.clone())),
        run: RunAs::Container,
    }))
}

fn os_of(attrs: &OciImageEmptyAttrs) -> String {
    attrs.os.clone().unwrap_or_else(|| "linux".to_owned())
}

fn architecture_of(attrs: &OciImageEmptyAttrs) -> String {
    attrs.architecture.clone().unwrap_or_else(|| Platform::host().architecture)
}

/// The platform of an `oci_image_empty`: `linux` and the host's
/// architecture unless it says otherwise.
fn empty_platform(attrs: &OciImageEmptyAttrs) -> (String, String, Option<String>) {
    (os_of(attrs), architecture_of(attrs), attrs.variant.clone())
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciImageBuildAttrs) -> Result<Provider> {
    let compression = attrs.compression;
    let wanted = wanted_platform(target, attrs)?;
    let base = base_image(analyzer, target, attrs, wanted.as_ref())?;

    // Each package and each layer target becomes one layer, in order, so
    // an unchanged package is an unchanged (cached, shared) blob.
    let mut layers: Vec<(ActionId, String)> = Vec::new();
    let mut first_main_output = None;
    // Only `oci_python_image` looks at the files, to find `python_main`.
    let python_main = attrs.python_main.as_deref();
    let mut package_entries: Vec<PlannedEntry> = Vec::new();
    for (attr, labels, is_package) in [("packages", &attrs.packages, true), ("layers", &attrs.layers, false)] {
        for label in labels {
            let layer = layer_of(analyzer, target, attr, label)?;
            if is_package && first_main_output.is_none() {
                first_main_output = layer.main_output().map(str::to_owned);
            }
            if let (Some(_), LayerInfo::Planned { entries, .. }) = (python_main, &layer) {
                package_entries.extend(entries.iter().cloned());
            }
            let action = match &layer {
                LayerInfo::Planned { entries, .. } => analyzer.pack(label, entries, compression)?,
                LayerInfo::Built { action, .. } => *action,
            };
            let dep = analyzer.ctx.graph.target(label).map_or_else(|| format!("berth {label}"), created_by);
            layers.push((action, dep));
        }
    }

    let mut entrypoint = unless_empty(&attrs.entrypoint);
    if let Some(python_main) = python_main {
        let resolved = resolve_python_main(target, python_main, &package_entries)?;
        if let Some(entrypoint) = entrypoint.as_mut() {
            for arg in entrypoint.iter_mut().filter(|arg| arg.as_str() == python_main) {
                arg.clone_from(&resolved);
            }
        }
    }
    if entrypoint.is_none() {
        entrypoint = first_main_output.map(|path| vec![path]);
    }
    let settings = ConfigSettings {
        entrypoint,
        cmd: unless_empty(&attrs.cmd),
        env: key_values(analyzer, target, "env", &attrs.env)?,
        workdir: attrs.workdir.clone(),
        user: attrs.user.clone(),
        exposed_ports: attrs.exposed_ports.clone(),
        volumes: attrs.volumes.clone(),
        labels: key_values(analyzer, target, "labels", &attrs.labels)?.into_iter().collect(),
        stop_signal: attrs.stop_signal.clone(),
        healthcheck: healthcheck(target, &attrs.healthcheck)?,
        author: attrs.author.clone(),
        comment: attrs.comment.clone(),
        os: attrs.os.clone().or(base.os),
        architecture: attrs.architecture.clone().or(base.architecture),
        variant: attrs.variant.clone().or(base.variant),
        os_version: attrs.os_version.clone(),
        os_features: attrs.os_features.clone(),
        source_date_epoch: analyzer.ctx.source_date_epoch,
        ..ConfigSettings::default()
    };
    // What analysis knows of the new image's platform: its own settings,
    // else its base's.
    let base_platform = base.platform.clone();
    let known = |own: &Option<String>, base: Option<String>| own.clone().or(base);
    let settings_platform = (
        known(&settings.os, base_platform.as_ref().map(|p| p.os.clone())),
        known(&settings.architecture, base_platform.as_ref().map(|p| p.architecture.clone())),
        match (&settings.architecture, &base_platform) {
            (Some(_), _) => settings.variant.clone(),
            (None, Some(base)) => settings.variant.clone().or(base.variant.clone()),
            (None, None) => settings.variant.clone(),
        },
    );
    let owner = &target.label;
    let config_layers =
        layers.iter().map(|(action, created_by)| ConfigLayer { action: *action, created_by: created_by.clone() });
    let config = WriteConfig { base: base.image, layers: config_layers.collect(), settings };
    let config = analyzer.actions.add(owner.clone(), Box::new(config));
    let new_layers: Vec<ActionId> = layers.iter().map(|(action, _)| *action).collect();
    let annotations = key_values(analyzer, target, "annotations", &attrs.annotations)?.into_iter().collect();
    let manifest = WriteManifest { config, base: base.image, layers: new_layers.clone(), annotations };
    let image = analyzer.actions.add(owner.clone(), Box::new(manifest));

    let mut layer_blobs = base.layer_blobs;
    layer_blobs.extend(new_layers);
    let tags = tags(&attrs.tag, &attrs.remote_tags);
    let platform = match (&settings_platform.0, &settings_platform.1) {
        (Some(os), Some(architecture)) => Some(Platform {
            os_version: attrs.os_version.clone().or(base_platform.as_ref().and_then(|p| p.os_version.clone())),
            os_features: match attrs.os_features.is_empty() {
                true => base_platform.as_ref().map(|p| p.os_features.clone()).unwrap_or_default(),
                false => attrs.os_features.clone(),
            },
            ..Platform::new(os.clone(), architecture.clone(), settings_platform.2.clone())
        }),
        _ => None,
    };
    Ok(Provider::Image(ImageInfo {
        image,
        layer_blobs,
        repository: attrs.repository.clone(),
        tags,
        platform,
        run: RunAs::Container,
    }))
}

/// The base as the new image sees it. `//:empty` (any `oci_image_empty`)
/// is no base at all: its platform attributes become the image's defaults.
struct Base {
    image: Option<ActionId>,
    layer_blobs: Vec<ActionId>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    /// The base image's platform, when analysis knows it.
    platform: Option<Platform>,
}

/// `platform = "os/arch[/variant]"`, checked against `os`, `architecture`
/// and `variant` set beside it.
fn wanted_platform(target: &TargetNode, attrs: &OciImageBuildAttrs) -> Result<Option<Platform>> {
    let Some(text) = attrs.platform.as_deref() else { return Ok(None) };
    let platform = Platform::parse(text)
        .ok_or_else(|| attr_error(target, "platform", &format!("`{text}` is not `os/arch[/variant]`")))?;
    for (attr, own, from_platform) in [
        ("os", attrs.os.as_deref(), Some(platform.os.as_str())),
        ("architecture", attrs.architecture.as_deref(), Some(platform.architecture.as_str())),
        ("variant", attrs.variant.as_deref(), platform.variant.as_deref()),
    ] {
        if let (Some(own), Some(from_platform)) = (own, from_platform) {
            if own != from_platform {
                return Err(attr_error(target, "platform", &format!("`{text}` contradicts `{attr} = \"{own}\"`"))
                    .with_hint("set the platform once: `platform`, or `os`/`architecture`/`variant`"));
            }
        }
    }
    Ok(Some(platform))
}

fn base_image(
    analyzer: &mut Analyzer<'_>,
    target: &TargetNode,
    attrs: &OciImageBuildAttrs,
    wanted: Option<&Platform>,
) -> Result<Base> {
    let label = &attrs.base;
    if let Some(RuleAttrs::OciImageEmpty(empty)) = analyzer.ctx.graph.target(label).map(|base| &base.attrs) {
        if attrs.base_index.is_some() {
            return Err(attr_error(target, "base_index", &format!("`base` `{label}` is an image, not an index")));
        }
        // `platform` on an empty base is the platform to build for.
        let (os, architecture, variant) = match wanted {
            Some(wanted) => (wanted.os.clone(), wanted.architecture.clone(), wanted.variant.clone()),
            None => empty_platform(empty),
        };
        let platform = Some(Platform::new(os.clone(), architecture.clone(), variant.clone()));
        return Ok(Base {
            image: None,
            layer_blobs: vec![],
            os: Some(os),
            architecture: Some(architecture),
            variant,
            platform,
        });
    }
    let image = match pulled_index_pick(analyzer, target, attrs, wanted)? {
        Some(image) => image,
        None => match analyzer.provider(label)? {
            Provider::Image(image) => {
                if attrs.base_index.is_some() {
                    return Err(attr_error(
                        target,
                        "base_index",
                        &format!("`base` `{label}` is an image, not an index"),
                    ));
                }
                image.clone()
            }
            Provider::Index(index) => {
                let platforms: Vec<Option<Platform>> =
                    index.images.iter().map(|image| image.platform.clone()).collect();
                index.images[pick_position(target, attrs, &platforms, wanted)?].clone()
            }
            other => {
                return Err(at(
                    target,
                    format!("`base` of `{}` is `{label}`, which is {}, not an image", target.label, other.describe()),
                ))
            }
        },
    };
    if let (Some(wanted), Some(platform)) = (wanted, &image.platform) {
        if !platform_satisfies(platform, wanted) {
            return Err(attr_error(
                target,
                "platform",
                &format!("`{wanted}` contradicts the base `{label}`, which is `{platform}`"),
            )
            .with_hint("build on a base of that platform, or drop `platform` to keep the base's"));
        }
    }
    Ok(Base {
        image: Some(image.image),
        layer_blobs: image.layer_blobs,
        os: None,
        architecture: None,
        variant: None,
        platform: image.platform,
    })
}

/// The image picked by `base_index` or `platform` from a pulled index
/// `base`; `None` when the base is no pulled index or nothing picks (the
/// pull's own image then is the base).
fn pulled_index_pick(
    analyzer: &mut Analyzer<'_>,
    target: &TargetNode,
    attrs: &OciImageBuildAttrs,
    wanted: Option<&Platform>,
) -> Result<Option<ImageInfo>> {
    let label = &attrs.base;
    let Some(pulled) = analyzer.pulled_indexes.get(label) else { return Ok(None) };
    if let Some(platform) = &pulled.platform {
        if attrs.base_index.is_some() {
            return Err(attr_error(
                target,
                "base_index",
                &format!("`base` `{label}` is the image its `platform = \"{platform}\"` picks, not an index"),
            )
            .with_hint(format!("drop `platform` from `{label}` to pick with `base_index`")));
        }
        // The pull's own image is the base; `platform` is checked against it.
        return Ok(None);
    }
    if attrs.base_index.is_none() && wanted.is_none() {
        return Ok(None);
    }
    let position = pick_position(target, attrs, &pulled.platforms(), wanted)?;
    Ok(Some(pull_image::pick(analyzer, label, position)?))
}

/// Which image of an index `base` to build on: `base_index = N`
/// (BuildStream's `parent: image: N`), else the one whose platform is
/// `platform`. `platforms` are the index's images' platforms, in order.
fn pick_position(
    target: &TargetNode,
    attrs: &OciImageBuildAttrs,
    platforms: &[Option<Platform>],
    wanted: Option<&Platform>,
) -> Result<usize> {
    let label = &attrs.base;
    if let Some(index) = attrs.base_index {
        let position = usize::try_from(index).ok().filter(|position| *position < platforms.len());
        let Some(position) = position else {
            return Err(attr_error(
                target,
                "base_index",
                &format!("`{index}` is not an image of `{label}`, which has {}", platforms.len()),
            )
            .with_hint("`base_index` counts the index's `images` from 0"));
        };
        if let (Some(wanted), Some(platform)) = (wanted, &platforms[position]) {
            if !platform_satisfies(platform, wanted) {
                return Err(attr_error(
                    target,
                    "platform",
                    &format!("`{wanted}` contradicts `base_index = {index}`, which picks `{platform}` of `{label}`"),
                )
                .with_hint("pick the image once: `base_index` or `platform`"));
            }
        }
        return Ok(position);
    }
    let Some(wanted) = wanted else {
        return Err(at(target, format!("`base` of `{}` is the image index `{label}`", target.label))
            .with_hint("pick one of its images with `platform = \"os/arch\"` or `base_index = N`"));
    };
    platforms.iter().position(|platform| platform.as_ref().is_some_and(|p| platform_satisfies(p, wanted))).ok_or_else(
        || {
            let known: Vec<String> = platforms
                .iter()
                .flatten()
                .filter(|platform| platform.os != "unknown")
                .map(|platform| format!("`{platform}`"))
                .collect();
            attr_error(target, "platform", &format!("the index `{label}` has no image for `{wanted}`"))
                .with_hint(format!("its images are {}", known.join(", ")))
        },
    )
}

/// A `packages` or `layers` item as a layer.
fn layer_of(analyzer: &mut Analyzer<'_>, target: &TargetNode, attr: &str, label: &Label) -> Result<LayerInfo> {
    if let Some(path) = analyzer.source_path(label).map(str::to_owned) {
        let path = path.as_str();
        if attr == "layers" {
            if is_layer_archive(path) {
                // rules_oci's `tars`: the archive is the layer, as it is.
                let action = analyzer.import_tar(label, path);
                return Ok(LayerInfo::Built { action, main_output: None, output_path: None });
            }
            return Err(at(target, format!("`layers` of `{}` names the source file `{label}`", target.label))
                .with_hint("`layers` takes `.tar`, `.tar.gz`, `.tgz` and `.tar.zst` files; put other files in `packages`, or wrap them in an `oci_layer`"));
        }
        // A source file as a package (a `.pex`, a binary): a layer holding
        // just that file, at `/<package dir>/<file>` as `files` would put it.
        let entry = PlannedEntry {
            path: format!("/{path}"),
            content: PlannedContent::Source(path.to_owned()),
            mode: None,
            uid: 0,
            gid: 0,
            mtime: None,
        };
        let main_output = Some(entry.path.clone());
        return Ok(LayerInfo::Planned { entries: shared(vec![entry]), main_output });
    }
    match analyzer.provider(label)? {
        Provider::Files(files) => {
            let main_output = files.entries.first().map(|entry| entry.path.clone());
            Ok(LayerInfo::Planned { entries: files.entries.clone(), main_output })
        }
        Provider::Layer(layer) => Ok(layer.clone()),
        other => {
            let message = format!("`{attr}` of `{}` names `{label}`, which is {}", target.label, other.describe());
            let hint = format!(
                "`{attr}` takes `files`, `oci_layer`, `oci_build_layer` and `deb_layer` targets; use `base` for an image"
            );
            Err(at(target, message).with_hint(hint))
        }
    }
}

/// Whether a source file in `layers` (or rules_oci's `tars`) is a layer
/// archive, by its name; its bytes decide the compression.
pub fn is_layer_archive(path: &str) -> bool {
    [".tar", ".tar.gz", ".tgz", ".tar.zst"].iter().any(|suffix| path.ends_with(suffix))
}

/// `python_main` names a file some package puts in the image: its absolute
/// path there, or a path ending it (`main.py`, `app/main.py`).
fn resolve_python_main(target: &TargetNode, python_main: &str, entries: &[PlannedEntry]) -> Result<String> {
    let suffix = format!("/{}", python_main.trim_start_matches('/'));
    entries.iter().map(|entry| &entry.path).find(|path| path.ends_with(&suffix)).cloned().ok_or_else(|| {
        at(target, format!("`python_main` `{python_main}` of `{}` is not in any of its packages", target.label))
            .with_hint("add the package that holds it to `packages`, or give its path inside the image")
    })
}

/// A list attribute whose empty value (the default) keeps the base's value.
fn unless_empty(items: &[String]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// `healthcheck = {"test": [...], "interval": 30, "timeout": 5, "retries": 3}`,
/// durations in seconds.
fn healthcheck(target: &TargetNode, entries: &[(String, AttrValue)]) -> Result<Option<Healthcheck>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut check = Healthcheck::default();
    for (key, value) in entries {
        let seconds = || match value {
            AttrValue::Int(seconds) if *seconds >= 0 => Ok(Some(*seconds as u64 * 1_000_000_000)),
            _ => Err(attr_error(target, "healthcheck", &format!("`{key}` must be a number of seconds"))),
        };
        match key.as_str() {
            "test" => {
                check.test = match value {
                    AttrValue::List(items) => items
                        .iter()
                        .map(|item| match item {
                            AttrValue::String(text) => Ok(text.clone()),
                            _ => Err(attr_error(target, "healthcheck", "`test` must be a list of strings")),
                        })
                        .collect::<Result<_>>()?,
                    AttrValue::String(command) => vec!["CMD-SHELL".to_owned(), command.clone()],
                    _ => return Err(attr_error(target, "healthcheck", "`test` must be a list of strings")),
                }
            }
            "interval" => check.interval = seconds()?,
            "timeout" => check.timeout = seconds()?,
            "start_period" => check.start_period = seconds()?,
            "start_interval" => check.start_interval = seconds()?,
            "retries" => {
                check.retries = match value {
                    AttrValue::Int(retries) if *retries >= 0 => Some(*retries as u64),
                    _ => return Err(attr_error(target, "healthcheck", "`retries` must be a number")),
                }
            }
            other => {
                return Err(attr_error(target, "healthcheck", &format!("unknown key `{other}`"))
                    .with_hint("use `test`, `interval`, `timeout`, `start_period`, `start_interval` and `retries`"))
            }
        }
    }
    Ok(Some(check))
}

/// `tag` and `remote_tags`, in that order, without repeats.
pub fn tags(tag: &Option<String>, more: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = tag.iter().cloned().collect();
    for tag in more {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}
