//! A temp workspace built file by file, and the real `berth` binary run in it
//! (ripgrep's `tests/util.rs`).
//!
//! ```ignore
//! let ws = TestWorkspace::new();
//! ws.file("app/BUILD.star", r#"files(name = "srcs", srcs = ["a.txt"])"#).file("app/a.txt", "hi");
//! let out = ws.berth(&["query", "//..."]);
//! assert_eq!(out.code, 0, "{}", out.stderr);
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A directory holding `WORKSPACE.star`, removed when dropped.
pub struct TestWorkspace {
    dir: tempfile::TempDir,
    /// Extra environment for every `berth` run.
    env: Vec<(String, String)>,
}

/// What one `berth` run printed and returned.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
}

impl Output {
    /// Panics with both streams unless the run exited with 0.
    #[track_caller]
    pub fn success(&self) -> &Output {
        assert_eq!(self.code, 0, "berth failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics with both streams unless the run exited with `code`.
    #[track_caller]
    pub fn failure(&self, code: i32) -> &Output {
        assert_eq!(self.code, code, "wrong exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl TestWorkspace {
    /// An empty workspace: an empty `WORKSPACE.star` in a fresh temp dir,
    /// with a cache directory of its own (`.cache/`, outside any package).
    pub fn new() -> TestWorkspace {
        let dir = tempfile::Builder::new().prefix("berth-test-").tempdir().expect("create a temp dir");
        std::fs::write(dir.path().join("WORKSPACE.star"), "").expect("write WORKSPACE.star");
        let cache = dir.path().join(".cache").display().to_string();
        TestWorkspace { dir, env: vec![("BERTH_CACHE_DIR".to_owned(), cache)] }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// An absolute path inside the workspace.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `text` to `relative` (parent directories created), replacing
    /// what was there.
    pub fn file(&self, relative: &str, text: &str) -> &TestWorkspace {
        self.bytes(relative, text.as_bytes())
    }

    /// Writes raw bytes to `relative`.
    pub fn bytes(&self, relative: &str, bytes: &[u8]) -> &TestWorkspace {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create parent directories");
        std::fs::write(&path, bytes).expect("write a test file");
        self
    }

    /// Sets an environment variable for every later `berth` run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut TestWorkspace {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `berth ARGS` at the workspace root.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_in("", args)
    }

    /// Runs `berth ARGS` in the workspace-relative directory `cwd`.
    pub fn berth_in(&self, cwd: &str, args: &[&str]) -> Output {
        run(self.command_in(cwd, args))
    }

    /// `berth ARGS` at the workspace root, not started: for tests that
    /// signal or kill it while it runs.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in("", args)
    }

    fn command_in(&self, cwd: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(args).current_dir(self.path(cwd)).stdin(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Makes `text` safe for snapshots: the workspace's absolute path becomes
    /// `[WORKSPACE]`.
    pub fn redact(&self, text: &str) -> String {
        let root = self.root().display().to_string();
        let canonical =
            std::fs::canonicalize(self.root()).map(|path| path.display().to_string()).unwrap_or(root.clone());
        text.replace(&canonical, "[WORKSPACE]").replace(&root, "[WORKSPACE]")
    }
}

impl Default for TestWorkspace {
    fn default() -> Self {
        TestWorkspace::new()
    }
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("run the berth binary");
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

/// The project's own workspace files (WORKSPACE.star, examples, the rule
/// macros in tools, the .deb bases), copied into a fresh temp workspace, so a
/// test builds the real examples without touching the checkout.
pub fn project_copy() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(project.join("WORKSPACE.star"), workspace.path("WORKSPACE.star")).expect("copy WORKSPACE.star");
    for dir in ["examples", "third_party", "tools"] {
        copy_tree(&project.join(dir), &workspace.path(dir));
    }
    workspace
}

/// The file names `third_party/debs/debs.lock` pins, in lock order.
pub fn pinned_debs() -> Vec<String> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("third_party/debs/debs.lock");
    std::fs::read_to_string(lock)
        .expect("read third_party/debs/debs.lock")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().nth(3).expect("lock line with a file name").to_owned())
        .collect()
}

/// Copies files, directories and symlinks, skipping build outputs.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("read a directory entry");
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("stat an entry");
        if entry.file_name() == "berth-out" {
            continue;
        } else if kind.is_dir() {
            copy_tree(&source, &dest);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source).unwrap(), &dest).expect("copy a symlink");
        } else {
            std::fs::copy(&source, &dest).expect("copy a file");
        }
    }
}
