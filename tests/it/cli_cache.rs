//! `berth clean`, `berth cache stats|gc` and `berth explain`, run as the real
//! binary in temp workspaces and caches.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth::actions::ActionResult;
use berth::cache::{ActionCache, CacheLock, CanonicalJson, Cas, Digest};
use berth::exec::{ActionName, ActionStatus, BuildLog, LoggedAction, LoggedInput};

fn berth(cwd: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.current_dir(cwd).env("BERTH_CACHE_DIR", cache).args(args);
    command
}

fn run(cwd: &Path, cache: &Path, args: &[&str]) -> Output {
    berth(cwd, cache, args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cache with two action cache entries of 1000 and 2000 bytes.
fn populated_cache(dir: &Path) {
    let cas = Cas::open(dir).unwrap();
    let ac = ActionCache::open(dir).unwrap();
    for (key, size) in [(&b"one"[..], 1000), (b"two", 2000)] {
        let blob = cas.put_bytes(&vec![key[0]; size]).unwrap();
        let output = ActionResult { blobs: BTreeMap::from([("b".to_owned(), blob)]), metadata: serde_json::json!({}) };
        ac.put(&Digest::of(key), &output).unwrap();
    }
}

#[test]
fn clean_removes_berth_out_from_anywhere_in_the_workspace() {
    let workspace = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("WORKSPACE.star"), "").unwrap();
    std::fs::create_dir_all(workspace.path().join("berth-out/app/image")).unwrap();
    std::fs::create_dir_all(workspace.path().join("app/deep")).unwrap();
    populated_cache(cache.path());

    let output = run(&workspace.path().join("app/deep"), cache.path(), &["clean"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!workspace.path().join("berth-out").exists());
    assert!(cache.path().join("ac").exists(), "the cache stays without --cache");
    assert!(output.stdout.is_empty(), "stdout is for data");

    let output = run(workspace.path(), cache.path(), &["clean", "--cache"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["lock"], "only the lock file remains");
}

#[test]
fn clean_outside_a_workspace_is_a_user_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), dir.path(), &["clean"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("No `WORKSPACE.star` found in"), "{}", text(&output.stderr));
}

#[test]
fn cache_stats_counts_blobs_and_entries() {
    let cache = tempfile::tempdir().unwrap();
    populated_cache(cache.path());
    let output = run(cache.path(), cache.path(), &["cache", "stats"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("cas blobs:   2 (2.9 KiB)"), "{stdout}");
    assert!(stdout.contains("ac entries:  2 ("), "{stdout}");
}

#[test]
fn cache_gc_trims_to_the_size_and_refuses_bad_sizes() {
    let cache = tempfile::tempdir().unwrap();
    populated_cache(cache.path());
    let output = run(cache.path(), cache.path(), &["cache", "gc", "--max-size", "0"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("Removed 2 action cache entries and 2 blobs"), "{}", text(&output.stdout));
    assert_eq!(std::fs::read_dir(cache.path().join("cas/sha256")).unwrap().count(), 0);

    let output = run(cache.path(), cache.path(), &["cache", "gc", "--max-size", "10X"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("Invalid size `10X`"), "{}", text(&output.stderr));
}

#[test]
fn cache_gc_waits_for_running_builds() {
    let cache = tempfile::tempdir().unwrap();
    populated_cache(cache.path());
    let build = CacheLock::shared(cache.path()).unwrap();
    let mut gc = berth(cache.path(), cache.path(), &["cache", "gc", "--max-size", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(gc.try_wait().unwrap().is_none(), "gc waits while a build holds the cache");
    assert_eq!(std::fs::read_dir(cache.path().join("ac")).unwrap().count(), 2, "and deletes nothing meanwhile");
    drop(build);
    let output = gc.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}: {}{}", output.status, text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stderr).contains("Waiting for running builds"), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_dir(cache.path().join("ac")).unwrap().count(), 0);
}

#[test]
fn explain_prints_why_each_action_ran() {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("WORKSPACE.star"), "").unwrap();
    let out = workspace.path().join("berth-out");
    let log = |digest: &[u8], mode: u32, status| BuildLog {
        format: 1,
        actions: vec![LoggedAction {
            name: ActionName { owner: "//app:layer".into(), kind: "pack_layer".into(), ordinal: 0 },
            status,
            key: Digest::of(&[digest, &mode.to_be_bytes()].concat()),
            output: Digest::of(b"out"),
            kind_version: 1,
            berth_format_version: 1,
            params: CanonicalJson::of(&serde_json::json!({ "mode": mode })),
            inputs: vec![LoggedInput::File { path: "app/a.txt".into(), digest: Digest::of(digest) }],
        }],
    };
    log(b"old", 420, ActionStatus::Ran).save(&out).unwrap();
    log(b"new", 493, ActionStatus::Ran).save(&out).unwrap();

    let output = run(workspace.path(), workspace.path(), &["explain", "//app:layer"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "//app:layer (pack_layer): ran\n    param `/mode` changed: 420 -> 493\n    source file `app/a.txt` changed: {} -> {}\n",
            Digest::of(b"old"),
            Digest::of(b"new")
        )
    );

    let output = run(workspace.path(), workspace.path(), &["explain", "//app:other"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("`//app:other` had no action in the last build"), "{}", text(&output.stderr));
}
