//! Stamping, as Bazel does it: with `--stamp`, the workspace's status
//! command (`workspace_status(command = ...)` in `WORKSPACE.star`) prints
//! `KEY VALUE` lines, and `{KEY}` in the registry tags (`tag`, `tags`),
//! `labels` and `annotations` of images and indexes is replaced by `VALUE`
//! before analysis.
//!
//! Only those attribute values change, so a stamped value reaches the key of
//! the config, manifest or index action that holds it and no other; without
//! `--stamp` the placeholders stay literal and every digest is the one of an
//! unstamped build. A `{NAME}` the status command did not print stays
//! literal too (as rules_oci's `expand_template`).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::graph::{KeyValues, RuleAttrs, TargetGraph};
use crate::workspace::{Workspace, WORKSPACE_FILE};

/// How long the status command may run.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// The most it may print.
const MAX_STATUS_OUTPUT: u64 = 1 << 20;

/// Runs the workspace status command at the workspace root and parses its
/// `KEY VALUE` lines.
pub fn workspace_status(workspace: &Workspace) -> Result<BTreeMap<String, String>> {
    let command = workspace.settings.workspace_status.as_deref().ok_or_else(|| {
        Error::user("`--stamp` needs a workspace status command, and none is declared").with_hint(format!(
            "add `workspace_status(command = \"tools/status.sh\")` to `{WORKSPACE_FILE}`; the command prints `KEY VALUE` lines"
        ))
    })?;
    let failed = |reason: String| {
        Error::user(format!("The workspace status command `{command}` failed: {reason}")).with_hint(format!(
            "it runs with `/bin/sh -c` at the workspace root (`workspace_status` in `{WORKSPACE_FILE}`)"
        ))
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(&workspace.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run it: {error}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.take(MAX_STATUS_OUTPUT + 1).read_to_end(&mut bytes);
        bytes
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let error_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.take(64 << 10).read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + STATUS_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|error| failed(error.to_string()))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("it did not finish within {} s", STATUS_TIMEOUT.as_secs())));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let output = reader.join().unwrap_or_default();
    if !status.success() {
        let stderr = error_reader.join().unwrap_or_default();
        return Err(failed(format!("{status}: {}", String::from_utf8_lossy(&stderr).trim())));
    }
    if output.len() as u64 > MAX_STATUS_OUTPUT {
        return Err(failed(format!("it printed more than {MAX_STATUS_OUTPUT} bytes")));
    }
    parse_status(&String::from_utf8_lossy(&output)).map_err(failed)
}

/// `KEY VALUE` lines (the value is the rest of the line); blank lines are
/// skipped, a key is letters, digits and `_`.
fn parse_status(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {} is `{line}`, not `KEY VALUE`", number + 1));
        }
        values.insert(key.to_owned(), value.to_owned());
    }
    Ok(values)
}

/// Fills `{KEY}` in the stampable attributes of every image and index.
pub fn apply(graph: &mut TargetGraph, values: &BTreeMap<String, String>) {
    let fill = |text: &mut String| *text = expand(text, values);
    // Values read from a `KEY=VALUE` file (rules_oci's spelling) are not stamped:
    // the file is read by analysis, after stamping.
    let fill_dict = |values: &mut KeyValues| {
        if let Some(pairs) = values.pairs_mut() {
            pairs.iter_mut().for_each(|(_, value)| fill(value));
        }
    };
    for target in graph.targets_mut() {
        match &mut target.attrs {
            RuleAttrs::OciImageBuild(attrs) => {
                attrs.tag.iter_mut().for_each(fill);
                attrs.remote_tags.iter_mut().for_each(fill);
                fill_dict(&mut attrs.labels);
                fill_dict(&mut attrs.annotations);
            }
            RuleAttrs::OciImageIndex(attrs) => {
                attrs.tag.iter_mut().for_each(fill);
                attrs.remote_tags.iter_mut().for_each(fill);
                attrs.annotations.iter_mut().for_each(|(_, value)| fill(value));
            }
            RuleAttrs::OciDockerfile(attrs) => {
                attrs.tag.iter_mut().for_each(fill);
                attrs.remote_tags.iter_mut().for_each(fill);
                attrs.labels.iter_mut().for_each(|(_, value)| fill(value));
            }
            RuleAttrs::OciPush(attrs) => attrs.remote_tags.iter_mut().for_each(fill),
            _ => {}
        }
    }
}

/// `text` with every `{KEY}` that `values` has replaced.
fn expand(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((key, close)) if values.contains_key(key) => {
                out.push_str(&values[key]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_lines() {
        let values = parse_status("STABLE_GIT_COMMIT abc123\n\nBUILD_USER ci bot\nEMPTY\n").unwrap();
        assert_eq!(values["STABLE_GIT_COMMIT"], "abc123");
        assert_eq!(values["BUILD_USER"], "ci bot");
        assert_eq!(values["EMPTY"], "");
        assert_eq!(parse_status("not-a-key value").unwrap_err(), "line 1 is `not-a-key value`, not `KEY VALUE`");
    }

    #[test]
    fn expands_known_keys_and_leaves_the_rest() {
        let values = parse_status("COMMIT abc123\nBRANCH main\n").unwrap();
        assert_eq!(expand("{COMMIT}", &values), "abc123");
        assert_eq!(expand("v1-{BRANCH}-{COMMIT}", &values), "v1-main-abc123");
        assert_eq!(expand("{UNKNOWN} {COMMIT", &values), "{UNKNOWN} {COMMIT");
        assert_eq!(expand("{\"json\": {COMMIT}}", &values), "{\"json\": abc123}");
    }
}
