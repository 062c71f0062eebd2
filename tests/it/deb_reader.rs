//! The `.deb` reader (`berth::oci::deb`) against packages written by the
//! fixture writer: `ar` framing, every data compression, control fields,
//! and hostile or malformed archives refused with a reason.

use berth::oci::deb::{
    ar_members, normalise_member_path, read_deb, ArMember, DebCompression, DebControl, DebEntry, DebEntryKind, DebError,
};

use crate::util::deb::{tar_of, write_ar, write_deb};

/// What every `ar` archive starts with.
const AR_MAGIC: &[u8] = b"!<arch>\n";

fn control(package: &str) -> DebControl {
    DebControl { package: package.to_owned(), version: "1.0-1".to_owned(), architecture: "amd64".to_owned() }
}

fn file(path: &str, data: &[u8], mode: u32) -> DebEntry {
    DebEntry { path: path.to_owned(), kind: DebEntryKind::File(data.to_vec()), mode, uid: 0, gid: 0 }
}

fn dir(path: &str) -> DebEntry {
    DebEntry { path: path.to_owned(), kind: DebEntryKind::Directory, mode: 0o755, uid: 0, gid: 0 }
}

fn sample() -> Vec<DebEntry> {
    vec![
        dir("/bin"),
        file("/bin/busybox", b"\x7fELF busybox", 0o755),
        DebEntry {
            path: "/bin/sh".to_owned(),
            kind: DebEntryKind::Symlink("busybox".to_owned()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        },
        DebEntry {
            path: "/bin/ash".to_owned(),
            kind: DebEntryKind::HardLink("/bin/busybox".to_owned()),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        dir("/var"),
        DebEntry { path: "/var/mail".to_owned(), kind: DebEntryKind::Directory, mode: 0o2775, uid: 0, gid: 8 },
    ]
}

/// A raw tar (not through `write_deb`) for hostile or unusual entries.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, entry_type, data, link) in entries {
        let mut header = tar::Header::new_old();
        // Bypass the tar crate's path checks: hostile archives do.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(*entry_type);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn deb_with_data_tar(data_tar: Vec<u8>) -> Vec<u8> {
    let control_tar = tar_of(&[file("/control", b"Package: evil\nVersion: 1\nArchitecture: all\n", 0o644)]).unwrap();
    write_ar(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar", control_tar), ("data.tar", data_tar)]).unwrap()
}

/// A package whose `control` file is `text`, with an empty data archive.
fn deb_with_control(text: &str) -> Vec<u8> {
    let control_tar = tar_of(&[file("/control", text.as_bytes(), 0o644)]).unwrap();
    let data_tar = tar_of(&[]).unwrap();
    write_ar(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar", control_tar), ("data.tar", data_tar)]).unwrap()
}

#[test]
fn parses_ar_members_with_padding_and_gnu_names() {
    let mut bytes = write_ar(&[("debian-binary", b"2.0\n".to_vec()), ("odd", b"abc".to_vec())]).unwrap();
    // A GNU-style name, ended by `/`.
    bytes
        .extend_from_slice(format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "data.tar/", 0, 0, 0, 100644, 2).as_bytes());
    bytes.extend_from_slice(b"xy");
    let members = ar_members(&bytes).unwrap();
    assert_eq!(
        members,
        [
            ArMember { name: "debian-binary", data: b"2.0\n" },
            ArMember { name: "odd", data: b"abc" },
            ArMember { name: "data.tar", data: b"xy" },
        ]
    );
}

#[test]
fn refuses_malformed_ar_archives() {
    assert!(matches!(ar_members(b"PK\x03\x04"), Err(DebError::NotAr)));
    let good = write_ar(&[("debian-binary", b"2.0\n".to_vec())]).unwrap();
    for cut in [AR_MAGIC.len() + 10, good.len() - 1] {
        assert!(matches!(ar_members(&good[..cut]), Err(DebError::BadAr { .. })), "cut at {cut}");
    }
    let mut bad_size = good.clone();
    bad_size[AR_MAGIC.len() + 48] = b'x';
    assert!(matches!(ar_members(&bad_size), Err(DebError::BadAr { reason, .. }) if reason.contains("decimal")));
    let mut bad_magic = good;
    bad_magic[AR_MAGIC.len() + 58] = b'!';
    assert!(matches!(ar_members(&bad_magic), Err(DebError::BadAr { .. })));
}

#[test]
fn reads_every_data_compression() {
    for compression in [
        DebCompression::None,
        DebCompression::Gzip,
        DebCompression::Xz,
        DebCompression::Lzma,
        DebCompression::Zstd,
        DebCompression::Bzip2,
    ] {
        let bytes = write_deb(&control("busybox-static"), &sample(), compression).unwrap();
        let members = ar_members(&bytes).unwrap();
        assert_eq!(members[2].name, format!("data.tar{}", compression.suffix()));
        let deb = read_deb(&bytes).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(deb.control, control("busybox-static"));
        assert_eq!(deb.data_compression, compression);
        assert_eq!(deb.entries, sample(), "{compression:?}");
    }
}

#[test]
fn corrupt_compressed_data_is_an_error() {
    let bytes = write_deb(&control("p"), &sample(), DebCompression::Xz).unwrap();
    let members = ar_members(&bytes).unwrap();
    let mut data = members[2].data.to_vec();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    let broken = write_ar(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (members[1].name, members[1].data.to_vec()),
        ("data.tar.xz", data),
    ])
    .unwrap();
    let error = read_deb(&broken).unwrap_err();
    assert!(matches!(&error, DebError::Corrupt { member, .. } if member == "data.tar.xz"), "{error}");
}

#[test]
fn checks_members_and_format_version() {
    let only_binary = write_ar(&[("debian-binary", b"2.0\n".to_vec())]).unwrap();
    let error = read_deb(&only_binary).unwrap_err();
    assert_eq!(error.to_string(), "no `control.tar` member (the archive has `debian-binary`)");

    let v3 = write_ar(&[("debian-binary", b"3.0\n".to_vec())]).unwrap();
    assert!(matches!(read_deb(&v3), Err(DebError::FormatVersion { .. })));

    let odd = write_ar(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", tar_of(&[]).unwrap()),
        ("data.tar.lz4", vec![]),
    ])
    .unwrap();
    assert!(matches!(read_deb(&odd), Err(DebError::UnknownCompression { member }) if member == "data.tar.lz4"));
}

#[test]
fn parses_control_fields() {
    let control = read_deb(&deb_with_control(
        "Package: python3.11-minimal\nSource: python3.11\nVersion: 3.11.2-6+deb12u6\nArchitecture: amd64\nDescription: x\n Multi-line: not a field\n",
    ))
    .unwrap()
    .control;
    assert_eq!(control.package, "python3.11-minimal");
    assert_eq!(control.version, "3.11.2-6+deb12u6");
    assert!(matches!(
        read_deb(&deb_with_control("Package: x\n")),
        Err(DebError::MissingControlField { field: "Version" })
    ));
}

#[test]
fn normalises_member_paths() {
    assert_eq!(normalise_member_path("./usr/bin/x").unwrap().as_deref(), Some("/usr/bin/x"));
    assert_eq!(normalise_member_path("usr//lib/./y/").unwrap().as_deref(), Some("/usr/lib/y"));
    assert_eq!(normalise_member_path("./").unwrap(), None);
    assert!(matches!(normalise_member_path("/etc/passwd"), Err(DebError::HostilePath { .. })));
    assert!(matches!(normalise_member_path("./usr/../../etc"), Err(DebError::HostilePath { .. })));
}

#[test]
fn refuses_hostile_paths_in_the_data_archive() {
    let cases: [(&str, tar::EntryType, Option<&str>, &str); 4] = [
        ("/etc/shadow", tar::EntryType::Regular, None, "is absolute"),
        ("./usr/../../etc/shadow", tar::EntryType::Regular, None, "contains `..`"),
        ("./x", tar::EntryType::Link, Some("../../etc/shadow"), "contains `..`"),
        ("./x", tar::EntryType::Link, Some("./missing"), "no earlier regular file"),
    ];
    for (path, entry_type, link, reason) in cases {
        let deb = deb_with_data_tar(raw_tar(&[(path, entry_type, b"", link)]));
        let error = read_deb(&deb).unwrap_err();
        assert!(matches!(error, DebError::HostilePath { .. }), "{path}: {error}");
        assert!(error.to_string().contains(reason), "{path}: {error}");
    }
}

#[test]
fn refuses_devices_and_conflicting_repeats() {
    let deb = deb_with_data_tar(raw_tar(&[("./dev/null", tar::EntryType::Char, b"", None)]));
    assert_eq!(
        read_deb(&deb).unwrap_err().to_string(),
        "data archive entry `./dev/null` is a character device, which a layer cannot hold"
    );
    let twice = deb_with_data_tar(raw_tar(&[
        ("./a", tar::EntryType::Regular, b"one", None),
        ("./a", tar::EntryType::Regular, b"two", None),
    ]));
    assert!(matches!(read_deb(&twice), Err(DebError::DuplicatePath { path }) if path == "/a"));
}

#[test]
fn a_header_claiming_a_huge_size_is_corrupt_not_an_abort() {
    let mut tar = raw_tar(&[("./big", tar::EntryType::Regular, b"", None)]);
    let mut header = tar::Header::from_byte_slice(&tar[..512]).clone();
    header.set_size(1 << 40);
    header.set_cksum();
    tar[..512].copy_from_slice(header.as_bytes());
    let error = read_deb(&deb_with_data_tar(tar)).unwrap_err();
    assert!(matches!(error, DebError::Corrupt { .. }), "{error}");
}

#[test]
fn reads_long_paths() {
    let long = format!("/usr/share/{}/file", "d".repeat(150));
    let entries = vec![file(&long, b"x", 0o644)];
    let deb = read_deb(&write_deb(&control("p"), &entries, DebCompression::Gzip).unwrap()).unwrap();
    assert_eq!(deb.entries, entries);
}
