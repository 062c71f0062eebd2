//! `oci_image_build` (and `oci_image_empty`): a base, one layer per package
//! and per layer target, and a config, written as a config blob and a
//! manifest.

use std::collections::BTreeMap;

use crate::actions::{ActionId, ConfigLayer, WriteConfig, WriteManifest};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::{at, created_by, shared, Analyzer, ImageInfo, LayerInfo, PlannedContent, PlannedEntry, Provider};
use crate::error::Result;
use crate::graph::{AttrValue, TargetNode};
use crate::oci::{Compression, ConfigSettings, Healthcheck, Platform};
use crate::workspace::Label;

/// `oci_image_empty`: no layers, a config naming only the platform.
pub fn analyze_empty(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    let settings = ConfigSettings {
        os: Some(target.string("os").unwrap_or("linux").to_owned()),
        architecture: Some(target.string("architecture").map_or_else(|| Platform::host().architecture, str::to_owned)),
        variant: target.string("variant").map(str::to_owned),
        source_date_epoch: analyzer.ctx.source_date_epoch,
        ..ConfigSettings::default()
    };
    let owner = &target.label;
    let config = analyzer.actions.add(owner.clone(), Box::new(WriteConfig { base: None, layers: vec![], settings }));
    let manifest = WriteManifest { config, base: None, layers: vec![], annotations: BTreeMap::new() };
    let image = analyzer.actions.add(owner.clone(), Box::new(manifest));
    Ok(Provider::Image(ImageInfo { image, layer_blobs: vec![], repository: None, tags: vec![] }))
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    let compression = compression(target)?;
    let base_label = target.label("base").cloned().unwrap_or_else(|| Label::new("", "empty"));
    let base = base_image(analyzer, target, &base_label)?;

    // Each package and each layer target becomes one layer, in order, so
    // an unchanged package is an unchanged (cached, shared) blob.
    let mut layers: Vec<(ActionId, String)> = Vec::new();
    let mut first_main_output = None;
    // Only `oci_python_image` looks at the files, to find `python_main`.
    let python_main = target.string("python_main");
    let mut package_entries: Vec<PlannedEntry> = Vec::new();
    for (attr, is_package) in [("packages", true), ("layers", false)] {
        for label in target.labels(attr) {
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

    let mut entrypoint = strings_or_none(target, "entrypoint")?;
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
        cmd: strings_or_none(target, "cmd")?,
        env: string_pairs(target, "env")?,
        workdir: target.string("workdir").map(str::to_owned),
        user: target.string("user").map(str::to_owned),
        exposed_ports: target.strings("exposed_ports").into_iter().map(str::to_owned).collect(),
        volumes: target.strings("volumes").into_iter().map(str::to_owned).collect(),
        labels: string_pairs(target, "labels")?.into_iter().collect(),
        stop_signal: target.string("stop_signal").map(str::to_owned),
        healthcheck: healthcheck(target)?,
        author: target.string("author").map(str::to_owned),
        comment: target.string("comment").map(str::to_owned),
        os: target.string("os").map(str::to_owned).or(base.os),
        architecture: target.string("architecture").map(str::to_owned).or(base.architecture),
        variant: target.string("variant").map(str::to_owned).or(base.variant),
        source_date_epoch: analyzer.ctx.source_date_epoch,
    };
    let owner = &target.label;
    let config_layers =
        layers.iter().map(|(action, created_by)| ConfigLayer { action: *action, created_by: created_by.clone() });
    let config = WriteConfig { base: base.image, layers: config_layers.collect(), settings };
    let config = analyzer.actions.add(owner.clone(), Box::new(config));
    let new_layers: Vec<ActionId> = layers.iter().map(|(action, _)| *action).collect();
    let annotations = string_pairs(target, "annotations")?.into_iter().collect();
    let manifest = WriteManifest { config, base: base.image, layers: new_layers.clone(), annotations };
    let image = analyzer.actions.add(owner.clone(), Box::new(manifest));

    let mut layer_blobs = base.layer_blobs;
    layer_blobs.extend(new_layers);
    Ok(Provider::Image(ImageInfo { image, layer_blobs, repository: repository(target), tags: tags(target) }))
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
    if let Some(empty) = analyzer.ctx.graph.target(label).filter(|base| base.kind == "oci_image_empty") {
        return Ok(Base {
            image: None,
            layer_blobs: vec![],
            os: Some(empty.string("os").unwrap_or("linux").to_owned()),
            architecture: Some(
                empty.string("architecture").map_or_else(|| Platform::host().architecture, str::to_owned),
            ),
            variant: empty.string("variant").map(str::to_owned),
        });
    }
    match analyzer.provider(label)? {
        Provider::Image(image) => Ok(Base {
            image: Some(image.image),
            layer_blobs: image.layer_blobs.clone(),
            os: None,
            architecture: None,
            variant: None,
        }),
        Provider::Index(_) => Err(at(target, format!(
                "`base` of `{}` is the image index `{label}`\nhint: pick one image of the index, or pull the index with `oci_pull_image(platform = ...)`",
                target.label
        ))),
        other => Err(at(target, format!(
                "`base` of `{}` is `{label}`, which is {}, not an image",
                target.label,
            other.describe()
        ))),
    }
}

/// A `packages` or `layers` item as a layer.
fn layer_of(analyzer: &Analyzer<'_>, target: &TargetNode, attr: &str, label: &Label) -> Result<LayerInfo> {
    if let Some(path) = analyzer.source_path(label) {
        if attr == "layers" {
            return Err(at(target, format!(
                "`layers` of `{}` names the source file `{label}`\nhint: put it in `packages`, or wrap it in an `oci_layer`",
                target.label
            )));
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
        other => Err(at(target, format!(
                "`{attr}` of `{}` names `{label}`, which is {}\nhint: `{attr}` takes `files`, `oci_layer`, `oci_build_layer` and `deb_layer` targets; use `base` for an image",
                target.label,
            other.describe()
        ))),
    }
}

/// `python_main` names a file some package puts in the image: its absolute
/// path there, or a path ending it (`main.py`, `app/main.py`).
fn resolve_python_main(target: &TargetNode, python_main: &str, entries: &[PlannedEntry]) -> Result<String> {
    let suffix = format!("/{}", python_main.trim_start_matches('/'));
    entries.iter().map(|entry| &entry.path).find(|path| path.ends_with(&suffix)).cloned().ok_or_else(|| {
        at(target, format!(
                "`python_main` `{python_main}` of `{}` is not in any of its packages\nhint: add the package that holds it to `packages`, or give its path inside the image",
                target.label
        ))
    })
}

fn compression(target: &TargetNode) -> Result<Compression> {
    match target.string("compression").unwrap_or("gzip") {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::None),
        other => Err(attr_error(
            target,
            "compression",
            &format!("unknown compression `{other}`\nhint: use `gzip` (the default), `zstd` or `none`"),
        )),
    }
}

/// A list attribute that may also be unset (`None` keeps the base's value).
/// The schema's default is the empty list, so `[]` counts as unset too.
fn strings_or_none(target: &TargetNode, attr: &str) -> Result<Option<Vec<String>>> {
    match target.attr(attr) {
        AttrValue::None => Ok(None),
        AttrValue::List(items) if items.is_empty() => Ok(None),
        AttrValue::List(items) => items
            .iter()
            .map(|item| match item {
                AttrValue::String(text) => Ok(text.clone()),
                _ => Err(attr_error(target, attr, "expected a list of strings")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        _ => Err(attr_error(target, attr, "expected a list of strings")),
    }
}

/// A dict attribute of strings (ints are written out), in the user's order.
pub fn string_pairs(target: &TargetNode, attr: &str) -> Result<Vec<(String, String)>> {
    target
        .dict(attr)
        .iter()
        .map(|(key, value)| match value {
            AttrValue::String(text) => Ok((key.clone(), text.clone())),
            AttrValue::Int(number) => Ok((key.clone(), number.to_string())),
            _ => Err(attr_error(target, attr, &format!("the value for `{key}` is not a string"))),
        })
        .collect()
}

/// `healthcheck = {"test": [...], "interval": 30, "timeout": 5, "retries": 3}`,
/// durations in seconds.
fn healthcheck(target: &TargetNode) -> Result<Option<Healthcheck>> {
    let entries = target.dict("healthcheck");
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
                return Err(attr_error(
                    target,
                    "healthcheck",
                    &format!("unknown key `{other}`\nhint: use `test`, `interval`, `timeout`, `start_period`, `start_interval` and `retries`"),
                ))
            }
        }
    }
    Ok(Some(check))
}

pub fn repository(target: &TargetNode) -> Option<String> {
    target.string("repository").map(str::to_owned)
}

/// `tag` and `tags`, in that order, without repeats.
pub fn tags(target: &TargetNode) -> Vec<String> {
    let mut tags: Vec<String> = target.string("tag").into_iter().map(str::to_owned).collect();
    for tag in target.strings("tags") {
        if !tags.iter().any(|seen| seen == tag) {
            tags.push(tag.to_owned());
        }
    }
    tags
}
