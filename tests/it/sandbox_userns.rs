//! Every container runs in a user namespace: uid 0 inside is the start of
//! the `berth` range of `/etc/subuid` on the host. A file a step creates as
//! uid 0 is owned by that host id on disk and by 0 in the captured layer, so
//! layer digests do not depend on the host's range.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use berth::exec::UserNamespace;

use crate::util::need::skip;
use crate::util::runc::{serial, wait_for_sleeper, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

pub(crate) fn workspace() -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &std::fs::read(BUSYBOX).unwrap());
    workspace.file(
        "app/BUILD.star",
        r#"
oci_layer(
    name = "busybox_layer",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/" + applet: "busybox" for applet in ["sh", "cat", "mkdir", "touch", "id", "sleep", "stat"]},
    directories = ["/tmp"],
    mode = "0755",
)

oci_image_build(name = "shell", layers = [":busybox_layer"], entrypoint = ["/bin/sh", "-c"])

oci_build_layer(
    name = "ids",
    base = ":shell",
    command = [
        "mkdir -p /out",
        "cat /proc/self/uid_map > /out/uid_map",
        "id -u > /out/id",
        "touch /out/made_by_root",
        "stat -c %u:%g /bin/busybox > /out/base_owner",
    ],
    outputs = ["/out"],
)
"#,
    );
    workspace
}

/// The captured layer's entries: path → (uid, gid, contents).
pub(crate) fn layer_entries(path: &std::path::Path) -> Vec<(String, u64, u64, String)> {
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut body = String::new();
            if entry.header().entry_type().is_file() {
                entry.read_to_string(&mut body).unwrap();
            }
            let header = entry.header().clone();
            (entry.path().unwrap().display().to_string(), header.uid().unwrap(), header.gid().unwrap(), body)
        })
        .collect()
}

#[test]
fn steps_run_as_a_mapped_root_and_layers_record_inside_ids() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let userns = UserNamespace::from_subid_files().expect("scripts/setup.sh adds the berth ranges");
    let workspace = workspace();
    workspace.berth(&["--console", "none", "build", "//app:ids"]).success();
    let entries = layer_entries(&workspace.path("berth-out/app/ids/layer.tar.gz"));
    let body = |name: &str| entries.iter().find(|entry| entry.0 == name).unwrap_or_else(|| panic!("{name}")).3.clone();
    let map: Vec<u64> = body("out/uid_map").split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(map, [0, u64::from(userns.host), 65536], "uid 0 maps to the range, not to host root");
    assert_eq!(body("out/id"), "0\n");
    assert_eq!(body("out/base_owner"), "0:0\n", "the base's root-owned files are root's inside");
    let made = entries.iter().find(|entry| entry.0 == "out/made_by_root").unwrap();
    assert_eq!((made.1, made.2), (0, 0), "the layer records the id inside");
}

#[test]
fn files_made_by_root_inside_belong_to_the_range_on_the_host() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let userns = UserNamespace::from_subid_files().expect("scripts/setup.sh adds the berth ranges");
    let workspace = workspace();
    let marker = "2917";
    let mut child = workspace
        .command(&["--console", "none", "run", "//app:shell", "--", &format!("touch /tmp/made && sleep {marker}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = wait_for_sleeper(marker);
    let host_view = std::fs::metadata(format!("/proc/{sleeper}/root/tmp/made"));
    let status = std::fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed berth's container goes with the next command's sweep.
    workspace.berth(&["--console", "none", "cache", "gc", "--max-size", "10G"]).success();
    let metadata = host_view.unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (userns.host, userns.host));
    let uid_line = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|id| id == userns.host.to_string()), "{uid_line}");
}
