//! Words and variable substitution as Docker's shell lexer does them for
//! ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR
//! and ARG: quotes removed, the escape character escaping the next
//! character, and `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?message}` replaced from the ARG and
//! ENV values in force.

use crate::error::{Error, Result};

/// Variable values in force at one instruction.
pub trait Vars {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

/// `text` as one word: quotes removed, variables substituted, whitespace
/// kept.
pub fn word(text: &str, vars: &dyn Vars, escape: char) -> Result<String> {
    Ok(Lexer { chars: text.chars().collect(), pos: 0, vars, escape }.run(false)?.concat())
}

/// `text` split into words on unquoted whitespace, quotes removed,
/// variables substituted.
pub fn words(text: &str, vars: &dyn Vars, escape: char) -> Result<Vec<String>> {
    Lexer { chars: text.chars().collect(), pos: 0, vars, escape }.run(true)
}

/// Substitutes variables in `text` without removing quotes (heredoc bodies).
pub fn expand_only(text: &str, vars: &dyn Vars, escape: char) -> Result<String> {
    let mut lexer = Lexer { chars: text.chars().collect(), pos: 0, vars, escape };
    let mut out = String::new();
    while let Some(c) = lexer.peek() {
        if c == escape && lexer.chars.get(lexer.pos + 1) == Some(&'$') {
            out.push('$');
            lexer.pos += 2;
        } else if c == '$' {
            lexer.pos += 1;
            out.push_str(&lexer.dollar()?);
        } else {
            out.push(c);
            lexer.pos += 1;
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: &'a dyn Vars,
    escape: char,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(&mut self, split: bool) -> Result<Vec<String>> {
        let mut words = Vec::new();
        let mut current = String::new();
        // Whether `current` is a word even if empty (`""`).
        let mut started = false;
        while let Some(c) = self.peek() {
            if split && c.is_whitespace() {
                self.pos += 1;
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
                continue;
            }
            started = true;
            self.pos += 1;
            if c == self.escape {
                if let Some(next) = self.peek() {
                    current.push(next);
                    self.pos += 1;
                }
            } else if c == '\'' {
                loop {
                    match self.peek() {
                        None => return Err(Error::user("Unterminated single quote")),
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            current.push(c);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '"' {
                loop {
                    match self.peek() {
                        None => return Err(Error::user("Unterminated double quote")),
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some('$') => {
                            self.pos += 1;
                            let value = self.dollar()?;
                            current.push_str(&value);
                        }
                        Some(c) if c == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(next) if next == '"' || next == '$' || next == self.escape => {
                                    current.push(next);
                                    self.pos += 1;
                                }
                                _ => current.push(c),
                            }
                        }
                        Some(c) => {
                            current.push(c);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '$' {
                let value = self.dollar()?;
                if split {
                    // An unquoted expansion splits on whitespace like the
                    // shell.
                    let mut parts = value.split(char::is_whitespace).peekable();
                    while let Some(part) = parts.next() {
                        current.push_str(part);
                        if parts.peek().is_some() && !current.is_empty() {
                            words.push(std::mem::take(&mut current));
                        }
                    }
                } else {
                    current.push_str(&value);
                }
            } else {
                current.push(c);
            }
        }
        if started {
            words.push(current);
        }
        Ok(words)
    }

    /// After a `$`: the substituted value.
    fn dollar(&mut self) -> Result<String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(Error::user("Bad substitution: `${` needs a variable name"));
                }
                let value = self.vars.get(&name).map(str::to_owned);
                match self.peek() {
                    Some('}') => {
                        self.pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = self.peek() == Some(':');
                        if colon {
                            self.pos += 1;
                        }
                        let op = self.peek().unwrap_or('}');
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(Error::user(format!("Unsupported modifier `{op}` in `${{{name}}}`"))
                                .with_hint("use `${VAR:-default}`, `${VAR:+alt}` or `${VAR:?message}`"));
                        }
                        self.pos += 1;
                        let word = self.until_brace(&name)?;
                        let set = match &value {
                            Some(value) => !colon || !value.is_empty(),
                            None => false,
                        };
                        match op {
                            '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                            '+' => Ok(if set { word } else { String::new() }),
                            _ if set => Ok(value.unwrap_or_default()),
                            _ => Err(Error::user(format!(
                                "`{name}` is not set: {}",
                                if word.is_empty() { "required" } else { &word }
                            ))),
                        }
                    }
                    _ => Err(Error::user(format!("Bad substitution: `${{{name}` is not closed"))),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok(self.vars.get(&name).unwrap_or_default().to_owned())
            }
            _ => Ok("$".to_owned()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// The word of a `${VAR:-word}` up to its `}`, itself substituted.
    fn until_brace(&mut self, name: &str) -> Result<String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(Error::user(format!("Bad substitution: `${{{name}` is not closed"))),
                Some('}') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => {
                    self.pos += 1;
                    out.push_str(&self.dollar()?);
                }
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![("A".into(), "one".into()), ("EMPTY".into(), String::new()), ("SP".into(), "x y".into())]
    }

    #[test]
    fn substitution_forms() {
        let v = vars();
        let w = |text: &str| word(text, &v, '\\').unwrap();
        assert_eq!(w("$A/${A}"), "one/one");
        assert_eq!(w("${MISSING:-def}|${EMPTY:-def}|${EMPTY-def}"), "def|def|");
        assert_eq!(w("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${MISSING+alt}"), "alt||alt|");
        assert_eq!(w("${MISSING:-${A}}"), "one");
        assert_eq!(w("'$A' \"$A\" \\$A $"), "$A one $A $");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert!(word("${MISSING:?needed}", &v, '\\').unwrap_err().to_string().contains("needed"));
        assert!(word("${A", &v, '\\').is_err());
    }

    #[test]
    fn words_split_on_unquoted_whitespace() {
        let v = vars();
        assert_eq!(words("a \"b c\" $SP ''", &v, '\\').unwrap(), ["a", "b c", "x", "y", ""]);
        assert_eq!(words("`$A", &v, '`').unwrap(), ["$A"]);
        assert_eq!(expand_only("echo \"$A\" \\$A", &v, '\\').unwrap(), "echo \"one\" $A");
    }
}
