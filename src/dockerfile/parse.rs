//! Reading a Dockerfile into [`Instruction`]s: parser directives
//! (`# escape=`), comments, line continuations, heredocs (`<<EOF`) and the
//! JSON (exec) and shell forms, as Docker's own parser reads them. Words are
//! not substituted here: that needs the ARG and ENV values in force at each
//! instruction, which [`crate::dockerfile::lex`] applies later.
//!
//! Every error names the `Dockerfile:line:col` it is about.

use crate::error::{Error, Result};
use crate::workspace::Location;

/// The instructions berth knows, upper case.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Instructions that take `--flag=value` options before their arguments.
const TAKES_FLAGS: &[&str] = &["ADD", "COPY", "FROM", "HEALTHCHECK", "RUN"];

/// Instructions whose arguments may open heredocs.
const TAKES_HEREDOCS: &[&str] = &["ADD", "COPY", "RUN"];

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// One instruction, before substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The instruction's keyword, upper case.
    pub keyword: String,
    /// Where the keyword is.
    pub location: Location,
    /// `--name=value` options, in order (`--link` alone has value `true`).
    pub flags: Vec<(String, String)>,
    pub args: Args,
    /// Heredoc bodies opened on the instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written after joining continuation lines, keyword
    /// included (for history's `created_by` and messages).
    pub text: String,
}

/// An instruction's arguments after its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`: the exec form.
    Json(Vec<String>),
    /// Anything else, verbatim (trimmed).
    Shell(String),
}

/// `<<NAME` ... `NAME`: a body read from the lines after the instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// Unquoted names expand variables in the body; `<<"EOF"` does not.
    pub expand: bool,
}

impl Instruction {
    /// The value of flag `name`, if given (the last one wins).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(flag, _)| flag == name).map(|(_, value)| value.as_str())
    }

    /// All values of flag `name` (`--mount` may repeat).
    pub fn flag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags.iter().filter(move |(flag, _)| flag == name).map(|(_, value)| value.as_str())
    }

    /// The arguments as one shell-form string (the JSON form re-joined).
    pub fn shell_text(&self) -> String {
        match &self.args {
            Args::Shell(text) => text.clone(),
            Args::Json(words) => words.join(" "),
        }
    }
}

/// An error at `path:line:col`.
pub fn error_at(path: &str, line: usize, column: usize, message: impl Into<String>) -> Error {
    Error::user(message).at(Location { path: path.to_owned(), line: line as u32, column: column as u32 })
}

/// Parses `text`, the Dockerfile at workspace-relative `path`.
pub fn parse(path: &str, text: &str) -> Result<Dockerfile> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut index = 0;
    // Parser directives: `# name=value` lines before anything else.
    while index < lines.len() {
        let Some(rest) = lines[index].trim().strip_prefix('#') else { break };
        let Some((name, value)) = rest.split_once('=') else { break };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) {
            break;
        }
        let value = value.trim();
        match name.as_str() {
            "escape" => {
                escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(error_at(path, index + 1, 1, format!("Invalid escape character `{value}`"))
                            .with_hint("use `# escape=\\` or `# escape=``"))
                    }
                }
            }
            // `syntax` picks a BuildKit frontend; berth is its own frontend.
            "syntax" | "check" => {}
            _ => break,
        }
        index += 1;
    }

    let mut instructions = Vec::new();
    while index < lines.len() {
        let raw = lines[index];
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            index += 1;
            continue;
        }
        let line_no = index + 1;
        let column = raw.len() - trimmed.len() + 1;
        // Join continuation lines; comment lines inside are dropped, as
        // Docker does.
        let mut logical = String::new();
        let mut current = trimmed.trim_end();
        index += 1;
        loop {
            match current.strip_suffix(escape) {
                Some(head) if !ends_escaped(head, escape) => {
                    logical.push_str(head);
                    let mut next = None;
                    while index < lines.len() {
                        let candidate = lines[index];
                        index += 1;
                        let candidate_trimmed = candidate.trim_start();
                        if candidate_trimmed.starts_with('#') {
                            continue;
                        }
                        if candidate_trimmed.is_empty() {
                            continue;
                        }
                        next = Some(candidate.trim_end());
                        break;
                    }
                    match next {
                        Some(next) => current = next,
                        None => break,
                    }
                }
                _ => {
                    logical.push_str(current);
                    break;
                }
            }
        }
        let (word, rest) = split_word(&logical);
        let keyword = word.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(error_at(path, line_no, column, format!("Unknown instruction `{word}`"))
                .maybe_hint(suggest(&keyword).map(|known| format!("did you mean `{known}`?"))));
        }
        let mut rest = rest.trim_start();
        let mut flags = Vec::new();
        if TAKES_FLAGS.contains(&keyword.as_str()) {
            while let Some(flag) = rest.strip_prefix("--") {
                let (word, after) = split_word(flag);
                if word.is_empty() {
                    break;
                }
                let (name, value) = match word.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => (word.to_owned(), "true".to_owned()),
                };
                flags.push((name, value));
                rest = after.trim_start();
            }
        }
        let mut heredocs = Vec::new();
        if TAKES_HEREDOCS.contains(&keyword.as_str()) {
            for (name, strip_tabs, expand) in heredoc_names(rest) {
                let start = index;
                let mut body = String::new();
                loop {
                    if index >= lines.len() {
                        return Err(error_at(
                            path,
                            start,
                            column,
                            format!("Heredoc `{name}` is not closed: no line `{name}` follows"),
                        ));
                    }
                    let line = lines[index];
                    index += 1;
                    let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
                    if line == name {
                        break;
                    }
                    body.push_str(line);
                    body.push('\n');
                }
                heredocs.push(Heredoc { name, body, expand });
            }
        }
        let args = json_args(rest).map_or_else(|| Args::Shell(rest.trim().to_owned()), Args::Json);
        if keyword != "ONBUILD" && args == Args::Shell(String::new()) && heredocs.is_empty() {
            return Err(error_at(path, line_no, column, format!("`{keyword}` needs arguments")));
        }
        instructions.push(Instruction {
            keyword,
            location: Location { path: path.to_owned(), line: line_no as u32, column: column as u32 },
            flags,
            args,
            heredocs,
            text: logical.trim().to_owned(),
        });
    }
    Ok(Dockerfile { escape, instructions })
}

/// Whether `text` ends in an escaped escape character (so the character
/// after it is not a continuation).
fn ends_escaped(text: &str, escape: char) -> bool {
    text.chars().rev().take_while(|c| *c == escape).count() % 2 == 1
}

/// The first whitespace-separated word and the rest.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], &text[end..]),
        None => (text, ""),
    }
}

/// A JSON array of strings, else `None` (Docker then reads the shell form).
fn json_args(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(text).ok()
}

/// The heredocs a line opens: `<<NAME`, `<<-NAME`, `<<"NAME"`, `<<'NAME'`.
fn heredoc_names(text: &str) -> Vec<(String, bool, bool)> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<<") {
        let mut after = &rest[start + 2..];
        let strip_tabs = after.starts_with('-');
        if strip_tabs {
            after = &after[1..];
        }
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        if let Some(quote) = quote {
            after = &after[1..];
            if let Some(end) = after.find(quote) {
                let name = &after[..end];
                if !name.is_empty() {
                    names.push((name.to_owned(), strip_tabs, false));
                }
                rest = &after[end + 1..];
                continue;
            }
            break;
        }
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let name = &after[..end];
        // `<<` followed by a non-word (`<< EOF`, `<<<`) is no heredoc.
        if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            names.push((name.to_owned(), strip_tabs, true));
        }
        rest = &after[end..];
    }
    names
}

/// The known keyword closest to an unknown one.
fn suggest(keyword: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .map(|known| (strsim::levenshtein(known, keyword), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Dockerfile {
        parse("Dockerfile", text).unwrap()
    }

    fn render(error: Error) -> String {
        error.to_string()
    }

    #[test]
    fn continuations_comments_and_forms() {
        let file = parse_ok(
            "# a comment\nFROM base AS build\nRUN echo a \\\n  # dropped comment\n  && echo b\nCMD [\"sh\", \"-c\", \"x\"]\ncmd [not json\n",
        );
        let texts: Vec<_> = file.instructions.iter().map(|i| (i.keyword.as_str(), i.args.clone())).collect();
        assert_eq!(
            texts,
            [
                ("FROM", Args::Shell("base AS build".into())),
                ("RUN", Args::Shell("echo a   && echo b".into())),
                ("CMD", Args::Json(vec!["sh".into(), "-c".into(), "x".into()])),
                ("CMD", Args::Shell("[not json".into())),
            ]
        );
        assert_eq!(file.instructions[1].location.line, 3);
        assert_eq!(file.instructions[3].location.line, 7);
    }

    #[test]
    fn escape_directive_changes_the_continuation() {
        let file = parse_ok("# escape=`\nFROM scratch\nCOPY a `\n  C:\\dir\\\n");
        assert_eq!(file.escape, '`');
        assert_eq!(file.instructions[1].args, Args::Shell("a   C:\\dir\\".into()));
    }

    #[test]
    fn flags_and_heredocs() {
        let file = parse_ok(
            "FROM scratch\nRUN --mount=type=secret,id=tok --network=none <<EOF\necho $HOME\nexit 0\nEOF\nCOPY --link <<-\"A\" /a\n\tliteral $X\n\tA\n",
        );
        let run = &file.instructions[1];
        assert_eq!(run.flags, [("mount".into(), "type=secret,id=tok".into()), ("network".into(), "none".into())]);
        assert_eq!(run.heredocs, [Heredoc { name: "EOF".into(), body: "echo $HOME\nexit 0\n".into(), expand: true }]);
        let copy = &file.instructions[2];
        assert_eq!(copy.flag("link"), Some("true"));
        assert_eq!(copy.heredocs, [Heredoc { name: "A".into(), body: "literal $X\n".into(), expand: false }]);
        assert_eq!(copy.args, Args::Shell("<<-\"A\" /a".into()));
    }

    #[test]
    fn errors_point_at_the_line() {
        insta::assert_snapshot!(render(parse("Dockerfile", "FROM scratch\n\n  RUNN echo\n").unwrap_err()), @r"
        Unknown instruction `RUNN`
          --> Dockerfile:3:3
        hint: did you mean `RUN`?
        ");
        insta::assert_snapshot!(render(parse("Dockerfile", "FROM scratch\nRUN <<EOF\necho\n").unwrap_err()), @r"
        Heredoc `EOF` is not closed: no line `EOF` follows
          --> Dockerfile:2:1
        ");
        insta::assert_snapshot!(render(parse("Dockerfile", "# escape=x\nFROM scratch\n").unwrap_err()), @r"
        Invalid escape character `x`
          --> Dockerfile:1:1
        hint: use `# escape=\` or `# escape=``
        ");
        insta::assert_snapshot!(render(parse("Dockerfile", "FROM scratch\nWORKDIR\n").unwrap_err()), @r"
        `WORKDIR` needs arguments
          --> Dockerfile:2:1
        ");
    }
}
