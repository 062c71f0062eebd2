//! The workspace root (the nearest ancestor holding `WORKSPACE.star`) and the
//! packages under it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Diagnose, ErrorKind};
use crate::workspace::WorkspaceSettings;

/// The file that marks the workspace root.
pub const WORKSPACE_FILE: &str = "WORKSPACE.star";

/// The file names that make a directory a package, in order of preference.
pub const BUILD_FILES: [&str; 2] = ["BUILD.star", "BUILD"];

/// Directories never walked for packages or globbed: build outputs, Cargo's
/// `target/`, and hidden directories (`.git`, `.berth`, ...).
const SKIPPED_DIRS: [&str; 2] = ["berth-out", "target"];

/// A workspace: its root directory and the settings of its `WORKSPACE.star`.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Absolute path of the directory holding `WORKSPACE.star`.
    pub root: PathBuf,
    pub settings: WorkspaceSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("No `WORKSPACE.star` found in `{cwd}` or any parent directory")]
    NotFound { cwd: String },
    #[error("Cannot read `{path}`: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("Package `//{package}` does not exist (no `BUILD.star` in `{package}/`)")]
    NoSuchPackage { package: String, hint: String },
    #[error("Directory `{package}/` does not exist")]
    NoSuchDirectory { package: String },
}

impl Diagnose for WorkspaceError {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkspaceError::Io { .. } => ErrorKind::Environment,
            _ => ErrorKind::User,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            WorkspaceError::NotFound { .. } => {
                Some("create an empty `WORKSPACE.star` at the root of your workspace".to_owned())
            }
            WorkspaceError::NoSuchPackage { hint, .. } => Some(hint.clone()),
            WorkspaceError::NoSuchDirectory { package } => {
                Some(format!("`//{package}/...` walks an existing directory of the workspace"))
            }
            WorkspaceError::Io { .. } => None,
        }
    }
}

impl Workspace {
    /// The workspace rooted at `root` with the settings its `WORKSPACE.star`
    /// declared. `frontend::open_workspace` evaluates that file; this layer
    /// only knows the directories.
    pub fn new(root: &Path, settings: WorkspaceSettings) -> Result<Workspace, WorkspaceError> {
        let root =
            fs::canonicalize(root).map_err(|source| WorkspaceError::Io { path: root.display().to_string(), source })?;
        Ok(Workspace { root, settings })
    }

    /// The workspace-relative path of `dir` (`""` for the root), the package
    /// relative patterns typed there are resolved against. `None` when `dir`
    /// is outside the workspace.
    pub fn package_of(&self, dir: &Path) -> Option<String> {
        let dir = fs::canonicalize(dir).ok()?;
        let relative = dir.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = relative.components().map(|part| part.as_os_str().to_str()).collect();
        Some(parts?.join("/"))
    }

    /// `berth-out/` under the root.
    pub fn out_dir(&self) -> PathBuf {
        self.root.join("berth-out")
    }

    /// The directory of `package` (`""` is the root).
    pub fn package_dir(&self, package: &str) -> PathBuf {
        if package.is_empty() {
            self.root.clone()
        } else {
            self.root.join(package)
        }
    }

    /// The BUILD file of `package` relative to the root, if it is a package.
    pub fn build_file(&self, package: &str) -> Option<String> {
        let dir = self.package_dir(package);
        BUILD_FILES.iter().find(|name| dir.join(name).is_file()).map(|name| join(package, name))
    }

    /// Every package at or below `package`, sorted.
    pub fn packages_under(&self, package: &str) -> Result<Vec<String>, WorkspaceError> {
        let dir = self.package_dir(package);
        if !dir.is_dir() {
            return Err(WorkspaceError::NoSuchDirectory { package: package.to_owned() });
        }
        let mut packages = Vec::new();
        self.walk(package, &mut packages)?;
        packages.sort();
        Ok(packages)
    }

    fn walk(&self, package: &str, packages: &mut Vec<String>) -> Result<(), WorkspaceError> {
        if self.build_file(package).is_some() {
            packages.push(package.to_owned());
        }
        let dir = self.package_dir(package);
        let entries = fs::read_dir(&dir).map_err(|source| WorkspaceError::Io { path: display_dir(package), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| WorkspaceError::Io { path: display_dir(package), source })?;
            // `file_type` does not follow symlinks: a linked directory is not walked, so no loops.
            let is_dir = entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false);
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            // A directory holding its own `WORKSPACE.star` is another
            // workspace, not packages of this one (as in Bazel).
            let nested = || dir.join(&name).join(WORKSPACE_FILE).is_file();
            if is_dir && !is_skipped_dir(&name) && !nested() {
                self.walk(&join(package, &name), packages)?;
            }
        }
        Ok(())
    }

    /// Checks that `package` has a BUILD file.
    pub fn require_package(&self, package: &str) -> Result<String, WorkspaceError> {
        self.build_file(package).ok_or_else(|| {
            let hint = match package.rsplit_once('/') {
                Some((parent, last)) if self.build_file(parent).is_some() => {
                    format!("a file there belongs to `//{parent}`: did you mean `//{parent}:{last}/...`?")
                }
                _ => "a package is a directory holding `BUILD.star`".to_owned(),
            };
            WorkspaceError::NoSuchPackage { package: package.to_owned(), hint }
        })
    }
}

/// Whether a directory is never a package nor globbed into.
pub fn is_skipped_dir(name: &str) -> bool {
    name.starts_with('.') || SKIPPED_DIRS.contains(&name)
}

/// The nearest ancestor of `cwd` (or `cwd` itself) holding `WORKSPACE.star`.
pub fn find_root(cwd: &Path) -> Result<PathBuf, WorkspaceError> {
    let start =
        fs::canonicalize(cwd).map_err(|source| WorkspaceError::Io { path: cwd.display().to_string(), source })?;
    start
        .ancestors()
        .find(|dir| dir.join(WORKSPACE_FILE).is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| WorkspaceError::NotFound { cwd: cwd.display().to_string() })
}

fn join(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}/{name}")
    }
}

fn display_dir(package: &str) -> String {
    if package.is_empty() {
        ".".to_owned()
    } else {
        format!("{package}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        dir
    }

    #[test]
    fn finds_the_nearest_root() {
        let dir = tree(&["WORKSPACE.star", "a/b/c/file", "a/WORKSPACE.star"]);
        let root = find_root(&dir.path().join("a/b/c")).unwrap();
        assert_eq!(root, fs::canonicalize(dir.path().join("a")).unwrap());
        assert!(matches!(find_root(Path::new("/")), Err(WorkspaceError::NotFound { .. })));
    }

    #[test]
    fn walks_packages_skipping_outputs_and_hidden_dirs() {
        let dir = tree(&[
            "WORKSPACE.star",
            "BUILD.star",
            "app/BUILD.star",
            "app/api/BUILD",
            "app/data/file.txt",
            "berth-out/x/BUILD.star",
            "target/debug/BUILD.star",
            ".git/BUILD.star",
            "lib/deep/er/BUILD.star",
        ]);
        let workspace = Workspace::new(dir.path(), WorkspaceSettings::default()).unwrap();
        assert_eq!(workspace.packages_under("").unwrap(), ["", "app", "app/api", "lib/deep/er"]);
        assert_eq!(workspace.packages_under("app").unwrap(), ["app", "app/api"]);
        assert_eq!(workspace.build_file("app/api").as_deref(), Some("app/api/BUILD"));
        assert_eq!(workspace.package_of(&dir.path().join("app/api")).as_deref(), Some("app/api"));
        assert_eq!(workspace.package_of(dir.path()).as_deref(), Some(""));
        assert_eq!(workspace.package_of(Path::new("/")), None);
        assert!(matches!(workspace.packages_under("nope"), Err(WorkspaceError::NoSuchDirectory { .. })));
        let error = crate::error::Error::from(workspace.require_package("app/data").unwrap_err());
        assert_eq!(error.hint.as_deref(), Some("a file there belongs to `//app`: did you mean `//app:data/...`?"));
    }
}
