//! `env`, `labels` and `annotations` given as a file of `KEY=VALUE` lines
//! (rules_oci's `env = "env.txt"`): read during analysis, so the pairs are
//! part of the action's params and a changed file is a changed key.

use crate::analysis::{at, Analyzer};
use crate::error::{Error, Result};
use crate::graph::{KeyValues, TargetNode};
use crate::workspace::Location;

/// The pairs of `attr`, in order: as written in the BUILD file, or read
/// from the source file it names.
pub fn key_values(
    analyzer: &Analyzer<'_>,
    target: &TargetNode,
    attr: &str,
    value: &KeyValues,
) -> Result<Vec<(String, String)>> {
    let label = match value {
        KeyValues::Pairs(pairs) => return Ok(pairs.clone()),
        KeyValues::File(label) => label,
    };
    let source = analyzer.ctx.graph.source_file(label).ok_or_else(|| {
        at(target, format!("Attribute `{attr}` of `{}` names `{label}`, which is not a source file", target.label))
            .with_hint(format!("`{attr}` takes a dict, or a file of `KEY=VALUE` lines in the package"))
    })?;
    let path = analyzer.ctx.workspace_root.join(&source.path);
    let text = std::fs::read(&path).map_err(|error| {
        at(target, format!("Cannot read `{}` (attribute `{attr}` of `{}`): {error}", source.path, target.label))
    })?;
    let text = String::from_utf8(text).map_err(|_| {
        Error::user(format!("`{}` (attribute `{attr}` of `{}`) is not UTF-8 text", source.path, target.label))
            .at(Location { path: source.path.clone(), line: 1, column: 1 })
    })?;
    parse(&text).map_err(|(line, message)| {
        Error::user(format!("{message} (attribute `{attr}` of `{}`)", target.label))
            .at(Location { path: source.path.clone(), line, column: 1 })
            .with_hint("each line is `KEY=VALUE`; blank lines and lines starting with `#` are skipped")
    })
}

/// `KEY=VALUE` lines in order, a later line replacing an earlier one of the
/// same key, as the `env` list does. Values are taken verbatim (no quotes
/// removed, no expansion here). A malformed line is `(line number, why)`.
pub fn parse(text: &str) -> std::result::Result<Vec<(String, String)>, (u32, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index as u32 + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((number, format!("Line {number} is not `KEY=VALUE`: `{line}`")));
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err((number, format!("Line {number} has no valid key: `{line}`")));
        }
        pairs.retain(|(existing, _)| existing != key);
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_order_comments_and_blanks_skipped() {
        let pairs = parse("# env\nA=1\n\nB=x=y\r\nA=2\nEMPTY=\n").unwrap();
        let expected = [("B", "x=y"), ("A", "2"), ("EMPTY", "")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn a_malformed_line_names_its_number() {
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().0, 2);
        assert_eq!(parse("=value\n").unwrap_err().0, 1);
        assert_eq!(parse("A=1\nMY KEY=2\n").unwrap_err().0, 2);
    }
}
