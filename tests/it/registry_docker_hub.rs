//! Docker Hub names through a local mirror: `python:3.12`, `docker.io/x`
//! and `index.docker.io/library/x` all mean `registry-1.docker.io/library/x`,
//! and a mirror configured for any of Docker Hub's names serves them all.
//! The real Docker Hub is never contacted: every run goes through a proxy
//! address that refuses connections, and only 127.0.0.1 bypasses it.

use std::time::Duration;

use berth::registry::{Client, ClientOptions};

use crate::util::images::{temp_cas, TestImage};
use crate::util::need::{skip, Need};
use crate::util::registry::{free_port, insecure_options, insecure_registry_line, manifest_push, Registry};
use crate::util::workspace::TestWorkspace;

const HUB: &str = "registry-1.docker.io";

/// A workspace whose Docker Hub traffic can only reach `mirror`.
fn hub_workspace(mirror: &str, hub_name: &str) -> TestWorkspace {
    let mut workspace = TestWorkspace::new();
    workspace.file(
        "WORKSPACE.star",
        &format!("registry(\"{hub_name}\", mirrors = [\"{mirror}\"])\n{}", insecure_registry_line(mirror)),
    );
    // Anything not on 127.0.0.1 goes to a proxy that is not there.
    let dead_proxy = format!("http://127.0.0.1:{}", free_port());
    for variable in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        workspace.env(variable, &dead_proxy);
    }
    workspace.env("NO_PROXY", "127.0.0.1");
    workspace.env("no_proxy", "127.0.0.1");
    workspace
}

#[test]
fn docker_hub_names_pin_and_build_through_a_mirror() {
    if skip(&[Need::Registry]) {
        return;
    }
    let mirror = Registry::start();
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 17, &[4_000]);
    let options = insecure_options(&[mirror.host()], None);
    let client = Client::new(ClientOptions { backoff: Duration::from_millis(5), ..options }).unwrap();
    let request = manifest_push(image.manifest, &format!("{}/library/busybox", mirror.host()), &["1.36"]);
    client.push(&cas, &request).unwrap();
    let digest = image.manifest.digest.to_string();

    // Whichever of Docker Hub's names the mirror is declared for, every
    // spelling of a Docker Hub image goes to it.
    for hub_name in ["docker.io", "index.docker.io", HUB] {
        let workspace = hub_workspace(&mirror.host(), hub_name);
        for name in ["busybox:1.36", "docker.io/busybox:1.36", "index.docker.io/library/busybox:1.36"] {
            let pin = workspace.berth(&["pin", name]);
            pin.success();
            assert_eq!(
                pin.stdout,
                format!(
                    "oci_pull_image(\n    name = \"busybox\",\n    repository = \"{HUB}/library/busybox\",\n    digest = \"{digest}\",\n)\n"
                ),
                "{name} with a mirror for {hub_name}"
            );
        }
    }

    // A build on `docker.io/busybox` fetches from the mirror only.
    let workspace = hub_workspace(&mirror.host(), "docker.io");
    workspace.file(
        "app/BUILD.star",
        &format!(
            "oci_pull_image(name = \"base\", repository = \"docker.io/busybox\", digest = \"{digest}\")\n\
             oci_layer(name = \"files\", contents = {{\"/app.txt\": \"on a Docker Hub base\\n\"}})\n\
             oci_image_build(name = \"app\", base = \":base\", layers = [\":files\"])\n"
        ),
    );
    workspace.berth(&["--console", "none", "build", "//app:app"]).success();
    // Exporting needs every byte of the base: its layer comes from the mirror.
    let archive = workspace.path("app.tar");
    workspace
        .berth(&[
            "--console",
            "none",
            "export",
            "//app:app",
            "--format",
            "oci-archive",
            "-o",
            archive.to_str().unwrap(),
        ])
        .success();

    // Without a mirror nothing reaches Docker Hub either: the dead proxy
    // refuses, and berth says the registry is unreachable.
    let isolated = hub_workspace(&mirror.host(), "quay.invalid");
    let pin = isolated.berth(&["pin", "busybox:1.36"]);
    pin.failure(3);
    assert!(pin.stderr.contains(&format!("Registry `{HUB}` is unreachable")), "{}", pin.stderr);
}
