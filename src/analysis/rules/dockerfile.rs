//! `oci_dockerfile`: a Dockerfile evaluated into berth's action DAG. Each
//! stage is a base (a `bases` image, `scratch`, an earlier stage or a pull
//! pinned by digest), a list of layers and config settings; every `COPY`
//! and `ADD` is one `pack_layer` action keyed on the matched files'
//! contents, every `RUN` one `dockerfile_run` action keyed on its parent
//! layers and the instruction after substitution. Metadata instructions
//! only change the settings the final `write_config` writes.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::actions::{
    ActionId, BaseConfig, ConfigLayer, CopyContent, CopyEntry, CopyFrom, DockerfileRun, DockerfileRunSpec, FetchBlob,
    FetchImage, WriteConfig, WriteManifest,
};
use crate::analysis::rules::image_build::tags;
use crate::analysis::{at, Analyzer, ImageInfo, PlannedContent, PlannedEntry, Provider, RunAs};
use crate::cache::Digest;
use crate::dockerfile::lex::{self, Vars};
use crate::dockerfile::parse::error_at;
use crate::dockerfile::{Args, Instruction};
use crate::error::{Error, Result};
use crate::graph::{OciDockerfileAttrs, TargetNode};
use crate::oci::{ConfigSettings, Healthcheck, Platform};
use crate::registry::Reference;

/// Seconds a `RUN` may take.
const RUN_TIMEOUT_SECS: u64 = 3600;

/// `--chown` and `--chmod` of a `COPY` or `ADD`: numeric ids, or a user
/// name resolved in the stage's root when the action runs.
struct OwnerFlags {
    ids: Option<(u32, u32)>,
    name: Option<String>,
    chmod: Option<u32>,
}

/// One build stage as far as the instructions have taken it.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    /// The base image action (`None` for `scratch`).
    base_image: Option<ActionId>,
    base_config: BaseConfig,
    base_layers: Vec<ActionId>,
    /// The platform when analysis knows it (a `bases` image that says, or
    /// `scratch`); `None` for a pinned pull, whose config is read later.
    platform: Option<Platform>,
    /// Layers this Dockerfile added, with their history's `created_by`.
    layers: Vec<(ActionId, String)>,
    settings: ConfigSettings,
    /// `ARG`s in scope (not kept in the image).
    args: Vec<(String, String)>,
    shell: Vec<String>,
    /// The `CMD` of the stage this one is `FROM`: kept unless an
    /// `ENTRYPOINT` here resets it (a `CMD` set in this stage survives).
    inherited_cmd: Option<Vec<String>>,
}

impl Stage {
    /// Variables for substitution: the stage's ARGs, then its ENV (which
    /// wins, as in Docker).
    fn vars(&self) -> Vec<(String, String)> {
        let mut vars = self.args.clone();
        vars.extend(self.settings.env.iter().cloned());
        vars
    }

    fn all_layers(&self) -> Vec<ActionId> {
        self.base_layers.iter().copied().chain(self.layers.iter().map(|(action, _)| *action)).collect()
    }
}

/// The context: the files of `srcs` below the target's package, by path
/// relative to it, minus what `.dockerignore` excludes.
struct Context {
    /// Context path → workspace path, sorted.
    files: BTreeMap<String, String>,
    /// Directories of the context on disk (not ignored) → their mode, so a
    /// copied directory keeps its empty subdirectories as `docker build`
    /// does.
    dirs: BTreeMap<String, u32>,
}

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &OciDockerfileAttrs) -> Result<Provider> {
    let dockerfile_label = &attrs.dockerfile;
    let Some(dockerfile_path) = analyzer.source_path(dockerfile_label).map(str::to_owned) else {
        return Err(at(
            target,
            format!("`dockerfile` of `{}` is not a source file: `{dockerfile_label}`", target.label),
        ));
    };
    let text = std::fs::read_to_string(analyzer.ctx.workspace_root.join(&dockerfile_path))
        .map_err(|error| at(target, format!("Cannot read `{dockerfile_path}`: {error}")))?;
    let file = crate::dockerfile::parse(&dockerfile_path, &text)?;
    let context = context(analyzer, target, attrs)?;
    let mut builder = Builder { analyzer, target, attrs, path: &dockerfile_path, escape: file.escape, context };
    let mut global_args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in &file.instructions {
        let keyword = instruction.keyword.as_str();
        if keyword == "FROM" {
            let stage = builder.from(instruction, &global_args, &stages)?;
            stages.push(stage);
            continue;
        }
        let from_layers = match instruction.flag("from") {
            Some(from) if keyword == "COPY" || keyword == "ADD" => {
                Some(builder.layers_of_from(instruction, from, &stages)?)
            }
            _ => None,
        };
        let Some(stage) = stages.last_mut() else {
            if keyword == "ARG" {
                let vars = global_args.clone();
                for (name, value) in builder.arg(instruction, &vars, &[])? {
                    global_args.push((name, value));
                }
                continue;
            }
            return Err(builder
                .error(instruction, format!("`{keyword}` before the first `FROM`"))
                .with_hint("only `ARG` may come before `FROM`"));
        };
        builder.instruction(instruction, stage, &global_args, from_layers)?;
    }
    let chosen = match &attrs.target {
        Some(name) if !name.is_empty() => stages
            .iter()
            .find(|stage| stage.name.as_deref().is_some_and(|stage| stage.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                at(target, format!("`target` `{name}` of `{}` names no stage of `{dockerfile_path}`", target.label))
            })?,
        _ => stages.last().ok_or_else(|| {
            Error::user(format!("`{dockerfile_path}` has no `FROM`")).with_hint("start the Dockerfile with `FROM`")
        })?,
    };
    let mut settings = chosen.settings.clone();
    if settings.cmd.is_none() {
        settings.cmd.clone_from(&chosen.inherited_cmd);
    }
    for (key, value) in &attrs.labels {
        settings.labels.insert(key.clone(), value.clone());
    }
    let owner = &builder.target.label;
    let config_layers = chosen
        .layers
        .iter()
        .map(|(action, created_by)| ConfigLayer { action: *action, created_by: created_by.clone() });
    let config = WriteConfig { base: chosen.base_image, layers: config_layers.collect(), settings };
    let config = builder.analyzer.actions.add(owner.clone(), Box::new(config));
    let new_layers: Vec<ActionId> = chosen.layers.iter().map(|(action, _)| *action).collect();
    let manifest =
        WriteManifest { config, base: chosen.base_image, layers: new_layers.clone(), annotations: BTreeMap::new() };
    let image = builder.analyzer.actions.add(owner.clone(), Box::new(manifest));
    let mut layer_blobs = chosen.base_layers.clone();
    layer_blobs.extend(new_layers);
    Ok(Provider::Image(ImageInfo {
        image,
        layer_blobs,
        repository: attrs.repository.clone(),
        tags: tags(&attrs.tag, &attrs.remote_tags),
        platform: chosen.platform.clone(),
        run: RunAs::Container,
    }))
}

fn context(analyzer: &Analyzer<'_>, target: &TargetNode, attrs: &OciDockerfileAttrs) -> Result<Context> {
    let package = target.label.package.as_str();
    let prefix = if package.is_empty() { String::new() } else { format!("{package}/") };
    let ignore_path = format!("{prefix}.dockerignore");
    let ignore = match std::fs::read_to_string(analyzer.ctx.workspace_root.join(&ignore_path)) {
        Ok(text) => DockerIgnore::parse(&ignore_path, &text)?,
        Err(_) => DockerIgnore::default(),
    };
    let mut files = BTreeMap::new();
    for label in &attrs.srcs {
        let Some(path) = analyzer.source_path(label) else {
            return Err(at(target, format!("`srcs` of `{}` names the target `{label}`", target.label))
                .with_hint("the context is made of source files: `srcs = glob([\"**\"])`"));
        };
        let Some(relative) = path.strip_prefix(&prefix) else {
            return Err(at(target, format!("`srcs` of `{}` names `{label}`, outside its package", target.label))
                .with_hint("the context is the directory of the BUILD file"));
        };
        if !ignore.excludes(relative) {
            files.insert(relative.to_owned(), path.to_owned());
        }
    }
    let mut dirs = BTreeMap::new();
    let root = analyzer.ctx.workspace_root.join(package);
    context_dirs(&root, "", &ignore, &mut dirs);
    Ok(Context { files, dirs })
}

/// The directories below `dir` (context path `relative`), sorted, skipping
/// ignored ones, symlinks, `berth-out` and hidden tool directories.
fn context_dirs(dir: &Path, relative: &str, ignore: &DockerIgnore, dirs: &mut BTreeMap<String, u32>) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    for entry in read.flatten() {
        // The type readdir gives: no stat for the files, which are most.
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name == "berth-out" || name == ".git" {
            continue;
        }
        let Ok(metadata) = std::fs::symlink_metadata(entry.path()) else { continue };
        let path = if relative.is_empty() { name } else { format!("{relative}/{name}") };
        if ignore.excludes(&path) {
            continue;
        }
        dirs.insert(path.clone(), metadata.permissions().mode() & 0o7777);
        context_dirs(&entry.path(), &path, ignore, dirs);
    }
}

/// `.dockerignore`: patterns relative to the context, `!` re-includes, the
/// last matching pattern wins, a pattern matching a directory excludes what
/// is below it.
#[derive(Default)]
struct DockerIgnore {
    patterns: Vec<(GlobMatcher, bool)>,
}

impl DockerIgnore {
    fn parse(path: &str, text: &str) -> Result<DockerIgnore> {
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, include) = match line.strip_prefix('!') {
                Some(rest) => (rest.trim(), true),
                None => (line, false),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| error_at(path, index + 1, 1, format!("Bad `.dockerignore` pattern: {error}")))?;
            patterns.push((glob.compile_matcher(), include));
        }
        Ok(DockerIgnore { patterns })
    }

    fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (glob, include) in &self.patterns {
            let mut candidate = Some(path);
            while let Some(prefix) = candidate {
                if glob.is_match(prefix) {
                    excluded = !include;
                    break;
                }
                candidate = prefix.rsplit_once('/').map(|(parent, _)| parent);
            }
        }
        excluded
    }
}

struct Builder<'a, 'b> {
    analyzer: &'a mut Analyzer<'b>,
    target: &'a TargetNode,
    attrs: &'a OciDockerfileAttrs,
    path: &'a str,
    escape: char,
    context: Context,
}

impl Builder<'_, '_> {
    fn error(&self, instruction: &Instruction, message: impl Into<String>) -> Error {
        let location = &instruction.location;
        error_at(self.path, location.line as usize, location.column as usize, message)
    }

    /// Wraps an error of substitution with the instruction's location.
    fn located<T>(&self, instruction: &Instruction, result: Result<T>) -> Result<T> {
        result.map_err(|error| {
            let hint = error.hint.clone();
            self.error(instruction, error.message).maybe_hint(hint)
        })
    }

    fn word(&self, instruction: &Instruction, text: &str, vars: &dyn Vars) -> Result<String> {
        self.located(instruction, lex::word(text, vars, self.escape))
    }

    fn words(&self, instruction: &Instruction, vars: &dyn Vars) -> Result<Vec<String>> {
        match &instruction.args {
            Args::Json(items) => items.iter().map(|item| self.word(instruction, item, vars)).collect(),
            Args::Shell(text) => self.located(instruction, lex::words(text, vars, self.escape)),
        }
    }

    /// `FROM [--platform=...] image [AS name]`.
    fn from(&mut self, instruction: &Instruction, global_args: &[(String, String)], stages: &[Stage]) -> Result<Stage> {
        let words = self.words(instruction, &global_args.to_vec())?;
        let (image, name) = match words.as_slice() {
            [image] => (image.clone(), None),
            [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => (image.clone(), Some(name.clone())),
            _ => return Err(self.error(instruction, "`FROM` takes `image [AS name]`")),
        };
        let mut platform = self.attrs.platform.clone();
        for (flag, value) in &instruction.flags {
            match flag.as_str() {
                "platform" => platform = Some(self.word(instruction, value, &global_args.to_vec())?),
                other => return Err(self.error(instruction, format!("Unknown `FROM` flag `--{other}`"))),
            }
        }
        let mut settings = ConfigSettings {
            source_date_epoch: self.analyzer.ctx.source_date_epoch,
            default_path: true,
            ..ConfigSettings::default()
        };
        let default_shell = vec!["/bin/sh".to_owned(), "-c".to_owned()];
        if let Some(earlier) =
            stages.iter().find(|stage| stage.name.as_deref().is_some_and(|stage| stage.eq_ignore_ascii_case(&image)))
        {
            let mut stage = earlier.clone();
            stage.name = name;
            stage.args = Vec::new();
            if let Some(cmd) = stage.settings.cmd.take() {
                stage.inherited_cmd = Some(cmd);
            }
            return Ok(stage);
        }
        if let Some((_, label)) = self.attrs.bases.iter().find(|(key, _)| *key == image) {
            let info = match self.analyzer.provider(label)? {
                Provider::Image(info) => info.clone(),
                other => {
                    return Err(self.error(
                        instruction,
                        format!("`bases` maps `{image}` to `{label}`, which is {}, not an image", other.describe()),
                    ))
                }
            };
            return Ok(Stage {
                name,
                base_image: Some(info.image),
                base_config: BaseConfig::Action(info.image),
                base_layers: info.layer_blobs,
                platform: info.platform,
                layers: Vec::new(),
                settings,
                args: Vec::new(),
                shell: default_shell,
                inherited_cmd: None,
            });
        }
        if image == "scratch" {
            let host = Platform::host();
            let platform = platform.as_deref().and_then(Platform::parse).unwrap_or(host);
            settings.os = Some(platform.os.clone());
            settings.architecture = Some(platform.architecture.clone());
            settings.variant = platform.variant.clone();
            return Ok(Stage {
                name,
                base_image: None,
                base_config: BaseConfig::None,
                base_layers: Vec::new(),
                platform: Some(platform),
                layers: Vec::new(),
                settings,
                args: Vec::new(),
                shell: default_shell,
                inherited_cmd: None,
            });
        }
        let pin_hint = format!(
            "pin it by digest (`berth pin {image}` prints the digest) and write `FROM <repository>@sha256:...`, or map `{image}` to an image target in `bases`"
        );
        let reference = Reference::parse(&image).map_err(|error| {
            self.error(
                instruction,
                format!("`FROM {image}` is not in `bases`, not a stage and not a pinned image: {error}"),
            )
            .with_hint(pin_hint.clone())
        })?;
        let Some(digest) = reference.digest else {
            return Err(self
                .error(instruction, format!("`FROM {image}` names a tag, which is not reproducible"))
                .with_hint(pin_hint));
        };
        let client = self.analyzer.registry()?;
        let pulled = client
            .resolve(self.analyzer.ctx.cas, &reference.image, digest, platform.as_deref(), false)
            .map_err(|error| Error::from(error).context(format!("Pulling `{image}` ({})", instruction.location)))?;
        let owner = self.target.label.clone();
        let layer_blobs = pulled
            .layers
            .iter()
            .map(|descriptor| {
                let fetch =
                    FetchBlob { image: reference.image.clone(), anonymous: false, descriptor: descriptor.clone() };
                self.analyzer.actions.add(owner.clone(), Box::new(fetch))
            })
            .collect();
        self.analyzer.pulled.push(pulled.clone());
        let image_action = self.analyzer.actions.add(owner, Box::new(FetchImage { pulled }));
        Ok(Stage {
            name,
            base_image: Some(image_action),
            base_config: BaseConfig::Action(image_action),
            base_layers: layer_blobs,
            platform: None,
            layers: Vec::new(),
            settings,
            args: Vec::new(),
            shell: default_shell,
            inherited_cmd: None,
        })
    }

    /// `ARG name[=default] ...`: each name's value from `build_args`, else
    /// its default, else the global ARG of that name.
    fn arg(
        &self,
        instruction: &Instruction,
        vars: &dyn Vars,
        global_args: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let mut declared = Vec::new();
        for word in self.words(instruction, vars)? {
            let (name, default) = match word.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (word.clone(), None),
            };
            let value = self
                .attrs
                .build_args
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .or(default)
                .or_else(|| Vars::get(global_args, &name).map(str::to_owned));
            // An ARG with no value is declared but unset: substitution sees
            // nothing.
            if let Some(value) = value {
                declared.push((name, value));
            }
        }
        Ok(declared)
    }

    /// `KEY=VALUE ...` or the legacy `KEY VALUE` (ENV and LABEL).
    fn pairs(&self, instruction: &Instruction, vars: &dyn Vars) -> Result<Vec<(String, String)>> {
        let text = instruction.shell_text();
        let first = text.split_whitespace().next().unwrap_or_default();
        if !first.contains('=') {
            let (key, value) = text
                .split_once(char::is_whitespace)
                .ok_or_else(|| self.error(instruction, format!("`{}` needs `KEY=VALUE`", instruction.keyword)))?;
            return Ok(vec![(key.to_owned(), self.word(instruction, value.trim(), vars)?)]);
        }
        let mut pairs = Vec::new();
        for word in self.located(instruction, lex::words(&text, vars, self.escape))? {
            let Some((key, value)) = word.split_once('=') else {
                return Err(self.error(instruction, format!("`{word}` is not `KEY=VALUE`")));
            };
            pairs.push((key.to_owned(), value.to_owned()));
        }
        Ok(pairs)
    }

    /// The exec form as is, the shell form through the stage's `SHELL`.
    fn command(&self, instruction: &Instruction, stage: &Stage) -> Vec<String> {
        match &instruction.args {
            Args::Json(items) => items.clone(),
            Args::Shell(text) => {
                let mut args = stage.shell.clone();
                args.push(text.clone());
                args
            }
        }
    }

    /// The layers of what `COPY --from=NAME` names: an earlier stage (by
    /// name or index) or an image of `bases`.
    fn layers_of_from(&self, instruction: &Instruction, from: &str, stages: &[Stage]) -> Result<Vec<ActionId>> {
        let earlier = stages.len().saturating_sub(1);
        let stage = match from.parse::<usize>() {
            Ok(index) => stages[..earlier].get(index),
            Err(_) => stages[..earlier]
                .iter()
                .find(|stage| stage.name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(from))),
        };
        if let Some(stage) = stage {
            return Ok(stage.all_layers());
        }
        if let Some((_, label)) = self.attrs.bases.iter().find(|(key, _)| key == from) {
            if let Provider::Image(info) = self.analyzer.provider(label)? {
                return Ok(info.layer_blobs.clone());
            }
        }
        Err(self
            .error(instruction, format!("`--from={from}` names no earlier stage and no image of `bases`"))
            .with_hint("name a stage defined above with `FROM ... AS name`, or add the image to `bases`"))
    }

    fn instruction(
        &mut self,
        instruction: &Instruction,
        stage: &mut Stage,
        global_args: &[(String, String)],
        from_layers: Option<Vec<ActionId>>,
    ) -> Result<()> {
        let vars = stage.vars();
        match instruction.keyword.as_str() {
            "ARG" => {
                let declared = self.arg(instruction, &vars, global_args)?;
                stage.args.extend(declared);
            }
            "ENV" => {
                for (key, value) in self.pairs(instruction, &vars)? {
                    match stage.settings.env.iter_mut().find(|(existing, _)| *existing == key) {
                        Some(entry) => entry.1 = value,
                        None => stage.settings.env.push((key, value)),
                    }
                }
            }
            "LABEL" => {
                for (key, value) in self.pairs(instruction, &vars)? {
                    stage.settings.labels.insert(key, value);
                }
            }
            "MAINTAINER" => stage.settings.author = Some(instruction.shell_text()),
            "WORKDIR" => {
                let dir = self.word(instruction, &instruction.shell_text(), &vars)?;
                let dir = if dir.starts_with('/') {
                    dir
                } else {
                    let current = stage.settings.workdir.clone().unwrap_or_else(|| "/".to_owned());
                    format!("{}/{dir}", current.trim_end_matches('/'))
                };
                stage.settings.workdir = Some(dir.clone());
                self.workdir(instruction, stage, dir);
            }
            "USER" => stage.settings.user = Some(self.word(instruction, &instruction.shell_text(), &vars)?),
            "EXPOSE" => {
                for port in self.words(instruction, &vars)? {
                    if !stage.settings.exposed_ports.contains(&port) {
                        stage.settings.exposed_ports.push(port);
                    }
                }
            }
            "VOLUME" => {
                for volume in self.words(instruction, &vars)? {
                    if !stage.settings.volumes.contains(&volume) {
                        stage.settings.volumes.push(volume);
                    }
                }
            }
            "STOPSIGNAL" => {
                stage.settings.stop_signal = Some(self.word(instruction, &instruction.shell_text(), &vars)?)
            }
            "CMD" => stage.settings.cmd = Some(self.command(instruction, stage)),
            "ENTRYPOINT" => {
                stage.settings.entrypoint = Some(self.command(instruction, stage));
                stage.inherited_cmd = None;
            }
            "SHELL" => match &instruction.args {
                Args::Json(items) if !items.is_empty() => {
                    stage.shell = items.clone();
                    stage.settings.shell = Some(items.clone());
                }
                _ => return Err(self.error(instruction, "`SHELL` takes the JSON form: `SHELL [\"/bin/sh\", \"-c\"]`")),
            },
            "HEALTHCHECK" => stage.settings.healthcheck = Some(self.healthcheck(instruction, stage)?),
            "ONBUILD" => {
                let trigger = instruction.text.split_once(char::is_whitespace).map_or("", |(_, rest)| rest.trim());
                let keyword = trigger.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                if matches!(keyword.as_str(), "" | "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(self.error(instruction, format!("`ONBUILD {keyword}` is not allowed")));
                }
                stage.settings.on_build.push(trigger.to_owned());
            }
            "COPY" | "ADD" => match from_layers {
                Some(from_layers) => self.copy_from(instruction, stage, &vars, from_layers)?,
                None => self.copy(instruction, stage, &vars)?,
            },
            "RUN" => self.run(instruction, stage)?,
            other => return Err(self.error(instruction, format!("`{other}` is not supported inside a stage"))),
        }
        Ok(())
    }

    fn healthcheck(&self, instruction: &Instruction, stage: &Stage) -> Result<Healthcheck> {
        let mut check = Healthcheck::default();
        for (flag, value) in &instruction.flags {
            let nanos = || {
                parse_duration(value).ok_or_else(|| {
                    self.error(instruction, format!("`--{flag}={value}` is not a duration like `30s` or `1m30s`"))
                })
            };
            match flag.as_str() {
                "interval" => check.interval = Some(nanos()?),
                "timeout" => check.timeout = Some(nanos()?),
                "start-period" => check.start_period = Some(nanos()?),
                "start-interval" => check.start_interval = Some(nanos()?),
                "retries" => {
                    check.retries = Some(
                        value
                            .parse()
                            .map_err(|_| self.error(instruction, format!("`--retries={value}` is not a number")))?,
                    )
                }
                other => return Err(self.error(instruction, format!("Unknown `HEALTHCHECK` flag `--{other}`"))),
            }
        }
        let text = instruction.shell_text();
        let (word, rest) = text.trim().split_once(char::is_whitespace).unwrap_or((text.trim(), ""));
        if word.eq_ignore_ascii_case("NONE") {
            check.test = vec!["NONE".to_owned()];
            return Ok(check);
        }
        if !word.eq_ignore_ascii_case("CMD") {
            return Err(self.error(instruction, "`HEALTHCHECK` takes `CMD ...` or `NONE`"));
        }
        let rest = rest.trim();
        check.test = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(items) => std::iter::once("CMD".to_owned()).chain(items).collect(),
            Err(_) => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
        };
        let _ = stage;
        Ok(check)
    }

    /// `COPY`/`ADD [--chown=uid:gid] [--chmod=mode] src... dest`: one layer.
    fn copy(&mut self, instruction: &Instruction, stage: &mut Stage, vars: &dyn Vars) -> Result<()> {
        let keyword = instruction.keyword.as_str();
        for (flag, _) in &instruction.flags {
            match flag.as_str() {
                "chown" | "chmod" | "link" => {}
                "checksum" if keyword == "ADD" => {}
                other => return Err(self.error(instruction, format!("Unknown `{keyword}` flag `--{other}`"))),
            }
        }
        let OwnerFlags { ids, name: chown_name, chmod } = self.owner_flags(instruction, vars)?;
        let checksum = match instruction.flag("checksum") {
            Some(text) => Some(self.checksum(instruction, &self.word(instruction, text, vars)?)?),
            None => None,
        };
        let (uid, gid) = ids.unwrap_or((0, 0));
        let mut words = self.words(instruction, vars)?;
        if words.len() < 2 {
            return Err(self.error(instruction, format!("`{keyword}` needs at least one source and a destination")));
        }
        let dest = words.pop().unwrap_or_default();
        let dest = if dest.starts_with('/') {
            dest
        } else {
            let workdir = stage.settings.workdir.clone().unwrap_or_else(|| "/".to_owned());
            format!("{}/{dest}", workdir.trim_end_matches('/'))
        };
        let dest_is_dir = dest.ends_with('/') || words.len() > 1;
        let dest = dest.trim_end_matches('/').to_owned();
        let urls = self.urls(instruction, &words, checksum)?;
        let mut entries: Vec<PlannedEntry> = Vec::new();
        let entry = |path: String, content: PlannedContent, mode: u32| PlannedEntry {
            path: normalise(&path),
            content,
            mode: Some(chmod.unwrap_or(mode)),
            uid,
            gid,
            mtime: None,
        };
        for source in &words {
            if let Some(heredoc) = instruction.heredocs.iter().find(|heredoc| {
                source
                    .strip_prefix("<<")
                    .is_some_and(|name| name.trim_start_matches('-').trim_matches(['"', '\'']) == heredoc.name)
            }) {
                let body = if heredoc.expand {
                    self.located(instruction, lex::expand_only(&heredoc.body, vars, self.escape))?
                } else {
                    heredoc.body.clone()
                };
                let path = if dest_is_dir { format!("{dest}/{}", heredoc.name) } else { dest.clone() };
                entries.push(entry(path, PlannedContent::Contents(body), 0o644));
                continue;
            }
            if let Some((url, digest)) = urls.iter().find(|(url, _)| url == source) {
                let path = if dest_is_dir {
                    format!("{dest}/{}", self.url_file_name(instruction, url)?)
                } else {
                    dest.clone()
                };
                // Docker gives a downloaded file mode 0600.
                entries.push(entry(path, PlannedContent::Source(format!("url:{}:{url}", digest.hex())), 0o600));
                continue;
            }
            let matched = self.matches(instruction, source)?;
            let single_file = matched.len() == 1 && matched[0].0.is_empty() && matched[0].1.is_some();
            for (relative, workspace_path) in matched {
                let Some(workspace_path) = workspace_path else {
                    // A directory of the context, below a copied directory.
                    let mode = self.context.dirs.get(&relative).copied().unwrap_or(0o755);
                    let dir_mode = match source_dir(&normalise(source)) {
                        Some(base) => self.context.dirs.get(&join(&base, &relative)).copied().unwrap_or(mode),
                        None => mode,
                    };
                    entries.push(entry(format!("{dest}/{relative}"), PlannedContent::Directory, dir_mode));
                    continue;
                };
                let mode = std::fs::metadata(self.analyzer.ctx.workspace_root.join(&workspace_path))
                    .map_err(|error| self.error(instruction, format!("Cannot read `{workspace_path}`: {error}")))?
                    .permissions()
                    .mode()
                    & 0o7777;
                // `ADD` unpacks a local tar (plain, gzip, bzip2 or xz) into the
                // destination directory, whatever its spelling.
                if keyword == "ADD" {
                    let host = self.analyzer.ctx.workspace_root.join(&workspace_path);
                    let archive = crate::oci::added_archive(&host)
                        .map_err(|error| self.error(instruction, format!("Cannot read `{workspace_path}`: {error}")))?;
                    if archive {
                        let unpack = PlannedContent::Source(format!("unpack:{workspace_path}"));
                        entries.push(entry(dest.clone(), unpack, 0o755));
                        continue;
                    }
                }
                let path = if single_file && !dest_is_dir {
                    dest.clone()
                } else if single_file {
                    let name = workspace_path.rsplit('/').next().unwrap_or(&workspace_path);
                    format!("{dest}/{name}")
                } else {
                    format!("{dest}/{relative}")
                };
                entries.push(entry(path, PlannedContent::Source(workspace_path), mode));
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        let created_by = format!("/bin/sh -c #(nop) {}", instruction.text);
        let mut sources: Vec<PathBuf> = Vec::new();
        // Source path → its index in `sources`: a directory of thousands of
        // files must not be searched once per file.
        let mut source_index: HashMap<String, usize> = HashMap::new();
        let mut index_of = |path: &str| {
            *source_index.entry(path.to_owned()).or_insert_with(|| {
                sources.push(PathBuf::from(path));
                sources.len() - 1
            })
        };
        let mut copies = Vec::new();
        for entry in entries {
            let content = match entry.content {
                PlannedContent::Source(path) if path.starts_with("unpack:") => {
                    CopyContent::Unpack(index_of(&path["unpack:".len()..]))
                }
                PlannedContent::Source(text) if text.starts_with("url:") => {
                    let (digest, url) = text["url:".len()..].split_once(':').unwrap_or_default();
                    let digest =
                        Digest::parse_lenient(digest).map_err(|_| Error::internal("a planned URL lost its digest"))?;
                    CopyContent::Url { url: url.to_owned(), digest }
                }
                PlannedContent::Source(path) => CopyContent::Source(index_of(&path)),
                PlannedContent::Contents(text) => CopyContent::Contents(text),
                PlannedContent::Directory | PlannedContent::Symlink(_) => CopyContent::Directory,
            };
            copies.push(CopyEntry { path: entry.path, content, mode: entry.mode.unwrap_or(0o644), uid, gid });
        }
        let spec = DockerfileRunSpec {
            location: format!("{}:{}", self.path, instruction.location.line),
            timeout_secs: RUN_TIMEOUT_SECS,
            source_date_epoch: self.analyzer.ctx.source_date_epoch,
            copies,
            chown_name,
            ..DockerfileRunSpec::default()
        };
        let action = DockerfileRun {
            base_config: BaseConfig::None,
            layers: stage.all_layers(),
            spec,
            sources,
            from_layers: Vec::new(),
            workspace_root: self.analyzer.ctx.workspace_root.to_path_buf(),
        };
        let action = self.analyzer.actions.add(self.target.label.clone(), Box::new(action));
        stage.layers.push((action, created_by));
        Ok(())
    }

    /// `--checksum=sha256:<hex>` of an `ADD`.
    fn checksum(&self, instruction: &Instruction, text: &str) -> Result<Digest> {
        text.strip_prefix("sha256:").and_then(|hex| Digest::parse_lenient(hex).ok()).ok_or_else(|| {
            self.error(instruction, format!("`--checksum={text}` is not `sha256:` and 64 lowercase hex digits"))
                .with_hint("`sha256sum FILE` prints the digits")
        })
    }

    /// The URL sources of an `ADD`, each with the digest it must have:
    /// http and https only, and only pinned by `--checksum`, which names
    /// one URL (as BuildKit has it).
    fn urls(
        &self,
        instruction: &Instruction,
        sources: &[String],
        checksum: Option<Digest>,
    ) -> Result<Vec<(String, Digest)>> {
        if instruction.keyword != "ADD" {
            return Ok(Vec::new());
        }
        let remote: Vec<&String> =
            sources.iter().filter(|source| source.contains("://") || source.starts_with("git@")).collect();
        if let Some(source) =
            remote.iter().find(|source| !source.starts_with("http://") && !source.starts_with("https://"))
        {
            return Err(self
                .error(
                    instruction,
                    format!("`ADD {source}` fetches from the network, which berth refuses for anything but an http or https URL with `--checksum`"),
                )
                .with_hint("fetch it into the workspace and `COPY` it"));
        }
        match (checksum, remote.as_slice()) {
            (None, []) => Ok(Vec::new()),
            (None, [source, ..]) => Err(self
                .error(
                    instruction,
                    format!("`ADD {source}` fetches from the network, which berth refuses without `--checksum`"),
                )
                .with_hint(format!(
                    "pin the file: `ADD --checksum=sha256:<digest> {source} <dest>` (`sha256sum` prints the digest), or fetch it into the workspace and `COPY` it"
                ))),
            (Some(digest), [source]) if sources.len() == 1 => Ok(vec![((*source).clone(), digest)]),
            (Some(_), _) => Err(self.error(instruction, "`ADD --checksum` takes exactly one source, an http or https URL")),
        }
    }

    /// The file name an `ADD URL dir/` writes: the last segment of the URL's
    /// path, as Docker names it.
    fn url_file_name(&self, instruction: &Instruction, url: &str) -> Result<String> {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let path = rest.split_once('/').map_or("", |(_, path)| path);
        let name = percent_decode(path.rsplit('/').next().unwrap_or_default());
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(self
                .error(instruction, format!("Cannot name the file `ADD {url}` writes: its URL path has no file name"))
                .with_hint("give the destination a file name (no trailing `/`)"));
        }
        Ok(name)
    }

    /// `COPY --from=stage src... dest`: one action reading the other stage's
    /// root when it runs.
    fn copy_from(
        &mut self,
        instruction: &Instruction,
        stage: &mut Stage,
        vars: &dyn Vars,
        from_layers: Vec<ActionId>,
    ) -> Result<()> {
        for (flag, _) in &instruction.flags {
            if !matches!(flag.as_str(), "from" | "chown" | "chmod" | "link") {
                return Err(self.error(instruction, format!("Unknown `{}` flag `--{flag}`", instruction.keyword)));
            }
        }
        let OwnerFlags { ids: chown, name: chown_name, chmod: mode } = self.owner_flags(instruction, vars)?;
        let mut words = self.words(instruction, vars)?;
        if words.len() < 2 {
            return Err(self
                .error(instruction, format!("`{}` needs at least one source and a destination", instruction.keyword)));
        }
        let dest = words.pop().unwrap_or_default();
        let into_dir = dest.ends_with('/') || words.len() > 1;
        let dest = if dest.starts_with('/') {
            normalise(&dest)
        } else {
            let workdir = stage.settings.workdir.clone().unwrap_or_else(|| "/".to_owned());
            normalise(&format!("{workdir}/{dest}"))
        };
        let glob_in_parent =
            |word: &&String| word.rsplit_once('/').is_some_and(|(dir, _)| dir.contains(['*', '?', '[']));
        if let Some(glob) = words.iter().find(glob_in_parent) {
            return Err(self
                .error(
                    instruction,
                    format!("`COPY --from` with a pattern in a directory of `{glob}` is not supported yet"),
                )
                .with_hint("name the files or directories to copy"));
        }
        let sources = words.iter().map(|word| normalise(word)).collect();
        let spec = DockerfileRunSpec {
            location: format!("{}:{}", self.path, instruction.location.line),
            timeout_secs: RUN_TIMEOUT_SECS,
            source_date_epoch: self.analyzer.ctx.source_date_epoch,
            copy_from: Some(CopyFrom { sources, dest, into_dir, chown, mode }),
            chown_name,
            ..DockerfileRunSpec::default()
        };
        let action = DockerfileRun {
            base_config: BaseConfig::None,
            layers: stage.all_layers(),
            spec,
            sources: Vec::new(),
            from_layers,
            workspace_root: self.analyzer.ctx.workspace_root.to_path_buf(),
        };
        let action = self.analyzer.actions.add(self.target.label.clone(), Box::new(action));
        stage.layers.push((action, format!("/bin/sh -c #(nop) {}", instruction.text)));
        Ok(())
    }

    /// The context files a COPY source names: a file (relative path `""`),
    /// or the files below a directory (relative to it), or what a glob
    /// matches.
    fn matches(&self, instruction: &Instruction, source: &str) -> Result<Vec<(String, Option<String>)>> {
        let clean = normalise(source).trim_start_matches('/').to_owned();
        let files = &self.context.files;
        if let Some(path) = files.get(&clean) {
            return Ok(vec![(String::new(), Some(path.clone()))]);
        }
        let dirs = &self.context.dirs;
        let below = |dir: &str| -> Vec<(String, Option<String>)> {
            let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
            let inner = |relative: &str| relative.strip_prefix(prefix.as_str()).map(str::to_owned);
            let mut found: Vec<(String, Option<String>)> = files
                .iter()
                .filter_map(|(relative, path)| inner(relative).map(|inner| (inner, Some(path.clone()))))
                .collect();
            if !found.is_empty() {
                found.extend(dirs.keys().filter_map(|relative| inner(relative).map(|inner| (inner, None))));
            }
            found
        };
        let has_glob = clean.contains(['*', '?', '[']);
        let mut found = if has_glob { Vec::new() } else { below(&clean) };
        if has_glob {
            let glob = GlobBuilder::new(&clean)
                .literal_separator(true)
                .build()
                .map_err(|error| self.error(instruction, format!("Bad source pattern `{source}`: {error}")))?
                .compile_matcher();
            for (relative, path) in files {
                if glob.is_match(relative) {
                    let name = relative.rsplit('/').next().unwrap_or(relative);
                    found.push((name.to_owned(), Some(path.clone())));
                    continue;
                }
                // A glob matching a directory copies what is below it.
                let mut parts = relative.split('/').collect::<Vec<_>>();
                parts.pop();
                while !parts.is_empty() {
                    let dir = parts.join("/");
                    if glob.is_match(&dir) {
                        found.push((relative[dir.len() + 1..].to_owned(), Some(path.clone())));
                        break;
                    }
                    parts.pop();
                }
            }
        }
        if found.is_empty() {
            let what = if has_glob { "matches no file" } else { "is not" };
            return Err(self
                .error(instruction, format!("`{} {source}`: `{source}` {what} in the context", instruction.keyword))
                .with_hint("the context is `srcs` (minus `.dockerignore`); add the file to `srcs`"));
        }
        Ok(found)
    }

    /// `--chown`: numeric ids now, or a name resolved in the image when
    /// the step runs (`Err(name)`).
    /// `--chown` and `--chmod` of a `COPY` or `ADD`.
    fn owner_flags(&self, instruction: &Instruction, vars: &dyn Vars) -> Result<OwnerFlags> {
        let mut flags = OwnerFlags { ids: None, name: None, chmod: None };
        if let Some(text) = instruction.flag("chown") {
            match self.chown(&self.word(instruction, text, vars)?) {
                Ok(ids) => flags.ids = Some(ids),
                Err(name) => flags.name = Some(name),
            }
        }
        if let Some(text) = instruction.flag("chmod") {
            flags.chmod =
                Some(u32::from_str_radix(text, 8).map_err(|_| {
                    self.error(instruction, format!("`--chmod={text}` is not an octal mode like `0755`"))
                })?);
        }
        Ok(flags)
    }

    fn chown(&self, text: &str) -> std::result::Result<(u32, u32), String> {
        let (user, group) = text.split_once(':').unwrap_or((text, text));
        match (user.parse::<u32>(), group.parse::<u32>()) {
            (Ok(uid), Ok(gid)) => Ok((uid, gid)),
            _ => Err(text.to_owned()),
        }
    }

    /// `RUN`: one `dockerfile_run` action over the stage's layers.
    fn run(&mut self, instruction: &Instruction, stage: &mut Stage) -> Result<()> {
        let mut network = self.attrs.network;
        let mut secrets = Vec::new();
        let mut caches = Vec::new();
        for (flag, value) in &instruction.flags {
            match flag.as_str() {
                "network" => match value.as_str() {
                    "none" => network = false,
                    "default" | "host" if self.attrs.network => network = true,
                    "default" | "host" => {
                        return Err(self.error(
                            instruction,
                            format!("`RUN --network={value}` needs `network = True` on `{}`", self.target.label),
                        ))
                    }
                    other => return Err(self.error(instruction, format!("Unknown network `{other}`"))),
                },
                "mount" if value.split(',').any(|part| part == "type=cache") => {
                    caches.push(self.cache_mount(instruction, value)?)
                }
                "mount" => secrets.push(self.secret_mount(instruction, value)?),
                other => return Err(self.error(instruction, format!("Unknown `RUN` flag `--{other}`"))),
            }
        }
        let args = match &instruction.args {
            Args::Json(items) => items.clone(),
            Args::Shell(text) => {
                let mut script = text.clone();
                let only_heredoc = instruction.heredocs.len() == 1
                    && text.trim().strip_prefix("<<").is_some_and(|name| {
                        name.trim_start_matches('-').trim_matches(['"', '\'']) == instruction.heredocs[0].name
                    });
                if only_heredoc {
                    script = instruction.heredocs[0].body.clone();
                } else {
                    for heredoc in &instruction.heredocs {
                        script.push('\n');
                        script.push_str(&heredoc.body);
                        script.push_str(&heredoc.name);
                    }
                }
                let mut args = stage.shell.clone();
                args.push(script);
                args
            }
        };
        let mut env: Vec<String> = stage.args.iter().map(|(key, value)| format!("{key}={value}")).collect();
        env.extend(stage.settings.env.iter().map(|(key, value)| format!("{key}={value}")));
        let location = format!("{}:{}", self.path, instruction.location.line);
        let created_by = match &instruction.args {
            Args::Shell(_) => args.join(" "),
            Args::Json(items) => format!("RUN {}", serde_json::Value::from(items.clone())),
        };
        let spec = DockerfileRunSpec {
            location,
            args,
            env,
            workdir: stage.settings.workdir.clone(),
            user: stage.settings.user.clone(),
            network,
            secrets,
            hosts: self.attrs.add_hosts.clone(),
            caches,
            timeout_secs: RUN_TIMEOUT_SECS,
            source_date_epoch: self.analyzer.ctx.source_date_epoch,
            ..DockerfileRunSpec::default()
        };
        let action = DockerfileRun {
            base_config: stage.base_config.clone(),
            layers: stage.all_layers(),
            spec,
            sources: Vec::new(),
            from_layers: Vec::new(),
            workspace_root: self.analyzer.ctx.workspace_root.to_path_buf(),
        };
        let action = self.analyzer.actions.add(self.target.label.clone(), Box::new(action));
        stage.layers.push((action, created_by));
        Ok(())
    }

    /// `WORKDIR`: a layer holding the directory where the stage lacks it.
    fn workdir(&mut self, instruction: &Instruction, stage: &mut Stage, dir: String) {
        let spec = DockerfileRunSpec {
            location: format!("{}:{}", self.path, instruction.location.line),
            timeout_secs: RUN_TIMEOUT_SECS,
            source_date_epoch: self.analyzer.ctx.source_date_epoch,
            mkdir: Some(dir),
            ..DockerfileRunSpec::default()
        };
        let action = DockerfileRun {
            base_config: BaseConfig::None,
            layers: stage.all_layers(),
            spec,
            sources: Vec::new(),
            from_layers: Vec::new(),
            workspace_root: self.analyzer.ctx.workspace_root.to_path_buf(),
        };
        let action = self.analyzer.actions.add(self.target.label.clone(), Box::new(action));
        stage.layers.push((action, format!("/bin/sh -c #(nop) {}", instruction.text)));
    }

    /// `--mount=type=cache,target=PATH[,id=ID]`: `(id, target)`.
    fn cache_mount(&self, instruction: &Instruction, value: &str) -> Result<(String, String)> {
        let mut id = None;
        let mut target = None;
        for part in value.split(',') {
            let (key, val) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "type" => {}
                "id" => id = Some(val.to_owned()),
                "target" | "dst" | "destination" => target = Some(normalise(val)),
                "sharing" | "mode" | "uid" | "gid" => {}
                other => {
                    return Err(
                        self.error(instruction, format!("`--mount=type=cache` option `{other}` is not supported"))
                    )
                }
            }
        }
        let Some(target) = target.filter(|target| target != "/") else {
            return Err(self.error(instruction, "`--mount=type=cache` needs `target=/some/dir`"));
        };
        Ok((id.unwrap_or_else(|| target.clone()), target))
    }

    /// `--mount=type=secret,id=ID[,target=PATH]`, the id from `secrets`.
    fn secret_mount(&self, instruction: &Instruction, value: &str) -> Result<(String, String, String)> {
        let mut kind = "bind";
        let mut id = None;
        let mut target = None;
        for part in value.split(',') {
            let (key, val) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "type" => kind = val,
                "id" => id = Some(val.to_owned()),
                "target" | "dst" | "destination" => target = Some(val.to_owned()),
                "required" | "mode" | "uid" | "gid" => {}
                other => return Err(self.error(instruction, format!("Unknown `--mount` option `{other}`"))),
            }
        }
        if kind != "secret" {
            return Err(self
                .error(instruction, format!("`RUN --mount=type={kind}` is not supported yet"))
                .with_hint("berth supports `--mount=type=secret`"));
        }
        let Some(id) = id.or_else(|| target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_owned))) else {
            return Err(self.error(instruction, "`--mount=type=secret` needs `id=...`"));
        };
        let Some((_, label)) = self.attrs.secrets.iter().find(|(key, _)| *key == id) else {
            let known: Vec<&str> = self.attrs.secrets.iter().map(|(key, _)| key.as_str()).collect();
            return Err(self
                .error(instruction, format!("Secret `{id}` is not in `secrets` of `{}`", self.target.label))
                .with_hint(if known.is_empty() {
                    format!("add `secrets = {{\"{id}\": \"path/to/file\"}}`")
                } else {
                    format!("known secrets: {}", known.join(", "))
                }));
        };
        let Some(path) = self.analyzer.source_path(label) else {
            return Err(at(self.target, format!("Secret `{id}` names `{label}`, which is not a source file")));
        };
        let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
        Ok((id, path.to_owned(), target))
    }
}

/// `30s`, `1m30s`, `500ms`, `1h` in nanoseconds.
fn parse_duration(text: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total as u64)
}

/// `%xx` escapes of a URL path segment decoded; a malformed escape is kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The context directory a COPY source names (`/src` → `src`), if it is
/// not a glob.
fn source_dir(source: &str) -> Option<String> {
    (!source.contains(['*', '?', '['])).then(|| source.trim_start_matches('/').to_owned())
}

fn join(base: &str, relative: &str) -> String {
    if base.is_empty() {
        relative.to_owned()
    } else {
        format!("{base}/{relative}")
    }
}

/// An absolute path without `.`, `..` or repeated slashes.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_last_match_wins_and_covers_directories() {
        let ignore = DockerIgnore::parse(".dockerignore", "# c\nbuild\n*.log\n!keep.log\n**/tmp\n").unwrap();
        assert!(ignore.excludes("build/out.o"));
        assert!(ignore.excludes("a.log"));
        assert!(!ignore.excludes("keep.log"));
        assert!(!ignore.excludes("sub/a.log"));
        assert!(ignore.excludes("sub/tmp/x"));
        assert!(!ignore.excludes("src/main.c"));
    }

    #[test]
    fn durations_and_paths() {
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(normalise("/app/./b/../c//d"), "/app/c/d");
    }

    #[test]
    fn url_path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("tool%20v1.tar.gz"), "tool v1.tar.gz");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
