//! `berth export` through the real binary: a busybox image built from a
//! workspace, exported as an OCI archive (read back by skopeo) and as a
//! Docker archive (loaded and run by docker, loaded by podman).

use std::process::Command;

use crate::util::need::{have, Need};
use crate::util::workspace::TestWorkspace;

fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.bytes("app/busybox", &std::fs::read("/bin/busybox").expect("busybox-static is installed"));
    ws.file(
        "app/BUILD.star",
        r#"
oci_layer(
    name = "base",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/sh": "busybox", "/bin/echo": "busybox"},
    mode = "0755",
)

oci_image_build(
    name = "image",
    layers = [":base"],
    entrypoint = ["/bin/echo"],
    cmd = ["exported by berth"],
    repository = "berth-export-test",
    tag = "v1",
)
"#,
    );
    ws
}

#[test]
fn oci_archive_is_the_built_image() {
    let ws = workspace();
    let built = ws.berth(&["build", "//app:image"]).success().stdout.clone();
    let digest = built.split_whitespace().nth(1).unwrap().to_owned();
    ws.berth_in("app", &["export", ":image", "--format", "oci-archive", "-o", "../image.tar"]).success();
    let again = ws.path("again.tar");
    ws.berth(&["export", "//app:image", "--format", "oci-archive", "-o", again.to_str().unwrap()]).success();
    assert!(std::fs::read(ws.path("image.tar")).unwrap() == std::fs::read(&again).unwrap());
    if have(Need::Skopeo) {
        let output = Command::new("skopeo")
            .args(["inspect", "--raw", &format!("oci-archive:{}:v1", ws.path("image.tar").display())])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(berth::cache::Digest::of(&output.stdout).to_string(), digest);
    }
}

#[test]
fn docker_archive_loads_and_runs() {
    let ws = workspace();
    ws.berth(&["export", "//app:image", "--format", "docker-archive", "-o", "image.tar"]).success();
    if have(Need::Docker) {
        let load = Command::new("docker").args(["load", "-i"]).arg(ws.path("image.tar")).output().unwrap();
        assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
        let run = Command::new("docker").args(["run", "--rm", "berth-export-test:v1"]).output().unwrap();
        let _ = Command::new("docker").args(["rmi", "-f", "berth-export-test:v1"]).output();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(String::from_utf8_lossy(&run.stdout), "exported by berth\n");
    }
    if have(Need::Podman) {
        let load = Command::new("podman").args(["load", "-i"]).arg(ws.path("image.tar")).output().unwrap();
        let _ = Command::new("podman").args(["rmi", "-f", "berth-export-test:v1"]).output();
        assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
        assert!(String::from_utf8_lossy(&load.stdout).contains("berth-export-test:v1"));
    }
}

#[test]
fn exporting_a_layer_or_into_a_missing_directory_is_a_user_error() {
    let ws = workspace();
    let out = ws.berth(&["export", "//app:base", "--format", "oci-archive", "-o", "layer.tar"]);
    out.failure(1);
    assert!(out.stderr.contains("`//app:base` is a layer, not an image"), "{}", out.stderr);
    let out = ws.berth(&["export", "//app:image", "--format", "oci-archive", "-o", "no/such/dir/image.tar"]);
    out.failure(1);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!ws.path("layer.tar").exists());
}
