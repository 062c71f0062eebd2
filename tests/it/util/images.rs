//! Test images made of real gzip'd tar layers, written into a CAS, and the
//! checks the registry tests make of a cache afterwards.

use std::io::Write;
use std::path::Path;

use berth::cache::{BlobRef, Cas, Digest};
use sha2::Digest as _;

/// An image made of real gzip'd tar layers, written into a CAS.
pub struct TestImage {
    pub manifest: BlobRef,
    pub manifest_bytes: Vec<u8>,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Deterministic noise (xorshift), so layers do not compress to nothing.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A gzip'd tar holding one file; returns (blob bytes, diff_id).
pub fn layer_tar_gz(name: &str, contents: &[u8]) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, contents).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

impl TestImage {
    /// An image with `layer_sizes.len()` layers of noise, distinct per `seed`.
    pub fn build(cas: &Cas, seed: u64, layer_sizes: &[usize]) -> TestImage {
        TestImage::build_for(cas, seed, layer_sizes, "amd64")
    }

    pub fn build_for(cas: &Cas, seed: u64, layer_sizes: &[usize], architecture: &str) -> TestImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (index, size) in layer_sizes.iter().enumerate() {
            let (bytes, diff_id) =
                layer_tar_gz(&format!("file-{seed}-{index}"), &noise(seed * 1000 + index as u64, *size));
            layers.push(cas.put_bytes(&bytes).unwrap());
            diff_ids.push(diff_id.to_string());
        }
        let config = serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Env": [format!("SEED={seed}")]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config = cas.put_bytes(config.as_bytes()).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size},
            "layers": layers.iter().map(|layer| serde_json::json!({
                "mediaType": OCI_LAYER, "digest": layer.digest.to_string(), "size": layer.size,
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest_ref = cas.put_bytes(&manifest).unwrap();
        TestImage { manifest: manifest_ref, manifest_bytes: manifest, config, layers }
    }

    /// Every blob: config and layers.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut blobs = vec![self.config];
        blobs.extend(&self.layers);
        blobs
    }
}

/// An index over images, written into a CAS.
pub fn index_of(cas: &Cas, images: &[(&TestImage, &str)]) -> BlobRef {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|(image, architecture)| serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.size,
            "platform": {"os": "linux", "architecture": architecture},
        })).collect::<Vec<_>>(),
    })
    .to_string();
    cas.put_bytes(index.as_bytes()).unwrap()
}

/// Writes `image` as an OCI image layout at `dir` with `tag` (for skopeo).
pub fn write_oci_layout(cas: &Cas, image: &TestImage, dir: &Path, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    for blob in image.blobs().into_iter().chain([image.manifest]) {
        std::fs::copy(cas.path(&blob.digest), blobs.join(blob.digest.hex())).unwrap();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// Every file under `cas/sha256` hashes to its name: nothing corrupt cached.
pub fn assert_cas_sound(cache_dir: &Path) {
    for entry in std::fs::read_dir(cache_dir.join("cas/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), actual, "corrupt blob cached at {}", path.display());
    }
}

/// A fresh cache dir and CAS.
pub fn temp_cas() -> (tempfile::TempDir, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    (dir, cas)
}
