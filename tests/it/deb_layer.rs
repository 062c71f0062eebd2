//! The `deb_layer` action over `.deb` files written by the fixture writer:
//! pins checked before anything is read, hostile packages refused, and one
//! reproducible layer that keeps the packages' modes, owners and links.

use std::fs;
use std::io;
use std::path::PathBuf;

use berth::actions::{Action, ActionContext, ActionResult, DebLayer, DebLayerOutput, ExecutionContext, ResolvedInput};
use berth::cache::{Cas, Digest};
use berth::error::Result;
use berth::oci::deb::{self, DebCompression, DebControl, DebEntry, DebEntryKind};
use berth::oci::{Compression, LayerStore};

use crate::util::deb::write_deb;

fn control(package: &str) -> DebControl {
    DebControl { package: package.to_owned(), version: "1.0-1".to_owned(), architecture: "amd64".to_owned() }
}

fn entry(path: &str, kind: DebEntryKind, mode: u32) -> DebEntry {
    DebEntry { path: path.to_owned(), kind, mode, uid: 0, gid: 0 }
}

fn file(path: &str, data: &str) -> DebEntry {
    entry(path, DebEntryKind::File(data.as_bytes().to_vec()), 0o644)
}

fn dir(path: &str, mode: u32) -> DebEntry {
    entry(path, DebEntryKind::Directory, mode)
}

/// `.deb` files written into a temp dir, with the action that reads them.
struct Fixture {
    dir: tempfile::TempDir,
    files: Vec<(PathBuf, Digest)>,
}

impl Fixture {
    fn new(debs: &[(&str, Vec<DebEntry>, DebCompression)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (package, entries, compression) in debs {
            let bytes = write_deb(&control(package), entries, *compression).unwrap();
            let relative = PathBuf::from(format!("third_party/debs/{package}.deb"));
            fs::create_dir_all(dir.path().join("third_party/debs")).unwrap();
            fs::write(dir.path().join(&relative), &bytes).unwrap();
            files.push((relative, Digest::of(&bytes)));
        }
        Fixture { dir, files }
    }

    fn action(&self, sha256s: &[String]) -> DebLayer {
        let paths = self.files.iter().map(|(path, _)| path.clone()).collect();
        DebLayer::new(paths, sha256s, Compression::Gzip, 0).unwrap()
    }

    fn pinned(&self) -> Vec<String> {
        self.files.iter().map(|(_, digest)| digest.to_string()).collect()
    }

    fn run(&self, action: &DebLayer) -> (Result<ActionResult>, Cas) {
        let cas = Cas::open(&self.dir.path().join("cache")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let inputs = self
            .files
            .iter()
            .map(|(path, digest)| ResolvedInput::Source {
                path: self.dir.path().join(path),
                digest: *digest,
                size: 0,
                settled: false,
            })
            .collect();
        let exec = ExecutionContext::new(cas.clone(), LayerStore::new(&self.dir.path().join("cache")));
        let ctx = ActionContext::new(&exec, inputs, scratch.path());
        (action.execute(&ctx), cas)
    }
}

#[test]
fn sha256_mismatch_names_file_both_digests_and_the_fix() {
    let fixture = Fixture::new(&[("hello", vec![file("/hello", "hi")], DebCompression::Gzip)]);
    let wrong = Digest::of(b"something else");
    let (result, _) = fixture.run(&fixture.action(&[wrong.to_string()]));
    let error = result.unwrap_err();
    let actual = fixture.files[0].1;
    assert_eq!(
        error.to_string(),
        format!(
            "`third_party/debs/hello.deb` has sha256 `{}`, but `deb_layer` expects `{}`\nhint: re-run `scripts/fetch-debs.sh` to fetch the pinned file, or update the lock (`scripts/fetch-debs.sh --update`) and the sha256s",
            actual.hex(),
            wrong.hex()
        )
    );
    assert_eq!(error.kind, berth::error::ErrorKind::User);
}

#[test]
fn hostile_packages_fail_the_action() {
    let fixture = Fixture::new(&[("evil", vec![file("/etc/x", "x")], DebCompression::None)]);
    let path = fixture.dir.path().join(&fixture.files[0].0);
    // Rewrite the path `etc/x` as `../ex` in the uncompressed data tar.
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(6).position(|w| w == b"etc/x\0").unwrap();
    bytes[at..at + 5].copy_from_slice(b"../ex");
    // The name is the header's first field; its checksum must stay valid
    // for the tar reader to get as far as the path.
    let header = &mut bytes[at..at + 512];
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    fs::write(&path, &bytes).unwrap();
    let digest = Digest::of(&bytes);
    let fixture = Fixture { files: vec![(fixture.files[0].0.clone(), digest)], ..fixture };
    let (result, _) = fixture.run(&fixture.action(&[digest.to_string()]));
    let message = result.unwrap_err().message;
    assert!(message.contains("is not a valid .deb: data archive path `../ex` contains `..`"), "{message}");
}

#[test]
fn writes_one_reproducible_layer_from_several_debs() {
    let busybox = vec![
        dir("/bin", 0o755),
        entry("/bin/busybox", DebEntryKind::File(b"\x7fELF".to_vec()), 0o755),
        entry("/bin/ash", DebEntryKind::HardLink("/bin/busybox".into()), 0o755),
        DebEntry { path: "/var/mail".into(), kind: DebEntryKind::Directory, mode: 0o2775, uid: 0, gid: 8 },
    ];
    let other = vec![dir("/bin", 0o755), entry("/bin/sh", DebEntryKind::Symlink("busybox".into()), 0o777)];
    let fixture = Fixture::new(&[("busybox", busybox, DebCompression::Xz), ("other", other, DebCompression::Zstd)]);
    let action = fixture.action(&fixture.pinned());
    let (first, cas) = fixture.run(&action);
    let first = first.unwrap();
    let (second, _) = fixture.run(&action);
    assert_eq!(first, second.unwrap(), "same inputs, same layer");
    let first = DebLayerOutput::from_result(&first).unwrap();
    assert_eq!(first.layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(first.packages[1].package, "other");

    // The layer's tar is what the diff_id says; read it back with the
    // .deb reader's tar parsing, which keeps modes, owners and links.
    let blob = cas.read_verified(&first.layer.blob.digest).unwrap();
    let mut tar = Vec::new();
    io::Read::read_to_end(&mut berth::oci::decoder(&blob[..], Compression::Gzip).unwrap(), &mut tar).unwrap();
    assert_eq!(first.layer.diff_id, Some(Digest::of(&tar)));
    let layer = deb::read_data_entries("layer", &tar).unwrap();
    let summary: Vec<(String, u32, u32, String)> = layer
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                DebEntryKind::File(data) => format!("file {}", data.len()),
                DebEntryKind::Directory => "dir".to_owned(),
                DebEntryKind::Symlink(t) => format!("symlink {t}"),
                DebEntryKind::HardLink(t) => format!("link {t}"),
            };
            (e.path.clone(), e.mode, e.gid, kind)
        })
        .collect();
    let expected = [
        ("/bin", 0o755, 0, "dir"),
        ("/bin/ash", 0o755, 0, "file 4"),
        ("/bin/busybox", 0o755, 0, "link /bin/ash"),
        ("/bin/sh", 0o777, 0, "symlink busybox"),
        ("/var", 0o755, 0, "dir"),
        ("/var/mail", 0o2775, 8, "dir"),
    ];
    let expected: Vec<(String, u32, u32, String)> =
        expected.iter().map(|(p, m, g, k)| (p.to_string(), *m, *g, k.to_string())).collect();
    assert_eq!(summary, expected);
}
