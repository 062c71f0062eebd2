//! `oci_build_layer`: runs `command` in `base` with `packages` staged, and
//! captures `outputs` as a layer (the `COPY --from` workflow).

use crate::actions::{BaseConfig, RunStep, RunStepSpec};
use crate::analysis::layer_contents::attr_error;
use crate::analysis::{at, Analyzer, LayerInfo, Provider};
use crate::error::Result;
use crate::graph::{AttrValue, TargetNode};
use crate::oci::Compression;

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode) -> Result<Provider> {
    let base_label = target.label("base").cloned().ok_or_else(|| attr_error(target, "base", "is required"))?;
    let (base_config, base_layers) = match analyzer.provider(&base_label)? {
        crate::analysis::Provider::Image(image) => (BaseConfig::Action(image.image), image.layer_blobs.clone()),
        other => {
            return Err(at(
                target,
                format!("`base` of `{}` is `{base_label}`, which is {}, not an image", target.label, other.describe()),
            ))
        }
    };
    let mut packages = Vec::new();
    for label in target.labels("packages") {
        let action = match analyzer.provider(label)?.clone() {
            Provider::Files(files) => analyzer.pack(label, &files.entries, Compression::Gzip)?,
            Provider::Layer(LayerInfo::Planned { entries, .. }) => analyzer.pack(label, &entries, Compression::Gzip)?,
            Provider::Layer(LayerInfo::Built { action, .. }) => action,
            other => {
                return Err(at(target, format!(
                "`packages` of `{}` names `{label}`, which is {}\nhint: stage files with `files`, `oci_layer` or another build step",
                target.label,
                    other.describe()
                )))
            }
        };
        packages.push(action);
    }
    let command = target.strings("command").into_iter().map(str::to_owned).collect::<Vec<_>>();
    let argv = target.strings("argv").into_iter().map(str::to_owned).collect::<Vec<_>>();
    if command.is_empty() == argv.is_empty() {
        return Err(at(
            target,
            format!(
                "`{}` needs exactly one of `command` (shell lines) and `argv` (one program, no shell)",
                target.label
            ),
        ));
    }
    let outputs: Vec<String> = target.strings("outputs").into_iter().map(str::to_owned).collect();
    if let Some(relative) = outputs.iter().find(|output| !output.starts_with('/')) {
        return Err(attr_error(
            target,
            "outputs",
            &format!("`{relative}` is not an absolute path inside the container"),
        ));
    }
    let timeout_secs = match target.int("timeout") {
        None => 600,
        Some(seconds) if seconds > 0 => seconds as u64,
        Some(seconds) => {
            return Err(attr_error(target, "timeout", &format!("`{seconds}` is not a positive number of seconds")))
        }
    };
    let env = target
        .dict("env")
        .iter()
        .map(|(key, value)| match value {
            AttrValue::String(text) => Ok(format!("{key}={text}")),
            _ => Err(attr_error(target, "env", &format!("the value for `{key}` is not a string"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = RunStepSpec {
        command,
        argv,
        env,
        outputs: outputs.clone(),
        exclude: target.strings("exclude").into_iter().map(str::to_owned).collect(),
        workdir: target.string("workdir").map(str::to_owned),
        timeout_secs,
        network: target.bool("network"),
        source_date_epoch: analyzer.ctx.source_date_epoch,
    };
    let step = RunStep { base_config, base_layers, packages, spec };
    let action = analyzer.actions.add(target.label.clone(), Box::new(step));
    Ok(Provider::Layer(LayerInfo::Built {
        action,
        main_output: outputs.first().cloned(),
        output_path: target.string("output_path").map(str::to_owned),
    }))
}
