//! End-to-end tests of in-container steps (`run_step`) and `run_image` with
//! the real runc, on a busybox base made from `busybox-static`.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::util::need::{non_loopback_ipv4, skip, skip_because, Need};
use crate::util::runc::{busybox_tar, gzip, serial, zstd, TarBuilder, CONTAINER};
use berth::actions::{
    Action, ActionContext, ActionId, ActionResult, BaseConfig, ExecutionContext, LayerOutput, ResolvedInput, RunStep,
    RunStepSpec,
};
use berth::cache::{BlobRef, Cas, Digest};
use berth::error::{ErrorKind, Result};
use berth::exec::{run_image, RunImageRequest, Runc, RuncRuntime, StackMode};
use berth::oci::LayerStore;

struct Fixture {
    dir: tempfile::TempDir,
    cas: Cas,
    base: ActionResult,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(&dir.path().join("cache")).unwrap();
        let base = layer_output(&cas, &gzip(&busybox_tar()));
        Fixture { dir, cas, base }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The machine as the scheduler would build it: this cache, runc from
    /// `PATH`, roots stacked with `stack`.
    fn context(&self, stack: StackMode) -> ExecutionContext {
        ExecutionContext::new(self.cas.clone(), LayerStore::new(&self.cache()))
            .with_runtime(Arc::new(RuncRuntime::new(None, stack)))
    }

    fn run(&self, spec: RunStepSpec, packages: &[&ActionResult], stack: StackMode) -> Result<ActionResult> {
        let step = RunStep {
            base_config: BaseConfig::None,
            base_layers: vec![ActionId(0)],
            packages: (1..=packages.len()).map(ActionId).collect(),
            spec,
        };
        let scratch = tempfile::tempdir_in(self.dir.path()).unwrap();
        let mut inputs = vec![ResolvedInput::Action(&self.base)];
        inputs.extend(packages.iter().map(|output| ResolvedInput::Action(output)));
        step.execute(&ActionContext::new(&self.context(stack), inputs, scratch.path()))
    }

    fn blob_count(&self) -> usize {
        std::fs::read_dir(self.cache().join("cas/sha256")).unwrap().count()
    }
}

/// A layer as `fetch_blob` leaves one: no diff_id (extraction tells gzip,
/// zstd and plain tar apart by their magic bytes, not the media type).
fn layer_output(cas: &Cas, bytes: &[u8]) -> ActionResult {
    let blob = cas.put_bytes(bytes).unwrap();
    LayerOutput { blob, media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(), diff_id: None }.to_result()
}

fn spec(command: &[&str], outputs: &[&str]) -> RunStepSpec {
    RunStepSpec {
        command: command.iter().map(|line| line.to_string()).collect(),
        outputs: outputs.iter().map(|path| path.to_string()).collect(),
        timeout_secs: 60,
        ..RunStepSpec::default()
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    body: String,
}

/// The entries of a gzip layer blob, in archive order.
fn entries(cas: &Cas, output: &ActionResult) -> Vec<Entry> {
    let layer = LayerOutput::from_result(output).unwrap();
    let bytes = cas.read_verified(&layer.blob.digest).unwrap();
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut tar_bytes).unwrap();
    assert_eq!(layer.diff_id, Some(Digest::of(&tar_bytes)));
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut body = String::new();
            if header.entry_type().is_file() {
                entry.read_to_string(&mut body).unwrap();
            } else if let Some(link) = entry.link_name().unwrap() {
                body = link.display().to_string();
            }
            Entry {
                path: entry.path().unwrap().display().to_string(),
                kind: header.entry_type().as_byte() as char,
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                body,
            }
        })
        .collect()
}

fn leftover_containers() -> Vec<String> {
    let runc = Runc::locate(None).unwrap();
    let prefix = format!("berth-{}.", std::process::id());
    runc.list().unwrap().into_iter().filter(|id| id.starts_with(&prefix)).collect()
}

#[test]
fn step_that_writes_files_gives_the_expected_layer() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let step = spec(
        &[
            "mkdir -p /out/sub /out/cache",
            "echo hi > /out/x",
            "chown 12:34 /out/x && chmod 4751 /out/x",
            "ln -s x /out/link && ln /out/x /out/sub/hard",
            "echo junk > /out/cache/junk && echo obj > /out/sub/a.o",
            "echo not captured > /elsewhere",
        ],
        &["/out"],
    );
    let step = RunStepSpec { exclude: vec!["*.o".into(), "/out/cache".into()], source_date_epoch: 1234, ..step };
    let output = fixture.run(step.clone(), &[], StackMode::Auto).unwrap();
    let got = entries(&fixture.cas, &output);
    let expect = |path: &str, kind: char, mode: u32, uid: u64, gid: u64, body: &str| Entry {
        path: path.into(),
        kind,
        mode,
        uid,
        gid,
        mtime: 1234,
        body: body.into(),
    };
    assert_eq!(
        got,
        [
            expect("out", '5', 0o755, 0, 0, ""),
            expect("out/link", '2', 0o777, 0, 0, "x"),
            expect("out/sub", '5', 0o755, 0, 0, ""),
            expect("out/sub/hard", '0', 0o4751, 12, 34, "hi\n"),
            expect("out/x", '1', 0o4751, 12, 34, "out/sub/hard"),
        ]
    );
    assert_eq!(LayerOutput::from_result(&output).unwrap().media_type, "application/vnd.oci.image.layer.v1.tar+gzip");

    // The same step again, and with copies instead of overlayfs: same bytes.
    let again = fixture.run(step.clone(), &[], StackMode::Auto).unwrap();
    assert_eq!(again, output);
    let copied = fixture.run(step, &[], StackMode::Copy).unwrap();
    assert_eq!(copied, output);
    assert!(leftover_containers().is_empty());
}

#[test]
fn failing_step_reports_stderr_and_exit_code_and_caches_nothing() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let blobs_before = fixture.blob_count();
    let step =
        spec(&["echo partial > /out-file", "echo 'compiler says no' >&2; exit 7", "echo never >&2"], &["/out-file"]);
    let error = fixture.run(step, &[], StackMode::Auto).unwrap_err();
    assert_eq!(error.kind, ErrorKind::User);
    assert!(error.message.contains("failed with exit code 7"), "{}", error.message);
    assert!(error.message.contains("compiler says no"), "{}", error.message);
    let stderr = error.message.split("stderr:").nth(1).unwrap();
    assert!(!stderr.contains("never"), "{}", error.message);
    assert_eq!(fixture.blob_count(), blobs_before, "a failing step writes no blob");
    assert!(leftover_containers().is_empty());
    // The scratch directories and mounts are gone too.
    assert_eq!(std::fs::read_dir(fixture.cache().join("run")).map(|dir| dir.count()).unwrap_or(0), 0);
}

/// The host's first non-loopback IPv4 address, if it has one.
#[test]
fn network_is_loopback_only_unless_asked() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let interfaces = |network: bool| {
        let step = RunStepSpec { network, ..spec(&["cat /proc/net/dev > /net"], &["/net"]) };
        let output = fixture.run(step, &[], StackMode::Auto).unwrap();
        let body = entries(&fixture.cas, &output).pop().unwrap().body;
        body.lines().skip(2).map(|line| line.split(':').next().unwrap().trim().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(interfaces(false), ["lo"]);
    assert!(interfaces(true).len() > 1, "the host's interfaces are visible with network=True");

    let Some(address) = non_loopback_ipv4() else {
        skip_because(Need::Network, "no IPv4 address but loopback for the `nc` half of the test");
        return;
    };
    let listener = TcpListener::bind((address.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"hello");
        }
    });
    // busybox's nc (its static wget crashes in getaddrinfo on some hosts).
    let fetch = format!("echo GET | nc -w 5 {address} {port} > /got");
    let blocked = fixture.run(spec(&[&fetch], &["/got"]), &[], StackMode::Auto).unwrap_err();
    assert_eq!(blocked.kind, ErrorKind::User);
    assert!(blocked.message.contains("Network is unreachable"), "{}", blocked.message);
    let allowed = RunStepSpec { network: true, ..spec(&[&fetch], &["/got"]) };
    let output = fixture.run(allowed, &[], StackMode::Auto).unwrap();
    assert_eq!(entries(&fixture.cas, &output).pop().unwrap().body, "hello");
}

#[test]
fn step_past_its_timeout_is_killed_and_deleted() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let started = Instant::now();
    let step = RunStepSpec { timeout_secs: 1, ..spec(&["echo started >&2", "sleep 60"], &["/tmp"]) };
    let error = fixture.run(step, &[], StackMode::Auto).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "killed long before the sleep ends");
    assert_eq!(error.kind, ErrorKind::User);
    assert!(error.message.contains("timed out after 1s"), "{}", error.message);
    assert!(error.message.contains("started"), "{}", error.message);
    assert!(leftover_containers().is_empty(), "no container left in `runc list`");
}

#[test]
fn packages_are_staged_over_the_base_with_whiteouts() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    // zstd and plain tar packages over the gzip base: extraction tells them
    // apart by their magic bytes.
    let sources = TarBuilder::default().dir("src", 0o755).file("src/main.txt", 0o644, b"package source\n").finish();
    let sources = layer_output(&fixture.cas, &zstd(&sources));
    let whiteouts = TarBuilder::default()
        .file("etc/.wh.group", 0o644, b"")
        .dir("root", 0o700)
        .file("root/.wh..wh..opq", 0o644, b"")
        .file("root/new", 0o644, b"only this\n")
        .finish();
    let whiteouts = layer_output(&fixture.cas, &whiteouts);
    let step = spec(
        &[
            "test ! -e /etc/group",
            "test -e /etc/passwd",
            "echo old > /root/old-marker-never-in-base; ls /root > /listing",
            "cat /src/main.txt >> /listing",
        ],
        &["/listing"],
    );
    // The base's /root gets a file first, so the opaque directory has something to hide.
    let base_root = TarBuilder::default().dir("root", 0o700).file("root/hidden", 0o644, b"x").finish();
    let base_root = layer_output(&fixture.cas, &gzip(&base_root));
    for stack in [StackMode::Overlay, StackMode::Copy] {
        let output = fixture.run(step.clone(), &[&base_root, &sources, &whiteouts], stack).unwrap();
        let listing = entries(&fixture.cas, &output).pop().unwrap().body;
        assert_eq!(listing, "new\nold-marker-never-in-base\npackage source\n", "{stack:?}");
    }
}

#[test]
fn base_layers_are_extracted_once() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    for index in 0..3 {
        fixture.run(spec(&[&format!("echo {index} > /n")], &["/n"]), &[], StackMode::Auto).unwrap();
    }
    // Containers run in a user namespace: their layers are in the store
    // shifted to its range.
    let userns = berth::exec::UserNamespace::from_subid_files().unwrap();
    let store = fixture.cache().join("layers").join(format!("shifted-{}", userns.host));
    let layers: Vec<_> =
        std::fs::read_dir(store).unwrap().flatten().filter(|entry| entry.file_type().unwrap().is_dir()).collect();
    assert_eq!(layers.len(), 1, "one extracted directory for the one base layer");
    let base_digest = LayerOutput::from_result(&fixture.base).unwrap().blob.digest;
    assert_eq!(layers[0].file_name().to_str().unwrap(), base_digest.hex());
}

fn config_blob(cas: &Cas, config: serde_json::Value) -> (Vec<u8>, BlobRef) {
    let bytes = config.to_string().into_bytes();
    let blob = cas.put_bytes(&bytes).unwrap();
    (bytes, blob)
}

#[test]
fn run_image_passes_the_exit_code_through() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let (config, _) = config_blob(
        &fixture.cas,
        serde_json::json!({"config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["exit 7"], "Env": ["A=1"]}}),
    );
    let layers = [LayerOutput::from_result(&fixture.base).unwrap().blob.digest];
    let cache = fixture.cache();
    let context = fixture.context(StackMode::Auto);
    let request = |args: &[&str], env: &[&str]| RunImageRequest {
        cache_dir: &cache,
        config: &config,
        layers: &layers,
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: env.iter().map(|entry| entry.to_string()).collect(),
        network: false,
        timeout: None,
    };
    assert_eq!(run_image(&context, &request(&[], &[])).unwrap(), 7);
    assert_eq!(run_image(&context, &request(&["exit 9"], &[])).unwrap(), 9, "args replace cmd");
    assert_eq!(run_image(&context, &request(&["exit $A$B"], &["B=2"])).unwrap(), 12, "env merges");
    assert!(leftover_containers().is_empty());
}

#[test]
fn config_env_workdir_and_user_apply_to_steps() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let (_, config) = config_blob(
        &fixture.cas,
        serde_json::json!({"config": {"Env": ["GREETING=base", "KEEP=kept"], "WorkingDir": "/tmp"}}),
    );
    let step = RunStep {
        base_config: BaseConfig::Blob(config),
        base_layers: vec![ActionId(0)],
        packages: vec![],
        spec: RunStepSpec {
            env: vec!["GREETING=step".into()],
            ..spec(&["mkdir /o && echo \"$GREETING $KEEP $(pwd) $(id -u)\" > /o/env"], &["/o/env"])
        },
    };
    let scratch = tempfile::tempdir_in(fixture.dir.path()).unwrap();
    let context = fixture.context(StackMode::Auto);
    let ctx = ActionContext::new(&context, vec![ResolvedInput::Action(&fixture.base)], scratch.path());
    let output = step.execute(&ctx).unwrap();
    assert_eq!(entries(&fixture.cas, &output).pop().unwrap().body, "step kept /tmp 0\n");
}

#[test]
fn argv_runs_without_a_shell() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let fixture = Fixture::new();
    let step = RunStepSpec {
        argv: vec!["/bin/busybox".into(), "mkdir".into(), "-p".into(), "/made/by/argv".into()],
        outputs: vec!["/made".into()],
        timeout_secs: 60,
        ..RunStepSpec::default()
    };
    let output = fixture.run(step, &[], StackMode::Auto).unwrap();
    let paths: Vec<String> = entries(&fixture.cas, &output).into_iter().map(|entry| entry.path).collect();
    assert_eq!(paths, ["made", "made/by", "made/by/argv"]);
}

#[test]
fn missing_runc_is_an_environment_error() {
    let error = berth::error::Error::from(Runc::locate(Some(Path::new("/nonexistent/runc"))).unwrap_err());
    assert_eq!(error.kind, ErrorKind::Environment);
    assert_eq!(error.kind.exit_code(), 3);
    assert_eq!(error.hint.as_deref(), Some("install the `runc` package, or fix the path"));
}
