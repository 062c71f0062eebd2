//! The build log behind `berth explain`: for the last two builds of a
//! workspace, each action's key inputs (kind, params, input digests) and
//! whether it ran or was cached, kept in `berth-out/.berth/`. Explaining
//! compares the two: for each action that ran, which part of its key changed.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::actions::{ActionGraph, Input};
use crate::cache::{canonical_json, CanonicalJson, Digest, KeyInput};
use crate::error::{Diagnose, ErrorKind};
use crate::exec::{ActionStatus, BuildResult};
use crate::sys::{AtomicFile, Durability};
use crate::workspace::Label;

/// Bumped when the log's shape changes; an older log reads as absent.
const LOG_FORMAT: u32 = 1;
const LAST: &str = "last-build.json";
const PREVIOUS: &str = "previous-build.json";

/// Names one action across builds (ids change; the owner, kind and the
/// action's rank among its owner's actions of that kind do not).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ActionName {
    pub owner: String,
    pub kind: String,
    pub ordinal: usize,
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.owner, self.kind)?;
        if self.ordinal > 0 {
            write!(f, " #{}", self.ordinal + 1)?;
        }
        write!(f, ")")
    }
}

/// An input as logged: a file with its digest, or a dependency by name with
/// the digest of its output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoggedInput {
    File { path: String, digest: Digest },
    Action { name: ActionName, output: Digest },
}

/// One action of a build, with everything its key was made of.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoggedAction {
    pub name: ActionName,
    pub status: ActionStatus,
    pub key: Digest,
    pub output: Digest,
    pub kind_version: u32,
    pub berth_format_version: u32,
    pub params: CanonicalJson,
    pub inputs: Vec<LoggedInput>,
}

/// The actions of one build, in dependency order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildLog {
    pub format: u32,
    pub actions: Vec<LoggedAction>,
}

#[derive(Debug, thiserror::Error)]
#[error("Cannot write the build log at `{path}`: {source}")]
pub struct HistoryError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl Diagnose for HistoryError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Environment
    }
}

impl BuildLog {
    /// The log of a finished build of `graph`.
    pub fn new(graph: &ActionGraph, result: &BuildResult) -> BuildLog {
        // Rank of each action among its owner's actions of the same kind.
        let mut seen: BTreeMap<(String, &str), usize> = BTreeMap::new();
        let names: Vec<ActionName> = graph
            .iter()
            .map(|(_, node)| {
                let owner = node.owner.to_string();
                let kind = node.action.kind();
                let rank = seen.entry((owner.clone(), kind)).or_default();
                let name = ActionName { owner, kind: kind.to_owned(), ordinal: *rank };
                *rank += 1;
                name
            })
            .collect();
        let mut order: Vec<_> = result.records.values().collect();
        // Dependency order: ids are registered after their inputs.
        order.sort_by_key(|record| record.id);
        let actions = order
            .into_iter()
            .map(|record| {
                // Dependencies in declaration order, matched to the key's action inputs.
                let mut deps = graph[record.id].action.inputs().into_iter().filter_map(|input| match input {
                    Input::Action(dep) => Some(dep),
                    Input::Source(_) => None,
                });
                let inputs = record
                    .key_inputs
                    .inputs
                    .iter()
                    .map(|input| match input {
                        KeyInput::File { path, digest } => LoggedInput::File { path: path.clone(), digest: *digest },
                        KeyInput::Action { output } => {
                            let dep = deps.next().expect("an action declares the same inputs every time it is asked");
                            LoggedInput::Action { name: names[dep.0].clone(), output: *output }
                        }
                    })
                    .collect();
                LoggedAction {
                    name: names[record.id.0].clone(),
                    status: record.status,
                    key: record.key,
                    output: record.output_digest,
                    kind_version: record.key_inputs.kind_version,
                    berth_format_version: record.key_inputs.berth_format_version,
                    params: record.key_inputs.params.clone(),
                    inputs,
                }
            })
            .collect();
        BuildLog { format: LOG_FORMAT, actions }
    }

    /// Stores this log as the last build of the workspace whose output
    /// directory is `out_dir` (`<workspace>/berth-out`); the log it replaces
    /// becomes the previous one.
    pub fn save(&self, out_dir: &Path) -> Result<(), HistoryError> {
        let dir = out_dir.join(".berth");
        let at = |path: &Path| {
            let path = path.to_owned();
            move |source| HistoryError { path, source }
        };
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        let last = dir.join(LAST);
        match fs::rename(&last, dir.join(PREVIOUS)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(at(&last)(error)),
            _ => {}
        }
        // Unsynced: a log lost to a power cut only costs `berth explain` its
        // comparison (`load` treats an unreadable log as absent), and a
        // no-op build should not wait on the disk for it.
        let temp = AtomicFile::new_in(&dir).map_err(at(&dir))?.with_durability(Durability::Unsynced);
        // Plain serde_json, not canonical: nothing takes the log's digest,
        // and a 30,000-input action's entry is written in one pass.
        let mut writer = io::BufWriter::new(temp);
        serde_json::to_writer(&mut writer, self).map_err(io::Error::from).map_err(at(&last))?;
        let temp = writer.into_inner().map_err(|error| at(&last)(error.into_error()))?;
        temp.commit(&last).map_err(at(&last))?;
        Ok(())
    }

    /// The last and the previous build logs under `out_dir`, if recorded.
    pub fn load(out_dir: &Path) -> (Option<BuildLog>, Option<BuildLog>) {
        let read = |name| {
            fs::read(out_dir.join(".berth").join(name))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<BuildLog>(&bytes).ok())
                .filter(|log| log.format == LOG_FORMAT)
        };
        (read(LAST), read(PREVIOUS))
    }
}

/// Why an action ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Reason {
    /// There is no earlier build to compare with.
    NoPreviousBuild,
    /// The previous build had no such action.
    NewAction,
    /// The key is the one of the previous build, but the cache had no entry
    /// (cleaned, collected, or a blob was lost).
    NotInCache,
    KindVersion {
        old: u32,
        new: u32,
    },
    FormatVersion {
        old: u32,
        new: u32,
    },
    /// A param changed; `path` is a JSON pointer (`/mode`, `/env/PATH`).
    Param {
        path: String,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    },
    FileChanged {
        path: String,
        old: Digest,
        new: Digest,
    },
    FileAdded {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    DependencyChanged {
        name: ActionName,
    },
    DependencyAdded {
        name: ActionName,
    },
    DependencyRemoved {
        name: ActionName,
    },
    /// The same inputs, declared in another order.
    InputOrder,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |value: &Option<serde_json::Value>| match value {
            Some(value) => String::from_utf8_lossy(&canonical_json(value)).into_owned(),
            None => "(unset)".to_owned(),
        };
        match self {
            Reason::NoPreviousBuild => write!(f, "no earlier build to compare with"),
            Reason::NewAction => write!(f, "new action (not in the previous build)"),
            Reason::NotInCache => write!(f, "same key as before, but not in the cache (cleaned or collected)"),
            Reason::KindVersion { old, new } => write!(f, "action kind version changed: {old} -> {new}"),
            Reason::FormatVersion { old, new } => write!(f, "berth format version changed: {old} -> {new}"),
            Reason::Param { path, old, new } => write!(f, "param `{path}` changed: {} -> {}", value(old), value(new)),
            Reason::FileChanged { path, old, new } => write!(f, "source file `{path}` changed: {old} -> {new}"),
            Reason::FileAdded { path } => write!(f, "source file `{path}` added"),
            Reason::FileRemoved { path } => write!(f, "source file `{path}` removed"),
            Reason::DependencyChanged { name } => write!(f, "dependency {name} changed its output"),
            Reason::DependencyAdded { name } => write!(f, "dependency {name} added"),
            Reason::DependencyRemoved { name } => write!(f, "dependency {name} removed"),
            Reason::InputOrder => write!(f, "inputs declared in another order"),
        }
    }
}

/// One action in an explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionExplanation {
    pub name: ActionName,
    pub status: ActionStatus,
    /// Empty for a cached action.
    pub reasons: Vec<Reason>,
}

/// Explains the actions owned by `label` in `last`, followed by the
/// dependency actions (of other targets) that ran because of them, in
/// dependency order. `None` if `last` has no action of `label`.
pub fn explain(label: &Label, last: &BuildLog, previous: Option<&BuildLog>) -> Option<Vec<ActionExplanation>> {
    let owner = label.to_string();
    let by_name: BTreeMap<&ActionName, &LoggedAction> = last.actions.iter().map(|a| (&a.name, a)).collect();
    let previous: Option<BTreeMap<&ActionName, &LoggedAction>> =
        previous.map(|log| log.actions.iter().map(|a| (&a.name, a)).collect());

    let mut wanted: Vec<&ActionName> =
        last.actions.iter().filter(|action| action.name.owner == owner).map(|action| &action.name).collect();
    if wanted.is_empty() {
        return None;
    }
    // Follow changed dependencies that ran, whoever owns them.
    let mut included: std::collections::BTreeSet<&ActionName> = wanted.iter().copied().collect();
    let mut explained = BTreeMap::new();
    while let Some(name) = wanted.pop() {
        let action = by_name[name];
        let reasons = match action.status {
            ActionStatus::Cached | ActionStatus::Remote => Vec::new(),
            ActionStatus::Ran => match &previous {
                None => vec![Reason::NoPreviousBuild],
                Some(previous) => match previous.get(name) {
                    None => vec![Reason::NewAction],
                    Some(old) => diff(old, action),
                },
            },
        };
        for reason in &reasons {
            if let Reason::DependencyChanged { name } | Reason::DependencyAdded { name } = reason {
                if let Some(dep) = by_name.get(name) {
                    if dep.status == ActionStatus::Ran && included.insert(&dep.name) {
                        wanted.push(&dep.name);
                    }
                }
            }
        }
        explained.insert(name, ActionExplanation { name: name.clone(), status: action.status, reasons });
    }
    Some(last.actions.iter().filter_map(|action| explained.remove(&action.name)).collect())
}

/// Which parts of the key differ between two builds of one action.
fn diff(old: &LoggedAction, new: &LoggedAction) -> Vec<Reason> {
    if old.key == new.key {
        return vec![Reason::NotInCache];
    }
    let mut reasons = Vec::new();
    if old.kind_version != new.kind_version {
        reasons.push(Reason::KindVersion { old: old.kind_version, new: new.kind_version });
    }
    if old.berth_format_version != new.berth_format_version {
        reasons.push(Reason::FormatVersion { old: old.berth_format_version, new: new.berth_format_version });
    }
    diff_values("", Some(&old.params.to_value()), Some(&new.params.to_value()), &mut reasons);

    let files = |action: &LoggedAction| -> BTreeMap<String, Digest> {
        action
            .inputs
            .iter()
            .filter_map(|input| match input {
                LoggedInput::File { path, digest } => Some((path.clone(), *digest)),
                LoggedInput::Action { .. } => None,
            })
            .collect()
    };
    let deps = |action: &LoggedAction| -> BTreeMap<ActionName, Digest> {
        action
            .inputs
            .iter()
            .filter_map(|input| match input {
                LoggedInput::Action { name, output } => Some((name.clone(), *output)),
                LoggedInput::File { .. } => None,
            })
            .collect()
    };
    let (old_files, new_files) = (files(old), files(new));
    for (path, digest) in &new_files {
        match old_files.get(path) {
            None => reasons.push(Reason::FileAdded { path: path.clone() }),
            Some(old) if old != digest => {
                reasons.push(Reason::FileChanged { path: path.clone(), old: *old, new: *digest })
            }
            Some(_) => {}
        }
    }
    for path in old_files.keys().filter(|path| !new_files.contains_key(*path)) {
        reasons.push(Reason::FileRemoved { path: path.clone() });
    }
    let (old_deps, new_deps) = (deps(old), deps(new));
    for (name, output) in &new_deps {
        match old_deps.get(name) {
            None => reasons.push(Reason::DependencyAdded { name: name.clone() }),
            Some(old) if old != output => reasons.push(Reason::DependencyChanged { name: name.clone() }),
            Some(_) => {}
        }
    }
    for name in old_deps.keys().filter(|name| !new_deps.contains_key(*name)) {
        reasons.push(Reason::DependencyRemoved { name: name.clone() });
    }
    if reasons.is_empty() {
        reasons.push(Reason::InputOrder);
    }
    reasons
}

/// Appends a `Param` reason for every leaf where `old` and `new` differ.
fn diff_values(
    path: &str,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    reasons: &mut Vec<Reason>,
) {
    use serde_json::Value;
    match (old, new) {
        (Some(Value::Object(old)), Some(Value::Object(new))) => {
            let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for key in keys {
                let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                diff_values(&child, old.get(key), new.get(key), reasons);
            }
        }
        (old, new) if old != new => reasons.push(Reason::Param {
            path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
            old: old.cloned(),
            new: new.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(params: serde_json::Value, inputs: Vec<LoggedInput>) -> LoggedAction {
        let name = ActionName { owner: "//app:img".into(), kind: "pack_layer".into(), ordinal: 0 };
        let key = Digest::of(&canonical_json(&(&params, &inputs)));
        LoggedAction {
            name,
            status: ActionStatus::Ran,
            key,
            output: Digest::of(b"out"),
            kind_version: 1,
            berth_format_version: 1,
            params: CanonicalJson::of(&params),
            inputs,
        }
    }

    #[test]
    fn diff_names_params_files_and_dependencies() {
        let dep = |owner: &str, output: &[u8]| LoggedInput::Action {
            name: ActionName { owner: owner.into(), kind: "pack_layer".into(), ordinal: 0 },
            output: Digest::of(output),
        };
        let file = |path: &str, bytes: &[u8]| LoggedInput::File { path: path.into(), digest: Digest::of(bytes) };
        let old = action(
            serde_json::json!({"mode": 420, "env": {"A": "1"}}),
            vec![file("a", b"1"), file("gone", b"x"), dep("//x:a", b"1"), dep("//x:b", b"1")],
        );
        let new = action(
            serde_json::json!({"mode": 493, "env": {"A": "1", "B/C": "2"}}),
            vec![file("a", b"2"), file("new", b"y"), dep("//x:a", b"1"), dep("//x:b", b"2")],
        );
        let reasons: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                r#"param `/env/B~1C` changed: (unset) -> "2""#.to_owned(),
                "param `/mode` changed: 420 -> 493".to_owned(),
                format!("source file `a` changed: {} -> {}", Digest::of(b"1"), Digest::of(b"2")),
                "source file `new` added".to_owned(),
                "source file `gone` removed".to_owned(),
                "dependency //x:b (pack_layer) changed its output".to_owned(),
            ]
        );
        assert_eq!(diff(&old, &old), vec![Reason::NotInCache]);
    }
}
