//! The hermetic bases of `third_party/debs`: the lock and its Starlark form
//! agree, and the `deb_layer` action turns the pinned `.deb` files into
//! layers that hold what the packages hold and actually run.
//!
//! Tests that need the fetched `.deb` files print `SKIP: <reason>` without
//! them (`scripts/fetch-debs.sh` fetches them; `scripts/setup.sh` runs it).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::actions::{Action, ActionContext, DebLayer, DebLayerOutput, ExecutionContext, ResolvedInput};
use berth::cache::{Cas, Digest};
use berth::oci::{decoder, Compression, LayerStore};

use crate::util::need::{skip, Need};

const BUSYBOX: &[&str] = &["busybox-static"];
const PYTHON: &[&str] = &[
    "gcc-12-base",
    "libgcc-s1",
    "libc6",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libpython3.11-minimal",
    "python3.11-minimal",
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `package → (version, sha256, filename)` from `debs.lock`.
fn lock() -> BTreeMap<String, (String, String, String)> {
    let text = fs::read_to_string(workspace().join("third_party/debs/debs.lock")).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "lock line `{line}`: expected package version sha256 filename");
            (fields[0].to_owned(), (fields[1].to_owned(), fields[2].to_owned(), fields[3].to_owned()))
        })
        .collect()
}

#[test]
fn lock_star_says_what_the_lock_says() {
    let star = fs::read_to_string(workspace().join("third_party/debs/lock.star")).unwrap();
    let lock = lock();
    for (package, (version, sha256, file)) in &lock {
        let line = format!(
            "    \"{package}\": {{\"version\": \"{version}\", \"sha256\": \"{sha256}\", \"file\": \"{file}\"}},"
        );
        assert!(star.lines().any(|l| l == line), "lock.star lacks `{line}`\nhint: scripts/fetch-debs.sh --write-star");
        assert!(Digest::parse_lenient(sha256).is_ok(), "{package}: bad sha256 {sha256}");
    }
    assert_eq!(star.lines().filter(|l| l.starts_with("    \"")).count(), lock.len(), "lock.star has extra packages");
    // Every pinned package is in a base, and every base package is pinned.
    let used: Vec<&str> = BUSYBOX.iter().chain(PYTHON).copied().collect();
    let mut pinned: Vec<&str> = lock.keys().map(String::as_str).collect();
    let mut used_sorted = used.clone();
    used_sorted.sort();
    pinned.sort();
    assert_eq!(used_sorted, pinned);
    let build = fs::read_to_string(workspace().join("third_party/debs/BUILD.star")).unwrap();
    for package in used {
        assert!(build.contains(&format!("\"{package}\"")), "BUILD.star does not list `{package}`");
    }
}

/// The pinned files of `packages`, or `None` (after printing SKIP) when
/// they have not been fetched.
fn fetched(packages: &[&str]) -> Option<Vec<(PathBuf, String)>> {
    if skip(&[Need::Debs]) {
        return None;
    }
    let lock = lock();
    let mut files = Vec::new();
    for package in packages {
        let (_, sha256, file) = &lock[*package];
        files.push((PathBuf::from("third_party/debs").join(file), sha256.clone()));
    }
    Some(files)
}

/// Runs the `deb_layer` action over `files` as the scheduler would, in a
/// fresh cache; returns the output and the uncompressed layer tar.
fn build_layer(files: &[(PathBuf, String)], cache: &Path) -> (DebLayerOutput, Vec<u8>) {
    let sha256s: Vec<String> = files.iter().map(|(_, sha)| sha.clone()).collect();
    let action = DebLayer::new(files.iter().map(|(p, _)| p.clone()).collect(), &sha256s, Compression::Gzip, 0).unwrap();
    let cas = Cas::open(cache).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let inputs = files
        .iter()
        .map(|(path, _)| {
            let bytes = fs::read(workspace().join(path)).unwrap();
            ResolvedInput::Source {
                path: workspace().join(path),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
                settled: false,
            }
        })
        .collect();
    let exec = ExecutionContext::new(cas.clone(), LayerStore::new(cache));
    let result = action.execute(&ActionContext::new(&exec, inputs, scratch.path())).unwrap();
    let output = DebLayerOutput::from_result(&result).unwrap();
    let blob = cas.read_verified(&output.layer.blob.digest).unwrap();
    let mut tar = Vec::new();
    decoder(&blob[..], Compression::Gzip).unwrap().read_to_end(&mut tar).unwrap();
    assert_eq!(output.layer.diff_id, Some(Digest::of(&tar)));
    (output, tar)
}

struct TarEntry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
}

fn entries(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        // Normalised like every layer: no times, no names.
        assert_eq!(header.mtime().unwrap(), 0);
        assert!(header.username_bytes().unwrap_or_default().is_empty());
        assert!(header.groupname_bytes().unwrap_or_default().is_empty());
        out.push(TarEntry {
            path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            link: entry.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap()),
        });
    }
    let paths: Vec<&str> = out.iter().map(|e| e.path.trim_end_matches('/')).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries are sorted by path");
    out
}

#[test]
fn busybox_layer_holds_the_static_busybox() {
    let Some(files) = fetched(BUSYBOX) else { return };
    let cache = tempfile::tempdir().unwrap();
    let (output, tar) = build_layer(&files, cache.path());
    assert_eq!(output.packages[0].package, "busybox-static");
    let entries = entries(&tar);
    let busybox = entries.iter().find(|e| e.path == "bin/busybox").expect("bin/busybox in the layer");
    assert_eq!((busybox.kind, busybox.mode, busybox.uid, busybox.gid), (tar::EntryType::Regular, 0o755, 0, 0));
    let doc = entries.iter().find(|e| e.path.trim_end_matches('/') == "usr/share/doc/busybox-static").unwrap();
    assert_eq!((doc.kind, doc.mode), (tar::EntryType::Directory, 0o755));

    // Another cache, another time: the same bytes.
    let other = tempfile::tempdir().unwrap();
    let (again, _) = build_layer(&files, other.path());
    assert_eq!(output, again);
}

#[test]
fn python_layer_merges_the_closure_and_keeps_links() {
    let Some(files) = fetched(PYTHON) else { return };
    let cache = tempfile::tempdir().unwrap();
    let (output, tar) = build_layer(&files, cache.path());
    let packages = &output.packages;
    assert_eq!(packages.len(), PYTHON.len());
    let entries = entries(&tar);
    let find = |path: &str| entries.iter().find(|e| e.path.trim_end_matches('/') == path);
    let python = find("usr/bin/python3.11").expect("the interpreter");
    assert_eq!((python.kind, python.mode), (tar::EntryType::Regular, 0o755));
    let loader = find("lib64/ld-linux-x86-64.so.2").expect("the dynamic loader link");
    assert_eq!(loader.kind, tar::EntryType::Symlink);
    assert_eq!(loader.link.as_deref(), Some("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    assert!(find("usr/lib/python3.11/os.py").is_some());
    // A directory several packages share appears once.
    assert_eq!(entries.iter().filter(|e| e.path.trim_end_matches('/') == "usr/share/doc").count(), 1);
}

/// Unpacks a layer into `root` with the system `tar` (which keeps modes,
/// links and owners as root), for running what it holds.
fn unpack(tar_bytes: &[u8], root: &Path) -> bool {
    let archive = root.with_extension("tar");
    fs::write(&archive, tar_bytes).unwrap();
    Command::new("tar")
        .args(["-x", "--numeric-owner", "-f"])
        .arg(&archive)
        .arg("-C")
        .arg(root)
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// `chroot root argv...` when this process may chroot; `None` after a SKIP.
fn run_in(root: &Path, argv: &[&str]) -> Option<std::process::Output> {
    if skip(&[Need::Root]) {
        return None;
    }
    Some(
        Command::new("chroot")
            .arg(root)
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("chroot runs"),
    )
}

#[test]
fn busybox_layer_runs_echo() {
    let Some(files) = fetched(BUSYBOX) else { return };
    let cache = tempfile::tempdir().unwrap();
    let (_, tar) = build_layer(&files, cache.path());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    assert!(unpack(&tar, &root));
    let Some(output) = run_in(&root, &["/bin/busybox", "echo", "hello from deb_layer"]) else { return };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from deb_layer\n");
}

#[test]
fn python_layer_runs_python() {
    let Some(files) = fetched(PYTHON) else { return };
    let cache = tempfile::tempdir().unwrap();
    let (_, tar) = build_layer(&files, cache.path());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    assert!(unpack(&tar, &root));
    let Some(output) = run_in(&root, &["/usr/bin/python3.11", "-c", "print(42)"]) else { return };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "42\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// `scripts/fetch-debs.sh` with its deb directory pointed at `dir`.
fn fetch_script(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(workspace().join("scripts/fetch-debs.sh"))
        .args(args)
        .env("BERTH_DEBS_DIR", dir)
        .output()
        .expect("scripts/fetch-debs.sh runs")
}

#[test]
fn fetch_script_check_names_missing_and_wrong_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = b"a pinned package";
    let lock = format!(
        "# roots: a\n# architecture: amd64\na 1.0 {} a_1.0_amd64.deb\nb 2:2.0 {} b_2.0_amd64.deb\n",
        Digest::of(good).hex(),
        Digest::of(b"b").hex()
    );
    fs::write(dir.path().join("debs.lock"), lock).unwrap();
    let star = fetch_script(dir.path(), &["--write-star"]);
    assert!(star.status.success(), "{star:?}");
    let star = fs::read_to_string(dir.path().join("lock.star")).unwrap();
    assert!(star.contains(r#""b": {"version": "2:2.0", "sha256": ""#), "{star}");

    fs::write(dir.path().join("a_1.0_amd64.deb"), b"tampered").unwrap();
    let check = fetch_script(dir.path(), &["--check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("a_1.0_amd64.deb has sha256 {}", Digest::of(b"tampered").hex())), "{stderr}");
    assert!(stderr.contains("b_2.0_amd64.deb is missing"), "{stderr}");
    assert!(stderr.contains("2 of 2 pinned .deb files are missing or wrong"), "{stderr}");

    fs::write(dir.path().join("a_1.0_amd64.deb"), good).unwrap();
    let check = fetch_script(dir.path(), &["--check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!stderr.contains("a_1.0_amd64.deb"), "{stderr}");
    assert!(stderr.contains("1 of 2 pinned .deb files are missing or wrong"), "{stderr}");

    // A lock.star that says something else than the lock is refused.
    fs::write(dir.path().join("lock.star"), "DEBS = {}\n").unwrap();
    let stale = fetch_script(dir.path(), &["--check"]);
    assert!(String::from_utf8_lossy(&stale.stderr).contains("lock.star does not match"), "{stale:?}");
}

#[test]
fn fetch_script_check_passes_on_the_fetched_debs() {
    if fetched(&lock().keys().map(String::as_str).collect::<Vec<_>>()).is_none() {
        return;
    }
    let check = Command::new(workspace().join("scripts/fetch-debs.sh")).arg("--check").output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}
