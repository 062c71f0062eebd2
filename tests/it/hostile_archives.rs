//! Hostile layer archives through the whole CLI path: each is pushed as the
//! top layer of an image to a real registry on 127.0.0.1, pinned with
//! `oci_pull_image`, and used as the base of an `oci_build_layer` step, so
//! berth pulls it, fetches the layer, extracts it and (if it was accepted)
//! runs the step in it. Every archive is refused (exit 1, a clear error) or
//! contained (the step runs); a canary directory that the archives aim at
//! stays untouched, and nothing appears next to the layer store's entries.
//!
//! The set is generated: every escape, link, device, whiteout, PAX and GNU
//! extension and size case below, each as plain tar, gzip and zstd, plus
//! combinations of two cases in one archive.

use std::fs;
use std::path::Path;

use berth::cache::{BlobRef, Cas, Digest};
use berth::registry::{BlobSources, Client, ClientOptions, ImageRef, PushRequest};
use berth::workspace::RegistrySetting;

use crate::util::images::{temp_cas, OCI_CONFIG, OCI_MANIFEST};
use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::runc::{busybox_tar, gzip, serial, zstd};
use crate::util::workspace::TestWorkspace;

/// Tar entries written header by header (names the tar crate refuses).
#[derive(Default, Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn entry(mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], size: Option<u64>) -> Raw {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            let name = &name[..name.len().min(100)];
            gnu.name[..name.len()].copy_from_slice(name);
            let link = &link[..link.len().min(100)];
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size.unwrap_or(data.len() as u64));
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_cksum();
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        self.0.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Raw {
        self.entry(name.as_bytes(), b'0', b"", data, None)
    }

    fn dir(self, name: &str) -> Raw {
        self.entry(name.as_bytes(), b'5', b"", b"", None)
    }

    fn link(self, kind: u8, name: &str, target: &str) -> Raw {
        self.entry(name.as_bytes(), kind, target.as_bytes(), b"", None)
    }

    /// A PAX extended header (`x`) for the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Raw {
        let mut body = Vec::new();
        for (key, value) in records {
            let rest = format!(" {key}=").len() + value.len() + 1;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.entry(b"././@PaxHeader", b'x', b"", &body, None)
    }

    /// A GNU long name (`L`) or long link (`K`) for the next entry.
    fn gnu_long(self, kind: u8, value: &[u8]) -> Raw {
        let mut data = value.to_vec();
        data.push(0);
        self.entry(b"././@LongLink", kind, b"", &data, None)
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

/// One hostile case: a name and its entries (given the canary's path).
type Case = (&'static str, fn(&str) -> Raw);

fn cases() -> Vec<Case> {
    vec![
        ("dotdot_file", |_| Raw::default().file("../escaped", b"x")),
        ("dotdot_deep", |_| Raw::default().file("../../../../../../escaped", b"x")),
        ("dotdot_inside", |_| Raw::default().file("a/../../escaped", b"x")),
        ("dot_slash_dotdot", |_| Raw::default().file("./../escaped", b"x")),
        ("absolute_into_canary", |canary| Raw::default().file(&format!("{canary}/pwned"), b"x")),
        ("absolute_etc", |_| Raw::default().file("/etc/berth-hostile", b"x")),
        ("dotdot_dir", |_| Raw::default().dir("../escaped-dir")),
        ("symlink_to_canary_then_write", |canary| Raw::default().link(b'2', "l", canary).file("l/pwned", b"x")),
        ("symlink_to_root_then_write", |_| Raw::default().link(b'2', "r", "/").file("r/tmp/berth-hostile", b"x")),
        ("symlink_dotdot_then_write", |_| Raw::default().link(b'2', "up", "../../..").file("up/pwned", b"x")),
        ("symlink_chain_then_write", |canary| {
            Raw::default().link(b'2', "a", "b").link(b'2', "b", canary).file("a/pwned", b"x")
        }),
        ("symlink_dir_replaced_then_write", |canary| {
            Raw::default().dir("d").link(b'2', "d", canary).file("d/pwned", b"x")
        }),
        ("symlink_then_dir_through", |canary| Raw::default().link(b'2', "l", canary).dir("l/sub")),
        ("hardlink_to_canary", |canary| Raw::default().link(b'1', "h", &format!("{canary}/file"))),
        ("hardlink_dotdot", |_| Raw::default().link(b'1', "h", "../../../etc/passwd")),
        ("hardlink_missing", |_| Raw::default().link(b'1', "h", "nothing-here")),
        ("hardlink_through_symlink", |canary| Raw::default().link(b'2', "l", canary).link(b'1', "h", "l/file")),
        ("hardlink_to_dir", |_| Raw::default().dir("d").link(b'1', "h", "d")),
        ("hardlink_then_write", |canary| {
            Raw::default().link(b'2', "l", &format!("{canary}/file")).link(b'1', "h", "l").file("h", b"overwrite")
        }),
        ("char_device", |_| Raw::default().entry(b"dev/evil", b'3', b"", b"", None)),
        ("block_device", |_| Raw::default().entry(b"dev/sda-evil", b'4', b"", b"", None)),
        ("fifo", |_| Raw::default().entry(b"fifo", b'6', b"", b"", None)),
        ("whiteout_dotdot", |_| Raw::default().file("../.wh.escaped", b"")),
        ("whiteout_of_parent", |_| Raw::default().file("a/.wh...", b"")),
        ("whiteout_empty_name", |_| Raw::default().file("a/.wh.", b"")),
        ("opaque_at_root", |_| Raw::default().file(".wh..wh..opq", b"")),
        ("whiteout_through_symlink", |canary| Raw::default().link(b'2', "l", canary).file("l/.wh.file", b"")),
        ("pax_path_dotdot", |_| Raw::default().pax(&[("path", b"../escaped")]).file("innocent", b"x")),
        ("pax_path_absolute_canary", |canary| {
            Raw::default().pax(&[("path", format!("{canary}/pwned").as_bytes())]).file("innocent", b"x")
        }),
        ("pax_linkpath_canary", |canary| {
            Raw::default().pax(&[("linkpath", canary.as_bytes())]).link(b'2', "l", "x").file("l/pwned", b"x")
        }),
        ("pax_size_lie", |_| Raw::default().pax(&[("size", b"99999999999")]).file("f", b"x")),
        ("pax_trusted_xattr", |_| Raw::default().pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]).dir("forged")),
        ("pax_huge_record", |_| Raw::default().pax(&[("comment", &[b'a'; 2 << 20])]).file("f", b"x")),
        ("pax_malformed", |_| Raw::default().entry(b"././@PaxHeader", b'x', b"", b"garbage without length\n", None)),
        ("gnu_longname_dotdot", |_| Raw::default().gnu_long(b'L', b"../escaped-long").file("short", b"x")),
        ("gnu_longname_huge", |_| Raw::default().gnu_long(b'L', &[b'a'; 8192]).file("short", b"x")),
        ("gnu_longlink_canary", |canary| {
            Raw::default().gnu_long(b'K', canary.as_bytes()).link(b'2', "l", "x").file("l/pwned", b"x")
        }),
        ("size_larger_than_data", |_| Raw::default().entry(b"f", b'0', b"", b"short", Some(1 << 20))),
        ("size_huge_claim", |_| Raw::default().entry(b"f", b'0', b"", b"", Some(1 << 40))),
        ("name_with_nul", |_| Raw::default().entry(b"a\0../../escaped", b'0', b"", b"x", None)),
        ("name_too_long_path", |_| Raw::default().file(&"d/".repeat(2100), b"x")),
        ("many_empty_entries", |_| (0..3000).fold(Raw::default(), |raw, i| raw.file(&format!("f{i}"), b""))),
        ("unknown_type", |_| Raw::default().entry(b"weird", b'Z', b"", b"x", None)),
        ("file_over_dir", |_| Raw::default().dir("etc").file("etc", b"x")),
        ("dir_over_symlink_to_canary", |canary| Raw::default().link(b'2', "bin", canary).dir("bin")),
    ]
}

/// Pushes an image of the busybox layer and `hostile` (a layer blob) and
/// returns its manifest digest.
fn push(client: &Client, cas: &Cas, repository: &str, busybox: BlobRef, hostile: &[u8], diff_ids: &[String]) -> String {
    let layer = cas.put_bytes(hostile).unwrap();
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = cas.put_bytes(config.to_string().as_bytes()).unwrap();
    let descriptor = |media: &str, blob: BlobRef| serde_json::json!({"mediaType": media, "digest": blob.digest.to_string(), "size": blob.size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [
            descriptor("application/vnd.oci.image.layer.v1.tar", busybox),
            descriptor("application/vnd.oci.image.layer.v1.tar", layer),
        ],
    });
    let manifest = cas.put_bytes(manifest.to_string().as_bytes()).unwrap();
    let request = PushRequest {
        root: manifest,
        media_type: OCI_MANIFEST.to_owned(),
        destination: ImageRef::parse(repository).unwrap(),
        tags: Vec::new(),
        sources: BlobSources::new(),
    };
    client.push(cas, &request).unwrap();
    manifest.digest.to_string()
}

/// Everything under `dir`, as relative paths (a snapshot of the canary).
fn listing(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        found.push(format!("{} {:?}", path.display(), fs::symlink_metadata(&path).unwrap().len()));
        if entry.file_type().unwrap().is_dir() {
            found.extend(listing(&path));
        }
    }
    found.sort();
    found
}

#[test]
fn hostile_archives_through_pull_extract_and_step_are_refused_or_contained() {
    if skip(&[Need::Registry, Need::Root, Need::Runc, Need::Busybox]) {
        return;
    }
    let _serial = serial();
    let registry = Registry::start();
    let host = registry.host();
    let canary = tempfile::tempdir().unwrap();
    fs::write(canary.path().join("file"), b"canary").unwrap();
    let canary_before = listing(canary.path());
    let canary_path = canary.path().display().to_string();

    let (_cache, cas) = temp_cas();
    let client = Client::new(ClientOptions {
        registries: vec![RegistrySetting { host: host.clone(), insecure: true, ..RegistrySetting::default() }],
        ..ClientOptions::default()
    })
    .unwrap();
    let busybox_tar = busybox_tar();
    let busybox = cas.put_bytes(&busybox_tar).unwrap();
    let busybox_diff = Digest::of(&busybox_tar).to_string();

    // Every case alone and followed by the next one, as plain tar, gzip and
    // zstd; each followed by the one after that, as plain tar.
    let cases = cases();
    let mut layers: Vec<(String, Vec<u8>)> = Vec::new();
    for (index, (name, make)) in cases.iter().enumerate() {
        let combined = |step: usize| {
            let (next_name, next) = &cases[(index + step) % cases.len()];
            let mut combined = make(&canary_path);
            combined.0.extend(next(&canary_path).0);
            (format!("{name}+{next_name}"), combined.finish())
        };
        for (name, tar) in [(name.to_string(), make(&canary_path).finish()), combined(1)] {
            layers.push((format!("{name}.gz"), gzip(&tar)));
            layers.push((format!("{name}.zst"), zstd(&tar)));
            layers.push((name, tar));
        }
        layers.push(combined(2));
    }
    // Compression cases: truncated and corrupt streams.
    let plain = Raw::default().file("ok", b"fine").finish();
    let gz = gzip(&plain);
    layers.push(("gzip_truncated".into(), gz[..gz.len() / 2].to_vec()));
    let mut flipped = gz.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    layers.push(("gzip_flipped".into(), flipped));
    let zs = zstd(&plain);
    layers.push(("zstd_truncated".into(), zs[..zs.len() / 2].to_vec()));
    layers.push(("not_an_archive".into(), b"hello, I am not a tar".to_vec()));
    assert!(layers.len() >= 300, "{} archives", layers.len());

    let (mut refused, mut contained) = (0, 0);
    let mut failures = Vec::new();
    for (index, (name, layer)) in layers.iter().enumerate() {
        let repository = format!("{host}/hostile/a{index}");
        let digest =
            push(&client, &cas, &repository, busybox, layer, &[busybox_diff.clone(), Digest::of(layer).to_string()]);
        let workspace = TestWorkspace::new();
        workspace
            .file("WORKSPACE.star", &format!("workspace(name = \"hostile\")\nregistry(\"{host}\", insecure = True)\n"))
            .file(
                "app/BUILD.star",
                &format!(
                    "oci_pull_image(name = \"base\", repository = \"{repository}\", digest = \"{digest}\")\n\
                     oci_build_layer(name = \"step\", base = \":base\", command = [\"ls / > /dev/null\", \"mkdir -p /out\"], outputs = [\"/out\"])\n"
                ),
            );
        let no_credentials = workspace.path("docker");
        fs::create_dir_all(&no_credentials).unwrap();
        let mut workspace = workspace;
        workspace.env("DOCKER_CONFIG", no_credentials.to_str().unwrap());
        let output = workspace.berth(&["--console", "none", "build", "//app:step"]);
        match output.code {
            0 => contained += 1,
            // Accepted, but an opaque whiteout at its root hid the busybox
            // layer: nothing to run the step with (runc says so, exit 3).
            3 if output.stderr.contains("could not start the step") && name.starts_with("opaque_at_root") => {
                contained += 1
            }
            // (A warning about an old runc may come before the error.)
            1 if output.stderr.lines().any(|line| line.starts_with("error: "))
                && !output.stderr.contains("bug in berth") =>
            {
                refused += 1
            }
            code => failures.push(format!("{name}: exit {code}\n{}", output.stderr)),
        }
        // Nothing beside the layer store's own entries, in the store and in
        // its id-shifted stores (`shifted-<N>/`, for user namespaces).
        let mut stores = vec![workspace.path(".cache/layers")];
        while let Some(store) = stores.pop() {
            let Ok(entries) = fs::read_dir(&store) else { continue };
            for entry in entries {
                let entry = entry.unwrap();
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if file_name.starts_with("shifted-") && store == workspace.path(".cache/layers") {
                    stores.push(entry.path());
                    continue;
                }
                let own = file_name.len() == 64 || file_name.ends_with(".lock") || file_name.starts_with("tmp-");
                if !own {
                    failures.push(format!("{name}: `{file_name}` appeared in the layer store"));
                }
            }
        }
        assert_eq!(listing(canary.path()), canary_before, "{name} touched the canary");
    }
    assert!(!Path::new("/etc/berth-hostile").exists() && !Path::new("/tmp/berth-hostile").exists());
    eprintln!("{} hostile archives: {refused} refused, {contained} contained", layers.len());
    assert!(failures.is_empty(), "{} of {} archives:\n{}", failures.len(), layers.len(), failures.join("\n"));
}
