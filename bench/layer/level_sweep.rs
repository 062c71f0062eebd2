//! Compresses a tar in the layer writer's 1 MiB gzip blocks with libdeflate
//! at levels 1 to 7 on one core, and prints each level's speed and output
//! size: the table that chose `GZIP_LEVEL` (bench/layer/README.md).
//!
//! Usage: `cargo run --release --example level_sweep -- TAR`
//! (for instance `tar -C TREE --sort=name -cf tree.tar .`).

use std::time::Instant;

use berth::oci::GZIP_BLOCK_SIZE;

/// The allocator the `berth` binary declares (src/main.rs), so that the
/// figures are the binary's.
#[global_allocator]
static ALLOCATOR: berth::frontend::GuardedAllocator = berth::frontend::GuardedAllocator;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: level_sweep TAR"))?;
    let data = std::fs::read(&path)?;
    println!("{path}: {:.1} MB", data.len() as f64 / 1e6);
    for level in 1..=7 {
        let level_value = libdeflater::CompressionLvl::new(level).map_err(|error| anyhow::anyhow!("{error:?}"))?;
        let mut compressor = libdeflater::Compressor::new(level_value);
        let mut out = vec![0; compressor.gzip_compress_bound(GZIP_BLOCK_SIZE)];
        let started = Instant::now();
        let mut total = 0;
        for block in data.chunks(GZIP_BLOCK_SIZE) {
            total += compressor.gzip_compress(block, &mut out).map_err(|error| anyhow::anyhow!("{error:?}"))?;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "level {level}: {:.0} MB/s, {:.1} MB ({:.3} of the tar)",
            data.len() as f64 / seconds / 1e6,
            total as f64 / 1e6,
            total as f64 / data.len() as f64
        );
    }
    Ok(())
}
