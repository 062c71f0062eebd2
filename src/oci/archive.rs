//! Image archives for `berth export`: `oci-archive` (an OCI image layout in a
//! tar, skopeo's `oci-archive:`) and `docker-archive` (`docker save`'s format:
//! `manifest.json` with `RepoTags`, the config and the layers, which
//! `docker load` and `podman load` read). The docker archive has no
//! `index.json`: podman would then read it as an OCI archive and take the
//! tag for a name. Both are plain,
//! deterministic tars written straight from the CAS into a temp file that is
//! renamed into place, so nothing half-written is ever at the output path.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cache::canonical_json;
use crate::cache::{BlobRef, Cas, CasError, Digest};
use crate::oci::layout::{image_blobs, layout_index, parse, read_blob, OCI_LAYOUT};
use crate::oci::{media_types, read_root, Compression, ImageRoot, Index, Manifest, OciError, Platform};
use crate::sys::AtomicFile;

/// Writes the image or index `root` as an OCI archive at `out_path`, with
/// `ref_name` (the tag) as `org.opencontainers.image.ref.name`.
pub fn write_oci_archive(cas: &Cas, root: BlobRef, ref_name: Option<&str>, out_path: &Path) -> Result<(), OciError> {
    let root = read_root(cas, root)?;
    let blobs = checked_blobs(cas, &root)?;
    let files = vec![("index.json", layout_index(&root, ref_name)?), ("oci-layout", OCI_LAYOUT.to_vec())];
    write_archive(cas, &blobs, files, out_path)
}

/// Writes the image `manifest` as a Docker archive at `out_path`, tagged
/// `repo_tags` (`registry.example/app:1.0`; a name without a tag gets
/// `:latest`, as `docker tag` does). An index becomes one `manifest.json`
/// entry per image, in index order (BuildStream's docker mode with several
/// images): `docker load` loads them all, and the names go to the host's
/// image (else the first), since one name can point at one image only.
pub fn write_docker_archive(
    cas: &Cas,
    manifest: BlobRef,
    repo_tags: &[String],
    out_path: &Path,
) -> Result<(), OciError> {
    let root = read_root(cas, manifest)?;
    let images: Vec<(BlobRef, Option<Platform>)> = if root.is_index() {
        let index: Index = parse(&read_blob(cas, manifest.digest)?, manifest.digest, "image index")?;
        let mut images = Vec::with_capacity(index.manifests.len());
        for entry in &index.manifests {
            if !media_types::is_manifest(&entry.media_type) {
                return Err(OciError::NestedIndex { image: entry.digest.to_string() });
            }
            images.push((BlobRef { digest: entry.digest, size: entry.size }, entry.platform.clone()));
        }
        images
    } else {
        vec![(manifest, None)]
    };
    let host = Platform::host();
    let named = images
        .iter()
        .position(|(_, platform)| {
            platform.as_ref().is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
        })
        .unwrap_or(0);
    let tags: Vec<String> = repo_tags.iter().map(|tag| with_default_tag(tag)).collect();
    let blob_path = |digest: Digest| format!("blobs/sha256/{}", digest.hex());
    let mut entries = Vec::with_capacity(images.len());
    let mut manifests = Vec::with_capacity(images.len() + 1);
    manifests.push(manifest);
    for (position, (image, _)) in images.iter().enumerate() {
        let parsed: Manifest = parse(&read_blob(cas, image.digest)?, image.digest, "image manifest")?;
        if parsed.layers.iter().any(|layer| Compression::from_media_type(&layer.media_type) == Some(Compression::Zstd))
        {
            return Err(OciError::DockerArchiveZstd);
        }
        manifests.push(*image);
        entries.push(serde_json::json!({
            "Config": blob_path(parsed.config.digest),
            "RepoTags": if position == named { tags.clone() } else { Vec::new() },
            "Layers": parsed.layers.iter().map(|layer| blob_path(layer.digest)).collect::<Vec<_>>(),
        }));
    }
    // Manifests and indexes are not part of a docker-archive.
    let blobs: Vec<BlobRef> = checked_blobs(cas, &root)?.into_iter().filter(|blob| !manifests.contains(blob)).collect();
    let docker_manifest = canonical_json(&serde_json::Value::Array(entries));
    let files = vec![("manifest.json", docker_manifest)];
    write_archive(cas, &blobs, files, out_path)
}

fn with_default_tag(reference: &str) -> String {
    let name = reference.rsplit('/').next().unwrap_or(reference);
    if name.contains(':') || name.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

fn checked_blobs(cas: &Cas, root: &ImageRoot) -> Result<Vec<BlobRef>, OciError> {
    let mut blobs = image_blobs(cas, root)?;
    let missing: Vec<Digest> =
        blobs.iter().filter(|blob| !cas.contains(&blob.digest)).map(|blob| blob.digest).collect();
    if !missing.is_empty() {
        return Err(OciError::MissingBlobs { digests: missing });
    }
    // Sorted so the archive's entry order is the byte order of the paths.
    blobs.sort_by_key(|blob| blob.digest.hex());
    blobs.dedup();
    Ok(blobs)
}

/// `blobs/`, `blobs/sha256/`, the blobs, then `files` (already in byte
/// order, all after `blobs/`), with fixed owners, modes and times.
fn write_archive(cas: &Cas, blobs: &[BlobRef], files: Vec<(&str, Vec<u8>)>, out_path: &Path) -> Result<(), OciError> {
    let write_error = || OciError::write(out_path.display().to_string());
    let parent = out_path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = AtomicFile::new_in(parent).map_err(write_error())?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, temp));
    for dir in ["blobs", "blobs/sha256"] {
        let mut header = header(0o755, 0);
        header.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut header, dir, io::empty()).map_err(write_error())?;
    }
    for blob in blobs {
        let path = cas.path(&blob.digest);
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => OciError::MissingBlobs { digests: vec![blob.digest] },
            _ => OciError::Read { path: path.clone(), source },
        })?;
        let mut reader = VerifyingReader { inner: file.take(blob.size), hasher: Default::default() };
        let mut header = header(0o644, blob.size);
        tar.append_data(&mut header, format!("blobs/sha256/{}", blob.digest.hex()), &mut reader)
            .map_err(write_error())?;
        let actual = Digest::from_bytes(sha2::Digest::finalize(reader.hasher).into());
        if actual != blob.digest {
            let _ = fs::remove_file(&path);
            return Err(OciError::Cas(CasError::Corrupt { expected: blob.digest, actual }));
        }
    }
    for (name, bytes) in files {
        let mut header = header(0o644, bytes.len() as u64);
        tar.append_data(&mut header, name, &bytes[..]).map_err(write_error())?;
    }
    let temp =
        tar.into_inner().map_err(write_error())?.into_inner().map_err(|error| write_error()(error.into_error()))?;
    temp.as_file().set_permissions(fs::Permissions::from_mode(0o644)).map_err(write_error())?;
    temp.commit(out_path).map_err(write_error())?;
    Ok(())
}

fn header(mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

/// Hashes a CAS blob while it is copied, so a corrupt blob is caught.
struct VerifyingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::oci::{media_types, Descriptor, REF_NAME_ANNOTATION};

    fn read_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(File::open(path).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                assert_eq!((entry.header().mtime().unwrap(), entry.header().uid().unwrap()), (0, 0));
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                (entry.path().unwrap().display().to_string(), bytes)
            })
            .collect()
    }

    fn image(cas: &Cas) -> (BlobRef, BlobRef, BlobRef) {
        let layer = cas.put_bytes(b"not really a tar").unwrap();
        let config = cas.put_bytes(br#"{"architecture":"amd64","os":"linux"}"#).unwrap();
        let manifest = Manifest::new(
            Descriptor::new(media_types::CONFIG, config),
            vec![Descriptor::new(media_types::LAYER_GZIP, layer)],
            Default::default(),
        );
        (cas.put_bytes(&canonical_json(&manifest)).unwrap(), config, layer)
    }

    #[test]
    fn oci_archive_holds_the_layout_with_the_ref_name() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let (manifest, config, layer) = image(&cas);
        let out = dir.path().join("image.tar");
        write_oci_archive(&cas, manifest, Some("1.0"), &out).unwrap();
        let entries = read_entries(&out);
        let mut expected: Vec<String> = [manifest, config, layer]
            .iter()
            .map(|blob| format!("blobs/sha256/{}", blob.digest.hex()))
            .chain(["blobs", "blobs/sha256", "index.json", "oci-layout"].map(str::to_owned))
            .collect();
        expected.sort();
        assert_eq!(entries.keys().cloned().collect::<Vec<_>>(), expected);
        let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME_ANNOTATION], "1.0");
        assert_eq!(index["manifests"][0]["digest"], manifest.digest.to_string());
    }

    #[test]
    fn docker_archive_lists_config_and_layers_with_tags() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let (manifest, config, layer) = image(&cas);
        let out = dir.path().join("image.tar");
        write_docker_archive(&cas, manifest, &["example.com:5000/app".to_owned()], &out).unwrap();
        let entries = read_entries(&out);
        assert!(!entries.contains_key("index.json"));
        let docker: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(
            docker,
            serde_json::json!([{
                "Config": format!("blobs/sha256/{}", config.digest.hex()),
                "Layers": [format!("blobs/sha256/{}", layer.digest.hex())],
                "RepoTags": ["example.com:5000/app:latest"],
            }])
        );
    }

    #[test]
    fn a_corrupt_blob_fails_the_archive_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let (manifest, _, layer) = image(&cas);
        fs::write(cas.path(&layer.digest), b"not really a taR").unwrap();
        let out = dir.path().join("image.tar");
        let error = write_oci_archive(&cas, manifest, None, &out).unwrap_err();
        assert!(matches!(error, OciError::Cas(CasError::Corrupt { .. })), "{error}");
        assert!(!out.exists());
    }
}
