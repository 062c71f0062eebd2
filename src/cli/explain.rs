//! `berth explain LABEL`: for each action of the target in the last build,
//! cached or ran, and for each that ran, which part of its key changed since
//! the build before (following changed dependencies to where it started).

use clap::Args;

use crate::cli::global::current_dir;
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exec::{explain, ActionExplanation, ActionStatus, BuildLog};
use crate::workspace::{find_root, Label};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The target whose actions to explain
    pub label: String,
}

pub fn run(args: ExplainArgs, _global: &GlobalArgs) -> Result<i32> {
    let label = Label::parse(&args.label, "")?;
    let root = find_root(&current_dir()?)?;
    let (last, previous) = BuildLog::load(&root.join("berth-out"));
    let last = last.ok_or_else(|| {
        Error::user("No build of this workspace is recorded").with_hint("run `berth build` first, then `berth explain`")
    })?;
    let explained = explain(&label, &last, previous.as_ref()).ok_or_else(|| {
        Error::user(format!("`{label}` had no action in the last build"))
            .with_hint(format!("build it with `berth build {label}`, then explain it"))
    })?;
    let mut stdout = Stdout::lock();
    stdout.print(format_args!("{}", render(&explained)))?;
    stdout.flush()?;
    Ok(0)
}

/// One line per action, then one indented line per reason it ran.
fn render(explained: &[ActionExplanation]) -> String {
    let mut text = String::new();
    for action in explained {
        let status = match action.status {
            ActionStatus::Ran => "ran",
            ActionStatus::Cached => "cached",
            ActionStatus::Remote => "remote cache hit",
        };
        text.push_str(&format!("{}: {status}\n", action.name));
        for reason in &action.reasons {
            text.push_str(&format!("    {reason}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Digest;
    use crate::exec::{ActionName, Reason};

    #[test]
    fn renders_one_line_per_action_and_reason() {
        let name = |owner: &str, kind: &str, ordinal| ActionName { owner: owner.into(), kind: kind.into(), ordinal };
        let explained = [
            ActionExplanation {
                name: name("//base:layer", "pack_layer", 1),
                status: ActionStatus::Ran,
                reasons: vec![
                    Reason::FileChanged { path: "base/a.txt".into(), old: Digest::of(b"a"), new: Digest::of(b"b") },
                    Reason::Param { path: "/mode".into(), old: Some(420.into()), new: None },
                ],
            },
            ActionExplanation {
                name: name("//app:image", "write_manifest", 0),
                status: ActionStatus::Cached,
                reasons: vec![],
            },
            ActionExplanation {
                name: name("//app:index", "write_index", 0),
                status: ActionStatus::Remote,
                reasons: vec![],
            },
        ];
        assert_eq!(
            render(&explained),
            format!(
                "//base:layer (pack_layer #2): ran\n    source file `base/a.txt` changed: {} -> {}\n    param `/mode` changed: 420 -> (unset)\n//app:image (write_manifest): cached\n//app:index (write_index): remote cache hit\n",
                Digest::of(b"a"),
                Digest::of(b"b")
            )
        );
    }
}
