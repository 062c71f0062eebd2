//! `berth push PATTERN... --json`: a monorepo release through the real
//! binary against Debian's `docker-registry`, counted by a proxy in front of
//! it. Every image with a `repository` is pushed and listed; a second run
//! uploads no blob and puts no manifest; `--dry-run` sends nothing.

use std::sync::{Arc, Mutex};

use berth::registry::{Client, ClientOptions, Reference};
use berth::workspace::RegistrySetting;

use crate::util::http::{forward, Reply, Server};
use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::workspace::TestWorkspace;

/// Requests that change the registry: `(method, path)`.
type Writes = Arc<Mutex<Vec<(String, String)>>>;

fn counting_proxy(upstream: u16) -> (Server, Writes) {
    let writes: Writes = Arc::default();
    let log = writes.clone();
    let server = Server::start(move |request| {
        if matches!(request.method.as_str(), "PUT" | "POST" | "PATCH") {
            log.lock().unwrap().push((request.method.clone(), request.path().to_owned()));
        }
        forward(upstream, &request).map_or(Reply::Drop, Reply::Send)
    });
    (server, writes)
}

fn release_workspace(host: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.file("WORKSPACE.star", &format!("registry(\"{host}\", insecure = True)\n"));
    workspace.file(
        "services/BUILD.star",
        &format!(
            "oci_layer(name = \"shared\", contents = {{\"/etc/motd\": \"one base layer\\n\"}})\n\
             oci_layer(name = \"api_files\", contents = {{\"/api.txt\": \"api\\n\"}})\n\
             oci_layer(name = \"web_files\", contents = {{\"/web.txt\": \"web\\n\"}})\n\
             oci_image_build(name = \"api\", layers = [\":shared\", \":api_files\"], repository = \"{host}/services/api\", tag = \"v1\")\n\
             oci_image_build(name = \"web\", layers = [\":shared\", \":web_files\"], repository = \"{host}/services/web\", tag = \"v1\")\n\
             oci_image_build(name = \"scratch\", layers = [\":shared\"])\n"
        ),
    );
    workspace.file(
        "tools/BUILD.star",
        &format!(
            "oci_layer(name = \"files\", contents = {{\"/tool.txt\": \"tool\\n\"}})\n\
             oci_image_build(name = \"tool\", layers = [\":files\"], repository = \"{host}/tools/tool\")\n\
             oci_layer(name = \"cli_files\", contents = {{\"/cli.txt\": \"cli\\n\"}})\n\
             oci_image_build(name = \"cli_amd64\", layers = [\":cli_files\"], architecture = \"amd64\")\n\
             oci_image_build(name = \"cli_arm64\", layers = [\":cli_files\"], architecture = \"arm64\")\n\
             oci_image_index(name = \"cli\", images = [\":cli_amd64\", \":cli_arm64\"], repository = \"{host}/tools/cli\", tag = \"v1\")\n"
        ),
    );
    workspace
}

#[test]
fn a_release_push_lists_every_image_and_a_second_run_writes_nothing() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let (proxy, writes) = counting_proxy(registry.port);
    let host = proxy.host();
    let workspace = release_workspace(&host);

    let build = workspace.berth(&["--console", "none", "build", "//..."]);
    build.success();
    let digest_of = |label: &str| {
        build
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{label} ")))
            .unwrap_or_else(|| panic!("{label} not built: {}", build.stdout))
            .to_owned()
    };
    let expected = serde_json::json!([
        {"label": "//services:api", "repository": format!("{host}/services/api"),
         "reference": format!("{host}/services/api:v1"), "tags": ["v1"], "digest": digest_of("//services:api")},
        {"label": "//services:web", "repository": format!("{host}/services/web"),
         "reference": format!("{host}/services/web:v1"), "tags": ["v1"], "digest": digest_of("//services:web")},
        {"label": "//tools:cli", "repository": format!("{host}/tools/cli"),
         "reference": format!("{host}/tools/cli:v1"), "tags": ["v1"], "digest": digest_of("//tools:cli")},
        {"label": "//tools:tool", "repository": format!("{host}/tools/tool"),
         "reference": format!("{host}/tools/tool@{}", digest_of("//tools:tool")), "tags": [], "digest": digest_of("//tools:tool")},
    ]);

    // A dry run builds and lists, and sends nothing.
    let dry = workspace.berth(&["--console", "none", "push", "//...", "--json", "--dry-run"]);
    dry.success();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&dry.stdout).unwrap(), expected);
    assert!(dry.stderr.contains(&format!("Would push //services:api to {host}/services/api:v1")), "{}", dry.stderr);
    assert!(writes.lock().unwrap().is_empty(), "a dry run wrote {:?}", writes.lock().unwrap());

    // The release: every image with a `repository`, none without.
    let push = workspace.berth(&["--console", "none", "push", "//...", "--json"]);
    push.success();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&push.stdout).unwrap(), expected);
    let first = writes.lock().unwrap().drain(..).collect::<Vec<_>>();
    assert!(first.iter().any(|(method, _)| method == "POST"), "blobs were uploaded: {first:?}");
    assert!(first.iter().all(|(_, path)| !path.contains("scratch")), "an image without repository was pushed");
    let client = Client::new(ClientOptions {
        registries: vec![RegistrySetting { host: host.clone(), insecure: true, ..RegistrySetting::default() }],
        docker_config: Some(workspace.path("no-docker-config")),
        ..ClientOptions::default()
    })
    .unwrap();
    for (reference, label) in
        [("services/api:v1", "//services:api"), ("services/web:v1", "//services:web"), ("tools/cli:v1", "//tools:cli")]
    {
        let (digest, _) = client.resolve_tag(&Reference::parse(&format!("{host}/{reference}")).unwrap(), true).unwrap();
        assert_eq!(digest.to_string(), digest_of(label), "{reference}");
    }

    // Nothing changed: no blob uploaded, no manifest put.
    let again = workspace.berth(&["--console", "none", "push", "//...", "--json"]);
    again.success();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&again.stdout).unwrap(), expected);
    assert_eq!(writes.lock().unwrap().clone(), Vec::<(String, String)>::new(), "an unchanged release wrote");
    assert!(
        again.stderr.contains(&format!(
            "Pushed {host}/services/api: 0 blobs uploaded (0 bytes), 0 mounted, 3 already there; 0 manifests put, 2 already there"
        )),
        "{}",
        again.stderr
    );

    // One image changed: only its new layer, config and manifest go up.
    workspace.file(
        "tools/BUILD.star",
        &std::fs::read_to_string(workspace.path("tools/BUILD.star")).unwrap().replace("tool\\n", "tool v2\\n"),
    );
    workspace.berth(&["--console", "none", "push", "//..."]).success();
    let changed = writes.lock().unwrap().clone();
    assert!(changed.iter().all(|(_, path)| path.starts_with("/v2/tools/tool/")), "{changed:?}");
    let manifest_puts = changed.iter().filter(|(method, path)| method == "PUT" && path.contains("/manifests/")).count();
    assert_eq!(manifest_puts, 1, "the untagged tool's new manifest, by digest: {changed:?}");
}

#[test]
fn push_flags_for_one_image_are_refused_for_several() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let workspace = release_workspace(&registry.host());
    let output = workspace.berth(&["--console", "none", "push", "//services/...", "--tag", "v2", "--dry-run"]);
    output.failure(1);
    assert!(
        output.stderr.contains("`--repository` and `--tag` apply to one image, but the patterns match 3: //services:api, //services:scratch, //services:web"),
        "{}",
        output.stderr
    );
    let output = workspace.berth(&["--console", "none", "push", "//services:scratch"]);
    output.failure(1);
    assert!(output.stderr.contains("Target `//services:scratch` has no `repository` to push to"), "{}", output.stderr);
    let output = workspace.berth(&["--console", "none", "push", "//services:shared"]);
    output.failure(1);
    assert!(output.stderr.contains("`//services:shared` is a layer, not an image"), "{}", output.stderr);
}

#[test]
fn a_release_with_an_unreachable_registry_fails_with_exit_3() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let workspace = release_workspace(&registry.host());
    let dead = format!("127.0.0.1:{}", crate::util::registry::free_port());
    workspace.file(
        "WORKSPACE.star",
        &format!("registry(\"{}\", insecure = True)\nregistry(\"{dead}\", insecure = True)\n", registry.host()),
    );
    workspace.file(
        "zz/BUILD.star",
        &format!("oci_image_build(name = \"lost\", repository = \"{dead}/lost/image\", tag = \"v1\")\n"),
    );
    let output = workspace.berth(&["--console", "none", "push", "//..."]);
    output.failure(3);
    assert!(output.stderr.contains(&format!("Registry `{dead}` is unreachable")), "{}", output.stderr);
    assert!(output.stdout.is_empty(), "no release manifest for a failed release: {}", output.stdout);
}
