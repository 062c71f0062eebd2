//! Registries through the real binary, against Debian's `docker-registry` on
//! 127.0.0.1: push an example, push it again (nothing uploaded), read it
//! with skopeo, pin its tag, build on it as a pulled base (only manifest and
//! config fetched), run the result (layers fetched then), and push that
//! (the base's blobs mounted, not uploaded).

use std::process::Command;

use crate::util::need::{skip, Need};
use crate::util::registry::{insecure_registry_line, Registry};
use crate::util::workspace::project_copy;

#[test]
fn push_pin_pull_lazily_run_and_push_again() {
    let _serial = crate::util::runc::serial();
    if skip(&[Need::Registry, Need::Skopeo, Need::Debs, Need::Root, Need::Runc, Need::Subids]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let workspace = project_copy();
    workspace.file("WORKSPACE.star", &format!("workspace(name = \"e2e\")\n{}", insecure_registry_line(&host)));

    // Push, then push again: the second push uploads nothing.
    let repository = format!("{host}/examples/hello");
    let push =
        workspace.berth(&["--console", "none", "push", "//examples/hello", "--repository", &repository, "--tag", "v1"]);
    push.success();
    let first = push_summary(&push.stderr, &repository);
    let digest = push.stdout.trim().to_owned();
    let expected =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/expected.digests"))
            .unwrap();
    assert!(expected.contains(&format!("//examples/hello:hello {digest}\n")), "pushed {digest}");
    let again =
        workspace.berth(&["--console", "none", "push", "//examples/hello", "--repository", &repository, "--tag", "v1"]);
    again.success();
    assert_eq!(again.stdout.trim(), digest);
    let second = push_summary(&again.stderr, &repository);

    // A tool nobody here wrote reads it back, checking every blob.
    let copy = workspace.path("skopeo-copy");
    let skopeo = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &format!("docker://{repository}:v1")])
        .arg(format!("oci:{}:v1", copy.display()))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{}", String::from_utf8_lossy(&skopeo.stderr));

    // `berth pin` resolves the tag to the pushed digest.
    let pin = workspace.berth(&["pin", &format!("{repository}:v1")]);
    pin.success();
    assert!(pin.stdout.contains(&format!("digest = \"{digest}\"")), "{}", pin.stdout);

    // A build on the pulled image fetches its manifest and config only.
    workspace.file(
        "pulled/BUILD.star",
        &format!(
            "oci_pull_image(name = \"base\", repository = \"{repository}\", digest = \"{digest}\")\n\
             oci_layer(name = \"extra\", contents = {{\"/extra.txt\": \"pulled and extended\\n\"}})\n\
             oci_image_build(name = \"derived\", base = \":base\", layers = [\":extra\"], entrypoint = [\"/bin/cat\", \"/extra.txt\"])\n"
        ),
    );
    let mut fresh = workspace;
    fresh.env("BERTH_CACHE_DIR", fresh.path(".fresh-cache").to_str().unwrap());
    let build = fresh.berth(&["--console", "none", "build", "//pulled:derived"]);
    build.success();
    assert!(build.stderr.contains("base layer(s) that were not downloaded"), "{}", build.stderr);
    let base_layers = manifest_layers(&copy.join("blobs/sha256"), &digest);
    assert!(!base_layers.is_empty());
    // The first push uploads every blob (config and layers), the second none.
    let blobs = base_layers.len() + 1;
    assert_eq!((first.uploaded, first.mounted, first.existing), (blobs, 0, 0), "first push: {first:?}");
    assert!(first.bytes > 0, "first push: {first:?}");
    assert_eq!(first.manifests_put, 2, "the manifest by digest, then the tag");
    assert_eq!(
        second,
        PushSummary { uploaded: 0, bytes: 0, mounted: 0, existing: blobs, manifests_put: 0 },
        "second push"
    );
    for layer in &base_layers {
        assert!(
            !fresh.path(&format!(".fresh-cache/cas/sha256/{layer}")).exists(),
            "layer {layer} was fetched by a build"
        );
    }

    // Running it needs every byte: the layers are fetched now.
    let run = fresh.berth(&["-q", "run", "//pulled:derived"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "pulled and extended\n"), "{}", run.stderr);
    let run_base = fresh.berth(&["-q", "run", "//pulled:base"]);
    assert_eq!(run_base.stdout, "Hello from berth!\n", "{}", run_base.stderr);

    // Pushing the derived image to another repository of the same registry
    // mounts the base's blobs instead of uploading them.
    let derived = format!("{host}/examples/derived");
    let push = fresh.berth(&["--console", "none", "push", "//pulled:derived", "--repository", &derived, "--tag", "v1"]);
    push.success();
    let derived_push = push_summary(&push.stderr, &derived);
    // The base's layers are mounted from `examples/hello`; the new layer and
    // the new config are uploaded.
    assert_eq!(
        (derived_push.uploaded, derived_push.mounted, derived_push.existing),
        (2, base_layers.len(), 0),
        "pushing the derived image: {derived_push:?}"
    );
}

/// The counts of berth's push summary line.
#[derive(Debug, PartialEq, Eq)]
struct PushSummary {
    uploaded: usize,
    bytes: u64,
    mounted: usize,
    existing: usize,
    manifests_put: usize,
}

/// Parses `Pushed R: N blobs uploaded (B bytes), M mounted, E already
/// there` for `repository` from `stderr`; panics unless there is one.
fn push_summary(stderr: &str, repository: &str) -> PushSummary {
    let prefix = format!("Pushed {repository}: ");
    let line = stderr
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}...` line in:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().unwrap())
        .collect();
    let number = |index: usize| numbers.get(index).copied().unwrap_or_default();
    let expected = format!(
        "{} blobs uploaded ({} bytes), {} mounted, {} already there; {} manifests put, {} already there",
        number(0),
        number(1),
        number(2),
        number(3),
        number(4),
        number(5)
    );
    assert_eq!((numbers.len(), line), (6, expected.as_str()), "a push summary of another shape");
    PushSummary {
        uploaded: numbers[0] as usize,
        bytes: numbers[1],
        mounted: numbers[2] as usize,
        existing: numbers[3] as usize,
        manifests_put: numbers[4] as usize,
    }
}

/// The layer digests (hex) of the manifest `digest` in an OCI layout's blobs.
fn manifest_layers(blobs: &std::path::Path, digest: &str) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&digest["sha256:".len()..])).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap()["sha256:".len()..].to_owned())
        .collect()
}
