//! The layering of `shared/design.md`, checked on the sources: each rule is
//! a set of names that only some directories of `src/` may use. The three
//! rules of the design (only the front end touches Starlark, only `oci/` and
//! `registry/` touch archives, compression, oci-spec and HTTP, only `cli/` and
//! `report/` print) and the directions between layers (the cache and the
//! console below the actions, actions that do not reach into the executor,
//! a workspace that does not evaluate Starlark, analysis that knows nothing
//! of the machine it will run on).
//!
//! Comments, doc comments and the contents of string literals are not code
//! and are blanked before matching. `#[cfg(test)]` items are exempt from the
//! crate and printing rules (a unit test may build a tar fixture or print a
//! SKIP line; neither ships), but not from the direction rules: a test that
//! needs a higher layer to exercise a lower one is a dependency too.

use std::fs;
use std::path::{Path, PathBuf};

/// One rule: the lines `matches` finds, allowed or forbidden by `scope`.
struct Rule {
    name: &'static str,
    matches: fn(&Code) -> Vec<usize>,
    scope: Scope,
    /// Whether `#[cfg(test)]` items are checked too.
    tests_count: bool,
}

enum Scope {
    /// Only files under these `src/` prefixes may match.
    OnlyIn(&'static [&'static str]),
    /// Files under these prefixes may not match.
    NotIn(&'static [&'static str]),
}

const RULES: &[Rule] = &[
    Rule {
        name: "only frontend/ and analysis/ use the starlark crates",
        matches: |code| code.crate_paths(&["starlark", "starlark_derive", "starlark_syntax", "allocative"]),
        scope: Scope::OnlyIn(&["frontend/", "analysis/"]),
        tests_count: false,
    },
    Rule {
        name: "only oci/ and registry/ use tar, compression and HTTP",
        matches: |code| code.crate_paths(&["tar", "flate2", "libdeflater", "zstd", "xz2", "bzip2", "reqwest"]),
        scope: Scope::OnlyIn(&["oci/", "registry/"]),
        tests_count: false,
    },
    Rule {
        name: "only remote/ uses gRPC, protobuf and the async runtime",
        matches: |code| code.crate_paths(&["tonic", "prost", "bazel_remote_apis", "tokio", "tokio_stream"]),
        scope: Scope::OnlyIn(&["remote/"]),
        tests_count: false,
    },
    Rule {
        // The runtime spec's types build runc's config.json, next to runc.
        name: "only oci/, registry/ and exec/runc.rs use oci-spec",
        matches: |code| code.crate_paths(&["oci_spec"]),
        scope: Scope::OnlyIn(&["oci/", "registry/", "exec/runc.rs"]),
        tests_count: false,
    },
    Rule {
        name: "only cli/ and report/ print",
        matches: Code::printing,
        scope: Scope::OnlyIn(&["cli/", "report/"]),
        tests_count: false,
    },
    Rule {
        name: "cache/ and report/ do not import crate::actions",
        matches: |code| code.module_paths("actions"),
        scope: Scope::NotIn(&["cache/", "report/"]),
        tests_count: true,
    },
    Rule {
        name: "actions/ does not import crate::exec",
        matches: |code| code.module_paths("exec"),
        scope: Scope::NotIn(&["actions/"]),
        tests_count: true,
    },
    Rule {
        name: "workspace/ does not import crate::frontend",
        matches: |code| code.module_paths("frontend"),
        scope: Scope::NotIn(&["workspace/"]),
        tests_count: true,
    },
    Rule {
        name: "analysis/ names neither runc nor the cache dir",
        matches: |code| {
            code.identifiers(|words| words.contains(&"runc") || words.windows(2).any(|w| w == ["cache", "dir"]))
        },
        scope: Scope::NotIn(&["analysis/"]),
        tests_count: true,
    },
];

#[test]
fn sources_keep_the_layering_of_the_design() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files under {}", files.len(), src.display());
    let mut broken = Vec::new();
    // Lines each rule matched where they are allowed: a rule that matches
    // nothing anywhere would pass whatever the sources say.
    let mut allowed_matches = [0usize; RULES.len()];
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap().to_str().unwrap().to_owned();
        let text = fs::read_to_string(file).unwrap();
        let code = Code::new(&text);
        let shipped = Code { text: code.without_test_items(), lines: code.lines.clone() };
        for (index, rule) in RULES.iter().enumerate() {
            let applies = match rule.scope {
                Scope::OnlyIn(allowed) => !allowed.iter().any(|dir| relative.starts_with(dir)),
                Scope::NotIn(forbidden) => forbidden.iter().any(|dir| relative.starts_with(dir)),
            };
            let checked = if rule.tests_count { &code } else { &shipped };
            if !applies {
                allowed_matches[index] += (rule.matches)(checked).len();
                continue;
            }
            let mut lines = (rule.matches)(checked);
            lines.dedup();
            for line in lines {
                let source = text.lines().nth(line - 1).unwrap_or("").trim();
                broken.push(format!("{}: src/{relative}:{line}: {source}", rule.name));
            }
        }
    }
    for (rule, count) in RULES.iter().zip(allowed_matches) {
        assert!(count > 0, "`{}` matched nothing where it is allowed: the matcher is blind", rule.name);
    }
    assert!(
        broken.is_empty(),
        "{} line(s) break the layering of shared/design.md:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Each rule catches what it is about and nothing in comments or strings.
#[test]
fn the_rules_see_code_only() {
    let code = Code::new(
        r##"//! Uses `tar::Builder` and println! in a doc comment.
/* block: starlark::values, /* nested */ eprintln!("x") */
use std::io::Write;
use tar::Builder;
fn f(t: &str) -> String {
    let label = "//pkg:tar::x println!";
    let raw = r#"std::io::stdout() "quoted" "#;
    let c = '"';
    let life: &'static str = "truncate";
    println!("{label}");
    let _ = std::io::stderr().write_all(b"x");
    crate::oci::tar::thing();
    ::flate2::write::GzEncoder::new(Vec::new(), Default::default());
    let truncated = t.len();
    let runc_path = crate::exec::Runc::locate(None);
    let cache_dir = crate::actions::Action;
    format!("{truncated}{c}{raw}{life}{runc_path:?}{cache_dir:?}")
}
#[cfg(test)]
mod tests {
    fn g() { eprintln!("SKIP"); let _ = tar::Header::new_gnu(); }
}
use crate::{cache::{actions, Cas}, exec, report::Reporter};
"##,
    );
    assert_eq!(code.crate_paths(&["tar"]), [4, 21]);
    assert_eq!(code.crate_paths(&["flate2"]), [13]);
    assert_eq!(code.crate_paths(&["starlark"]), Vec::<usize>::new());
    assert_eq!(code.printing(), [10, 11, 21]);
    assert_eq!(code.module_paths("exec"), [15, 23]);
    assert_eq!(code.module_paths("actions"), [16], "`cache::actions` is not `crate::actions`");
    assert_eq!(code.identifiers(|words| words.contains(&"runc")), [15, 15]);
    assert_eq!(code.identifiers(|words| words.windows(2).any(|w| w == ["cache", "dir"])), [16]);
    let shipped = Code { text: code.without_test_items(), lines: code.lines.clone() };
    assert_eq!(shipped.crate_paths(&["tar"]), [4]);
    assert_eq!(shipped.printing(), [10, 11]);
}

#[test]
fn the_rule_library_is_embedded_not_installed() {
    let prelude = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/frontend/prelude.rs")).unwrap();
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".star") {
            assert!(prelude.contains(&format!("include_str!(\"../../rules/{name}\")")), "rules/{name} is not embedded");
        }
    }
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// A Rust source with comments and the contents of string and char
/// literals blanked to spaces (quotes kept, line breaks kept), so that
/// offsets and line numbers stay those of the file.
struct Code {
    text: Vec<u8>,
    /// Byte offset at which each line starts.
    lines: Vec<usize>,
}

impl Code {
    fn new(source: &str) -> Code {
        let bytes = source.as_bytes();
        let mut text = bytes.to_vec();
        let blank = |text: &mut Vec<u8>, from: usize, to: usize| {
            for byte in &mut text[from..to] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
        };
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if rest.starts_with(b"//") {
                let end = rest.iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| at + n);
                blank(&mut text, at, end);
                at = end;
            } else if rest.starts_with(b"/*") {
                let (mut depth, mut end) = (0, at);
                while end < bytes.len() {
                    if bytes[end..].starts_with(b"/*") {
                        depth += 1;
                        end += 2;
                    } else if bytes[end..].starts_with(b"*/") {
                        depth -= 1;
                        end += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        end += 1;
                    }
                }
                blank(&mut text, at, end);
                at = end;
            } else if let Some((open, hashes)) = raw_string_start(bytes, at) {
                let close = format!("\"{}", "#".repeat(hashes)).into_bytes();
                let body = at + open;
                let end = bytes[body..].windows(close.len()).position(|w| w == close).map_or(bytes.len(), |n| body + n);
                blank(&mut text, body, end);
                at = end + close.len();
            } else if rest[0] == b'"' {
                let mut end = at + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                blank(&mut text, at + 1, end.min(bytes.len()));
                at = end + 1;
            } else if rest[0] == b'\'' {
                // A char literal ('x', '\n', '\u{..}', '"') or a lifetime ('a).
                let close = if rest.get(1) == Some(&b'\\') {
                    // The escaped character itself may be a quote: `'\''`.
                    rest.iter().skip(3).position(|&b| b == b'\'').map(|n| n + 3)
                } else {
                    rest.get(2).filter(|&&b| b == b'\'').map(|_| 2).or_else(|| {
                        // A multi-byte char: the closing quote within 5 bytes.
                        let first = *rest.get(1)?;
                        (first >= 0x80).then(|| rest.iter().skip(2).take(4).position(|&b| b == b'\'').map(|n| n + 2))?
                    })
                };
                match close {
                    Some(close) => {
                        blank(&mut text, at + 1, at + close);
                        at += close + 1;
                    }
                    None => at += 1,
                }
            } else {
                at += 1;
            }
        }
        let lines = std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1));
        Code { text, lines: lines.collect() }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.lines.partition_point(|&start| start <= offset)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("blanking keeps UTF-8: it replaces whole literals")
    }

    /// The text with every `#[cfg(test)]` item (and its attribute) blanked.
    fn without_test_items(&self) -> Vec<u8> {
        let mut text = self.text.clone();
        let source = self.as_str();
        let mut from = 0;
        while let Some(found) = source[from..].find("#[cfg(test)]") {
            let start = from + found;
            let mut end = start + "#[cfg(test)]".len();
            let mut depth = 0usize;
            while end < text.len() {
                match text[end] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end += 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        end += 1;
                        break;
                    }
                    _ => {}
                }
                end += 1;
            }
            for byte in &mut text[start..end.min(self.text.len())] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
            from = end.min(source.len());
        }
        text
    }

    /// Lines of each path that starts with one of `crates` (`tar::`,
    /// `::tar::`, `use tar;`, `extern crate tar`), but not a module of the
    /// same name further down a path (`crate::oci::tar::`).
    fn crate_paths(&self, crates: &[&str]) -> Vec<usize> {
        let mut lines = Vec::new();
        for (start, word) in self.words() {
            if !crates.contains(&word) {
                continue;
            }
            let before = self.as_str()[..start].trim_end_matches([' ', '\t']);
            let after = self.as_str()[start + word.len()..].trim_start();
            let leading = before.strip_suffix("::").map(|b| b.trim_end());
            let path_start = match leading {
                // `::tar::x`, absolute: the crate; `a::tar::x`: a module.
                Some(b) => !b.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '>'),
                None => !before.ends_with(['.', '\'']),
            };
            let used = after.starts_with("::")
                || (before.ends_with("use") || before.ends_with("crate")) && after.starts_with([';', ' ']);
            if path_start && used {
                lines.push(self.line_of(start));
            }
        }
        lines
    }

    /// Lines of each path into `crate::<module>`, written out or as an item
    /// of a `crate::{...}` group (modules of `src/` name each other by
    /// `crate::` paths, not `super::`).
    fn module_paths(&self, module: &str) -> Vec<usize> {
        let source = self.as_str();
        let is_crate = |text: &str| {
            text.trim_end()
                .strip_suffix("::")
                .map(str::trim_end)
                .and_then(|text| text.strip_suffix("crate"))
                .is_some_and(|text| !text.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'))
        };
        let mut lines = Vec::new();
        for (start, word) in self.words() {
            if word != module {
                continue;
            }
            let before = source[..start].trim_end();
            let direct = is_crate(before);
            let grouped = (before.ends_with('{') || before.ends_with(','))
                && self.enclosing_brace(start).is_some_and(|brace| is_crate(&source[..brace]));
            if direct || grouped {
                lines.push(self.line_of(start));
            }
        }
        lines
    }

    /// The offset of the innermost `{` still open at `offset`.
    fn enclosing_brace(&self, offset: usize) -> Option<usize> {
        let mut depth = 0usize;
        for at in (0..offset).rev() {
            match self.text[at] {
                b'}' => depth += 1,
                b'{' if depth == 0 => return Some(at),
                b'{' => depth -= 1,
                _ => {}
            }
        }
        None
    }

    /// Lines that print: the print macros and `dbg!`, the `indicatif`
    /// crate, and calls of `stdout()`/`stderr()` (not the `Command` methods).
    fn printing(&self) -> Vec<usize> {
        let source = self.as_str();
        let mut lines = self.crate_paths(&["indicatif"]);
        for (start, word) in self.words() {
            let after = source[start + word.len()..].trim_start();
            let before = source[..start].trim_end();
            let hit = match word {
                "println" | "eprintln" | "print" | "eprint" | "dbg" => after.starts_with('!'),
                "stdout" | "stderr" => after.starts_with('(') && !before.ends_with('.') && !before.ends_with("fn"),
                _ => false,
            };
            if hit {
                lines.push(self.line_of(start));
            }
        }
        lines.sort();
        lines.dedup();
        lines
    }

    /// Lines of each identifier whose words (split at `_` and case changes,
    /// lowercased) `pick` accepts: `runc_path` and `RuncConfig` hold the word
    /// `runc`, `truncate` does not.
    fn identifiers(&self, pick: impl Fn(&[&str]) -> bool) -> Vec<usize> {
        let mut lines = Vec::new();
        for (start, word) in self.words() {
            let words = split_words(word);
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            if pick(&words) {
                lines.push(self.line_of(start));
            }
        }
        lines
    }

    /// Every identifier with its byte offset.
    fn words(&self) -> Vec<(usize, &str)> {
        let source = self.as_str();
        let mut words = Vec::new();
        let mut start = None;
        for (at, c) in source.char_indices().chain(std::iter::once((source.len(), ' '))) {
            let part = c.is_alphanumeric() || c == '_';
            match (start, part) {
                (None, true) => start = Some(at),
                (Some(from), false) => {
                    words.push((from, &source[from..at]));
                    start = None;
                }
                _ => {}
            }
        }
        words
    }
}

/// `Some((length of the opening, number of #))` when a raw string literal
/// (`r"`, `r#"`, `br##"`...) starts at `at`.
fn raw_string_start(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
        return None;
    }
    let mut index = at;
    if bytes.get(index) == Some(&b'b') {
        index += 1;
    }
    if bytes.get(index) != Some(&b'r') {
        return None;
    }
    index += 1;
    let hashes = bytes[index..].iter().take_while(|&&b| b == b'#').count();
    index += hashes;
    (bytes.get(index) == Some(&b'"')).then_some((index + 1 - at, hashes))
}

/// `RuncConfig` → `runc`, `config`; `cache_dir_of` → `cache`, `dir`, `of`.
fn split_words(identifier: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in identifier.split('_').filter(|part| !part.is_empty()) {
        let mut word = String::new();
        let mut previous_lower = false;
        for c in part.chars() {
            if c.is_uppercase() && previous_lower {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        }
        words.push(word);
    }
    words
}
