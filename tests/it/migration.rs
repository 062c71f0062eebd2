//! Moving over from Pants, rules_oci and vinci: the peer workspaces under
//! `tests/migration/<peer>/` hold BUILD files in that peer's own spelling.
//! Each is copied into a temp workspace, built with the real binary, and its
//! images read back with skopeo and umoci (and loaded into Docker, pushed to
//! a real registry) to check what the peer's documentation says they hold.

use std::path::Path;

use serde_json::Value;

use crate::util::need::{skip, Need};
use crate::util::process::run;
use crate::util::registry::Registry;
use crate::util::runc::{busybox_tar, gzip, zstd, TarBuilder, BUSYBOX, CONTAINER};
use crate::util::workspace::{copy_tree, TestWorkspace};

/// `tests/migration/<peer>` copied into a fresh workspace.
fn peer(name: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migration").join(name);
    copy_tree(&source, workspace.root());
    workspace
}

/// The Pants workspace, with the host's busybox where `//base` wants it.
fn pants() -> TestWorkspace {
    let workspace = peer("pants");
    std::fs::copy(BUSYBOX, workspace.path("base/busybox")).expect("copy busybox");
    workspace
}

/// The rules_oci workspace with the layer archives its BUILD file names.
fn rules_oci() -> TestWorkspace {
    let workspace = peer("rules_oci");
    workspace.bytes("app/busybox.tar", &busybox_tar());
    let app = TarBuilder::default()
        .dir("app", 0o755)
        .file("app/run.sh", 0o755, b"echo \"$MESSAGE; PATH=$PATH; ENV2=$ENV2\"\n")
        .finish();
    workspace.bytes("app/app.tar.gz", &gzip(&app));
    let data = TarBuilder::default().dir("data", 0o755).file("data/records.txt", 0o644, b"one\ntwo\n").finish();
    workspace.bytes("app/data.tar", &data);
    workspace.bytes("app/data.tar.zst", &zstd(&data));
    workspace
}

/// The config of the image layout `berth-out/<dir>`, as skopeo reads it.
fn config_of(workspace: &TestWorkspace, dir: &str) -> Value {
    let layout = format!("oci:{}", workspace.path(&format!("berth-out/{dir}")).display());
    serde_json::from_str(&run("skopeo", &["inspect", "--config", &layout])).unwrap()
}

/// The manifest of the image layout `berth-out/<dir>`, as skopeo reads it.
fn manifest_of(workspace: &TestWorkspace, dir: &str) -> Value {
    let layout = format!("oci:{}", workspace.path(&format!("berth-out/{dir}")).display());
    serde_json::from_str(&run("skopeo", &["inspect", "--raw", &layout])).unwrap()
}

/// The layout `berth-out/<dir>` unpacked by umoci (after skopeo tags a
/// copy: umoci names images by tag, and an untagged target's layout has
/// none); the rootfs is `<returned dir>/bundle/rootfs`.
fn unpacked(workspace: &TestWorkspace, dir: &str) -> tempfile::TempDir {
    let unpacked = tempfile::tempdir().unwrap();
    let plain = workspace.path(&format!("berth-out/{dir}")).display().to_string();
    let tagged = unpacked.path().join("tagged").display().to_string();
    run("skopeo", &["copy", &format!("oci:{plain}"), &format!("oci:{tagged}:latest")]);
    let bundle = unpacked.path().join("bundle").display().to_string();
    run("umoci", &["unpack", "--rootless", "--image", &format!("{tagged}:latest"), &bundle]);
    unpacked
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap_or(&Vec::new()).iter().map(|item| item.as_str().unwrap().to_owned()).collect()
}

#[test]
fn pants_build_files_build_unchanged() {
    if skip(&[Need::Busybox, Need::Skopeo, Need::Umoci]) {
        return;
    }
    let workspace = pants();
    let out = workspace.berth(&["build", "//..."]);
    out.success();
    let built: Vec<&str> = out.stdout.lines().filter_map(|line| line.split(' ').next()).collect();
    assert_eq!(built, ["//app:app", "//app:empty", "//app:sources"], "`manual` targets stay out of `//...`");

    let config = config_of(&workspace, "app/app");
    assert_eq!(strings(&config["config"]["Entrypoint"]), ["python3", "/app/main.py"], "`main` is `python_main`");
    assert_eq!(strings(&config["config"]["Env"]), ["APP_MODE=production"]);
    let unpacked = tempfile::tempdir().unwrap();
    let bundle = unpacked.path().join("bundle");
    // umoci names images by tag; the layout of an untagged target has none.
    let plain = workspace.path("berth-out/app/app").display().to_string();
    let tagged = unpacked.path().join("tagged").display().to_string();
    run("skopeo", &["copy", &format!("oci:{plain}"), &format!("oci:{tagged}:latest")]);
    let layout = format!("{tagged}:latest");
    run("umoci", &["unpack", "--rootless", "--image", &layout, &bundle.display().to_string()]);
    let greeting = std::fs::read_to_string(bundle.join("rootfs/app/greeting.txt")).unwrap();
    assert_eq!(greeting, "hello from a Pants BUILD file\n");
}

#[test]
fn pants_description_and_tags_show_in_query() {
    if skip(&[Need::Busybox]) {
        return;
    }
    let workspace = pants();
    let out = workspace.berth(&["query", "//app:app", "--output", "json"]);
    out.success();
    let items: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(items[0]["kind"], "oci_image_build");
    assert_eq!(items[0]["description"], "The Python application image");
    assert_eq!(strings(&items[0]["tags"]), ["release", "python"]);

    let out = workspace.berth(&["query", "attr(tags, manual, //...)"]);
    out.success();
    assert_eq!(out.stdout, "//app:stamp\n//app:stamped\n//base:busybox_layer\n//base:shell\n");
    // Query's `//...` includes them, as Bazel's does; a named target builds.
    assert!(workspace.berth(&["query", "//..."]).success().stdout.contains("//app:stamp\n"));
    let out = workspace.berth(&["build", "//base:shell"]);
    out.success();
    assert!(out.stdout.starts_with("//base:shell sha256:"), "{}", out.stdout);
}

#[test]
fn pants_build_step_runs_its_commands() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = crate::util::runc::serial();
    let workspace = pants();
    let out = workspace.berth(&["run", "//app:stamped"]);
    out.success();
    assert_eq!(out.stdout, "built by a Pants-style step\n");
}

#[test]
fn tabs_inside_brackets_parse_and_errors_keep_their_line_and_column() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD", "oci_layer(\n\tname = \"a\",\n\tcontents = {\n\t\t\"/a\": \"x\",\n\t},\n)\n");
    workspace.berth(&["build", "//app:a"]).success();

    // A syntax error after the tabs points at its own line and column.
    workspace.file("app/BUILD", "oci_layer(\n\tname = \"a\",\n\tcontents = {\"/a\": \"x\" +},\n)\n");
    let out = workspace.berth(&["build", "//app:a"]);
    out.failure(1);
    assert!(out.stderr.contains("app/BUILD:3:"), "{}", out.stderr);

    // Where Python refuses a tab (mixed into top-level indentation), berth
    // still says so.
    workspace.file("app/BUILD", "def f():\n\treturn 1\n");
    let out = workspace.berth(&["build", "//app:all"]);
    out.failure(1);
    assert!(out.stderr.contains("tabs are not allowed"), "{}", out.stderr);
}

#[test]
fn errors_name_the_rule_the_user_wrote() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD", "oci_python_image(\n    name = \"py\",\n    entry = [\"x\"],\n)\n");
    let out = workspace.berth(&["build", "//app:py"]);
    out.failure(1);
    assert!(out.stderr.contains("Unknown attribute `entry` of `oci_python_image` target `//app:py`"), "{}", out.stderr);
    assert!(out.stderr.contains("app/BUILD:1:1"), "{}", out.stderr);

    workspace.file("app/BUILD", "oci_python_image(name = \"py\", mian = \"x.py\")\n");
    let out = workspace.berth(&["build", "//app:py"]);
    out.failure(1);
    assert!(out.stderr.contains("hint: did you mean `main`?"), "{}", out.stderr);

    workspace.file("app/BUILD", "oci_image(name = \"img\", packages = 3)\n");
    let out = workspace.berth(&["build", "//app:img"]);
    out.failure(1);
    assert!(out.stderr.contains("(in `oci_image` target `//app:img`)"), "{}", out.stderr);
}

#[test]
fn pants_spellings_refuse_contradictions() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD", "oci_image_build(name = \"a\", base = [\":x\", \":y\"])\n");
    let out = workspace.berth(&["build", "//app:a"]);
    out.failure(1);
    assert!(out.stderr.contains("Attribute `base` names one image, not a list of 2"), "{}", out.stderr);

    workspace.file(
        "app/BUILD",
        "oci_build_layer(name = \"s\", base = \"//:empty\", command = [\"a\"], commands = [\"b\"], outputs = [\"/x\"])\n",
    );
    let out = workspace.berth(&["build", "//app:s"]);
    out.failure(1);
    assert!(out.stderr.contains("sets both `command` and `commands`"), "{}", out.stderr);

    workspace.file("app/BUILD", "oci_python_image(name = \"p\", main = \"a.py\", python_main = \"b.py\")\n");
    let out = workspace.berth(&["build", "//app:p"]);
    out.failure(1);
    assert!(out.stderr.contains("sets both `python_main` and `main`"), "{}", out.stderr);
}

#[test]
fn tags_are_target_tags_and_remote_tags_name_the_image() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD",
        "oci_image_build(name = \"a\", repository = \"example/a\", tags = [\"v9\"])\n\
         oci_image_build(name = \"b\", repository = \"example/b\", tag = \"1.0\", remote_tags = [\"latest\"])\n",
    );
    workspace.berth(&["build", "//app:all"]).success();
    let a = std::fs::read_to_string(workspace.path("berth-out/app/a/index.json")).unwrap();
    assert!(!a.contains("v9"), "target tags never become registry tags: {a}");
    let b = std::fs::read_to_string(workspace.path("berth-out/app/b/index.json")).unwrap();
    assert!(b.contains("\"org.opencontainers.image.ref.name\":\"1.0\""), "{b}");
}

#[test]
fn rules_oci_image_expands_env_reads_files_and_uses_tars() {
    if skip(&[Need::Busybox, Need::Skopeo]) {
        return;
    }
    let workspace = rules_oci();
    workspace.berth(&["build", "//app:image", "//app:zstd_layer", "//app:from_env_file"]).success();
    let config = config_of(&workspace, "app/image");
    assert_eq!(
        strings(&config["config"]["Env"]),
        [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            // `$ENV` names nothing: empty, as Docker and rules_oci expand it.
            "ENV2=/test:",
            "GREETING=hello",
            "MESSAGE=hello from rules_oci",
        ]
    );
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.title"], "app");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], "1.0");
    let manifest = manifest_of(&workspace, "app/image");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.source"], "https://example.invalid/app");
    let media_types: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|layer| layer["mediaType"].as_str().unwrap()).collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar",
        ],
        "the archives are the layers, as given"
    );
    // The layer blobs are the files' bytes.
    let app = std::fs::read(workspace.path("app/app.tar.gz")).unwrap();
    let digest = format!("sha256:{}", berth::cache::Digest::of(&app).hex());
    assert_eq!(manifest["layers"][1]["digest"], digest.as_str());
    // A zstd archive is a zstd layer; diff_ids are the uncompressed tars' digests.
    let manifest = manifest_of(&workspace, "app/zstd_layer");
    assert_eq!(manifest["layers"][1]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    let data = std::fs::read(workspace.path("app/data.tar")).unwrap();
    let config = config_of(&workspace, "app/zstd_layer");
    assert_eq!(config["rootfs"]["diff_ids"][1], format!("sha256:{}", berth::cache::Digest::of(&data).hex()).as_str());

    let config = config_of(&workspace, "app/from_env_file");
    assert_eq!(strings(&config["config"]["Env"]), ["PATH=/opt/bin:/usr/bin:/bin", "LANG=C.UTF-8"]);
}

#[test]
fn env_file_with_a_malformed_line_names_the_file_and_line() {
    let workspace = TestWorkspace::new();
    workspace
        .file("app/BUILD", "oci_image(name = \"img\", env = \"env.txt\")\n")
        .file("app/env.txt", "A=1\n# fine\nthis line has no equals sign\n");
    let out = workspace.berth(&["build", "//app:img"]);
    out.failure(1);
    assert!(out.stderr.contains("Line 3 is not `KEY=VALUE`"), "{}", out.stderr);
    assert!(out.stderr.contains("app/env.txt:3:1"), "{}", out.stderr);
    assert!(!workspace.path("berth-out/app/img").exists(), "nothing half-written");
}

#[test]
fn tar_layer_with_dotdot_is_refused() {
    let workspace = TestWorkspace::new();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(4);
    // `append_data` refuses `..`; write the name into the header directly.
    header.as_old_mut().name[..12].copy_from_slice(b"../escape.tx");
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append(&header, &b"evil"[..]).unwrap();
    workspace
        .file("app/BUILD", "oci_image(name = \"img\", tars = [\"evil.tar\"])\n")
        .bytes("app/evil.tar", &tar.into_inner().unwrap());
    let out = workspace.berth(&["build", "//app:img"]);
    out.failure(1);
    assert!(out.stderr.contains("evil.tar"), "{}", out.stderr);
    assert!(out.stderr.contains("../escape.tx"), "{}", out.stderr);
    assert!(!workspace.path("berth-out/app/img").exists(), "nothing half-written");
    assert!(!workspace.path("escape.tx").exists() && !workspace.path("app/escape.tx").exists());
}

#[test]
fn rules_oci_push_target_pushes_with_berth_run() {
    if skip(&[Need::Busybox, Need::Registry, Need::Skopeo]) {
        return;
    }
    let registry = Registry::start();
    let workspace = rules_oci();
    let build = std::fs::read_to_string(workspace.path("app/BUILD")).unwrap();
    workspace.file("app/BUILD", &build.replace("localhost:5000", &registry.host()));
    workspace.file("WORKSPACE.star", &format!("registry(\"{}\", insecure = True)\n", registry.host()));
    let out = workspace.berth(&["run", "//app:push"]);
    out.success();
    let digest = out.stdout.trim();
    assert!(digest.starts_with("sha256:"), "{}", out.stdout);
    for tag in ["latest", "1.0"] {
        let reference = format!("docker://{}/rules_oci/app:{tag}", registry.host());
        let raw = run("skopeo", &["inspect", "--tls-verify=false", "--raw", &reference]);
        assert_eq!(format!("sha256:{}", berth::cache::Digest::of(raw.as_bytes()).hex()), digest, "{tag}");
    }
    // `berth push` of the same target pushes the same manifest.
    let out = workspace.berth(&["push", "//app:push"]);
    out.success();
    assert_eq!(out.stdout.trim(), digest);
}

#[test]
fn rules_oci_load_target_loads_into_docker() {
    if skip(&[Need::Busybox, Need::Docker]) {
        return;
    }
    let workspace = rules_oci();
    let out = workspace.berth(&["run", "//app:load"]);
    out.success();
    let output = run("docker", &["run", "--rm", "berth-rules-oci-app:latest"]);
    let _ = std::process::Command::new("docker").args(["rmi", "-f", "berth-rules-oci-app:latest"]).output();
    assert_eq!(output, "hello from rules_oci; PATH=/usr/local/bin:/usr/bin:/bin; ENV2=/test:\n");
}

/// The vinci workspace with the busybox archive its BUILD file names.
fn vinci() -> TestWorkspace {
    let workspace = peer("vinci");
    workspace.bytes("hello/busybox.tar", &busybox_tar());
    workspace
}

#[test]
fn vinci_combined_spec_is_one_layer_with_later_entries_winning() {
    if skip(&[Need::Busybox, Need::Skopeo, Need::Umoci]) {
        return;
    }
    let workspace = vinci();
    let out = workspace.berth(&["build", "//hello:hello", "//hello:text_only"]);
    out.success();
    let manifest = manifest_of(&workspace, "hello/hello");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "one layer from four sources");

    let unpacked = tempfile::tempdir().unwrap();
    let plain = workspace.path("berth-out/hello/hello").display().to_string();
    let tagged = unpacked.path().join("tagged").display().to_string();
    run("skopeo", &["copy", &format!("oci:{plain}"), &format!("oci:{tagged}:latest")]);
    let bundle = unpacked.path().join("bundle");
    run("umoci", &["unpack", "--rootless", "--image", &format!("{tagged}:latest"), &bundle.display().to_string()]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello/message.txt")).unwrap(),
        "Hello from vinci's combined spec!\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rootfs.join("hello/hello.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(rootfs.join("bin/busybox").is_file());

    // Reproducible: the same layer from another checkout.
    let again = vinci();
    let second = again.berth(&["build", "//hello:hello", "//hello:text_only"]);
    second.success();
    assert_eq!(out.stdout, second.stdout);
}

#[test]
fn vinci_hello_world_runs() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = crate::util::runc::serial();
    let workspace = vinci();
    let out = workspace.berth(&["run", "//hello:hello"]);
    out.success();
    assert_eq!(out.stdout, "Hello from vinci's combined spec!\n");
}

/// A blob of the layout `berth-out/<dir>`, parsed.
fn layout_blob(workspace: &TestWorkspace, dir: &str, digest: &Value) -> Value {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    let path = workspace.path(&format!("berth-out/{dir}/blobs/sha256/{hex}"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The manifest or index `berth-out/<dir>/index.json` points at.
fn layout_root(workspace: &TestWorkspace, dir: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(workspace.path(&format!("berth-out/{dir}/index.json"))).unwrap())
            .unwrap();
    layout_blob(workspace, dir, &index["manifests"][0]["digest"])
}

#[test]
fn buildstream_images_take_platforms_os_fields_and_a_parent_by_index() {
    let workspace = peer("buildstream");
    workspace.berth(&["build", "//images:all"]).success();

    let index = layout_root(&workspace, "images/base");
    assert_eq!(index["annotations"]["org.example.index"], "base");
    let platforms: Vec<&Value> = index["manifests"].as_array().unwrap().iter().map(|m| &m["platform"]).collect();
    assert_eq!(platforms[0]["architecture"], "amd64");
    assert_eq!(platforms[0]["os.version"], "6.1");
    assert_eq!(platforms[0]["os.features"], serde_json::json!(["base"]));
    assert_eq!(platforms[1]["architecture"], "arm64");
    assert_eq!(platforms[1]["variant"], "v8");
    let arm64 = layout_blob(&workspace, "images/base", &index["manifests"][1]["digest"]);
    assert_eq!(arm64["annotations"]["org.example.image"], "arm64");

    let app = layout_root(&workspace, "images/app");
    let config = layout_blob(&workspace, "images/app", &app["config"]["digest"]);
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("arm64")));
    assert_eq!(config["variant"], "v8");
    assert_eq!(app["layers"].as_array().unwrap().len(), 3, "the parent's two layers and its own");
    assert_eq!(app["layers"][0], arm64["layers"][0]);
    // Picked by platform instead: the same config.
    let by_platform = layout_root(&workspace, "images/app_by_platform");
    assert_eq!(by_platform["config"], app["config"]);

    let amd64 = layout_blob(&workspace, "images/base", &index["manifests"][0]["digest"]);
    let config = layout_blob(&workspace, "images/base", &amd64["config"]["digest"]);
    assert_eq!(config["os.version"], "6.1");
    assert_eq!(config["os.features"], serde_json::json!(["base"]));
}

#[test]
fn platform_on_the_empty_base_sets_the_image_platform() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD", "oci_image_build(name = \"arm\", platform = \"linux/arm64/v8\")\n");
    workspace.berth(&["build", "//app:arm"]).success();
    let manifest = layout_root(&workspace, "app/arm");
    let config = layout_blob(&workspace, "app/arm", &manifest["config"]["digest"]);
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
}

#[test]
fn a_platform_that_contradicts_the_base_is_refused() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD",
        "oci_image_build(name = \"amd\", architecture = \"amd64\")\n\
         oci_image_build(name = \"arm\", base = \":amd\", platform = \"linux/arm64\")\n",
    );
    let out = workspace.berth(&["build", "//app:arm"]);
    out.failure(1);
    assert!(
        out.stderr.contains("`linux/arm64` contradicts the base `//app:amd`, which is `linux/amd64`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("app/BUILD:2:1"), "{}", out.stderr);

    workspace
        .file("app/BUILD", "oci_image_build(name = \"x\", platform = \"linux/arm64\", architecture = \"amd64\")\n");
    let out = workspace.berth(&["build", "//app:x"]);
    out.failure(1);
    assert!(out.stderr.contains("`linux/arm64` contradicts `architecture = \"amd64\"`"), "{}", out.stderr);

    workspace.file(
        "app/BUILD",
        "oci_image_build(name = \"a\", architecture = \"amd64\")\n\
         oci_image_index(name = \"i\", images = [\":a\"])\n\
         oci_image_build(name = \"b\", base = \":i\", platform = \"linux/s390x\")\n\
         oci_image_build(name = \"c\", base = \":i\", base_index = 3)\n\
         oci_image_build(name = \"d\", base = \":i\")\n",
    );
    let out = workspace.berth(&["build", "//app:b"]);
    out.failure(1);
    assert!(out.stderr.contains("the index `//app:i` has no image for `linux/s390x`"), "{}", out.stderr);
    let out = workspace.berth(&["build", "//app:c"]);
    out.failure(1);
    assert!(out.stderr.contains("`3` is not an image of `//app:i`, which has 1"), "{}", out.stderr);
    let out = workspace.berth(&["build", "//app:d"]);
    out.failure(1);
    assert!(out.stderr.contains("`base_index = N`"), "{}", out.stderr);
}

#[test]
fn vinci_import_reads_layouts_and_archives_as_bases() {
    if skip(&[Need::Busybox]) {
        return;
    }
    // The sources to import: the rules_oci base image, as berth writes it.
    let source = rules_oci();
    source.berth(&["build", "//app:base"]).success();
    let oci_tar = source.path("image.oci.tar").display().to_string();
    let docker_tar = source.path("image.docker.tar").display().to_string();
    source.berth(&["export", "//app:base", "--format", "oci-archive", "-o", &oci_tar]).success();
    source.berth(&["export", "//app:base", "--format", "docker-archive", "-o", &docker_tar]).success();
    let indexes = peer("buildstream");
    indexes.berth(&["build", "//images:base"]).success();

    let workspace = vinci();
    copy_tree(&source.path("berth-out/app/base"), &workspace.path("imported/layout"));
    std::fs::copy(&oci_tar, workspace.path("imported/image.oci.tar")).unwrap();
    std::fs::copy(&docker_tar, workspace.path("imported/image.docker.tar")).unwrap();
    copy_tree(&indexes.path("berth-out/images/base"), &workspace.path("imported/index"));
    let out = workspace.berth(&["build", "//imported:all"]);
    out.success();

    let base = layout_root(&source, "app/base");
    for name in ["hello_from_layout", "hello_from_oci_archive", "hello_from_docker_archive"] {
        let dir = format!("imported/{name}");
        let manifest = layout_root(&workspace, &dir);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2, "{name}");
        assert_eq!(
            manifest["layers"][0]["digest"], base["layers"][0]["digest"],
            "{name}: the imported layer as it was"
        );
        let config = layout_blob(&workspace, &dir, &manifest["config"]["digest"]);
        assert_eq!(config["config"]["Env"], serde_json::json!(["PATH=/usr/bin:/bin"]), "{name}");
    }
    let second = layout_root(&workspace, "imported/on_second");
    let config = layout_blob(&workspace, "imported/on_second", &second["config"]["digest"]);
    assert_eq!(config["architecture"], "arm64");

    if !skip(CONTAINER) {
        let _serial = crate::util::runc::serial();
        let out = workspace.berth(&["run", "//imported:hello_from_docker_archive"]);
        out.success();
        assert_eq!(out.stdout, "Hello from an imported base!\n");
    }
}

#[test]
fn an_import_whose_blob_does_not_match_its_digest_is_refused() {
    let source = TestWorkspace::new();
    source.file(
        "app/BUILD",
        "oci_layer(name = \"l\", contents = {\"/a\": \"a\"})\noci_image_build(name = \"img\", layers = [\":l\"])\n",
    );
    source.berth(&["build", "//app:img"]).success();
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD", "oci_import(name = \"img\", src = \"layout\")\n");
    copy_tree(&source.path("berth-out/app/img"), &workspace.path("app/layout"));
    // Corrupt the layer blob (keeping its size).
    let index: Value =
        serde_json::from_slice(&std::fs::read(workspace.path("app/layout/index.json")).unwrap()).unwrap();
    let hex = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(workspace.path(&format!("app/layout/blobs/sha256/{hex}"))).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let path = workspace.path(&format!("app/layout/blobs/sha256/{layer}"));
    let mut bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let out = workspace.berth(&["build", "//app:img"]);
    out.failure(1);
    assert!(out.stderr.contains("`app/layout` is not an image berth can import"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("blob `blobs/sha256/{layer}` has digest")), "{}", out.stderr);

    workspace.file("app/BUILD", "oci_import(name = \"img\", src = \"missing.tar\")\n");
    let out = workspace.berth(&["build", "//app:img"]);
    out.failure(1);
    assert!(out.stderr.contains("`app/missing.tar` does not exist"), "{}", out.stderr);
}

/// The Concourse workspace with the layer archives its BUILD file names.
fn concourse() -> TestWorkspace {
    let workspace = peer("concourse");
    workspace.bytes("task/busybox.tar", &busybox_tar());
    workspace.bytes("task/no-group.tar", &TarBuilder::default().file("etc/.wh.group", 0o644, b"").finish());
    workspace
}

#[test]
fn concourse_export_rootfs_writes_rootfs_and_metadata() {
    if skip(&[Need::Busybox]) {
        return;
    }
    let workspace = concourse();
    let out_dir = workspace.path("out");
    let out = workspace.berth(&["export", "//task:task", "--format", "rootfs", "-o", &out_dir.display().to_string()]);
    out.success();
    let rootfs = out_dir.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(rootfs.join("etc/passwd").is_file());
    assert!(!rootfs.join("etc/group").exists(), "the whiteout of a later layer deletes it");
    assert!(!rootfs.join("etc/.wh.group").exists(), "no whiteout marker is left behind");
    assert_eq!(std::fs::read_to_string(rootfs.join("task/run.sh")).unwrap(), "#!/bin/sh\necho \"task as $(id -u)\"\n");
    let metadata: Value = serde_json::from_slice(&std::fs::read(out_dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata, serde_json::json!({"env": ["PATH=/bin", "TASK=unit"], "user": "65534"}));
    let entries: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries.len(), 2, "{entries:?}");

    // An existing, non-empty directory is refused and left alone.
    let out = workspace.berth(&["export", "//task:task", "--format", "rootfs", "-o", &out_dir.display().to_string()]);
    out.failure(1);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert!(rootfs.join("bin/busybox").is_file());
    let leftovers = std::fs::read_dir(workspace.root())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().starts_with(".berth-export-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn pants_plugin_field_shapes_are_accepted() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD",
        "oci_layer(name = \"start\", packages = [\"start.sh\"], mode = \"0755\")\n\
         oci_image_build(name = \"image\", layers = [\":start\"], entrypoint = \"/start.sh\", args = [\"--now\"])\n\
         oci_build_layer(name = \"step\", base = \":image\", commands = \"echo hi > /x\", outputs = [\"/x\"])\n",
    );
    workspace.file("app/start.sh", "#!/bin/sh\necho started \"$@\"\n");
    let out = workspace.berth(&["build", "//app:image"]);
    out.success();
    let manifest = layout_root(&workspace, "app/image");
    let config = layout_blob(&workspace, "app/image", &manifest["config"]["digest"]);
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/start.sh"]));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["--now"]));
    let out = workspace.berth(&["query", "deps(//app:step)", "--output", "json"]);
    out.success();

    workspace.file("app/BUILD", "oci_image_build(name = \"image\", terminal = True)\n");
    let out = workspace.berth(&["build", "//app:image"]);
    out.failure(1);
    assert!(out.stderr.contains("`terminal` (Pants) of `image` is not needed"), "{}", out.stderr);

    workspace.file(
        "app/BUILD",
        "oci_pull_image(name = \"p\", repository = \"127.0.0.1:1/x\", digest = \"sha256:\" + \"a\" * 64, os = \"linux\")\n",
    );
    let out = workspace.berth(&["query", "//app:p"]);
    out.failure(1);
    assert!(out.stderr.contains("sets `os` without `architecture`"), "{}", out.stderr);
}

#[test]
fn rules_oci_attributes_berth_refuses_say_why() {
    let workspace = TestWorkspace::new();
    let digest = "sha256:".to_owned() + &"a".repeat(64);
    for (build, expected) in [
        (
            format!("oci_pull(name = \"p\", image = \"127.0.0.1:1/x\", digest = \"{digest}\", platforms = [\"linux/amd64\", \"linux/arm64\"])\n"),
            "berth pulls one platform per target",
        ),
        ("oci_pull(name = \"p\", image = \"127.0.0.1:1/x\", tag = \"1.0\")\n".to_owned(), "berth pulls by digest only"),
        ("oci_image(name = \"i\", created = \"2024-01-01\")\n".to_owned(), "Unknown attribute `created` of `oci_image`"),
        (
            "oci_image(name = \"i\")\noci_load(name = \"l\", image = \":i\", format = \"oci\")\n".to_owned(),
            "Unknown attribute `format` of `oci_load`",
        ),
    ] {
        workspace.file("app/BUILD", &build);
        let out = workspace.berth(&["query", "//app:all"]);
        out.failure(1);
        assert!(out.stderr.contains(expected), "{build}: {}", out.stderr);
    }
    // One platform is the pull's `platform`.
    workspace.file(
        "app/BUILD",
        &format!(
            "oci_pull(name = \"p\", image = \"127.0.0.1:1/x\", digest = \"{digest}\", platforms = [\"linux/arm64\"])\n"
        ),
    );
    workspace.berth(&["query", "//app:all"]).success();
}

#[test]
fn buildstream_docker_mode_writes_one_image_per_platform() {
    let workspace = peer("buildstream");
    let archive = workspace.path("base.tar").display().to_string();
    workspace.berth(&["export", "//images:base", "--format", "docker-archive", "-o", &archive]).success();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let mut manifest = None;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            manifest = Some(text);
        }
    }
    let manifest: Value = serde_json::from_str(&manifest.expect("a manifest.json")).unwrap();
    let entries = manifest.as_array().unwrap();
    assert_eq!(entries.len(), 2, "one entry per image of the index");
    // The names go to the host's image (amd64 here), the other is loaded by id.
    let host_is_amd64 = std::env::consts::ARCH == "x86_64";
    let named: Vec<usize> = (0..2).filter(|i| !entries[*i]["RepoTags"].as_array().unwrap().is_empty()).collect();
    assert_eq!(named, [if host_is_amd64 { 0 } else { 1 }]);
    assert_ne!(entries[0]["Config"], entries[1]["Config"]);

    if !skip(&[Need::Docker]) {
        run("docker", &["load", "-i", &archive]);
        let _ = std::process::Command::new("docker").args(["rmi", "-f", "images/base:latest"]).output();
    }
}

/// The vinci workspace with the pinned busybox-static `.deb` in `//debs`;
/// `None` (after a SKIP) without the fetched `.deb` files or the tools.
fn vinci_with_deb() -> Option<TestWorkspace> {
    if skip(&[Need::Debs, Need::Skopeo, Need::Umoci]) {
        return None;
    }
    let workspace = vinci();
    let deb = "busybox-static_1.35.0-4+deb12u1+b1_amd64.deb";
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("third_party/debs").join(deb);
    // Copied, not linked: a new link changes the inode's ctime.
    std::fs::copy(source, workspace.path(&format!("debs/{deb}"))).unwrap();
    Some(workspace)
}

#[test]
fn a_deb_layer_merges_into_one_layer_with_later_entries_winning() {
    let Some(workspace) = vinci_with_deb() else { return };
    let targets = ["//debs:hello_image", "//debs:package_last_image"];
    let out = workspace.berth(&["build", targets[0], targets[1]]);
    out.success();
    for dir in ["debs/hello_image", "debs/package_last_image"] {
        assert_eq!(manifest_of(&workspace, dir)["layers"].as_array().unwrap().len(), 1, "{dir}: one layer");
    }

    // The package first, the file spec last: the file spec's copyright.
    let hello = unpacked(&workspace, "debs/hello_image");
    let rootfs = hello.path().join("bundle/rootfs");
    let copyright = "usr/share/doc/busybox-static/copyright";
    use std::os::unix::fs::PermissionsExt;
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert!(busybox.len() > 1_000_000, "the .deb's busybox: {} bytes", busybox.len());
    assert_eq!(busybox.permissions().mode() & 0o777, 0o755);
    assert!(rootfs.join("usr/share/doc/busybox-static/examples/mdev.conf").is_file(), "the rest of the .deb");
    assert_eq!(std::fs::read_to_string(rootfs.join(copyright)).unwrap(), "replaced by a later entry\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello/message.txt")).unwrap(),
        "Hello from a .deb and a file spec!\n"
    );
    assert_eq!(std::fs::read_link(rootfs.join("bin/cat")).unwrap(), Path::new("busybox"));

    // The other order: the package's own copyright.
    let package_last = unpacked(&workspace, "debs/package_last_image");
    let rootfs = package_last.path().join("bundle/rootfs");
    let copyright = std::fs::read_to_string(rootfs.join(copyright)).unwrap();
    assert!(copyright.contains("Debian"), "{copyright}");
    assert!(rootfs.join("hello/message.txt").is_file());

    // Reproducible: the same digests from another checkout.
    let again = vinci_with_deb().expect("the first one found the .deb");
    let second = again.berth(&["build", targets[0], targets[1]]);
    second.success();
    assert_eq!(out.stdout, second.stdout);

    if !skip(CONTAINER) {
        let _serial = crate::util::runc::serial();
        let run = workspace.berth(&["run", targets[0]]);
        run.success();
        assert_eq!(run.stdout, "Hello from a .deb and a file spec!\n");
    }
}

/// The BuildStream workspace with `//images:base` pushed to `registry`
/// and `//pulled` pinned to it; returns the pushed index digest.
fn buildstream_with_pushed_base(registry: &Registry) -> (TestWorkspace, String) {
    let workspace = peer("buildstream");
    let host = registry.host();
    workspace.file(
        "WORKSPACE.star",
        &format!("workspace(name = \"buildstream_peer\")\nregistry(\"{host}\", insecure = True)\n"),
    );
    let repository = format!("{host}/buildstream/base");
    let push = workspace.berth(&["push", "//images:base", "--repository", &repository, "--tag", "v1"]);
    push.success();
    let digest = push.stdout.trim().to_owned();
    let build = std::fs::read_to_string(workspace.path("pulled/BUILD.star")).unwrap();
    let pinned =
        build.lines().find_map(|line| line.trim().strip_prefix("digest = \"")).unwrap().trim_end_matches("\",");
    assert_eq!(
        pinned, digest,
        "berth's index is reproducible: update the digest pinned in tests/migration/buildstream/pulled/BUILD.star"
    );
    workspace.file("pulled/BUILD.star", &build.replace("localhost:5000", &host));
    (workspace, digest)
}

#[test]
fn buildstream_parent_by_index_from_a_pulled_index() {
    if skip(&[Need::Registry, Need::Skopeo, Need::Umoci]) {
        return;
    }
    let registry = Registry::start();
    let (mut workspace, digest) = buildstream_with_pushed_base(&registry);
    let reference = format!("docker://{}/buildstream/base@{digest}", registry.host());
    let index: Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--tls-verify=false", "--raw", &reference])).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let entry = |position: usize| -> Value {
        let reference =
            format!("docker://{}/buildstream/base@{}", registry.host(), entries[position]["digest"].as_str().unwrap());
        serde_json::from_str(&run("skopeo", &["inspect", "--tls-verify=false", "--raw", &reference])).unwrap()
    };
    let (amd64, arm64) = (entry(0), entry(1));

    // A cache of its own: nothing but what the pulls fetch.
    workspace.env("BERTH_CACHE_DIR", workspace.path(".fresh-cache").to_str().unwrap());
    let in_cache = |digest: &Value| {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        workspace.path(&format!(".fresh-cache/cas/sha256/{hex}")).is_file()
    };
    workspace.berth(&["build", "//pulled:app", "//pulled:app_by_platform"]).success();

    let app = manifest_of(&workspace, "pulled/app");
    let config = config_of(&workspace, "pulled/app");
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("arm64")));
    assert_eq!(config["variant"], "v8");
    let layers = app["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "the parent's two layers and its own");
    assert_eq!(layers[..2], arm64["layers"].as_array().unwrap()[..], "the second image's layers, as pushed");
    assert_eq!(
        manifest_of(&workspace, "pulled/app_by_platform")["config"],
        app["config"],
        "picked by platform: the same"
    );
    // The picked image's manifest and config were fetched; no layer was.
    assert!(in_cache(&entries[1]["digest"]) && in_cache(&arm64["config"]["digest"]));
    for layer in amd64["layers"].as_array().unwrap().iter().chain(arm64["layers"].as_array().unwrap()) {
        assert!(!in_cache(&layer["digest"]), "layer {} fetched by a build", layer["digest"]);
    }

    // Exporting needs every byte of the picked image, and only of it.
    let archive = workspace.path("app.oci.tar").display().to_string();
    workspace.berth(&["export", "//pulled:app", "--format", "oci-archive", "-o", &archive]).success();
    for layer in arm64["layers"].as_array().unwrap() {
        assert!(in_cache(&layer["digest"]), "layer {} of the picked image", layer["digest"]);
    }
    let amd64_only = &amd64["layers"].as_array().unwrap()[1];
    assert_ne!(amd64_only["digest"], arm64["layers"][1]["digest"]);
    assert!(!in_cache(&amd64_only["digest"]), "a layer of the image not picked was fetched");
    let unpacked = tempfile::tempdir().unwrap();
    let tagged = unpacked.path().join("tagged").display().to_string();
    run("skopeo", &["copy", &format!("oci-archive:{archive}"), &format!("oci:{tagged}:latest")]);
    let bundle = unpacked.path().join("bundle");
    run("umoci", &["unpack", "--rootless", "--image", &format!("{tagged}:latest"), &bundle.display().to_string()]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/image-arch")).unwrap(), "arm64\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(), "ID=buildstream-peer\n");
    assert!(rootfs.join("app/README").is_file());

    // `image: 0` keeps the first image's `os.version` and `os.features`.
    workspace.berth(&["build", "//pulled:app_on_first"]).success();
    let config = config_of(&workspace, "pulled/app_on_first");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os.version"], "6.1");
    assert_eq!(manifest_of(&workspace, "pulled/app_on_first")["layers"][1], amd64["layers"][1]);
}

#[test]
fn base_index_on_a_pulled_base_is_refused_where_it_picks_nothing() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let (workspace, digest) = buildstream_with_pushed_base(&registry);
    let repository = format!("{}/buildstream/base", registry.host());
    workspace.berth(&["build", "//images:base"]).success();
    let arm64 = layout_root(&workspace, "images/base")["manifests"][1]["digest"].as_str().unwrap().to_owned();
    workspace.file(
        "bad/BUILD.star",
        &format!(
            "oci_pull_image(name = \"index\", repository = \"{repository}\", digest = \"{digest}\")\n\
             oci_pull_image(name = \"arm\", repository = \"{repository}\", digest = \"{digest}\", platform = \"linux/arm64\")\n\
             oci_image_build(name = \"out_of_range\", base = \":index\", base_index = 2)\n\
             oci_image_build(name = \"contradiction\", base = \":index\", base_index = 1, platform = \"linux/amd64\")\n\
             oci_image_build(name = \"on_a_pick\", base = \":arm\", base_index = 0)\n\
             oci_image_build(name = \"no_such_platform\", base = \":index\", platform = \"linux/s390x\")\n\
             oci_pull_image(name = \"single\", repository = \"{repository}\", digest = \"{arm64}\")\n\
             oci_image_build(name = \"on_an_image\", base = \":single\", base_index = 0)\n"
        ),
    );
    let fails = |target: &str, needle: &str, line: u32| {
        let out = workspace.berth(&["build", target]);
        out.failure(1);
        assert!(out.stderr.contains(needle), "{target}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("bad/BUILD.star:{line}:1")), "{target}: {}", out.stderr);
        assert!(!workspace.path(&format!("berth-out/bad/{}", &target[6..])).exists(), "nothing half-written");
    };
    fails("//bad:out_of_range", "`2` is not an image of `//bad:index`, which has 2", 3);
    fails(
        "//bad:contradiction",
        "`linux/amd64` contradicts `base_index = 1`, which picks `linux/arm64/v8` of `//bad:index`",
        4,
    );
    fails("//bad:on_a_pick", "`base` `//bad:arm` is the image its `platform = \"linux/arm64\"` picks, not an index", 5);
    fails("//bad:no_such_platform", "the index `//bad:index` has no image for `linux/s390x`", 6);
    fails("//bad:on_an_image", "`base` `//bad:single` is an image, not an index", 8);
}
