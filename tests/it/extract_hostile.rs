//! A corpus of hostile layer archives, generated here: each one is refused
//! or contained, and a canary directory next to the extraction root stays
//! exactly as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::util::need::{skip, Need};
use crate::util::runc::{gzip, zstd};
use berth::oci::{unpack, ExtractError, ExtractLimits, UnpackStats};

/// Builds tars header by header, so that names the tar crate would refuse
/// to write (`..`, absolute paths, NULs) can be written.
#[derive(Default)]
struct Raw(Vec<u8>);

const FILE: u8 = b'0';
const HARD: u8 = b'1';
const SYM: u8 = b'2';
const CHR: u8 = b'3';
const BLK: u8 = b'4';
const DIR: u8 = b'5';
const FIFO: u8 = b'6';

impl Raw {
    fn header(name: &[u8], kind: u8, link: &[u8], size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_cksum();
        header
    }

    fn push(mut self, header: &tar::Header, data: &[u8]) -> Self {
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        let padding = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, padding));
        self
    }

    fn entry(self, name: &str, kind: u8, link: &str, data: &[u8], mode: u32) -> Self {
        let header = Self::header(name.as_bytes(), kind, link.as_bytes(), data.len() as u64, mode);
        self.push(&header, data)
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, FILE, "", data, 0o644)
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name, DIR, "", b"", 0o755)
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, SYM, target, b"", 0o777)
    }

    fn hard_link(self, name: &str, target: &str) -> Self {
        self.entry(name, HARD, target, b"", 0o644)
    }

    fn device(self, name: &str, kind: u8) -> Self {
        let mut header = Self::header(name.as_bytes(), kind, b"", 0, 0o600);
        header.set_device_major(8).unwrap();
        header.set_device_minor(0).unwrap();
        header.set_cksum();
        self.push(&header, b"")
    }

    /// A GNU long-name header (`L`) whose data is `name`.
    fn long_name(self, name: &[u8]) -> Self {
        let header = Self::header(b"././@LongLink", b'L', b"", name.len() as u64, 0o644);
        self.push(&header, name)
    }

    /// A PAX extended header (`x`) with these records.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let header = Self::header(b"pax", b'x', b"", data.len() as u64, 0o644);
        self.push(&header, &data)
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

/// Checks an archive that extracted: what is inside the root.
type Check = Box<dyn Fn(&Path, &UnpackStats)>;

enum Expect {
    Refused,
    Limit,
    Corrupt,
    Contained(Check),
}

struct Case {
    name: &'static str,
    archive: Vec<u8>,
    limits: ExtractLimits,
    expect: Expect,
}

/// Everything under `dir` but `skip`: type, size, mode, mtime and contents.
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let metadata = fs::symlink_metadata(&path).unwrap();
        let contents = if metadata.is_file() {
            String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
        } else if metadata.file_type().is_symlink() {
            fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            path.display().to_string(),
            format!(
                "{:?} {} {:o} {} {}",
                metadata.file_type(),
                metadata.len(),
                metadata.mode(),
                metadata.mtime(),
                contents
            ),
        );
        if metadata.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}

fn contained(check: impl Fn(&Path, &UnpackStats) + 'static) -> Expect {
    Expect::Contained(Box::new(check))
}

fn corpus(canary: &str) -> Vec<Case> {
    let default = ExtractLimits::default;
    let small = ExtractLimits {
        max_total_bytes: 1 << 20,
        max_entries: 1000,
        max_ratio: 100,
        ratio_slack_bytes: 1 << 20,
        ..ExtractLimits::default()
    };
    let canary_file = format!("{canary}/file");
    let zeros = vec![0u8; 64 << 20];
    let bomb = Raw::default().file("zeros", &zeros).finish();
    let mut many = Raw::default();
    for index in 0..1200 {
        many = many.file(&format!("f{index}"), b"");
    }
    let mut truncated = Raw::default().file("big", &[7u8; 4096]).finish();
    truncated.truncate(2048);
    let deep_name: String = "a/".repeat(2500) + "f";
    let case = |name, archive, expect| Case { name, archive, limits: default(), expect };
    vec![
        case("dotdot file", Raw::default().file("../escape", b"x").finish(), Expect::Refused),
        case("dotdot deep", Raw::default().file("../../../../../../tmp/escape", b"x").finish(), Expect::Refused),
        case("dotdot in the middle", Raw::default().file("a/../../escape", b"x").finish(), Expect::Refused),
        case("dotdot to the canary", Raw::default().file("../canary/file", b"pwned").finish(), Expect::Refused),
        case(
            "absolute path",
            Raw::default().file("/abs/file", b"x").finish(),
            contained(|root, _| assert_eq!(fs::read(root.join("abs/file")).unwrap(), b"x")),
        ),
        case("absolute path naming the canary", Raw::default().file(&canary_file, b"pwned").finish(), {
            let inside = canary_file.trim_start_matches('/').to_owned();
            contained(move |root, _| assert_eq!(fs::read(root.join(&inside)).unwrap(), b"pwned"))
        }),
        case(
            "symlink then write through it",
            Raw::default().symlink("evil", canary).file("evil/pwned", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "relative symlink then write through it",
            Raw::default().symlink("evil", "../canary").file("evil/file", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "symlink chain",
            Raw::default().symlink("a", "b").symlink("b", "c").symlink("c", canary).file("a/pwned", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "symlink replaced by a file",
            Raw::default().symlink("evil", &canary_file).file("evil", b"overwrite").finish(),
            contained(|root, _| {
                assert!(fs::symlink_metadata(root.join("evil")).unwrap().is_file());
                assert_eq!(fs::read(root.join("evil")).unwrap(), b"overwrite");
            }),
        ),
        case(
            "dangling symlink replaced by a file",
            Raw::default().symlink("x", &format!("{canary}/new")).file("x", b"y").finish(),
            contained(|root, _| assert!(fs::symlink_metadata(root.join("x")).unwrap().is_file())),
        ),
        case(
            "symlink replaced by a directory",
            Raw::default().symlink("evil", canary).dir("evil/").finish(),
            contained(|root, _| assert!(fs::symlink_metadata(root.join("evil")).unwrap().is_dir())),
        ),
        case(
            "directory below a symlink",
            Raw::default().symlink("evil", canary).dir("evil/sub/").finish(),
            Expect::Refused,
        ),
        case("hard link with dotdot", Raw::default().hard_link("hl", "../canary/file").finish(), Expect::Refused),
        case("hard link to a host file", Raw::default().hard_link("hl", "/etc/passwd").finish(), Expect::Refused),
        case("hard link to the canary", Raw::default().hard_link("hl", &canary_file).finish(), Expect::Refused),
        case(
            "hard link through a symlink",
            Raw::default().symlink("evil", canary).hard_link("hl", "evil/file").finish(),
            Expect::Refused,
        ),
        case(
            "hard link to a symlink links the symlink",
            Raw::default().symlink("s", &canary_file).hard_link("hl", "s").finish(),
            contained(|root, _| assert!(fs::symlink_metadata(root.join("hl")).unwrap().file_type().is_symlink())),
        ),
        case(
            "write to a hard link does not change its target",
            Raw::default().file("f", b"orig").hard_link("hl", "f").file("hl", b"new").finish(),
            contained(|root, _| {
                assert_eq!(fs::read(root.join("f")).unwrap(), b"orig");
                assert_eq!(fs::read(root.join("hl")).unwrap(), b"new");
            }),
        ),
        case("hard link to a directory", Raw::default().dir("d/").hard_link("hl", "d").finish(), Expect::Refused),
        case("whiteout of dotdot", Raw::default().file(".wh...", b"").finish(), Expect::Refused),
        case("whiteout of dot", Raw::default().file(".wh..", b"").finish(), Expect::Refused),
        case("nested whiteout of dotdot", Raw::default().dir("d/").file("d/.wh...", b"").finish(), Expect::Refused),
        case(
            "whiteout through a symlink",
            Raw::default().symlink("evil", canary).file("evil/.wh.file", b"").finish(),
            Expect::Refused,
        ),
        case(
            "opaque whiteout through a symlink",
            Raw::default().symlink("evil", canary).file("evil/.wh..wh..opq", b"").finish(),
            Expect::Refused,
        ),
        case(
            "opaque whiteout at the root",
            Raw::default().file(".wh..wh..opq", b"").file("kept", b"k").finish(),
            contained(|root, stats| {
                assert!(stats.opaque_root);
                assert!(!root.join(".wh..wh..opq").exists());
            }),
        ),
        case(
            "whiteout becomes an overlay marker",
            Raw::default().dir("etc/").file("etc/.wh.shadow", b"").finish(),
            contained(|root, _| {
                let metadata = fs::symlink_metadata(root.join("etc/shadow")).unwrap();
                assert!(metadata.file_type().is_char_device() && metadata.rdev() == 0);
            }),
        ),
        case(
            "character device",
            Raw::default().device("sda", CHR).finish(),
            contained(|root, stats| {
                assert_eq!(stats.skipped_devices, 1);
                assert!(!root.join("sda").exists());
            }),
        ),
        case(
            "block device",
            Raw::default().device("sda", BLK).finish(),
            contained(|root, stats| {
                assert_eq!(stats.skipped_devices, 1);
                assert!(!root.join("sda").exists());
            }),
        ),
        case(
            "fifo",
            Raw::default().entry("pipe", FIFO, "", b"", 0o644).finish(),
            contained(|root, _| assert!(fs::symlink_metadata(root.join("pipe")).unwrap().file_type().is_fifo())),
        ),
        Case { name: "gzip bomb", archive: gzip(&bomb), limits: small.clone(), expect: Expect::Limit },
        Case { name: "zstd bomb", archive: zstd(&bomb), limits: small.clone(), expect: Expect::Limit },
        Case {
            name: "total size",
            archive: Raw::default().file("big", &[1u8; 3 << 20]).finish(),
            limits: small.clone(),
            expect: Expect::Limit,
        },
        case(
            "huge long-name header",
            gzip(&Raw::default().long_name(&vec![b'a'; 16 << 20]).file("x", b"").finish()),
            Expect::Limit,
        ),
        case(
            "huge PAX header",
            gzip(&Raw::default().pax(&[("comment", &vec![b'a'; 2 << 20])]).file("x", b"").finish()),
            Expect::Limit,
        ),
        case(
            "path longer than the cap",
            Raw::default().long_name(deep_name.as_bytes()).file("x", b"").finish(),
            Expect::Limit,
        ),
        Case { name: "too many entries", archive: many.finish(), limits: small, expect: Expect::Limit },
        case(
            "PAX path with dotdot",
            Raw::default().pax(&[("path", b"../escape")]).file("safe", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "long name with dotdot",
            Raw::default().long_name(b"../escape\0").file("safe", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "PAX path with a NUL",
            Raw::default().pax(&[("path", b"a\0b")]).file("safe", b"x").finish(),
            Expect::Refused,
        ),
        case(
            "PAX size disagreeing with the header",
            Raw::default().pax(&[("size", b"999")]).file("f", b"12345").finish(),
            Expect::Refused,
        ),
        case(
            "PAX trusted xattr is not restored",
            Raw::default().pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]).file("f", b"x").finish(),
            contained(|root, _| assert!(!berth::oci::is_opaque_dir(&root.join("f")))),
        ),
        case("truncated archive", truncated, Expect::Corrupt),
        case(
            "file over a directory holding a symlink out",
            Raw::default().dir("d/").symlink("d/s", canary).file("d", b"flat").finish(),
            contained(|root, _| assert_eq!(fs::read(root.join("d")).unwrap(), b"flat")),
        ),
        case(
            "setuid file keeps its mode",
            Raw::default().entry("suid", FILE, "", b"x", 0o4755).finish(),
            contained(|root, _| assert_eq!(fs::metadata(root.join("suid")).unwrap().mode() & 0o7777, 0o4755)),
        ),
    ]
}

#[test]
fn hostile_archives_are_refused_or_contained() {
    if skip(&[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    fs::create_dir_all(canary.join("dir")).unwrap();
    fs::write(canary.join("file"), "canary").unwrap();
    let root = dir.path().join("root");
    let mut before = BTreeMap::new();
    snapshot(dir.path(), &root, &mut before);

    let cases = corpus(canary.to_str().unwrap());
    assert!(cases.len() >= 30, "the corpus has {} archives", cases.len());
    for case in cases {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir(&root).unwrap();
        let result = unpack(&case.archive[..], &root, &case.limits);
        match (&case.expect, &result) {
            (Expect::Refused, Err(ExtractError::Refused { .. }))
            | (Expect::Limit, Err(ExtractError::Limit { .. }))
            | (Expect::Corrupt, Err(ExtractError::Corrupt { .. })) => {}
            (Expect::Contained(check), Ok(stats)) => check(&root, stats),
            (_, result) => panic!("{}: unexpected {result:?}", case.name),
        }
        if let Err(error) = result {
            let kind = berth::error::Error::from(error).kind;
            assert_eq!(kind, berth::error::ErrorKind::User, "{}: a hostile archive is the user's problem", case.name);
        }
        let mut after = BTreeMap::new();
        snapshot(dir.path(), &root, &mut after);
        assert_eq!(after, before, "{}: something outside the root changed", case.name);
    }
}
