//! Debian binary packages (`.deb`): an `ar` archive holding `debian-binary`,
//! `control.tar[.gz|.xz|.zst|.bz2|.lzma]` and `data.tar[...]`.
//!
//! `actions::deb_layer` hands the bytes of each package to [`read_deb`] and
//! gets back the package's name and version (from `control`) and the entries
//! of its data archive, checked and normalised into absolute image paths, in
//! archive order. Packing them is the layer writer's job; nothing here touches
//! the disk.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// One member of an `ar` archive, borrowed from the archive's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArMember<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

/// How a member of a `.deb` is compressed, from its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebCompression {
    None,
    Gzip,
    Xz,
    Lzma,
    Zstd,
    Bzip2,
}

impl DebCompression {
    /// The member name suffix after `.tar` (`""`, `".xz"`, ...).
    pub fn suffix(self) -> &'static str {
        match self {
            DebCompression::None => "",
            DebCompression::Gzip => ".gz",
            DebCompression::Xz => ".xz",
            DebCompression::Lzma => ".lzma",
            DebCompression::Zstd => ".zst",
            DebCompression::Bzip2 => ".bz2",
        }
    }

    fn from_suffix(suffix: &str) -> Option<DebCompression> {
        [
            DebCompression::None,
            DebCompression::Gzip,
            DebCompression::Xz,
            DebCompression::Lzma,
            DebCompression::Zstd,
            DebCompression::Bzip2,
        ]
        .into_iter()
        .find(|compression| compression.suffix() == suffix)
    }

    fn decoder<'a>(self, data: &'a [u8]) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            DebCompression::None => Box::new(data),
            DebCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
            DebCompression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(data)),
            DebCompression::Lzma => {
                let stream = xz2::stream::Stream::new_lzma_decoder(u64::MAX).map_err(io::Error::other)?;
                Box::new(xz2::read::XzDecoder::new_stream(data, stream))
            }
            DebCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(data)?),
            DebCompression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(data)),
        })
    }
}

/// What a `.deb`'s `control` file says about it; used to name the package
/// in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebControl {
    pub package: String,
    pub version: String,
    pub architecture: String,
}

/// One path of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebEntry {
    /// Absolute, normalised image path (`/usr/bin/python3.11`), never `/`.
    pub path: String,
    pub kind: DebEntryKind,
    /// The permission bits (`0o7777`) the package gives the path.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebEntryKind {
    File(Vec<u8>),
    Directory,
    /// The link's target, as the package wrote it (relative or absolute).
    Symlink(String),
    /// Another path of the same archive, absolute and normalised, that
    /// appears before this one.
    HardLink(String),
}

/// A package read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub control: DebControl,
    pub data_compression: DebCompression,
    /// The data archive's entries in archive order, the root itself left out.
    pub entries: Vec<DebEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("not an `ar` archive (a .deb starts with `!<arch>`)")]
    NotAr,
    #[error("the `ar` archive is truncated or corrupt at byte {offset}: {reason}")]
    BadAr { offset: usize, reason: &'static str },
    #[error("no `{member}` member (the archive has {found})")]
    MissingMember { member: &'static str, found: String },
    #[error("more than one `{member}` member")]
    DuplicateMember { member: &'static str },
    #[error("member `{member}` has an unknown compression (expected none, .gz, .xz, .lzma, .zst or .bz2)")]
    UnknownCompression { member: String },
    #[error("unsupported package format `{version}` (only 2.x is known)")]
    FormatVersion { version: String },
    #[error("member `{member}` cannot be read: {source}")]
    Corrupt { member: String, source: io::Error },
    #[error("the `control` file has no `{field}` field")]
    MissingControlField { field: &'static str },
    #[error("data archive path `{path}` {reason}")]
    HostilePath { path: String, reason: &'static str },
    #[error("data archive entry `{path}` is a {kind}, which a layer cannot hold")]
    UnsupportedEntry { path: String, kind: String },
    #[error("data archive path `{path}` appears twice with different contents")]
    DuplicatePath { path: String },
    #[error("data archive entry `{path}` has {what} `{value}`, which does not fit in 32 bits")]
    IdOutOfRange { path: String, what: &'static str, value: u64 },
}

impl From<DebError> for crate::error::Error {
    fn from(error: DebError) -> crate::error::Error {
        // Every case is a property of the package the user named.
        crate::error::Error::user(format!("Invalid .deb package: {error}"))
    }
}

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER_LEN: usize = 60;

/// Splits an `ar` archive (the common System V / GNU format dpkg writes)
/// into its members, in order.
pub fn ar_members(bytes: &[u8]) -> Result<Vec<ArMember<'_>>, DebError> {
    let mut rest = bytes.strip_prefix(AR_MAGIC).ok_or(DebError::NotAr)?;
    let mut offset = AR_MAGIC.len();
    let mut members = Vec::new();
    while !rest.is_empty() {
        let bad = |reason| DebError::BadAr { offset, reason };
        if rest.len() < AR_HEADER_LEN {
            return Err(bad("member header cut short"));
        }
        let (header, after) = rest.split_at(AR_HEADER_LEN);
        if &header[58..60] != b"`\n" {
            return Err(bad("member header does not end in the `ar` terminator"));
        }
        let name = std::str::from_utf8(&header[..16]).map_err(|_| bad("member name is not text"))?;
        let name = name.trim_end_matches(' ');
        // GNU ar ends names with `/`; dpkg's own writer does not.
        let name = name.strip_suffix('/').unwrap_or(name);
        if name.is_empty() {
            return Err(bad("member name is empty"));
        }
        let size = std::str::from_utf8(&header[48..58])
            .ok()
            .map(|text| text.trim_end_matches(' '))
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or_else(|| bad("member size is not a decimal number"))?;
        if after.len() < size {
            return Err(bad("member data cut short"));
        }
        members.push(ArMember { name, data: &after[..size] });
        // Members start on even offsets; an odd-sized one is padded by `\n`.
        let padded = (size + (size % 2)).min(after.len());
        rest = &after[padded..];
        offset += AR_HEADER_LEN + padded;
    }
    Ok(members)
}

/// Reads a whole `.deb`: checks its format version, parses `control` and
/// every entry of the data archive.
pub fn read_deb(bytes: &[u8]) -> Result<Deb, DebError> {
    let members = ar_members(bytes)?;
    let found = || {
        let names: Vec<String> = members.iter().map(|m| format!("`{}`", m.name)).collect();
        if names.is_empty() {
            "no members".to_owned()
        } else {
            names.join(", ")
        }
    };
    let binary = members
        .iter()
        .find(|m| m.name == "debian-binary")
        .ok_or_else(|| DebError::MissingMember { member: "debian-binary", found: found() })?;
    let version = String::from_utf8_lossy(binary.data).trim_end().to_owned();
    if !version.starts_with("2.") {
        return Err(DebError::FormatVersion { version });
    }
    let (control_name, control_compression, control_data) = tar_member(&members, "control.tar", found)?;
    let (data_name, data_compression, data_data) = tar_member(&members, "data.tar", found)?;

    let control_tar = decompress(control_name, control_compression, control_data)?;
    let control = parse_control(&read_control_file(control_name, &control_tar)?)?;
    let data_tar = decompress(data_name, data_compression, data_data)?;
    let entries = read_data_entries(data_name, &data_tar)?;
    Ok(Deb { control, data_compression, entries })
}

/// The one member named `<stem>` plus a known compression suffix.
fn tar_member<'a>(
    members: &[ArMember<'a>],
    stem: &'static str,
    found: impl Fn() -> String,
) -> Result<(&'a str, DebCompression, &'a [u8]), DebError> {
    let mut matching = members.iter().filter(|m| m.name.starts_with(stem));
    let member = matching.next().ok_or_else(|| DebError::MissingMember { member: stem, found: found() })?;
    if matching.next().is_some() {
        return Err(DebError::DuplicateMember { member: stem });
    }
    let compression = DebCompression::from_suffix(&member.name[stem.len()..])
        .ok_or_else(|| DebError::UnknownCompression { member: member.name.to_owned() })?;
    Ok((member.name, compression, member.data))
}

fn decompress(member: &str, compression: DebCompression, data: &[u8]) -> Result<Vec<u8>, DebError> {
    let corrupt = |source| DebError::Corrupt { member: member.to_owned(), source };
    let mut out = Vec::with_capacity(data.len() * 3);
    compression.decoder(data).map_err(corrupt)?.read_to_end(&mut out).map_err(corrupt)?;
    Ok(out)
}

fn read_control_file(member: &str, tar_bytes: &[u8]) -> Result<String, DebError> {
    let corrupt = |source| DebError::Corrupt { member: member.to_owned(), source };
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if path.trim_start_matches("./") == "control" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(corrupt)?;
            return Ok(text);
        }
    }
    Err(DebError::MissingMember { member: "control.tar: control", found: "no `control` file".to_owned() })
}

/// The fields berth uses from a deb822 `control` paragraph.
fn parse_control(text: &str) -> Result<DebControl, DebError> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue; // continuation of a multi-line field (Description)
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let mut field = |name: &'static str| {
        fields.remove(&name.to_ascii_lowercase()).ok_or(DebError::MissingControlField { field: name })
    };
    Ok(DebControl { package: field("Package")?, version: field("Version")?, architecture: field("Architecture")? })
}

/// An archive member path as an absolute image path: `./usr/bin/x` and
/// `usr/bin/x` become `/usr/bin/x`, the root becomes `None`. Absolute paths
/// and `..` are refused: an archive may not name anything outside its root.
pub fn normalise_member_path(raw: &str) -> Result<Option<String>, DebError> {
    let hostile = |reason| DebError::HostilePath { path: raw.to_owned(), reason };
    if raw.starts_with('/') {
        return Err(hostile("is absolute"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(hostile("contains `..`")),
            part if part.contains('\0') => return Err(hostile("contains a NUL byte")),
            part => parts.push(part),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(format!("/{}", parts.join("/"))) })
}

/// The entries of an uncompressed tar read as a data archive (`member`
/// names it in errors): paths normalised and checked, hard links resolved,
/// the root left out.
pub fn read_data_entries(member: &str, tar_bytes: &[u8]) -> Result<Vec<DebEntry>, DebError> {
    let corrupt = |source| DebError::Corrupt { member: member.to_owned(), source };
    let mut archive = tar::Archive::new(tar_bytes);
    let mut entries: Vec<DebEntry> = Vec::new();
    // Path → index in `entries`, to check hard links and repeated paths.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw_path = utf8(entry.path_bytes().into_owned(), "path")?;
        let header = entry.header();
        let entry_type = header.entry_type();
        let mode = header.mode().map_err(corrupt)? & 0o7777;
        let uid = id(&raw_path, "uid", header.uid().map_err(corrupt)?)?;
        let gid = id(&raw_path, "gid", header.gid().map_err(corrupt)?)?;
        let Some(path) = normalise_member_path(&raw_path)? else {
            // The root directory `./`: the layer writer owns `/`.
            if entry_type.is_dir() {
                continue;
            }
            return Err(DebError::HostilePath { path: raw_path, reason: "names the root as a non-directory" });
        };
        let link_name = || -> Result<String, DebError> {
            match entry.link_name_bytes() {
                Some(bytes) if !bytes.is_empty() => utf8(bytes.into_owned(), "link target"),
                _ => Err(DebError::HostilePath { path: raw_path.clone(), reason: "is a link without a target" }),
            }
        };
        let kind = match entry_type {
            tar::EntryType::Directory => DebEntryKind::Directory,
            tar::EntryType::Symlink => DebEntryKind::Symlink(link_name()?),
            tar::EntryType::Link => {
                let target_raw = link_name()?;
                let target = normalise_member_path(&target_raw)?.ok_or_else(|| DebError::HostilePath {
                    path: raw_path.clone(),
                    reason: "is a hard link to the root",
                })?;
                match seen.get(&target).map(|&index| &entries[index].kind) {
                    Some(DebEntryKind::File(_)) => DebEntryKind::HardLink(target),
                    // A link to a link is a link to what that one names.
                    Some(DebEntryKind::HardLink(first)) => DebEntryKind::HardLink(first.clone()),
                    _ => {
                        return Err(DebError::HostilePath {
                            path: raw_path.clone(),
                            reason: "is a hard link to no earlier regular file of the archive",
                        })
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // The size comes from the header: never trust it beyond the archive.
                let mut data = Vec::with_capacity(entry.size().min(tar_bytes.len() as u64) as usize);
                entry.read_to_end(&mut data).map_err(corrupt)?;
                DebEntryKind::File(data)
            }
            other => return Err(DebError::UnsupportedEntry { path: raw_path, kind: describe_type(other) }),
        };
        let new = DebEntry { path, kind, mode, uid, gid };
        if let Some(&index) = seen.get(&new.path) {
            let old = &entries[index];
            if old == &new || (old.kind == DebEntryKind::Directory && new.kind == DebEntryKind::Directory) {
                entries[index] = new;
                continue;
            }
            return Err(DebError::DuplicatePath { path: new.path });
        }
        seen.insert(new.path.clone(), entries.len());
        entries.push(new);
    }
    Ok(entries)
}

fn utf8(bytes: Vec<u8>, what: &'static str) -> Result<String, DebError> {
    String::from_utf8(bytes).map_err(|error| DebError::HostilePath {
        path: String::from_utf8_lossy(error.as_bytes()).into_owned(),
        reason: if what == "path" { "is not UTF-8" } else { "has a link target that is not UTF-8" },
    })
}

fn id(path: &str, what: &'static str, value: u64) -> Result<u32, DebError> {
    u32::try_from(value).map_err(|_| DebError::IdOutOfRange { path: path.to_owned(), what, value })
}

fn describe_type(entry_type: tar::EntryType) -> String {
    match entry_type {
        tar::EntryType::Char => "character device".to_owned(),
        tar::EntryType::Block => "block device".to_owned(),
        tar::EntryType::Fifo => "FIFO".to_owned(),
        other => format!("tar entry of type `{}`", other.as_byte() as char),
    }
}
