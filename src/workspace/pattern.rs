//! Target patterns: `//...`, `//pkg/...`, `//pkg:all`, `//pkg:name`, the
//! arguments of `berth build` and `berth query`.

use std::fmt;

use crate::error::{Diagnose, ErrorKind};
use crate::workspace::{Label, LabelError};

/// A set of targets named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pattern {
    /// `//...` (`package` is `""`) or `//pkg/...`: every target of the
    /// package and of the packages below it.
    Recursive { package: String },
    /// `//pkg:all` (also `//pkg:*`): every target of one package.
    AllInPackage { package: String },
    /// `//pkg:name`: one target.
    Target(Label),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("Invalid target pattern `{pattern}`: {reason}")]
    Invalid { pattern: String, reason: String },
}

impl Diagnose for PatternError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    fn hint(&self) -> Option<String> {
        Some("patterns look like `//...`, `//pkg/...`, `//pkg:all` or `//pkg:name`".to_owned())
    }
}

impl Pattern {
    /// Parses an absolute pattern (`//` first).
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let invalid = |reason: &str| PatternError::Invalid { pattern: text.to_owned(), reason: reason.to_owned() };
        let Some(rest) = text.strip_prefix("//") else {
            return Err(invalid("patterns start with `//`"));
        };
        if rest == "..." {
            return Ok(Pattern::Recursive { package: String::new() });
        }
        if let Some(package) = rest.strip_suffix("/...") {
            if package.is_empty() {
                return Err(invalid("package paths have no leading, trailing or double slashes"));
            }
            check_package(package).map_err(&invalid)?;
            return Ok(Pattern::Recursive { package: package.to_owned() });
        }
        if let Some((package, name)) = rest.split_once(':') {
            if name == "all" || name == "*" {
                check_package(package).map_err(&invalid)?;
                return Ok(Pattern::AllInPackage { package: package.to_owned() });
            }
        }
        match Label::parse(text, "") {
            Ok(label) => Ok(Pattern::Target(label)),
            Err(LabelError::Invalid { reason, .. }) => Err(invalid(reason)),
        }
    }

    /// Parses a pattern typed in the directory of `package` (workspace
    /// relative): absolute patterns as `parse`; `...`, `sub/...`, `:all`,
    /// `:name`, `sub:name` and `sub` (= `sub:sub`) relative to `package`,
    /// as Bazel does for patterns typed in a subdirectory.
    pub fn parse_in(text: &str, package: &str) -> Result<Pattern, PatternError> {
        if text.starts_with("//") || text.starts_with('@') || text.is_empty() {
            return Pattern::parse(text);
        }
        let join = |sub: &str| match (package.is_empty(), sub.is_empty()) {
            (true, _) => sub.to_owned(),
            (false, true) => package.to_owned(),
            (false, false) => format!("{package}/{sub}"),
        };
        let absolute = if text == "..." {
            if package.is_empty() {
                "//...".to_owned()
            } else {
                format!("//{package}/...")
            }
        } else if let Some(sub) = text.strip_suffix("/...") {
            format!("//{}/...", join(sub))
        } else if let Some((sub, name)) = text.split_once(':') {
            format!("//{}:{name}", join(sub))
        } else {
            format!("//{}", join(text))
        };
        Pattern::parse(&absolute).map_err(|error| match error {
            PatternError::Invalid { reason, .. } => PatternError::Invalid { pattern: text.to_owned(), reason },
        })
    }

    /// Whether `label` (a target of the main workspace) is in the set.
    pub fn matches(&self, label: &Label) -> bool {
        if label.repo.is_some() {
            return false;
        }
        match self {
            Pattern::Recursive { package } => is_within(&label.package, package),
            Pattern::AllInPackage { package } => &label.package == package,
            Pattern::Target(target) => target == label,
        }
    }

    /// The package the pattern starts from: the one directory to walk for
    /// `Recursive`, the one package otherwise.
    pub fn package(&self) -> &str {
        match self {
            Pattern::Recursive { package } | Pattern::AllInPackage { package } => package,
            Pattern::Target(label) => &label.package,
        }
    }
}

/// Whether `package` is `ancestor` or below it (`""` holds everything).
pub fn is_within(package: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || package == ancestor
        || (package.starts_with(ancestor) && package.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

fn check_package(package: &str) -> Result<(), &'static str> {
    if package.is_empty() {
        return Ok(());
    }
    if package.starts_with('/') || package.ends_with('/') || package.contains("//") || package.contains(':') {
        return Err("package paths have no leading, trailing or double slashes");
    }
    if package.split('/').any(|part| part == "." || part == ".." || part == "...") {
        return Err("package paths may not contain `.`, `..` or `...`");
    }
    Ok(())
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Recursive { package } if package.is_empty() => write!(f, "//..."),
            Pattern::Recursive { package } => write!(f, "//{package}/..."),
            Pattern::AllInPackage { package } => write!(f, "//{package}:all"),
            Pattern::Target(label) => write!(f, "{label}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Pattern::parse("//...").unwrap(), Pattern::Recursive { package: String::new() });
        assert_eq!(Pattern::parse("//app/...").unwrap(), Pattern::Recursive { package: "app".into() });
        assert_eq!(Pattern::parse("//app:all").unwrap(), Pattern::AllInPackage { package: "app".into() });
        assert_eq!(Pattern::parse("//:all").unwrap(), Pattern::AllInPackage { package: String::new() });
        assert_eq!(Pattern::parse("//app:img").unwrap(), Pattern::Target(Label::new("app", "img")));
        assert_eq!(Pattern::parse("//app").unwrap(), Pattern::Target(Label::new("app", "app")));
        for text in ["//...", "//app/...", "//app:all", "//app:img"] {
            assert_eq!(Pattern::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn parses_patterns_relative_to_a_package() {
        let parse = |text| Pattern::parse_in(text, "app").unwrap().to_string();
        assert_eq!(parse("..."), "//app/...");
        assert_eq!(parse("api/..."), "//app/api/...");
        assert_eq!(parse(":all"), "//app:all");
        assert_eq!(parse(":img"), "//app:img");
        assert_eq!(parse("api:img"), "//app/api:img");
        assert_eq!(parse("api"), "//app/api:api");
        assert_eq!(parse("//lib:x"), "//lib:x");
        assert_eq!(Pattern::parse_in("...", "").unwrap().to_string(), "//...");
        assert_eq!(Pattern::parse_in(":img", "").unwrap().to_string(), "//:img");
        assert!(Pattern::parse_in("../x", "app").is_err());
    }

    #[test]
    fn refuses_malformed_patterns() {
        for bad in ["app", ":img", "//a/../b/...", "///...", "//a//b:all", "//a:"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn matches_by_package_boundary() {
        let app = Pattern::parse("//app/...").unwrap();
        assert!(app.matches(&Label::new("app", "x")));
        assert!(app.matches(&Label::new("app/api", "x")));
        assert!(!app.matches(&Label::new("apple", "x")));
        assert!(Pattern::parse("//...").unwrap().matches(&Label::new("", "x")));
        assert!(!Pattern::parse("//app:all").unwrap().matches(&Label::new("app/api", "x")));
    }
}
