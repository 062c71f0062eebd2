//! The remote cache against a real BuildGrid (cache-only, on 127.0.0.1):
//! two checkouts at different paths with two empty caches share results
//! through it; a poisoned remote (garbage blob, a blob gone, an
//! `output.json` that is not canonical) is a miss and the action is rebuilt
//! locally; an unreachable or hung remote costs one warning, never the build.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use berth::cache::Digest;
use prost::Message;

use crate::util::buildgrid::BuildGrid;
use crate::util::need::{skip, Need};
use crate::util::workspace::{project_copy, Output, TestWorkspace};

/// A small workspace: a 3 MiB incompressible file (so its layer goes
/// through ByteStream, not a batch), a text layer, an image of both.
fn small_workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    let mut noise = Vec::with_capacity(3 << 20);
    let mut state = Digest::of(b"berth remote cache test");
    while noise.len() < 3 << 20 {
        state = Digest::of(state.hex().as_bytes());
        noise.extend_from_slice(state.hex().as_bytes());
    }
    // Hex text compresses: hash it again into raw bytes.
    let raw: Vec<u8> = noise.chunks(64).flat_map(|chunk| hex::decode(Digest::of(chunk).hex()).unwrap()).collect();
    ws.bytes("app/noise.bin", &raw).file(
        "app/BUILD.star",
        r#"
oci_layer(name = "noise", files = {"/data/noise.bin": "noise.bin"})
oci_layer(name = "message", contents = {"/etc/message": "shared through a remote cache\n"})
oci_image_build(name = "img", layers = [":noise", ":message"], entrypoint = ["/bin/true"])
"#,
    );
    ws
}

fn build(ws: &TestWorkspace, remote: &str, pattern: &str) -> Output {
    ws.berth(&["--console", "plain", "--remote-cache", remote, "build", pattern])
}

/// `(ran, cached, remote)` from the summary line.
fn counts(stderr: &str) -> (usize, usize, usize) {
    let line = stderr.lines().find(|line| line.contains(" ran, ")).unwrap_or_else(|| panic!("no summary in {stderr}"));
    let line = line.rsplit_once(" in ").map_or(line, |(counts, _)| counts);
    let number = |word: &str| {
        line.split(", ")
            .flat_map(|part| part.split(": "))
            .find_map(|part| part.strip_suffix(word).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    };
    (number(" ran"), number(" cached"), number(" remote"))
}

/// Every blob of the local CAS under `cache` matches its name.
fn assert_cas_sound(cache: &Path) {
    for entry in std::fs::read_dir(cache.join("cas/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(Digest::of(&bytes).hex(), entry.file_name().to_string_lossy(), "a corrupt blob in the local CAS");
    }
}

/// The total size of the files under `dir`, and of the CAS under `cache`.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        total += if metadata.is_dir() { tree_bytes(&entry.path()) } else { metadata.len() };
    }
    total
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| line.starts_with("warning:")).collect()
}

#[test]
fn remote_cache_second_checkout_runs_nothing_and_gets_the_same_digests() {
    if skip(&[Need::Buildgrid]) {
        return;
    }
    let server = BuildGrid::start();
    let first = small_workspace();
    let a = build(&first, &server.url(), "//app:img");
    a.success();
    let (ran, _, _) = counts(&a.stderr);
    assert!(ran >= 4, "{}", a.stderr);
    assert!(a.stderr.contains("uploaded"), "the summary counts uploads: {}", a.stderr);
    assert!(warnings(&a.stderr).is_empty(), "{}", a.stderr);

    let second = small_workspace();
    assert_ne!(first.root(), second.root());
    let b = build(&second, &server.url(), "//app:img");
    b.success();
    assert_eq!(b.stdout, a.stdout, "same digests from the remote");
    assert_eq!(counts(&b.stderr), (0, 0, ran), "{}", b.stderr);
    assert!(b.stderr.contains("remote  //app:img write_manifest"), "{}", b.stderr);
    assert!(b.stderr.contains("MiB downloaded, 0 B uploaded"), "the summary counts the bytes: {}", b.stderr);
    assert!(warnings(&b.stderr).is_empty(), "{}", b.stderr);
    let out = |ws: &TestWorkspace| {
        let root = ws.path("berth-out/app/img");
        let mut files = BTreeMap::new();
        for entry in walk(&root) {
            files.insert(entry.strip_prefix(&root).unwrap().to_owned(), std::fs::read(&entry).unwrap());
        }
        files
    };
    assert_eq!(out(&second), out(&first), "berth-out is byte-identical");
    let downloaded = tree_bytes(&second.path(".cache/cas/sha256"));
    let published = tree_bytes(&second.path("berth-out"));
    eprintln!("second checkout: {downloaded} bytes downloaded into its CAS for {published} bytes in berth-out");
    assert!(downloaded <= published + published / 10, "{downloaded} downloaded for {published} published");
    assert_cas_sound(&second.path(".cache"));

    let stats = second.berth(&["cache", "stats"]);
    stats.success();
    let line = format!("remote:      {} (last build: {ran} of {ran} lookups hit, ", server.url());
    assert!(stats.stdout.contains(&line), "{}", stats.stdout);

    let explain = second.berth(&["explain", "//app:img"]);
    explain.success();
    assert!(explain.stdout.contains("//app:img (write_manifest): remote cache hit"), "{}", explain.stdout);

    // A third run is local: nothing asked of the remote.
    let c = build(&second, &server.url(), "//app:img");
    c.success();
    assert_eq!(counts(&c.stderr), (0, ran, 0), "{}", c.stderr);
}

/// `small_workspace` and an image built on `//app:img`: the base's
/// manifest and config are intermediates (no layout of `//derived:derived`
/// holds them), its layers are not.
fn layered_workspace(entrypoint: &str) -> TestWorkspace {
    let ws = small_workspace();
    ws.file(
        "derived/BUILD.star",
        &format!(
            r#"
oci_layer(name = "extra", contents = {{"/etc/extra": "on top of the base\n"}})
oci_image_build(name = "derived", base = "//app:img", layers = [":extra"], entrypoint = ["{entrypoint}"])
"#
        ),
    );
    ws
}

/// The names of the files in `dir` (none if it does not exist).
fn names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The digest of the config of the image laid out at `layout`.
fn config_digest(layout: &Path) -> String {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(manifest)).unwrap()).unwrap();
    manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned()
}

/// Build without the bytes: a remote hit downloads nothing by itself; the
/// second checkout fetches exactly the blobs `berth-out/` publishes, not the
/// base image's manifest and config. Later, with that config gone from the
/// server, a change that makes an action read it reruns its producer
/// locally (and uploads it again) instead of failing.
#[test]
fn remote_cache_second_checkout_downloads_only_what_it_publishes() {
    if skip(&[Need::Buildgrid]) {
        return;
    }
    let server = BuildGrid::start();
    let first = layered_workspace("/bin/true");
    let a = build(&first, &server.url(), "//...");
    a.success();
    let base_manifest = a.stdout.lines().find_map(|line| line.strip_prefix("//app:img sha256:")).unwrap().to_owned();
    let base_config = config_digest(&first.path("berth-out/app/img"));

    let second = layered_workspace("/bin/true");
    let b = build(&second, &server.url(), "//derived:derived");
    b.success();
    assert!(a.stdout.contains(b.stdout.trim()), "the same digest from the remote: {}", b.stdout);
    let (ran, cached, remote) = counts(&b.stderr);
    assert_eq!((ran, cached), (0, 0), "{}", b.stderr);
    assert!(warnings(&b.stderr).is_empty(), "{}", b.stderr);
    let layout = second.path("berth-out/derived/derived");
    let published = names(&layout.join("blobs/sha256"));
    let local = names(&second.path(".cache/cas/sha256"));
    assert_eq!(local, published, "the local CAS holds the published blobs and nothing else");
    assert!(!local.contains(&base_manifest) && !local.contains(&base_config), "the base's own blobs stay remote");
    let bytes: u64 =
        published.iter().map(|name| std::fs::metadata(layout.join("blobs/sha256").join(name)).unwrap().len()).sum();
    let on_server: u64 = server.blobs().iter().map(|(_, path)| std::fs::metadata(path).unwrap().len()).sum();
    eprintln!(
        "{remote} remote hits: {} blobs ({bytes} bytes) downloaded of {on_server} bytes on the server",
        published.len()
    );
    assert_cas_sound(&second.path(".cache"));

    // The same build again: every entry is local (the base's without its
    // bytes), nothing is asked of the remote, nothing downloaded.
    let c = build(&second, &server.url(), "//derived:derived");
    c.success();
    assert_eq!(counts(&c.stderr), (0, remote, 0), "{}", c.stderr);
    assert_eq!(names(&second.path(".cache/cas/sha256")), published);

    // The base's config evicted from the server; a new entrypoint makes the
    // derived config action run, and it reads the base's config.
    std::fs::remove_file(server.blob_path(&base_config)).unwrap();
    let changed = layered_workspace("/bin/false");
    std::fs::copy(changed.path("derived/BUILD.star"), second.path("derived/BUILD.star")).unwrap();
    let d = build(&second, &server.url(), "//derived:derived");
    d.success();
    assert!(d.stderr.contains(&format!("Blob sha256:{base_config} could not be downloaded")), "{}", d.stderr);
    assert!(d.stderr.contains("ran     //app:img write_config"), "the producer ran again here: {}", d.stderr);
    assert!(second.path(".cache/cas/sha256").join(&base_config).exists());
    assert!(server.blob_path(&base_config).exists(), "and was uploaded again");
    assert_cas_sound(&second.path(".cache"));
    let changed_first = layered_workspace("/bin/false");
    let f = build(&changed_first, &server.url(), "//derived:derived");
    f.success();
    assert_eq!(f.stdout, d.stdout, "the rebuilt result equals a fresh build's");
}

/// `grpcs://` against BuildGrid serving TLS with a certificate of a CA that
/// openssl makes here: trusted through `BERTH_REMOTE_CACHE_CA`, a second
/// checkout runs nothing; without the CA the server is not trusted (one
/// warning, a local build); a CA file that is no certificate is refused.
#[test]
fn remote_cache_grpcs_with_a_private_ca() {
    if skip(&[Need::Buildgrid, Need::Openssl]) {
        return;
    }
    let ca = crate::util::certs::TestCa::new("berth remote cache test CA");
    let pair = ca.server("buildgrid");
    let server = BuildGrid::start_tls(&pair.certificate, &pair.key);
    let url = format!("grpcs://127.0.0.1:{}", server.port);
    let ca_path = ca.certificate().display().to_string();

    let mut first = small_workspace();
    first.env("BERTH_REMOTE_CACHE_CA", &ca_path);
    let a = build(&first, &url, "//app:img");
    a.success();
    assert!(warnings(&a.stderr).is_empty(), "{}", a.stderr);
    let (ran, _, _) = counts(&a.stderr);
    assert!(ran >= 4 && a.stderr.contains(" uploaded"), "{}", a.stderr);

    let mut second = small_workspace();
    second.env("BERTH_REMOTE_CACHE_CA", &ca_path);
    let b = build(&second, &url, "//app:img");
    b.success();
    assert_eq!(b.stdout, a.stdout);
    assert_eq!(counts(&b.stderr), (0, 0, ran), "over TLS: {}", b.stderr);
    assert!(warnings(&b.stderr).is_empty(), "{}", b.stderr);

    // The system roots alone do not know this CA.
    let third = small_workspace();
    let c = build(&third, &url, "//app:img");
    c.success();
    assert_eq!(c.stdout, a.stdout);
    assert_eq!(counts(&c.stderr).0, ran, "built locally: {}", c.stderr);
    let warned = warnings(&c.stderr);
    assert_eq!(warned.len(), 1, "{}", c.stderr);
    assert!(warned[0].contains(&url), "{}", c.stderr);

    let mut fourth = small_workspace();
    fourth.file("not-a-ca.pem", "hello\n");
    let not_a_ca = fourth.path("not-a-ca.pem").display().to_string();
    fourth.env("BERTH_REMOTE_CACHE_CA", &not_a_ca);
    let d = build(&fourth, &url, "//app:img");
    d.failure(3);
    assert!(
        d.stderr.contains("BERTH_REMOTE_CACHE_CA") && d.stderr.contains("holds no PEM certificate"),
        "{}",
        d.stderr
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn remote_cache_examples_build_on_a_second_machine_without_running_anything() {
    if skip(&[Need::Buildgrid, Need::Debs, Need::Root, Need::Runc]) {
        return;
    }
    let server = BuildGrid::start();
    let first = project_copy();
    let a = build(&first, &server.url(), "//examples/...");
    a.success();
    let second = project_copy();
    let b = build(&second, &server.url(), "//examples/...");
    b.success();
    assert_eq!(b.stdout, a.stdout, "the examples' digests from the remote equal the first build's");
    let (ran, _, remote) = counts(&b.stderr);
    assert_eq!(ran, 0, "{}", b.stderr);
    assert!(remote > 0, "{}", b.stderr);
    assert!(warnings(&b.stderr).is_empty(), "{}", b.stderr);
    let downloaded = tree_bytes(&second.path(".cache/cas/sha256"));
    let published = tree_bytes(&second.path("berth-out"));
    eprintln!("examples, second checkout: {downloaded} bytes in its CAS for {published} bytes in berth-out");
    assert!(downloaded <= published + published / 10, "{downloaded} downloaded for {published} published");
    assert_cas_sound(&second.path(".cache"));
}

/// The action digests of the entries berth stored on the server: every
/// `Action` blob on its disk whose `Command` is berth's one command.
fn berth_actions(server: &BuildGrid) -> Vec<reapi::Digest> {
    let blobs = server.blobs();
    let command = blobs
        .iter()
        .find(|(_, path)| {
            reapi::Command::decode(&*std::fs::read(path).unwrap())
                .is_ok_and(|command| command.arguments == ["berth-action", "key.json"])
        })
        .map(|(hex, _)| hex.clone())
        .expect("berth's command is on the server");
    blobs
        .iter()
        .filter_map(|(hex, path)| {
            let bytes = std::fs::read(path).unwrap();
            let action = reapi::Action::decode(&*bytes).ok()?;
            (action.command_digest.as_ref()?.hash == command)
                .then(|| reapi::Digest { hash: hex.clone(), size_bytes: bytes.len() as i64 })
        })
        .collect()
}

#[test]
fn remote_cache_poisoned_entries_are_misses_rebuilt_locally() {
    if skip(&[Need::Buildgrid]) {
        return;
    }
    for poison in ["garbage", "missing", "non-canonical"] {
        let server = BuildGrid::start();
        let first = small_workspace();
        let a = build(&first, &server.url(), "//app:img");
        a.success();
        let (ran, _, _) = counts(&a.stderr);
        let layer = std::fs::read_to_string(first.path("berth-out/app/img/index.json")).unwrap();
        assert!(!layer.is_empty());
        // The noise layer: the largest blob berth uploaded.
        let (hex, path) =
            server.blobs().into_iter().max_by_key(|(_, path)| std::fs::metadata(path).unwrap().len()).unwrap();
        match poison {
            "garbage" => {
                let size = std::fs::metadata(&path).unwrap().len() as usize;
                std::fs::write(&path, vec![0x5a; size]).unwrap();
            }
            "missing" => std::fs::remove_file(&path).unwrap(),
            _ => rewrite_outputs_non_canonical(&server),
        }
        let second = small_workspace();
        let b = build(&second, &server.url(), "//app:img");
        b.success();
        assert_eq!(b.stdout, a.stdout, "{poison}: rebuilt to the same digests");
        let (b_ran, _, _) = counts(&b.stderr);
        assert!(b_ran >= 1, "{poison}: the poisoned action ran locally: {}", b.stderr);
        if poison == "non-canonical" {
            assert_eq!(b_ran, ran, "{poison}: every entry was poisoned: {}", b.stderr);
            assert!(b.stderr.contains("is not in canonical form"), "{}", b.stderr);
        }
        if poison == "garbage" {
            assert!(b.stderr.contains("does not match its digest"), "{}", b.stderr);
        }
        assert!(
            !second.path(".cache/cas/sha256").join(&hex).exists() || poison != "garbage" || {
                let bytes = std::fs::read(second.path(".cache/cas/sha256").join(&hex)).unwrap();
                Digest::of(&bytes).hex() == hex
            }
        );
        assert_cas_sound(&second.path(".cache"));
        let index = std::fs::read_to_string(second.path("berth-out/app/img/index.json")).unwrap();
        assert_eq!(index, layer, "{poison}: berth-out is sound");
    }
}

/// Stores, for every berth entry on the server, a result whose
/// `output.json` is the same JSON pretty-printed: right digest, right
/// contents, not canonical.
fn rewrite_outputs_non_canonical(server: &BuildGrid) {
    use reapi::action_cache_client::ActionCacheClient;
    use reapi::content_addressable_storage_client::ContentAddressableStorageClient;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", server.port))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut ac = ActionCacheClient::new(channel.clone());
        let mut cas = ContentAddressableStorageClient::new(channel);
        let actions = berth_actions(server);
        assert!(!actions.is_empty());
        for action in actions {
            let request = reapi::GetActionResultRequest { action_digest: Some(action.clone()), ..Default::default() };
            let mut result = ac.get_action_result(request).await.unwrap().into_inner();
            let output = result.output_files.iter_mut().find(|file| file.path == "berth/output.json").unwrap();
            let canonical = std::fs::read(server.blob_path(&output.digest.as_ref().unwrap().hash)).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&canonical).unwrap();
            let pretty = serde_json::to_vec_pretty(&value).unwrap();
            let digest = reapi::Digest { hash: Digest::of(&pretty).hex(), size_bytes: pretty.len() as i64 };
            let upload = reapi::BatchUpdateBlobsRequest {
                requests: vec![reapi::batch_update_blobs_request::Request {
                    digest: Some(digest.clone()),
                    data: pretty,
                    ..Default::default()
                }],
                ..Default::default()
            };
            cas.batch_update_blobs(upload).await.unwrap();
            output.digest = Some(digest);
            output.contents.clear();
            let update = reapi::UpdateActionResultRequest {
                action_digest: Some(action),
                action_result: Some(result),
                ..Default::default()
            };
            ac.update_action_result(update).await.unwrap();
        }
    });
}

#[test]
fn remote_cache_down_or_hung_costs_one_warning_and_the_build_succeeds() {
    if skip(&[Need::Buildgrid]) {
        return;
    }
    // Down: a server that was there and is gone.
    let mut server = BuildGrid::start();
    let url = server.url();
    server.stop();
    let ws = small_workspace();
    let started = Instant::now();
    let down = build(&ws, &url, "//app:img");
    down.success();
    eprintln!("remote down: build took {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(warnings(&down.stderr).len(), 1, "{}", down.stderr);
    assert!(down.stderr.contains("building without the remote cache"), "{}", down.stderr);

    // Hung: a listener that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let held = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut held = Vec::new();
            listener.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    });
    let ws = small_workspace();
    let started = Instant::now();
    let hung = build(&ws, &format!("grpc://127.0.0.1:{port}"), "//app:img");
    hung.success();
    eprintln!("remote hung: build took {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(warnings(&hung.stderr).len(), 1, "{}", hung.stderr);
    assert!(hung.stderr.contains("no answer within"), "{}", hung.stderr);
    assert_eq!(hung.stdout, down.stdout);
    stop.store(true, Ordering::Relaxed);
    held.join().unwrap();

    // --no-remote-cache wins over the flag and the environment: not even asked.
    let off = ws.berth(&["--console", "plain", "--remote-cache", &url, "--no-remote-cache", "build", "//app:img"]);
    off.success();
    assert!(warnings(&off.stderr).is_empty(), "{}", off.stderr);
    let mut ws = ws;
    ws.env("BERTH_REMOTE_CACHE", &url);
    let off = ws.berth(&["--console", "plain", "--no-remote-cache", "build", "//app:img"]);
    off.success();
    assert!(warnings(&off.stderr).is_empty(), "{}", off.stderr);
}

#[test]
fn remote_cache_read_only_workspace_setting_never_uploads() {
    if skip(&[Need::Buildgrid]) {
        return;
    }
    let server = BuildGrid::start();
    let first = small_workspace();
    first.file("WORKSPACE.star", &format!("remote_cache({:?}, read_only = True)\n", server.url()));
    let a = first.berth(&["--console", "plain", "build", "//app:img"]);
    a.success();
    assert!(berth_actions_or_none(&server).is_empty(), "read_only uploaded nothing");
    // The same workspace setting, writable: the second checkout fills it,
    // and the first one (read-only) then hits.
    let second = small_workspace();
    second.file("WORKSPACE.star", &format!("remote_cache({:?})\n", server.url()));
    second.berth(&["--console", "plain", "build", "//app:img"]).success();
    assert!(!berth_actions_or_none(&server).is_empty());
    first.berth(&["clean", "--cache"]).success();
    let again = first.berth(&["--console", "plain", "build", "//app:img"]);
    again.success();
    assert_eq!(again.stdout, a.stdout);
    assert_eq!(counts(&again.stderr).0, 0, "{}", again.stderr);
}

fn berth_actions_or_none(server: &BuildGrid) -> Vec<reapi::Digest> {
    let has_command = server.blobs().iter().any(|(_, path)| {
        reapi::Command::decode(&*std::fs::read(path).unwrap())
            .is_ok_and(|command| command.arguments == ["berth-action", "key.json"])
    });
    if has_command {
        berth_actions(server)
    } else {
        Vec::new()
    }
}

#[test]
fn remote_cache_bad_urls_are_refused_before_building() {
    let ws = small_workspace();
    let bad = ws.berth(&["--remote-cache", "cache:8980", "build", "//app:img"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("Remote cache URL `cache:8980` is not valid"), "{}", bad.stderr);
    ws.file("WORKSPACE.star", "\nremote_cache(\"ftp://cache:21/x\")\n");
    let bad = ws.berth(&["build", "//app:img"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("scheme `ftp` is not one of grpc, grpcs, oci"), "{}", bad.stderr);
    assert!(bad.stderr.contains("WORKSPACE.star:2"), "{}", bad.stderr);
    assert!(!ws.path("berth-out").exists());
}

/// A `WORKSPACE.star` whose remote cache is the repository `berth/cache`
/// of `registry` (plain HTTP).
fn oci_cache_workspace(registry: &crate::util::registry::Registry) -> String {
    format!("registry({host:?}, insecure = True)\nremote_cache(\"oci://{host}/berth/cache\")\n", host = registry.host())
}

/// `oci://`: the same two checkouts with a real `docker-registry` as the
/// cache; each entry is a manifest tagged `ac-<key hex>`.
#[test]
fn remote_cache_oci_registry_serves_a_second_checkout() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = crate::util::registry::Registry::start();
    let workspace_file = oci_cache_workspace(&registry);
    let first = small_workspace();
    first.file("WORKSPACE.star", &workspace_file);
    let a = first.berth(&["--console", "plain", "build", "//app:img"]);
    a.success();
    let (ran, _, _) = counts(&a.stderr);
    assert!(warnings(&a.stderr).is_empty(), "{}", a.stderr);

    let second = small_workspace();
    second.file("WORKSPACE.star", &workspace_file);
    let b = second.berth(&["--console", "plain", "build", "//app:img"]);
    b.success();
    assert_eq!(b.stdout, a.stdout, "same digests from the registry cache");
    assert_eq!(counts(&b.stderr), (0, 0, ran), "{}", b.stderr);
    assert!(warnings(&b.stderr).is_empty(), "{}", b.stderr);
    assert_cas_sound(&second.path(".cache"));
    // The layer blob sits in the cache repository.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.path("berth-out/app/img/index.json")).unwrap()).unwrap();
    let manifest_digest: Digest = index["manifests"][0]["digest"].as_str().unwrap().parse().unwrap();
    assert!(registry.stored_blob(&manifest_digest), "the image manifest is a blob of the cache");

    // A push to the same registry mounts every blob from the cache repository.
    let repository = format!("{}/app/img", registry.host());
    let push = second.berth(&["--console", "plain", "push", "//app:img", "--repository", &repository, "--tag", "v1"]);
    push.success();
    assert!(push.stderr.contains(": 0 blobs uploaded (0 bytes), 3 mounted"), "{}", push.stderr);

    // The registry gone: one warning, the build goes on.
    drop(registry);
    let third = small_workspace();
    third.file("WORKSPACE.star", &workspace_file);
    let c = third.berth(&["--console", "plain", "build", "//app:img"]);
    c.success();
    assert_eq!(c.stdout, a.stdout);
    assert_eq!(warnings(&c.stderr).len(), 1, "{}", c.stderr);
}

/// `oci://` poisoned: a cache entry's config (the action result) or one of
/// its blobs overwritten in the registry's storage with same-size garbage.
/// Each is a miss or a lost blob with a warning, rebuilt locally to the same
/// digests; nothing corrupt enters the local CAS or `berth-out/`.
#[test]
fn remote_cache_oci_poisoned_entries_are_rebuilt_locally() {
    if skip(&[Need::Registry]) {
        return;
    }
    for poison in ["config", "blob"] {
        let registry = crate::util::registry::Registry::start();
        let workspace_file = oci_cache_workspace(&registry);
        let first = small_workspace();
        first.file("WORKSPACE.star", &workspace_file);
        let a = first.berth(&["--console", "plain", "build", "//app:img"]);
        a.success();
        let index = std::fs::read(first.path("berth-out/app/img/index.json")).unwrap();
        // The entries' configs are berth action results; the largest blob
        // is the noise layer.
        let blobs: Vec<(Digest, Vec<u8>)> = walk(&first.path(".cache/cas/sha256"))
            .into_iter()
            .map(|path| {
                let digest = format!("sha256:{}", path.file_name().unwrap().to_string_lossy()).parse().unwrap();
                (digest, std::fs::read(path).unwrap())
            })
            .filter(|(digest, _)| registry.stored_blob(digest))
            .collect();
        let poisoned: Vec<&Digest> = match poison {
            "config" => blobs
                .iter()
                .filter(|(_, bytes)| {
                    serde_json::from_slice::<serde_json::Value>(bytes)
                        .is_ok_and(|value| value.get("blobs").is_some() && value.get("metadata").is_some())
                })
                .map(|(digest, _)| digest)
                .collect(),
            _ => vec![&blobs.iter().max_by_key(|(_, bytes)| bytes.len()).unwrap().0],
        };
        assert!(!poisoned.is_empty(), "{poison}");
        for digest in &poisoned {
            let path = registry.blob_path(digest);
            let size = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![b' '; size]).unwrap();
        }

        let second = small_workspace();
        second.file("WORKSPACE.star", &workspace_file);
        let b = second.berth(&["--console", "plain", "build", "//app:img"]);
        b.success();
        assert_eq!(b.stdout, a.stdout, "{poison}: rebuilt to the same digests");
        let (ran, _, _) = counts(&b.stderr);
        assert!(ran >= 1, "{poison}: rebuilt locally: {}", b.stderr);
        let warned = warnings(&b.stderr);
        assert!(
            !warned.is_empty() && warned.iter().all(|line| line.contains("Digest mismatch")),
            "{poison}: {}",
            b.stderr
        );
        assert_cas_sound(&second.path(".cache"));
        assert_eq!(std::fs::read(second.path("berth-out/app/img/index.json")).unwrap(), index, "{poison}");
        for digest in &poisoned {
            let local = second.path(".cache/cas/sha256").join(digest.hex());
            assert!(!local.exists() || Digest::of(&std::fs::read(&local).unwrap()) == **digest);
        }
    }
}

/// `oci://` on a registry that accepts connections and never answers: one
/// deadline, one warning, the build goes on.
#[test]
fn remote_cache_oci_hung_registry_costs_one_warning() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let stop = Arc::new(AtomicBool::new(false));
    let held = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut held = Vec::new();
            listener.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    });
    let ws = small_workspace();
    ws.file("WORKSPACE.star", &format!("registry({host:?}, insecure = True)\nremote_cache(\"oci://{host}/cache\")\n"));
    let started = Instant::now();
    let hung = ws.berth(&["--console", "plain", "build", "//app:img"]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    held.join().unwrap();
    hung.success();
    eprintln!("oci remote hung: build took {:.2}s", took.as_secs_f64());
    assert_eq!(warnings(&hung.stderr).len(), 1, "{}", hung.stderr);
    assert!(hung.stderr.contains("no answer within"), "{}", hung.stderr);
    assert!(took < Duration::from_secs(30), "bounded by the deadline, not the registry client's read timeout");
}
