//! A build killed with SIGKILL at any moment leaves a sound cache: 50 builds
//! are really interrupted (killed while still running) at scattered
//! moments, `berth cache verify` checks the cache right after each kill,
//! and the builds that follow succeed with the digests of an uninterrupted
//! build.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::workspace::TestWorkspace;

/// Five packages of a few MiB each, one image per pair, so a cold build takes
/// long enough to be killed in the middle of packing and writing.
fn workspace() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for package in 0..5 {
        for file in 0..4 {
            let bytes: Vec<u8> = (0..(1 << 20))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Text-like bytes, so gzip has real work to do.
                    b"abcdefghij \n"[(seed % 12) as usize]
                })
                .collect();
            workspace.bytes(&format!("p{package}/data/f{file}.txt"), &bytes);
        }
        workspace.file(
            &format!("p{package}/BUILD.star"),
            &format!(
                "files(name = 'data', srcs = glob(['data/*']))\n\
                 oci_image_build(name = 'image', packages = [':data', '//p{}:data'], env = {{'P': '{package}'}})\n",
                (package + 1) % 5
            ),
        );
    }
    workspace
}

fn build(workspace: &TestWorkspace) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["--console", "none", "build", "//..."])
        .current_dir(workspace.root())
        .env("BERTH_CACHE_DIR", workspace.path(".cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn digests(workspace: &TestWorkspace) -> String {
    let output = build(workspace).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// `berth cache verify` on the workspace's cache: every blob hashes to its
/// name, every action result names only present, sound blobs, every
/// extracted layer matches its tree digest.
fn assert_cache_sound(workspace: &TestWorkspace, after: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cache", "verify"])
        .current_dir(workspace.root())
        .env("BERTH_CACHE_DIR", workspace.path(".cache"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the cache is not sound {after}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn builds_killed_at_fifty_moments_never_poison_the_cache() {
    use std::os::unix::process::ExitStatusExt;

    let reference = workspace();
    let started = Instant::now();
    let expected = digests(&reference);
    let cold = started.elapsed();

    let workspace = workspace();
    let mut seed = 12345_u64;
    let (mut interrupted, mut attempts) = (0, 0);
    // Only a kill that lands while berth still runs counts: a build that
    // finished before its kill moment interrupted nothing.
    while interrupted < 50 {
        attempts += 1;
        assert!(attempts <= 400, "only {interrupted} of {attempts} kills interrupted a build");
        // A fresh cache every few interruptions, so kills land in cold
        // builds as well as in builds resuming what a kill left.
        if attempts % 6 == 1 {
            assert_eq!(digests(&workspace), expected, "the build after {interrupted} kills differs");
            let _ = std::fs::remove_dir_all(workspace.path(".cache"));
            let _ = std::fs::remove_dir_all(workspace.path("berth-out"));
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_micros((seed >> 33) % (cold.as_micros() as u64 + 1));
        let mut child = build(&workspace).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(libc::SIGKILL) {
            interrupted += 1;
            // Right after the kill, before any build repairs anything.
            assert_cache_sound(&workspace, &format!("after kill {interrupted} ({delay:?} into the build)"));
        }
    }
    eprintln!("{interrupted} builds interrupted in {attempts} attempts (cold build: {cold:?})");
    assert_eq!(digests(&workspace), expected, "the build after the last kill differs");
    assert_cache_sound(&workspace, "after the last build");
}

#[test]
fn corrupt_cache_blobs_are_detected_and_rebuilt() {
    let workspace = workspace();
    let expected = digests(&workspace);
    let blobs = workspace.path(".cache/cas/sha256");
    let mut flipped = 0;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        if let Some(byte) = bytes.get_mut(middle) {
            *byte ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    std::fs::remove_dir_all(workspace.path("berth-out")).unwrap();
    assert_eq!(digests(&workspace), expected);
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&path).unwrap());
        assert_eq!(hex::encode(digest), path.file_name().unwrap().to_str().unwrap(), "a corrupt blob is still served");
    }
}
