//! `oci_image_build` (and `oci_image_empty`): a base, one layer per package
//! and per layer target, and a config, written as a config blob and a
//! manifest.

use std::collections::BTreeMap;

use crate::actions::{ActionId, ConfigLayer, WriteConfig, WriteManifest};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::{at, created_by, shared, Analyzer, ImageInfo, LayerInfo, PlannedContent, PlannedEntry, Provider};
use crate::error::Result;
use crate::graph::{AttrValue, OciImageBuildAttrs, OciImageEmptyAttrs, RuleAttrs, TargetNode};
use crate::oci::{ConfigSettings, Healthcheck, Platform};
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
    Ok(Provider::Image(ImageInfo { image, layer_blobs: vec![], repository: None, tags: vec![] }))
}

/// The platform of an `oci_image_empty`: `linux` and the host's
/// architecture unless it says otherwise.
fn empty_platform(attrs: &OciImageEmptyAttrs) -> (String, String, Option<String>) {
    let os = attrs.os.clone().unwrap_or_else(|| "linux".to_owned());
    let architecture = attrs.architecture.clone().unwrap_or_else(|| Platform::host().architecture);
    (os, architecture, attrs.variant.clone())
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciImageBuildAttrs) -> Result<Provider> {
    let compression = attrs.compression;
    let base = base_image(analyzer, target, &attrs.base)?;

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
        env: attrs.env.clone(),
        workdir: attrs.workdir.clone(),
        user: attrs.user.clone(),
        exposed_ports: attrs.exposed_ports.clone(),
        volumes: attrs.volumes.clone(),
        labels: attrs.labels.iter().cloned().collect(),
        stop_signal: attrs.stop_signal.clone(),
        healthcheck: healthcheck(target, &attrs.healthcheck)?,
        author: attrs.author.clone(),
        comment: attrs.comment.clone(),
        os: attrs.os.clone().or(base.os),
        architecture: attrs.architecture.clone().or(base.architecture),
        variant: attrs.variant.clone().or(base.variant),
        source_date_epoch: analyzer.ctx.source_date_epoch,
        ..ConfigSettings::default()
    };
    let owner = &target.label;
    let config_layers =
        layers.iter().map(|(action, created_by)| ConfigLayer { action: *action, created_by: created_by.clone() });
    let config = WriteConfig { base: base.image, layers: config_layers.collect(), settings };
    let config = analyzer.actions.add(owner.clone(), Box::new(config));
    let new_layers: Vec<ActionId> = layers.iter().map(|(action, _)| *action).collect();
    let annotations = attrs.annotations.iter().cloned().collect();
    let manifest = WriteManifest { config, base: base.image, layers: new_layers.clone(), annotations };
    let image = analyzer.actions.add(owner.clone(), Box::new(manifest));

    let mut layer_blobs = base.layer_blobs;
    layer_blobs.extend(new_layers);
    let tags = tags(&attrs.tag, &attrs.tags);
    Ok(Provider::Image(ImageInfo { image, layer_blobs, repository: attrs.repository.clone(), tags }))
}

/// The base as the new image sees it. `//:empty` (any `oci_image_empty`)
/// is no base at all: its platform attributes become the image's defaults.
struct Base {
    image: Option<ActionId>,
    layer_blobs: Vec<ActionId>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

fn base_image(analyzer: &Analyzer<'_>, target: &TargetNode, label: &Label) -> Result<Base> {
    if let Some(RuleAttrs::OciImageEmpty(empty)) = analyzer.ctx.graph.target(label).map(|base| &base.attrs) {
        let (os, architecture, variant) = empty_platform(empty);
        return Ok(Base { image: None, layer_blobs: vec![], os: Some(os), architecture: Some(architecture), variant });
    }
    match analyzer.provider(label)? {
        Provider::Image(image) => Ok(Base {
            image: Some(image.image),
            layer_blobs: image.layer_blobs.clone(),
            os: None,
            architecture: None,
            variant: None,
        }),
        Provider::Index(_) => Err(at(target, format!("`base` of `{}` is the image index `{label}`", target.label))
            .with_hint("pick one image of the index, or pull the index with `oci_pull_image(platform = ...)`")),
        other => Err(at(
            target,
            format!("`base` of `{}` is `{label}`, which is {}, not an image", target.label, other.describe()),
        )),
    }
}

/// A `packages` or `layers` item as a layer.
fn layer_of(analyzer: &Analyzer<'_>, target: &TargetNode, attr: &str, label: &Label) -> Result<LayerInfo> {
    if let Some(path) = analyzer.source_path(label) {
        if attr == "layers" {
            return Err(at(target, format!("`layers` of `{}` names the source file `{label}`", target.label))
                .with_hint("put it in `packages`, or wrap it in an `oci_layer`"));
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

/// `tag` and `tags`, in that order, without repeats.
pub fn tags(tag: &Option<String>, more: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = tag.iter().cloned().collect();
    for tag in more {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}
