//! `oci_build_layer`: runs `command` in `base` with `packages` staged, and
//! captures `outputs` as a layer (the `COPY --from` workflow).

use crate::actions::{BaseConfig, RunStep, RunStepSpec};
use crate::analysis::layer_contents::{attr_error, container_path, output_relative_path};
use crate::analysis::{at, Analyzer, LayerInfo, Provider};
use crate::error::Result;
use crate::graph::{OciBuildLayerAttrs, TargetNode};
use crate::oci::Compression;

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciBuildLayerAttrs) -> Result<Provider> {
    let base_label = &attrs.base;
    let (base_config, base_layers) = match analyzer.provider(base_label)? {
        Provider::Image(image) => (BaseConfig::Action(image.image), image.layer_blobs.clone()),
        other => {
            return Err(at(
                target,
                format!("`base` of `{}` is `{base_label}`, which is {}, not an image", target.label, other.describe()),
            ))
        }
    };
    let mut packages = Vec::new();
    for label in &attrs.packages {
        let action = match analyzer.provider(label)?.clone() {
            Provider::Files(files) => analyzer.pack(label, &files.entries, Compression::Gzip)?,
            Provider::Layer(LayerInfo::Planned { entries, .. }) => analyzer.pack(label, &entries, Compression::Gzip)?,
            Provider::Layer(LayerInfo::Built { action, .. }) => action,
            other => {
                return Err(at(
                    target,
                    format!("`packages` of `{}` names `{label}`, which is {}", target.label, other.describe()),
                )
                .with_hint("stage files with `files`, `oci_layer` or another build step"))
            }
        };
        packages.push(action);
    }
    if attrs.command.is_empty() == attrs.argv.is_empty() {
        return Err(at(
            target,
            format!(
                "`{}` needs exactly one of `command` (shell lines) and `argv` (one program, no shell)",
                target.label
            ),
        ));
    }
    for output in &attrs.outputs {
        container_path(target, "outputs", output)?;
    }
    let output_path = match &attrs.output_path {
        Some(path) => Some(output_relative_path(target, "output_path", path)?),
        None => None,
    };
    let timeout_secs = match attrs.timeout {
        seconds if seconds > 0 => seconds as u64,
        seconds => {
            return Err(attr_error(target, "timeout", &format!("`{seconds}` is not a positive number of seconds")))
        }
    };
    let spec = RunStepSpec {
        command: attrs.command.clone(),
        argv: attrs.argv.clone(),
        env: attrs.env.iter().map(|(key, value)| format!("{key}={value}")).collect(),
        outputs: attrs.outputs.clone(),
        exclude: attrs.exclude.clone(),
        workdir: attrs.workdir.clone(),
        timeout_secs,
        network: attrs.network,
        source_date_epoch: analyzer.ctx.source_date_epoch,
    };
    let step = RunStep { base_config, base_layers, packages, spec };
    let action = analyzer.actions.add(target.label.clone(), Box::new(step));
    Ok(Provider::Layer(LayerInfo::Built { action, main_output: attrs.outputs.first().cloned(), output_path }))
}
