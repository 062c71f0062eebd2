//! Registry auth and downloads against hostile or broken peers: a token
//! realm on another host (127.0.0.2 plays the attacker) never sees
//! credentials; an https registry may not send berth to a plain-HTTP realm;
//! a credential helper that hangs or floods is stopped; a blob download
//! broken off mid-body resumes with `Range` and is verified; a trickling one
//! ends at its deadline; a failing token server is retried.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::oci::Descriptor;
use berth::registry::{Client, ClientOptions, ImageRef, Reference, RegistryError};

use crate::util::certs::TestCa;
use crate::util::http::{forward, HttpRequest, HttpResponse, Reply, Server};
use crate::util::images::{temp_cas, TestImage, OCI_LAYER};
use crate::util::need::{skip, Need};
use crate::util::registry::{
    docker_config_with, insecure_options, insecure_registry_line, manifest_push, Registry, RegistryTls,
};
use crate::util::workspace::Output;

fn fast_client(host: &str, docker_config: &Path) -> Client {
    let options = insecure_options(&[host.to_owned()], Some(docker_config));
    Client::new(ClientOptions { backoff: Duration::from_millis(5), ..options }).unwrap()
}

/// A server on 127.0.0.2 that answers every request with a token and logs
/// what it was sent.
fn attacker() -> (Server, Arc<Mutex<Vec<HttpRequest>>>) {
    let seen: Arc<Mutex<Vec<HttpRequest>>> = Arc::default();
    let log = seen.clone();
    let server = Server::start_on("127.0.0.2", move |request| {
        log.lock().unwrap().push(request);
        Reply::Send(HttpResponse::new(200).body(r#"{"token": "stolen"}"#))
    });
    (server, seen)
}

/// Runs the real binary in a workspace with `workspace_star`, with
/// `DOCKER_CONFIG` and an optional directory put first on `PATH`.
fn berth(workspace_star: &str, args: &[&str], docker_config: &Path, path_prefix: Option<&Path>) -> Output {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("WORKSPACE.star"), workspace_star).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.current_dir(workspace.path()).args(args).env("DOCKER_CONFIG", docker_config);
    if let Some(prefix) = path_prefix {
        let mut dirs = vec![prefix.to_owned()];
        dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        command.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    let output = command.output().unwrap();
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

#[test]
fn credentials_never_reach_a_plain_http_realm_on_another_host() {
    let (attacker, seen) = attacker();
    let realm = format!("http://{}/token", attacker.host());
    let registry = {
        let realm = realm.clone();
        Server::start(move |_| {
            Reply::Send(
                HttpResponse::new(401)
                    .header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\",service=\"registry\"")),
            )
        })
    };
    let host = registry.host();
    let docker_config = docker_config_with(&host, "alice", "s3cret");

    // Through the real binary: a clear error, exit 3.
    let pin =
        berth(&insecure_registry_line(&host), &["pin", &format!("{host}/team/app:v1")], docker_config.path(), None);
    pin.failure(3);
    assert!(
        pin.stderr.contains(&format!(
            "error: Registry `{host}` sent berth to the token realm `{realm}`, which berth refuses: credentials would go over plain HTTP to `127.0.0.2`"
        )),
        "{}",
        pin.stderr
    );
    assert!(pin.stderr.contains("hint: berth sends credentials only to the registry's own host"), "{}", pin.stderr);
    assert!(seen.lock().unwrap().is_empty(), "the attacker was contacted: {:?}", seen.lock().unwrap());

    // Anonymous pulls may ask an insecure registry's realm for a token, but
    // never with credentials.
    let client = fast_client(&host, docker_config.path());
    let reference = Reference::parse(&format!("{host}/team/app:v1")).unwrap();
    let error = client.resolve_tag(&reference, true).unwrap_err();
    assert!(matches!(error, RegistryError::Denied { .. }), "{error}");
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the anonymous token request went to the realm");
    for request in seen.iter() {
        assert_eq!(request.header("authorization"), None, "credentials reached the attacker: {request:?}");
    }
}

#[test]
fn an_https_registry_may_not_send_berth_to_a_plain_http_realm() {
    if skip(&[Need::Registry, Need::Openssl]) {
        return;
    }
    let (attacker, seen) = attacker();
    let ca = TestCa::new("berth test CA");
    let server = ca.server("registry");
    let realm = format!("http://{}/token", attacker.host());
    let registry = Registry::start_tls_with_token_realm(
        &RegistryTls { certificate: server.certificate, key: server.key, client_ca: None },
        &realm,
        &ca.certificate(),
    );
    let host = registry.host();
    let docker_config = docker_config_with(&host, "alice", "s3cret");
    let ca_text = std::fs::read_to_string(ca.certificate()).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("WORKSPACE.star"), "").unwrap();
    for anonymous in [false, true] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .current_dir(workspace.path())
            .args(["pin", &format!("{host}/team/app:v1")])
            .args(anonymous.then_some("--anonymous"))
            .env("DOCKER_CONFIG", docker_config.path())
            .env(format!("BERTH_REGISTRY_CA_{}", host.replace(['.', ':'], "_")), &ca_text);
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "sent berth to the token realm `{realm}`, which berth refuses: it is plain HTTP, and the registry is not `insecure`"
            )),
            "{stderr}"
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "the attacker was contacted: {:?}", seen.lock().unwrap());
}

/// A `docker-credential-<name>` script in a fresh directory.
fn helper(name: &str, script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_hung_or_flooding_credential_helper_is_stopped() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start_with_htpasswd("alice", "s3cret");
    let host = registry.host();
    let config = tempfile::tempdir().unwrap();
    for (name, script, wanted) in [
        ("berth-hang", "exec sleep 120", "it did not answer within 10 s and was stopped"),
        ("berth-flood", "exec head -c 3000000 /dev/zero", "it printed more than 1048576 bytes and was stopped"),
    ] {
        std::fs::write(
            config.path().join("config.json"),
            serde_json::json!({"credHelpers": {host.clone(): name}}).to_string(),
        )
        .unwrap();
        let dir = helper(name, script);
        let started = Instant::now();
        let pin = berth(
            &insecure_registry_line(&host),
            &["pin", &format!("{host}/team/app:v1")],
            config.path(),
            Some(dir.path()),
        );
        let took = started.elapsed();
        pin.failure(3);
        assert!(
            pin.stderr.contains(&format!("Credential helper `docker-credential-{name}` failed for `{host}`: {wanted}")),
            "{}",
            pin.stderr
        );
        // The contract: a hung helper fails the command within 15 s.
        assert!(took < Duration::from_secs(15), "{name} took {took:?}");
    }
}

#[test]
fn a_download_broken_mid_blob_resumes_with_range() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 41, &[3_000_000]);
    let no_creds = tempfile::tempdir().unwrap();
    let upstream = fast_client(&registry.host(), no_creds.path());
    let request = manifest_push(image.manifest, &format!("{}/team/big", registry.host()), &["v1"]);
    upstream.push(&cas, &request).unwrap();

    // A proxy that cuts the first full GET of the layer halfway and records
    // every `Range` it is asked for.
    let layer = image.layers[0];
    let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let proxy = {
        let ranges = ranges.clone();
        let port = registry.port;
        let blob_path = format!("/v2/team/big/blobs/{}", layer.digest);
        Server::start(move |request| {
            let Ok(response) = forward(port, &request) else { return Reply::Drop };
            if request.method != "GET" || request.path() != blob_path {
                return Reply::Send(response);
            }
            let range = request.header("range").map(str::to_owned);
            let first = {
                let mut ranges = ranges.lock().unwrap();
                ranges.push(range.clone());
                ranges.len() == 1
            };
            if first {
                let half = response.body.len() / 2;
                return Reply::Truncate(response, half);
            }
            Reply::Send(response)
        })
    };

    let (_fresh_cache, fresh) = temp_cas();
    let client = fast_client(&proxy.host(), no_creds.path());
    let descriptor = Descriptor::new(OCI_LAYER, layer);
    let fetched = client
        .fetch_blob(&fresh, &ImageRef::parse(&format!("{}/team/big", proxy.host())).unwrap(), &descriptor, false)
        .unwrap();
    assert_eq!(fetched, layer);
    assert_eq!(fresh.read_verified(&layer.digest).unwrap().len() as u64, layer.size, "the CAS holds the whole blob");
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some(format!("bytes={}-", layer.size / 2))], "one full GET, then the rest");
}

#[test]
fn a_trickling_blob_download_ends_at_its_deadline() {
    use std::io::{BufRead, BufReader, Write};
    // A server that announces 100,000 bytes and sends one every 200 ms.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                for _ in 0..100_000 {
                    if stream.write_all(b"x").and_then(|()| stream.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let no_creds = tempfile::tempdir().unwrap();
    let options = insecure_options(std::slice::from_ref(&host), Some(no_creds.path()));
    let client = Client::new(ClientOptions { download_grace: Duration::from_secs(2), ..options }).unwrap();
    let (_cache, cas) = temp_cas();
    let blob = berth::cache::BlobRef { digest: berth::cache::Digest::of(&[b'x'; 100_000]), size: 100_000 };
    let started = Instant::now();
    let error = client
        .fetch_blob(
            &cas,
            &ImageRef::parse(&format!("{host}/team/slow")).unwrap(),
            &Descriptor::new(OCI_LAYER, blob),
            true,
        )
        .unwrap_err();
    assert!(error.to_string().contains("was not downloaded within its deadline of 2 s"), "{error}");
    // Stopped at the deadline, not retried past it.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(cas.read_verified(&blob.digest).is_err(), "nothing cached");
}

#[test]
fn a_failing_token_server_is_retried() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let tokens = crate::util::token::TokenProxy::start(registry.port, 2, None);
    let host = tokens.server.host();
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 57, &[20_000, 30_000]);
    let no_creds = tempfile::tempdir().unwrap();
    let client = fast_client(&host, no_creds.path());
    let repository = ImageRef::parse(&format!("{host}/team/flaky")).unwrap();
    let request = manifest_push(image.manifest, &repository.to_string(), &["v1"]);
    // Token requests fail (500s and dropped connections) while pushing and
    // pulling, with tokens that run out after two uses.
    tokens.token_faults.store(3, std::sync::atomic::Ordering::SeqCst);
    client.push(&cas, &request).unwrap();
    tokens.token_faults.store(3, std::sync::atomic::Ordering::SeqCst);
    let (fresh_dir, fresh) = temp_cas();
    let pulled = client.resolve(&fresh, &repository, image.manifest.digest, None, true).unwrap();
    for layer in &pulled.layers {
        client.fetch_blob(&fresh, &repository, layer, true).unwrap();
    }
    assert_eq!(tokens.token_faults.load(std::sync::atomic::Ordering::SeqCst), 0, "every fault was hit");
    crate::util::images::assert_cas_sound(fresh_dir.path());
}
