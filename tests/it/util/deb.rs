//! A `.deb` writer for fixtures, the inverse of `berth::oci::deb::read_deb`:
//! real packages come from Debian, these only from tests.

use std::io::{self, Write};

use berth::oci::deb::{DebCompression, DebControl, DebEntry, DebEntryKind};

/// Writes a `.deb` holding `entries` (paths absolute, as [`DebEntry`]) in
/// the given order, with `control.tar` and `data.tar` compressed as asked.
pub fn write_deb(control: &DebControl, entries: &[DebEntry], compression: DebCompression) -> io::Result<Vec<u8>> {
    let control_text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: berth tests <tests@berth.invalid>\nDescription: test package\n",
        control.package, control.version, control.architecture
    );
    let control_tar = tar_of(&[DebEntry {
        path: "/control".to_owned(),
        kind: DebEntryKind::File(control_text.into_bytes()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }])?;
    let data_tar = tar_of(entries)?;
    let suffix = compression.suffix();
    write_ar(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (&format!("control.tar{suffix}"), compress(compression, &control_tar)?),
        (&format!("data.tar{suffix}"), compress(compression, &data_tar)?),
    ])
}

/// A tar in dpkg's style: a `./` root entry, then `./`-prefixed paths.
pub fn tar_of(entries: &[DebEntry]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut root = tar::Header::new_gnu();
    root.set_entry_type(tar::EntryType::Directory);
    root.set_mode(0o755);
    root.set_uid(0);
    root.set_gid(0);
    root.set_mtime(0);
    root.set_size(0);
    builder.append_data(&mut root, "./", io::empty())?;
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_uid(entry.uid.into());
        header.set_gid(entry.gid.into());
        header.set_mtime(0);
        let path = format!(".{}", entry.path);
        match &entry.kind {
            DebEntryKind::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, &path, data.as_slice())?;
            }
            DebEntryKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), io::empty())?;
            }
            DebEntryKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &path, target)?;
            }
            DebEntryKind::HardLink(target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, &path, format!(".{target}"))?;
            }
        }
    }
    builder.into_inner()
}

/// An `ar` archive of the given members, in order, as dpkg writes it.
pub fn write_ar(members: &[(&str, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        if name.len() > 16 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "ar member names are at most 16 bytes"));
        }
        writeln!(out, "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`", 0, 0, 0, "100644", data.len())?;
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// `data` compressed as a member named with `compression`'s suffix.
pub fn compress(compression: DebCompression, data: &[u8]) -> io::Result<Vec<u8>> {
    match compression {
        DebCompression::None => Ok(data.to_vec()),
        DebCompression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            encoder.write_all(data)?;
            encoder.finish()
        }
        DebCompression::Xz => {
            let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 6);
            encoder.write_all(data)?;
            encoder.finish()
        }
        DebCompression::Lzma => {
            let options = xz2::stream::LzmaOptions::new_preset(6).map_err(io::Error::other)?;
            let stream = xz2::stream::Stream::new_lzma_encoder(&options).map_err(io::Error::other)?;
            let mut encoder = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            encoder.write_all(data)?;
            encoder.finish()
        }
        DebCompression::Zstd => zstd::stream::encode_all(data, 3),
        DebCompression::Bzip2 => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(6));
            encoder.write_all(data)?;
            encoder.finish()
        }
    }
}
