//! End-to-end checks of the `oci` half: images built through the real
//! `pack_layer`, `write_config`, `write_manifest` and `write_index` actions
//! (run in order by a tiny driver, standing in for the scheduler), written as
//! layouts and archives, then read by tools nobody here wrote: oci-image-tool,
//! skopeo, umoci + runc, docker and podman. A missing tool skips its part
//! (`util::need`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::actions::{
    Action, ActionContext, ActionId, ActionResult, ConfigLayer, ExecutionContext, ImageOutput, IndexOutput, Input,
    LayerOutput, PackLayer, ResolvedInput, WriteConfig, WriteIndex, WriteManifest,
};
use berth::cache::{BlobRef, Cas, Digest};
use berth::oci::{self, Compression, ConfigSettings, LayerEntry, LayerStore, Platform};

use crate::util::need::{have, skip, Need};

/// Runs actions in registration order, resolving inputs as the scheduler
/// would: source files by workspace path plus digest, actions by output.
struct Driver {
    workspace: PathBuf,
    cas: Cas,
    /// What the actions see of the machine: the CAS (no registry, no
    /// containers).
    exec: ExecutionContext,
    outputs: Vec<ActionResult>,
}

impl Driver {
    fn new(workspace: &Path, cache: &Path) -> Driver {
        let cas = Cas::open(cache).unwrap();
        let exec = ExecutionContext::new(cas.clone(), LayerStore::new(cache));
        Driver { workspace: workspace.to_owned(), cas, exec, outputs: Vec::new() }
    }

    fn run(&mut self, action: &dyn Action) -> berth::error::Result<ActionId> {
        let scratch = tempfile::tempdir().unwrap();
        let inputs = action
            .inputs()
            .into_iter()
            .map(|input| match input {
                Input::Source(relative) => {
                    let path = self.workspace.join(relative);
                    let bytes = fs::read(&path).unwrap();
                    ResolvedInput::Source { path, digest: Digest::of(&bytes), size: bytes.len() as u64, settled: false }
                }
                Input::Action(id) => ResolvedInput::Action(&self.outputs[id.0]),
            })
            .collect();
        let output = action.execute(&ActionContext::new(&self.exec, inputs, scratch.path()))?;
        self.outputs.push(output);
        Ok(ActionId(self.outputs.len() - 1))
    }

    fn manifest(&self, id: ActionId) -> BlobRef {
        ImageOutput::from_result(&self.outputs[id.0]).unwrap().manifest
    }

    fn config(&self, id: ActionId) -> BlobRef {
        ImageOutput::from_result(&self.outputs[id.0]).unwrap().config
    }

    fn index(&self, id: ActionId) -> BlobRef {
        IndexOutput::from_result(&self.outputs[id.0]).unwrap().index
    }

    fn layer(&self, id: ActionId) -> BlobRef {
        LayerOutput::from_result(&self.outputs[id.0]).unwrap().blob
    }
}

const MESSAGE: &str = "hello from berth";

/// A busybox image: one layer with `/bin/busybox` (from `busybox-static`)
/// and its applets as symlinks, plus a config-only layer of settings.
/// Returns the driver and the `write_manifest` action.
fn busybox_image(root: &Path, compression: Compression, threads: usize, platform: &Platform) -> (Driver, ActionId) {
    let workspace = root.join("workspace");
    fs::create_dir_all(workspace.join("bin")).unwrap();
    fs::copy("/bin/busybox", workspace.join("bin/busybox")).unwrap();
    let mut driver = Driver::new(&workspace, &root.join("cache"));
    let mut entries = vec![
        LayerEntry::file("/bin/busybox", 0, true),
        LayerEntry::contents("/etc/motd", format!("{MESSAGE}\n")),
        LayerEntry::contents("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        LayerEntry::directory("/tmp").with_mode(0o1777),
    ];
    for applet in ["sh", "echo", "cat", "ls"] {
        entries.push(LayerEntry::symlink(format!("/bin/{applet}"), "busybox"));
    }
    let layer = driver
        .run(&PackLayer {
            sources: vec!["bin/busybox".into()],
            entries,
            compression,
            source_date_epoch: 1_700_000_000,
            threads,
        })
        .unwrap();
    let settings = ConfigSettings {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["cat /etc/motd".into()]),
        env: vec![("PATH".into(), "/bin".into())],
        workdir: Some("/".into()),
        labels: BTreeMap::from([("org.example.test".into(), "yes".into())]),
        os: Some(platform.os.clone()),
        architecture: Some(platform.architecture.clone()),
        variant: platform.variant.clone(),
        source_date_epoch: 1_700_000_000,
        ..ConfigSettings::default()
    };
    let created_by = "berth oci_layer //test:busybox".to_owned();
    let config = driver
        .run(&WriteConfig { base: None, layers: vec![ConfigLayer { action: layer, created_by }], settings })
        .unwrap();
    let manifest =
        driver.run(&WriteManifest { config, base: None, layers: vec![layer], annotations: BTreeMap::new() }).unwrap();
    (driver, manifest)
}

/// An image on top of `base` with one more layer and a new `cmd`.
fn derived_image(driver: &mut Driver, base: ActionId, compression: Compression) -> ActionId {
    let layer = driver
        .run(&PackLayer {
            sources: vec![],
            entries: vec![LayerEntry::contents("/etc/motd", "derived\n")],
            compression,
            source_date_epoch: 0,
            threads: 2,
        })
        .unwrap();
    let settings = ConfigSettings {
        env: vec![("GREETING".into(), "hi".into())],
        cmd: Some(vec!["echo $GREETING; cat /etc/motd".into()]),
        ..ConfigSettings::default()
    };
    let created_by = "berth oci_layer //test:derived".to_owned();
    let config = driver
        .run(&WriteConfig { base: Some(base), layers: vec![ConfigLayer { action: layer, created_by }], settings })
        .unwrap();
    driver.run(&WriteManifest { config, base: Some(base), layers: vec![layer], annotations: BTreeMap::new() }).unwrap()
}

fn layout(driver: &Driver, root: BlobRef, dir: &Path, tag: &str) {
    let root = oci::read_root(&driver.cas, root).unwrap();
    oci::write_layout(&driver.cas, &root, Some(tag), dir).unwrap();
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn layout_validates_and_skopeo_reads_and_copies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut driver, base) = busybox_image(dir.path(), Compression::Gzip, 2, &Platform::host());
    let image = derived_image(&mut driver, base, Compression::Gzip);
    let out = dir.path().join("layout");
    layout(&driver, driver.manifest(image), &out, "v1");
    // Writing again replaces the layout in one rename, leaving no temp dirs.
    layout(&driver, driver.manifest(image), &out, "v1");
    let siblings: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(siblings.iter().all(|name| !name.to_string_lossy().contains(".tmp-")), "{siblings:?}");

    let manifest: oci_spec::image::ImageManifest =
        serde_json::from_slice(&fs::read(out.join("blobs/sha256").join(driver.manifest(image).digest.hex())).unwrap())
            .unwrap();
    assert_eq!(manifest.layers().len(), 2);
    assert_eq!(manifest.layers()[1].media_type().to_string(), "application/vnd.oci.image.layer.v1.tar+gzip");

    if have(Need::OciImageTool) {
        run(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=v1"]).arg(&out));
    }
    if have(Need::Skopeo) {
        let inspect = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:v1", out.display())));
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(inspect["Digest"], driver.manifest(image).digest.to_string());
        assert_eq!(inspect["Labels"]["org.example.test"], "yes");
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
        let copy = dir.path().join("copy");
        run(Command::new("skopeo")
            .args(["copy", "--preserve-digests"])
            .arg(format!("oci:{}:v1", out.display()))
            .arg(format!("oci:{}:v1", copy.display())));
        let copied = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:v1", copy.display())));
        assert_eq!(Digest::of(copied.as_bytes()), driver.manifest(image).digest);
    }
}

#[test]
fn umoci_unpacks_and_runc_runs_the_image() {
    if skip(&[Need::Umoci, Need::Root, Need::Runc]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (driver, image) = busybox_image(dir.path(), Compression::Gzip, 2, &Platform::host());
    let out = dir.path().join("layout");
    layout(&driver, driver.manifest(image), &out, "v1");
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:v1", out.display())).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("etc/motd")).unwrap(), format!("{MESSAGE}\n"));
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("busybox"));

    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/sh", "-c", "cat /etc/motd"]));
    fs::write(&config_path, berth::cache::canonical_json(&config)).unwrap();
    let id = format!("berth-oci-test-{}", std::process::id());
    let stdout = run(Command::new("runc").arg("run").arg("--bundle").arg(&bundle).arg(&id));
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert_eq!(stdout.trim(), MESSAGE);
}

#[test]
fn docker_archive_loads_and_runs_in_docker_and_podman() {
    let dir = tempfile::tempdir().unwrap();
    let (mut driver, base) = busybox_image(dir.path(), Compression::Gzip, 2, &Platform::host());
    let image = derived_image(&mut driver, base, Compression::Gzip);
    let archive = dir.path().join("image.tar");
    let tag = format!("berth-oci-test:{}", std::process::id());
    oci::write_docker_archive(&driver.cas, driver.manifest(image), std::slice::from_ref(&tag), &archive).unwrap();
    let again = dir.path().join("again.tar");
    oci::write_docker_archive(&driver.cas, driver.manifest(image), std::slice::from_ref(&tag), &again).unwrap();
    assert!(fs::read(&archive).unwrap() == fs::read(&again).unwrap(), "archives are deterministic");

    if have(Need::Docker) {
        run(Command::new("docker").args(["load", "-i"]).arg(&archive));
        let output = Command::new("docker").args(["run", "--rm", &tag]).output().unwrap();
        let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\nderived\n");
    }
    if have(Need::Podman) {
        let loaded = run(Command::new("podman").args(["load", "-i"]).arg(&archive));
        assert!(loaded.contains(&tag), "{loaded}");
        let inspect = run(Command::new("podman").args(["image", "inspect", &tag]));
        let _ = Command::new("podman").args(["rmi", "-f", &tag]).output();
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(inspect[0]["Config"]["Env"], serde_json::json!(["PATH=/bin", "GREETING=hi"]));
    }
}

#[test]
fn oci_archive_is_a_layout_in_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let (driver, image) = busybox_image(dir.path(), Compression::None, 1, &Platform::host());
    let archive = dir.path().join("image.oci.tar");
    oci::write_oci_archive(&driver.cas, driver.manifest(image), Some("v1"), &archive).unwrap();
    let names: Vec<String> = tar::Archive::new(fs::File::open(&archive).unwrap())
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path().unwrap().display().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 2 + 3 + 2);
    if have(Need::Skopeo) {
        let inspect = run(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}:v1", archive.display())));
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(inspect["Digest"], driver.manifest(image).digest.to_string());
    }
}

#[test]
fn index_of_two_platforms_validates_and_duplicates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let amd64 = Platform::new("linux", "amd64", None);
    let arm64 = Platform::new("linux", "arm64", Some("v8".into()));
    let (mut driver, first) = busybox_image(&dir.path().join("a"), Compression::Gzip, 2, &amd64);
    let (driver_b, second) = busybox_image(&dir.path().join("b"), Compression::Gzip, 2, &arm64);
    // Move the second image's blobs into the first driver's CAS.
    for blob in [driver_b.manifest(second), driver_b.config(second)] {
        let digest = blob.digest;
        driver.cas.put_bytes(&driver_b.cas.read_verified(&digest).unwrap()).unwrap();
    }
    let manifest: oci::Manifest =
        serde_json::from_slice(&driver.cas.read_verified(&driver_b.manifest(second).digest).unwrap()).unwrap();
    for layer in &manifest.layers {
        driver.cas.put_bytes(&driver_b.cas.read_verified(&layer.digest).unwrap()).unwrap();
    }
    driver.outputs.push(driver_b.outputs[second.0].clone());
    let second = ActionId(driver.outputs.len() - 1);

    let labels = vec!["//test:amd64".to_owned(), "//test:arm64".to_owned()];
    let index = driver
        .run(&WriteIndex { images: vec![first, second], image_labels: labels.clone(), annotations: BTreeMap::new() })
        .unwrap();
    let out = dir.path().join("layout");
    layout(&driver, driver.index(index), &out, "multi");
    let parsed: oci_spec::image::ImageIndex =
        serde_json::from_slice(&driver.cas.read_verified(&driver.index(index).digest).unwrap()).unwrap();
    let platforms: Vec<String> =
        parsed.manifests().iter().map(|entry| entry.platform().as_ref().unwrap().architecture().to_string()).collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    if have(Need::OciImageTool) {
        run(Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=multi", "--ref", "platform.os=linux"])
            .arg(&out));
    }
    if have(Need::Skopeo) {
        let raw = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:multi", out.display())));
        assert_eq!(Digest::of(raw.as_bytes()), driver.index(index).digest);
    }

    let error = driver
        .run(&WriteIndex { images: vec![first, first], image_labels: labels, annotations: BTreeMap::new() })
        .unwrap_err();
    assert_eq!(error.kind, berth::error::ErrorKind::User);
    assert!(error.message.starts_with("Two images of the index have the platform `linux/amd64`"), "{}", error.message);
}

#[test]
fn missing_base_blobs_are_reported_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (driver, image) = busybox_image(dir.path(), Compression::Gzip, 2, &Platform::host());
    let layer = driver.layer(ActionId(0));
    fs::remove_file(driver.cas.path(&layer.digest)).unwrap();
    let root = oci::read_root(&driver.cas, driver.manifest(image)).unwrap();
    assert_eq!(oci::missing_blobs(&driver.cas, &root).unwrap(), [layer.digest]);
    let out = dir.path().join("layout");
    let error = oci::write_layout(&driver.cas, &root, None, &out).unwrap_err();
    assert!(matches!(error, oci::OciError::MissingBlobs { ref digests } if digests == &[layer.digest]), "{error}");
    assert!(!out.exists());
}

#[test]
fn zstd_layers_are_read_by_skopeo_and_refused_in_docker_archives() {
    let dir = tempfile::tempdir().unwrap();
    let (mut driver, base) = busybox_image(dir.path(), Compression::Gzip, 2, &Platform::host());
    let image = derived_image(&mut driver, base, Compression::Zstd);
    let error =
        oci::write_docker_archive(&driver.cas, driver.manifest(image), &["x:y".into()], &dir.path().join("d.tar"))
            .unwrap_err();
    assert!(error.to_string().starts_with("A docker-archive cannot hold zstd layers"), "{error}");
    assert!(!dir.path().join("d.tar").exists());
    if have(Need::Skopeo) {
        let out = dir.path().join("layout");
        layout(&driver, driver.manifest(image), &out, "z");
        let copy = dir.path().join("copy");
        run(Command::new("skopeo")
            .args(["copy", "--preserve-digests"])
            .arg(format!("oci:{}:z", out.display()))
            .arg(format!("oci:{}:z", copy.display())));
        let raw = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:z", copy.display())));
        assert_eq!(Digest::of(raw.as_bytes()), driver.manifest(image).digest);
        let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw["layers"][1]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    }
}
