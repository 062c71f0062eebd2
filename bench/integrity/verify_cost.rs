//! What verification before publishing costs, measured with the function a
//! build calls (`Cas::verify_content`, streamed SHA-256 of each blob, in
//! parallel over the blobs as `berth build` does it): over every blob a
//! build links into `berth-out/` (a cold build hashes each of them once),
//! and over the manifests and indexes only (all a no-op build hashes).
//!
//! Usage: cargo run --release --example verify_cost -- CACHE_DIR BERTH_OUT
//! (`bench/integrity/verify_cost.sh` runs it after a cold build).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth::cache::{BlobRef, Cas, Digest};
use rayon::prelude::*;

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [cache_dir, berth_out] = args.as_slice() else {
        eprintln!("usage: verify_cost CACHE_DIR BERTH_OUT");
        std::process::exit(2);
    };
    let mut blobs = BTreeMap::new();
    collect_blobs(berth_out, &mut blobs);
    // Only what the CAS holds is verified (not `index.json` and the like,
    // written for the layout).
    blobs.retain(|digest, _| cache_dir.join("cas/sha256").join(digest.hex()).is_file());
    let manifests: Vec<BlobRef> =
        blobs.values().filter(|blob| is_manifest_or_index(cache_dir, blob)).copied().collect();
    let all: Vec<BlobRef> = blobs.into_values().collect();
    let bytes: u64 = all.iter().map(|blob| blob.size).sum();

    // A fresh `Cas` per pass: each hashes a blob at most once per process.
    let cold = time(|| {
        let cas = Cas::open(cache_dir).expect("open the cache");
        let sound = all.par_iter().filter(|blob| cas.verify_content(blob).expect("read a blob")).count();
        assert_eq!(sound, all.len(), "every published blob is sound");
    });
    let no_op = time(|| {
        let cas = Cas::open(cache_dir).expect("open the cache");
        for blob in &manifests {
            assert!(cas.verify_content(blob).expect("read a manifest"));
        }
    });
    println!("published blobs:  {} ({:.1} MB), verified in {:.1} ms", all.len(), bytes as f64 / 1e6, cold);
    println!("manifests/indexes: {}, verified in {:.2} ms (what a no-op build hashes)", manifests.len(), no_op);
}

/// Milliseconds `run` takes (best of three: the page cache is warm, as it
/// is right after a build wrote the blobs).
fn time(mut run: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// Every file under `dir` named by a sha256 (the layouts' `blobs/sha256/`),
/// and every other regular file whose bytes are a CAS blob (layer targets'
/// `layer.tar.gz`), by digest.
fn collect_blobs(dir: &Path, blobs: &mut BTreeMap<Digest, BlobRef>) {
    for entry in std::fs::read_dir(dir).expect("read berth-out") {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            collect_blobs(&path, blobs);
        } else if kind.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = match format!("sha256:{name}").parse::<Digest>() {
                Ok(digest) => digest,
                Err(_) => Digest::of(&std::fs::read(&path).expect("read an output")),
            };
            let size = entry.metadata().expect("metadata").len();
            blobs.insert(digest, BlobRef { digest, size });
        }
    }
}

fn is_manifest_or_index(cache_dir: &Path, blob: &BlobRef) -> bool {
    if blob.size > 1 << 20 {
        return false;
    }
    let path = cache_dir.join("cas/sha256").join(blob.digest.hex());
    let Ok(bytes) = std::fs::read(path) else { return false };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return false };
    value.get("manifests").is_some() || value.get("layers").is_some()
}
