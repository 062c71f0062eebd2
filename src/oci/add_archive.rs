//! Local archives as a Dockerfile's `ADD` sees them: a tar, plain or
//! compressed with gzip, bzip2 or xz, is unpacked into the destination; any
//! other file (a compressed file that is not a tar included) is copied as
//! it is. Docker tells them apart by the magic bytes and then by whether a
//! tar header follows; so does [`added_archive`]. Unpacking goes through
//! [`unpack`], with its limits and its refusal to write outside the root.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::oci::{unpack, ExtractError, ExtractLimits, UnpackStats};

/// How an added file is compressed, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Plain,
    Gzip,
    Bzip2,
    Xz,
}

impl Packing {
    fn detect(head: &[u8]) -> Packing {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Packing::Gzip
        } else if head.starts_with(b"BZh") {
            Packing::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Packing::Xz
        } else {
            Packing::Plain
        }
    }

    fn decoder<'a>(self, reader: impl BufRead + 'a) -> Box<dyn Read + 'a> {
        match self {
            Packing::Plain => Box::new(reader),
            Packing::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Packing::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
            Packing::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(reader)),
        }
    }
}

/// Whether `ADD` unpacks the file at `path`: a tar (its first header
/// valid), plain or compressed with gzip, bzip2 or xz.
pub fn added_archive(path: &Path) -> io::Result<bool> {
    let mut reader = BufReader::new(File::open(path)?);
    let packing = Packing::detect(reader.fill_buf()?);
    let mut header = [0u8; 512];
    let mut decoded = packing.decoder(reader).take(512);
    let mut filled = 0;
    while filled < header.len() {
        match decoded.read(&mut header[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(read) => filled += read,
        }
    }
    Ok(filled == header.len() && is_tar_header(&header))
}

/// Unpacks the tar in `reader` (plain, gzip, bzip2 or xz) below `root`.
pub fn unpack_added_archive(
    reader: impl Read,
    root: &Path,
    limits: &ExtractLimits,
) -> Result<UnpackStats, ExtractError> {
    let mut reader = BufReader::new(reader);
    let head = reader.fill_buf().map_err(|source| ExtractError::Corrupt { source })?;
    match Packing::detect(head) {
        // `unpack` reads plain and gzip tars itself.
        Packing::Plain | Packing::Gzip => unpack(reader, root, limits),
        packing => unpack(packing.decoder(reader), root, limits),
    }
}

/// A tar header block: its checksum (the sum of its bytes with the checksum
/// field read as spaces) matches the octal number in that field.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field.iter().take_while(|byte| **byte != 0).map(|byte| *byte as char).collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else { return false };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(index, byte)| if (148..156).contains(&index) { u32::from(b' ') } else { u32::from(*byte) })
        .sum();
    block[0] != 0 && sum == recorded
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_with(name: &str, contents: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o640);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, contents).unwrap();
        builder.into_inner().unwrap()
    }

    fn packed(packing: Packing, bytes: &[u8]) -> Vec<u8> {
        match packing {
            Packing::Plain => bytes.to_vec(),
            Packing::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(bytes).unwrap();
                encoder.finish().unwrap()
            }
            Packing::Bzip2 => {
                let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                encoder.write_all(bytes).unwrap();
                encoder.finish().unwrap()
            }
            Packing::Xz => {
                let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 6);
                encoder.write_all(bytes).unwrap();
                encoder.finish().unwrap()
            }
        }
    }

    #[test]
    fn every_packing_of_a_tar_is_unpacked_and_other_files_are_not_archives() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_with("pkg/README", b"read me\n");
        for packing in [Packing::Plain, Packing::Gzip, Packing::Bzip2, Packing::Xz] {
            let bytes = packed(packing, &tar);
            assert_eq!(Packing::detect(&bytes), packing);
            let file = dir.path().join(format!("{packing:?}.archive"));
            std::fs::write(&file, &bytes).unwrap();
            assert!(added_archive(&file).unwrap(), "{packing:?} tar");
            let root = dir.path().join(format!("{packing:?}.root"));
            std::fs::create_dir(&root).unwrap();
            unpack_added_archive(bytes.as_slice(), &root, &ExtractLimits::default()).unwrap();
            assert_eq!(std::fs::read(root.join("pkg/README")).unwrap(), b"read me\n", "{packing:?}");

            // The same packing around something that is not a tar is copied.
            let not_tar = packed(packing, &[b'x'; 2000]);
            let file = dir.path().join(format!("{packing:?}.data"));
            std::fs::write(&file, not_tar).unwrap();
            assert!(!added_archive(&file).unwrap(), "{packing:?} of plain bytes");
        }
        let short = dir.path().join("short");
        std::fs::write(&short, b"BZh").unwrap();
        assert!(!added_archive(&short).unwrap());
    }
}
