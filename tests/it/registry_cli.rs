//! `berth pin` run as the real binary in a workspace whose `WORKSPACE.star`
//! declares a real registry: the printed `oci_pull_image(...)`, credentials from `DOCKER_CONFIG` through a
//! credential helper, and the exit codes of its failures.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::util::images::{temp_cas, TestImage};
use crate::util::need::{skip, Need};
use crate::util::registry::{
    docker_config_with, free_port, insecure_client, insecure_registry_line, manifest_push, Registry,
};

/// Runs `berth` in a fresh workspace whose `WORKSPACE.star` declares
/// `insecure` as a plain-HTTP registry.
fn berth(args: &[&str], insecure: &str, docker_config: &Path, path_prefix: Option<&Path>) -> Output {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(
        workspace.path().join("WORKSPACE.star"),
        format!("workspace(name = \"pin_test\")\n{}", insecure_registry_line(insecure)),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.current_dir(workspace.path()).args(args).env("DOCKER_CONFIG", docker_config);
    if let Some(prefix) = path_prefix {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![prefix.to_owned()];
        dirs.extend(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    command.output().unwrap()
}

fn push_tagged(registry: &Registry, docker_config: &Path, repository: &str, tag: &str) -> TestImage {
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 30, &[2_000]);
    let client = insecure_client(&[registry.host()], Some(docker_config));
    let request = manifest_push(image.manifest, &format!("{}/{repository}", registry.host()), &[tag]);
    client.push(&cas, &request).unwrap();
    image
}

#[test]
fn pin_prints_a_ready_oci_pull_image() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let no_creds = tempfile::tempdir().unwrap();
    let image = push_tagged(&registry, no_creds.path(), "team/web-app", "1.0");
    let output =
        berth(&["pin", &format!("{}/team/web-app:1.0", registry.host())], &registry.host(), no_creds.path(), None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "oci_pull_image(\n    name = \"web-app\",\n    repository = \"{}/team/web-app\",\n    digest = \"{}\",\n)\n",
            registry.host(),
            image.manifest.digest
        )
    );
}

#[test]
fn pin_uses_a_credential_helper_named_in_docker_config() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start_with_htpasswd("carol", "pa55");
    let direct = docker_config_with(&registry.host(), "carol", "pa55");
    let image = push_tagged(&registry, direct.path(), "private/app", "v1");

    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread host\n[ \"$1\" = get ] || exit 1\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"carol\",\"Secret\":\"pa55\"}' \"$host\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({"credHelpers": {registry.host(): "berthtest"}}).to_string(),
    )
    .unwrap();

    let reference = format!("{}/private/app:v1", registry.host());
    let output = berth(&["pin", &reference, "--name", "app"], &registry.host(), config.path(), Some(bin.path()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8(output.stdout).unwrap().contains(&image.manifest.digest.to_string()));

    // Without the helper's answer the registry refuses: a user error.
    let empty = tempfile::tempdir().unwrap();
    let output = berth(&["pin", &reference], &registry.host(), empty.path(), None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("denied"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn pin_failures_have_their_exit_codes() {
    let no_creds = tempfile::tempdir().unwrap();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let output = berth(&["pin", &format!("{host}/gone:v1")], &host, no_creds.path(), None);
    assert_eq!(output.status.code(), Some(3), "unreachable registry: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());

    let output = berth(&["pin", "Debian:12"], &host, no_creds.path(), None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a valid repository name"));
}
