//! Stamping through the real binary: `--stamp` runs
//! `workspace_status(command = ...)` and fills `{KEY}` in `tag`, `labels`
//! and `annotations`; the push lands on the stamped tag. Without `--stamp`
//! the status command does not run, placeholders stay literal, and digests
//! are those of an unstamped build whatever the status says; layers are the
//! same blobs either way.

use std::path::Path;

use berth::registry::{Client, ClientOptions, Reference};
use berth::workspace::RegistrySetting;

use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::workspace::TestWorkspace;

fn status_script(workspace: &TestWorkspace, commit: &str) {
    workspace.file(
        "tools/status.sh",
        &format!("#!/bin/sh\ntouch status-ran\necho STABLE_GIT_COMMIT {commit}\necho BUILD_USER ci bot\n"),
    );
    std::fs::set_permissions(workspace.path("tools/status.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
}

/// The digest `berth build` printed for `label`.
fn built_digest(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label} ")))
        .unwrap_or_else(|| panic!("{label} not in {stdout}"))
        .to_owned()
}

/// The manifest and config of the image in an OCI layout written by berth.
fn layout_image(dir: &Path) -> (serde_json::Value, serde_json::Value) {
    let read = |path: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap();
    let blob = |digest: &serde_json::Value| dir.join("blobs/sha256").join(&digest.as_str().unwrap()["sha256:".len()..]);
    let index = read(&dir.join("index.json"));
    let manifest = read(&blob(&index["manifests"][0]["digest"]));
    let config = read(&blob(&manifest["config"]["digest"]));
    (manifest, config)
}

#[test]
fn stamp_fills_placeholders_and_unstamped_builds_do_not_change() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let workspace = TestWorkspace::new();
    workspace.file(
        "WORKSPACE.star",
        &format!("registry(\"{host}\", insecure = True)\nworkspace_status(command = \"tools/status.sh\")\n"),
    );
    status_script(&workspace, "abc123");
    workspace.file(
        "app/BUILD.star",
        &format!(
            "oci_layer(name = \"files\", contents = {{\"/app.txt\": \"app\\n\"}})\n\
             oci_image_build(\n    name = \"app\",\n    layers = [\":files\"],\n    repository = \"{host}/team/app\",\n    tag = \"{{STABLE_GIT_COMMIT}}\",\n    labels = {{\"commit\": \"{{STABLE_GIT_COMMIT}}\", \"by\": \"{{BUILD_USER}}\", \"other\": \"{{NOT_A_KEY}}\"}},\n    annotations = {{\"org.opencontainers.image.revision\": \"{{STABLE_GIT_COMMIT}}\"}},\n)\n\
             oci_image_build(name = \"plain\", layers = [\":files\"], labels = {{\"fixed\": \"yes\"}})\n"
        ),
    );

    // Unstamped: the status command does not run; placeholders stay.
    let unstamped = workspace.berth(&["--console", "none", "build", "//app:all"]);
    unstamped.success();
    assert!(!workspace.path("status-ran").exists(), "the status command ran without --stamp");
    let (manifest, config) = layout_image(&workspace.path("berth-out/app/app"));
    assert_eq!(config["config"]["Labels"]["commit"], "{STABLE_GIT_COMMIT}");
    let unstamped_layers = manifest["layers"].clone();

    // Another status makes no difference without --stamp.
    status_script(&workspace, "fff999");
    let again = workspace.berth(&["--console", "none", "build", "//app:all"]);
    again.success();
    assert_eq!(again.stdout, unstamped.stdout, "unstamped digests depend on nothing but the sources");

    // Stamped: values filled in; unknown keys stay literal; the layers are
    // the very same blobs.
    status_script(&workspace, "abc123");
    let stamped = workspace.berth(&["--console", "none", "--stamp", "build", "//app:all"]);
    stamped.success();
    assert!(workspace.path("status-ran").exists());
    let (manifest, config) = layout_image(&workspace.path("berth-out/app/app"));
    assert_eq!(config["config"]["Labels"]["commit"], "abc123");
    assert_eq!(config["config"]["Labels"]["by"], "ci bot");
    assert_eq!(config["config"]["Labels"]["other"], "{NOT_A_KEY}");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.revision"], "abc123");
    assert_eq!(manifest["layers"], unstamped_layers);
    let stamped_digest = built_digest(&stamped.stdout, "//app:app");
    assert_ne!(stamped_digest, built_digest(&unstamped.stdout, "//app:app"));
    assert_eq!(
        built_digest(&stamped.stdout, "//app:plain"),
        built_digest(&unstamped.stdout, "//app:plain"),
        "an image without placeholders is the same stamped or not"
    );

    // A stamped push lands on the stamped tag.
    let push = workspace.berth(&["--console", "none", "--stamp", "push", "//app:app", "--json"]);
    push.success();
    let release: serde_json::Value = serde_json::from_str(&push.stdout).unwrap();
    assert_eq!(release[0]["reference"], format!("{host}/team/app:abc123"));
    assert_eq!(release[0]["digest"], stamped_digest.as_str());
    let client = Client::new(ClientOptions {
        registries: vec![RegistrySetting { host: host.clone(), insecure: true, ..RegistrySetting::default() }],
        docker_config: Some(workspace.path("no-docker-config")),
        ..ClientOptions::default()
    })
    .unwrap();
    let (digest, _) = client.resolve_tag(&Reference::parse(&format!("{host}/team/app:abc123")).unwrap(), true).unwrap();
    assert_eq!(digest.to_string(), stamped_digest);

    // An unstamped push cannot use a placeholder as a tag.
    let push = workspace.berth(&["--console", "none", "push", "//app:app"]);
    push.failure(1);
    assert!(push.stderr.contains("`{STABLE_GIT_COMMIT}` is not a valid tag"), "{}", push.stderr);
}

#[test]
fn stamp_without_a_status_command_or_with_a_failing_one_is_refused() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD.star", "oci_image_build(name = \"app\", tag = \"{COMMIT}\")\n");
    let output = workspace.berth(&["--console", "none", "--stamp", "build", "//app:app"]);
    output.failure(1);
    assert!(
        output.stderr.contains("`--stamp` needs a workspace status command, and none is declared"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("hint: add `workspace_status(command = \"tools/status.sh\")`"), "{}", output.stderr);

    workspace.file("WORKSPACE.star", "workspace_status(command = \"echo broken >&2; exit 4\")\n");
    let output = workspace.berth(&["--console", "none", "--stamp", "build", "//app:app"]);
    output.failure(1);
    assert!(
        output.stderr.contains("The workspace status command `echo broken >&2; exit 4` failed: exit status: 4: broken"),
        "{}",
        output.stderr
    );
    workspace.file("WORKSPACE.star", "workspace_status(command = \"echo 'not-a-key value'\")\n");
    let output = workspace.berth(&["--console", "none", "--stamp", "build", "//app:app"]);
    output.failure(1);
    assert!(output.stderr.contains("line 1 is `not-a-key value`, not `KEY VALUE`"), "{}", output.stderr);
}
