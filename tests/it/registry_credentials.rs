//! Where credentials come from, through the real binary: Podman's
//! `auth.json` (`REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`)
//! before Docker's `config.json`, and Docker's identity tokens (from
//! `auths` and from a credential helper's `<token>` answer) traded at the
//! token server with the OAuth2 refresh-token grant, never sent as a password.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::util::http::{forward, HttpRequest, HttpResponse, Reply, Server};
use crate::util::images::{temp_cas, TestImage};
use crate::util::need::{skip, Need};
use crate::util::registry::{insecure_client, insecure_registry_line, manifest_push, Registry};
use crate::util::workspace::Output;

const REFRESH: &str = "refresh-0123";
const ACCESS: &str = "access-4567";

/// A registry that wants a Bearer token which only the refresh-token grant
/// (with [`REFRESH`]) or Basic `alice:s3cret` hands out; authorized requests
/// go on to `upstream`. Logs every token request.
fn oauth_registry(upstream: u16) -> (Server, Arc<Mutex<Vec<HttpRequest>>>) {
    let log: Arc<Mutex<Vec<HttpRequest>>> = Arc::default();
    let own = Arc::new(Mutex::new(String::new()));
    let server = {
        let log = log.clone();
        let own = own.clone();
        Server::start(move |request| {
            if request.path() == "/token" {
                log.lock().unwrap().push(request.clone());
                let body = String::from_utf8_lossy(&request.body).into_owned();
                let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:s3cret"));
                let refresh_ok = request.method == "POST"
                    && body.split('&').any(|pair| pair == "grant_type=refresh_token")
                    && body.split('&').any(|pair| pair == format!("refresh_token={REFRESH}"));
                let basic_ok = request.method == "GET" && request.header("authorization") == Some(basic.as_str());
                return Reply::Send(if refresh_ok || basic_ok {
                    HttpResponse::new(200).body(format!(r#"{{"access_token": "{ACCESS}", "expires_in": 300}}"#))
                } else {
                    HttpResponse::new(401)
                });
            }
            if request.header("authorization") != Some(format!("Bearer {ACCESS}").as_str()) {
                let realm = format!("http://{}/token", own.lock().unwrap());
                return Reply::Send(
                    HttpResponse::new(401)
                        .header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\",service=\"oauth-test\"")),
                );
            }
            forward(upstream, &request).map_or(Reply::Drop, Reply::Send)
        })
    };
    *own.lock().unwrap() = server.host();
    (server, log)
}

/// Pushes a small image to `registry` as `team/app:v1`; its digest.
fn push_image(registry: &Registry) -> String {
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 23, &[3_000]);
    let client = insecure_client(&[registry.host()], Some(tempfile::tempdir().unwrap().path()));
    let request = manifest_push(image.manifest, &format!("{}/team/app", registry.host()), &["v1"]);
    client.push(&cas, &request).unwrap();
    image.manifest.digest.to_string()
}

/// `berth pin host/team/app:v1` in a workspace declaring `host` insecure,
/// with exactly `env` as the credential-related environment.
fn pin(host: &str, env: &[(&str, &Path)], path_prefix: Option<&Path>) -> Output {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("WORKSPACE.star"), insecure_registry_line(host)).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .current_dir(workspace.path())
        .args(["pin", &format!("{host}/team/app:v1")])
        .env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", empty.path())
        .env("XDG_CONFIG_HOME", empty.path())
        .env("DOCKER_CONFIG", empty.path())
        .env("HOME", empty.path());
    for (key, value) in env {
        command.env(key, value);
    }
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

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn identity_tokens_are_traded_with_the_refresh_token_grant() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let digest = push_image(&registry);
    let (server, log) = oauth_registry(registry.port);
    let host = server.host();

    // Nothing configured: the token server refuses, the pin fails.
    pin(&host, &[], None).failure(1);

    // `identitytoken` in Docker's config.json.
    let docker = tempfile::tempdir().unwrap();
    write(
        &docker.path().join("config.json"),
        &serde_json::json!({"auths": {host.clone(): {"auth": "PHRva2VuPjo=", "identitytoken": REFRESH}}}).to_string(),
    );
    log.lock().unwrap().clear();
    let output = pin(&host, &[("DOCKER_CONFIG", docker.path())], None);
    output.success();
    assert!(output.stdout.contains(&digest), "{}", output.stdout);
    let requests = log.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.method, "POST", "the refresh-token grant is a POST");
        assert_eq!(request.header("authorization"), None, "the identity token is never a password");
        let body = String::from_utf8_lossy(&request.body);
        assert!(body.contains("scope=repository%3Ateam%2Fapp%3Apull"), "{body}");
        assert!(body.contains("service=oauth-test") && body.contains("client_id=berth"), "{body}");
    }

    // A credential helper answering with the user `<token>`.
    let helpers = tempfile::tempdir().unwrap();
    let script = helpers.path().join("docker-credential-berth-oauth");
    write(
        &script,
        &format!("#!/bin/sh\ncat >/dev/null\necho '{{\"ServerURL\": \"{host}\", \"Username\": \"<token>\", \"Secret\": \"{REFRESH}\"}}'\n"),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with_helper = tempfile::tempdir().unwrap();
    write(
        &with_helper.path().join("config.json"),
        &serde_json::json!({"credHelpers": {host.clone(): "berth-oauth"}}).to_string(),
    );
    let output = pin(&host, &[("DOCKER_CONFIG", with_helper.path())], Some(helpers.path()));
    output.success();
    assert!(output.stdout.contains(&digest), "{}", output.stdout);
}

#[test]
fn podman_auth_files_come_before_docker_config() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let digest = push_image(&registry);
    let (server, _log) = oauth_registry(registry.port);
    let host = server.host();
    let good = serde_json::json!({"auths": {host.clone(): {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret")}}}).to_string();
    let bad = serde_json::json!({"auths": {host.clone(): {"auth": base64::engine::general_purpose::STANDARD.encode("mallory:nope")}}}).to_string();

    // `REGISTRY_AUTH_FILE` wins over Docker's config.json.
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("auth.json"), &good);
    write(&dir.path().join("docker/config.json"), &bad);
    let output = pin(
        &host,
        &[("REGISTRY_AUTH_FILE", &dir.path().join("auth.json")), ("DOCKER_CONFIG", &dir.path().join("docker"))],
        None,
    );
    output.success();
    assert!(output.stdout.contains(&digest), "{}", output.stdout);

    // `${XDG_RUNTIME_DIR}/containers/auth.json`, Podman's default.
    let runtime = tempfile::tempdir().unwrap();
    write(&runtime.path().join("containers/auth.json"), &good);
    let output =
        pin(&host, &[("XDG_RUNTIME_DIR", runtime.path()), ("DOCKER_CONFIG", &dir.path().join("docker"))], None);
    output.success();

    // Docker's file alone, with the wrong password: refused, exit 1.
    let output = pin(&host, &[("DOCKER_CONFIG", &dir.path().join("docker"))], None);
    output.failure(1);
    assert!(output.stderr.contains("denied"), "{}", output.stderr);
}
