//! `glob(include, exclude = [])`: the files of one package matching shell
//! patterns, sorted, never crossing into a subpackage.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Error;
use crate::frontend::limits::GuardScope;
use crate::workspace::{is_skipped_dir, BUILD_FILES};

/// The package-relative paths of the files under `dir` (the directory of
/// `package`) that match one of `include` and none of `exclude`, sorted by
/// bytes. `*` stays within a directory; `**` crosses directories.
pub(crate) fn glob_package(
    dir: &Path,
    package: &str,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<String>, Error> {
    let include = compile(package, include)?;
    let exclude = compile(package, exclude)?;
    let wanted = |path: &str| include.is_match(path) && !exclude.is_match(path);
    let mut files =
        walk(dir, &wanted).map_err(|error| Error::user(format!("Cannot list the files of `//{package}`: {error}")))?;
    files.sort();
    Ok(files)
}

fn compile(package: &str, patterns: &[String]) -> Result<GlobSet, Error> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let escapes = pattern.starts_with('/') || pattern.split('/').any(|part| part == ".." || part == ".");
        if escapes {
            return Err(Error::user(format!("Glob pattern `{pattern}` escapes package `//{package}`"))
                .with_hint("`glob` matches only files of its own package; name other packages' files by label, as in `//other:file.txt`"));
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|error| Error::user(format!("Invalid glob pattern `{pattern}`: {}", error.kind())))?;
        set.add(glob);
    }
    set.build().map_err(|error| Error::user(format!("Invalid glob pattern: {error}")))
}

/// Directories listed on the calling thread before the walk takes more
/// threads: a package of a few hundred directories is done by then.
const WALK_ALONE: usize = 256;

/// The relative paths of the files below `dir` that `wanted` accepts,
/// skipping subpackages and the directories no package holds (`berth-out`,
/// hidden). A large tree is walked on every core, by threads of its own, not
/// rayon's: `glob` runs inside a Starlark evaluation, and a rayon worker
/// waiting for a join could take up another BUILD file's evaluation while
/// this one's allocation guard is on.
fn walk(dir: &Path, wanted: &(dyn Fn(&str) -> bool + Sync)) -> io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_owned(), String::new())];
    for _ in 0..WALK_ALONE {
        let Some((dir, prefix)) = pending.pop() else { return Ok(files) };
        pending.extend(list(&dir, &prefix, wanted, &mut files)?);
    }
    let queue = Queue { state: Mutex::new(QueueState { pending, busy: 0, error: None }), changed: Condvar::new() };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // The walkers' allocations count in the loader's memory budget and
    // deadline, as the evaluation's own.
    let guard = GuardScope::current();
    let found: Vec<Vec<String>> = std::thread::scope(|scope| {
        let walkers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let _guard = guard.enter();
                    queue.work(wanted)
                })
            })
            .collect();
        walkers.into_iter().map(|walker| walker.join().expect("a glob walker does not panic")).collect()
    });
    let state = queue.state.into_inner().expect("no walker panicked");
    if let Some(error) = state.error {
        return Err(error);
    }
    files.extend(found.into_iter().flatten());
    Ok(files)
}

/// Directories still to list, shared by the walkers.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    pending: Vec<(PathBuf, String)>,
    /// Walkers listing a directory, which may add more.
    busy: usize,
    error: Option<io::Error>,
}

impl Queue {
    fn work(&self, wanted: &(dyn Fn(&str) -> bool + Sync)) -> Vec<String> {
        let mut files = Vec::new();
        let mut state = self.state.lock().expect("no walker panicked");
        loop {
            if state.error.is_some() {
                return files;
            }
            let Some((dir, prefix)) = state.pending.pop() else {
                if state.busy == 0 {
                    return files;
                }
                state = self.changed.wait(state).expect("no walker panicked");
                continue;
            };
            state.busy += 1;
            drop(state);
            let listed = list(&dir, &prefix, wanted, &mut files);
            state = self.state.lock().expect("no walker panicked");
            state.busy -= 1;
            match listed {
                Ok(subdirs) => state.pending.extend(subdirs),
                Err(error) => state.error = Some(error),
            }
            self.changed.notify_all();
        }
    }
}

/// Lists one directory (`prefix`, relative to the package): pushes the files
/// `wanted` accepts onto `files` and returns the subdirectories to enter. A
/// directory is listed before it is entered, so its BUILD file (which makes
/// it a subpackage, skipped) is seen without a `stat` per directory.
fn list(
    dir: &Path,
    prefix: &str,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    files: &mut Vec<String>,
) -> io::Result<Vec<(PathBuf, String)>> {
    let entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    if !prefix.is_empty() && entries.iter().any(is_build_file) {
        return Ok(Vec::new());
    }
    let mut subdirs = Vec::new();
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !is_skipped_dir(&name) {
                subdirs.push((entry.path(), path));
            }
        } else if kind.is_symlink() && fs::metadata(entry.path()).is_ok_and(|meta| meta.is_dir()) {
            // Linked directories are not entered (no loops).
        } else if !(prefix.is_empty() && BUILD_FILES.contains(&name.as_str())) && wanted(&path) {
            files.push(path);
        }
    }
    Ok(subdirs)
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

    /// More directories than the calling thread lists alone: the rest are
    /// walked by several threads, with the same result.
    #[test]
    fn a_large_tree_is_walked_in_full_on_several_threads() {
        let mut files: Vec<String> = (0..WALK_ALONE * 2).map(|i| format!("d{}/e{}/f{i}.txt", i % 40, i % 7)).collect();
        files.extend(["d3/sub/BUILD", "d3/sub/skipped.txt", "d5/e1/.git/skipped.txt"].map(String::from));
        let dir = package(&files.iter().map(String::as_str).collect::<Vec<_>>());
        let got = glob_package(dir.path(), "app", &strings(&["**/*.txt"]), &[]).unwrap();
        let mut expected: Vec<String> =
            files.into_iter().filter(|file| file.ends_with(".txt") && !file.contains("skipped")).collect();
        expected.sort();
        assert_eq!(got, expected);
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
