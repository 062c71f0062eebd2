//! Extraction of a 200 MB, 10,000-file base layer: berth's layer store
//! (`LayerStore::extract`: digest check, owners, tree digest) against
//! `umoci unpack` of the same layer in an OCI layout, RUNS times each
//! (fresh directories every time), medians printed. Run as root (both
//! restore owners) by `bench/sandbox/run.sh`.
//!
//! Usage: extract_base [DIR] [RUNS]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use berth::cache::{canonical_json, Cas, Digest};
use berth::oci::{ExtractLimits, LayerStore};

const FILES: usize = 10_000;
const FILE_BYTES: usize = 20 * 1024;

/// The layer: 100 directories of 100 files of 20 KiB noise (xorshift, so
/// gzip cannot shrink it and the bytes are the same every run).
fn layer() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move |buffer: &mut [u8]| {
        for chunk in buffer.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    };
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gzip);
    let header = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size as u64);
        header
    };
    let mut data = vec![0u8; FILE_BYTES];
    for dir in 0..FILES / 100 {
        builder.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("d{dir}"), &[][..]).unwrap();
        for file in 0..100 {
            noise(&mut data);
            let mut file_header = header(tar::EntryType::Regular, 0o644, FILE_BYTES);
            builder.append_data(&mut file_header, format!("d{dir}/f{file}"), &data[..]).unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// An OCI layout holding one image of `layer`, tagged `bench`, for umoci.
fn write_layout(dir: &Path, layer: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let diff_id = {
        use std::io::Read;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer).read_to_end(&mut tar).unwrap();
        Digest::of(&tar).to_string()
    };
    let (layer_digest, layer_size) = put(layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = put(&canonical_json(&config));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(&canonical_json(&manifest));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "bench"},
        }],
    });
    std::fs::write(dir.join("index.json"), canonical_json(&index)).unwrap();
    std::fs::File::create(dir.join("oci-layout")).unwrap().write_all(br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let runs: usize = std::env::args().nth(2).and_then(|arg| arg.parse().ok()).unwrap_or(3);
    let work = tempfile::tempdir_in(&dir).unwrap();
    let layer = layer();
    println!("layer: {} files, {} MB gzip", FILES, layer.len() / 1_000_000);
    let layout = work.path().join("layout");
    write_layout(&layout, &layer);
    let (mut berth, mut umoci) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let cache = work.path().join(format!("cache-{run}"));
        let cas = Cas::open(&cache).unwrap();
        let blob = cas.put_bytes(&layer).unwrap();
        sync();
        let start = Instant::now();
        let extracted = LayerStore::new(&cache).extract(&cas, &blob.digest, &ExtractLimits::default()).unwrap();
        berth.push(start.elapsed().as_secs_f64());
        assert!(extracted.root.join("d99/f99").is_file());
        std::fs::remove_dir_all(&cache).unwrap();

        let bundle = work.path().join(format!("bundle-{run}"));
        sync();
        let start = Instant::now();
        let status = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:bench", layout.display()))
            .arg(&bundle)
            .status()
            .expect("run umoci");
        umoci.push(start.elapsed().as_secs_f64());
        assert!(status.success() && bundle.join("rootfs/d99/f99").is_file());
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    println!("berth LayerStore::extract: {berth:.3?} s");
    println!("umoci unpack:              {umoci:.3?} s");
    let (berth, umoci) = (median(berth), median(umoci));
    println!("median: berth {berth:.3} s, umoci {umoci:.3} s, berth/umoci = {:.2}", berth / umoci);
}

/// Writes dirty pages back, so one run's writeback does not land in the next.
fn sync() {
    let _ = Command::new("sync").status();
}
