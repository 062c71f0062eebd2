//! `glob(include, exclude = [])`: the files of one package matching shell
//! patterns, sorted, never crossing into a subpackage.

use std::fs;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::frontend::error::Diagnostic;
use crate::workspace::{is_skipped_dir, BUILD_FILES};

/// The package-relative paths of the files under `dir` (the directory of
/// `package`) that match one of `include` and none of `exclude`, sorted by
/// bytes. `*` stays within a directory; `**` crosses directories.
pub(crate) fn glob_package(
    dir: &Path,
    package: &str,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<String>, Diagnostic> {
    let include = compile(package, include)?;
    let exclude = compile(package, exclude)?;
    let mut files = Vec::new();
    walk(dir, "", &mut |path| {
        if include.is_match(path) && !exclude.is_match(path) {
            files.push(path.to_owned());
        }
    })
    .map_err(|error| Diagnostic::new(format!("Cannot list the files of `//{package}`: {error}")))?;
    files.sort();
    Ok(files)
}

fn compile(package: &str, patterns: &[String]) -> Result<GlobSet, Diagnostic> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let escapes = pattern.starts_with('/') || pattern.split('/').any(|part| part == ".." || part == ".");
        if escapes {
            return Err(Diagnostic::new(format!("Glob pattern `{pattern}` escapes package `//{package}`"))
                .hint("`glob` matches only files of its own package; name other packages' files by label, as in `//other:file.txt`"));
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|error| Diagnostic::new(format!("Invalid glob pattern `{pattern}`: {}", error.kind())))?;
        set.add(glob);
    }
    set.build().map_err(|error| Diagnostic::new(format!("Invalid glob pattern: {error}")))
}

/// Calls `found` with the relative path of every file below `dir`, skipping
/// subpackages and the directories no package holds (`berth-out`, hidden).
/// A directory is listed before it is entered, so its BUILD file (which
/// makes it a subpackage) is seen without a `stat` per directory.
fn walk(dir: &Path, prefix: &str, found: &mut dyn FnMut(&str)) -> std::io::Result<()> {
    let entries = fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    if !prefix.is_empty() && entries.iter().any(is_build_file) {
        return Ok(());
    }
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !is_skipped_dir(&name) {
                walk(&entry.path(), &path, found)?;
            }
        } else if kind.is_symlink() && fs::metadata(entry.path()).is_ok_and(|meta| meta.is_dir()) {
            // Linked directories are not entered (no loops).
        } else if !(prefix.is_empty() && BUILD_FILES.contains(&name.as_str())) {
            found(&path);
        }
    }
    Ok(())
}

/// A `BUILD.star` or `BUILD` file (or a link to one).
fn is_build_file(entry: &fs::DirEntry) -> bool {
    BUILD_FILES.iter().any(|build| entry.file_name() == *build)
        && entry.file_type().is_ok_and(|kind| kind.is_file() || (kind.is_symlink() && entry.path().is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        dir
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn matches_files_sorted_without_subpackages() {
        let dir = package(&[
            "b.py",
            "a.py",
            "z.txt",
            "src/c.py",
            "src/deep/d.py",
            "sub/BUILD.star",
            "sub/e.py",
            ".hidden/f.py",
        ]);
        let got = glob_package(dir.path(), "app", &strings(&["*.py"]), &[]).unwrap();
        assert_eq!(got, ["a.py", "b.py"]);
        let got = glob_package(dir.path(), "app", &strings(&["**/*.py"]), &strings(&["src/deep/**"])).unwrap();
        assert_eq!(got, ["a.py", "b.py", "src/c.py"]);
        let got = glob_package(dir.path(), "app", &strings(&["**"]), &strings(&["*.py"])).unwrap();
        assert_eq!(got, ["src/c.py", "src/deep/d.py", "z.txt"]);
    }

    #[test]
    fn leaves_out_the_build_file_itself() {
        let dir = package(&["BUILD.star", "x.txt"]);
        assert_eq!(glob_package(dir.path(), "app", &strings(&["*"]), &[]).unwrap(), ["x.txt"]);
    }

    #[test]
    fn refuses_patterns_escaping_the_package() {
        let dir = package(&["a.py"]);
        for bad in ["../*.py", "/etc/*", "src/../../x"] {
            let error = glob_package(dir.path(), "app", &strings(&[bad]), &[]).unwrap_err();
            assert_eq!(error.message, format!("Glob pattern `{bad}` escapes package `//app`"));
        }
    }
}
