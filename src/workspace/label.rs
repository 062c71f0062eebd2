//! Labels: `//pkg/path:name`, `//pkg/path`, `:name`, `@berth//rules:defs.star`,
//! and generated sub-targets `//base:python#slim`.

use std::fmt;

use crate::error::{Diagnose, ErrorKind};

/// The name of a target (or of a `.star` file) in the workspace or in the
/// embedded rule library.
///
/// `package` is the workspace-relative directory without slashes at either
/// end (`""` for the root package); `name` may hold a `#variant` suffix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// `Some("berth")` for `@berth//...`, `None` for the main workspace.
    pub repo: Option<String>,
    pub package: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("Invalid label `{label}`: {reason}")]
    Invalid { label: String, reason: &'static str },
}

impl Diagnose for LabelError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }
}

impl Label {
    pub fn new(package: impl Into<String>, name: impl Into<String>) -> Self {
        Label { repo: None, package: package.into(), name: name.into() }
    }

    /// Parses `text`, resolving `:name` and `name` against `current_package`.
    pub fn parse(text: &str, current_package: &str) -> Result<Label, LabelError> {
        let invalid = |reason| LabelError::Invalid { label: text.to_owned(), reason };
        let (repo, rest) = match text.strip_prefix('@') {
            Some(after) => {
                let (repo, rest) = after.split_once("//").ok_or_else(|| invalid("expected `@repo//pkg:name`"))?;
                if repo != "berth" {
                    return Err(invalid("the only external repository is `@berth`"));
                }
                (Some(repo.to_owned()), format!("//{rest}"))
            }
            None => (None, text.to_owned()),
        };
        let (package, name) = if let Some(absolute) = rest.strip_prefix("//") {
            match absolute.split_once(':') {
                Some((package, name)) => (package.to_owned(), name.to_owned()),
                None => {
                    let basename = absolute.rsplit('/').next().unwrap_or_default();
                    if basename.is_empty() {
                        return Err(invalid("`//` alone names no target; use `//:name`"));
                    }
                    (absolute.to_owned(), basename.to_owned())
                }
            }
        } else if let Some(name) = rest.strip_prefix(':') {
            (current_package.to_owned(), name.to_owned())
        } else if !rest.contains(':') && !rest.is_empty() {
            // A relative name may hold slashes (`srcs = ["src/main.py"]`), as in Bazel.
            (current_package.to_owned(), rest)
        } else {
            return Err(invalid("expected `//pkg:name` or `:name`"));
        };
        if package.starts_with('/') || package.ends_with('/') || package.contains("//") {
            return Err(invalid("package paths have no leading, trailing or double slashes"));
        }
        if package.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid("package paths may not contain `.` or `..`"));
        }
        if name.is_empty() {
            return Err(invalid("the target name is empty"));
        }
        if name.contains(':') || name.starts_with('/') || name.ends_with('/') {
            return Err(invalid("target names may not contain `:` or start or end with `/`"));
        }
        if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(invalid("target names may not contain empty, `.` or `..` path segments"));
        }
        Ok(Label { repo, package, name })
    }

    /// Parses `text` as written in a file declared by `context` (a BUILD or
    /// `.star` file's label): relative and `//` labels stay in `context`'s
    /// repository, as in Bazel, so `@berth` files can load each other by `:name`.
    pub fn parse_in(text: &str, context: &Label) -> Result<Label, LabelError> {
        let mut label = Label::parse(text, &context.package)?;
        if label.repo.is_none() && !text.starts_with('@') {
            label.repo.clone_from(&context.repo);
        }
        Ok(label)
    }

    /// The path the label names relative to its repository root:
    /// `//app:src/main.py` → `app/src/main.py`.
    pub fn path(&self) -> String {
        if self.package.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.package, self.name)
        }
    }

    /// The label without its `#variant` suffix.
    pub fn base(&self) -> Label {
        match self.name.split_once('#') {
            Some((base, _)) => Label { name: base.to_owned(), ..self.clone() },
            None => self.clone(),
        }
    }

    /// A generated sub-target: `//base:python` → `//base:python#slim`.
    pub fn variant(&self, variant: &str) -> Label {
        Label { name: format!("{}#{variant}", self.name), ..self.clone() }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(repo) = &self.repo {
            write!(f, "@{repo}")?;
        }
        write!(f, "//{}:{}", self.package, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Label::parse("//app/api:img", "x").unwrap(), Label::new("app/api", "img"));
        assert_eq!(Label::parse("//app/api", "x").unwrap(), Label::new("app/api", "api"));
        assert_eq!(Label::parse(":img", "app").unwrap(), Label::new("app", "img"));
        assert_eq!(Label::parse("img", "app").unwrap(), Label::new("app", "img"));
        assert_eq!(Label::parse("//:empty", "app").unwrap(), Label::new("", "empty"));
        assert_eq!(Label::parse("//base:python#slim", "").unwrap().base(), Label::new("base", "python"));
        assert_eq!(Label::parse("src/main.py", "app").unwrap(), Label::new("app", "src/main.py"));
        let library = Label::parse("@berth//rules:defs.star", "").unwrap();
        assert_eq!(library.to_string(), "@berth//rules:defs.star");
        assert_eq!(Label::parse_in(":image.star", &library).unwrap().to_string(), "@berth//rules:image.star");
        assert_eq!(
            Label::parse_in("//tools:defs.star", &Label::new("app", "BUILD.star")).unwrap().path(),
            "tools/defs.star"
        );
        assert_eq!(Label::new("", "empty").path(), "empty");
    }

    #[test]
    fn refuses_malformed_labels() {
        for bad in ["//", "//a/../b:c", "//a/:b", "app:img", "//a:", "@other//a:b", "//a:b:c", "../x", "a//b", "./x"] {
            assert!(Label::parse(bad, "").is_err(), "{bad} should be refused");
        }
    }
}
