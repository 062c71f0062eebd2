//! Packs one directory tree into one gzip layer through the real `pack_layer`
//! action, as `berth build` of `oci_layer(srcs = glob(["**"]))` would: every
//! source is hashed first (its digest is part of the action key), then the
//! action streams the sorted tar through parallel gzip into a CAS.
//!
//! Usage: `pack_layer TREE CACHE_DIR [gzip|zstd|none] [THREADS]`; prints
//! the layer digest, diff_id, size and entry count.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth::actions::{Action, ActionContext, ExecutionContext, LayerOutput, PackLayer, ResolvedInput};
use berth::cache::{Cas, Digest, FileStamp, Sha256Writer};
use berth::oci::{Compression, LayerEntry, LayerStore};

/// The allocator the `berth` binary declares (src/main.rs), so that the
/// figures are the binary's.
#[global_allocator]
static ALLOCATOR: berth::frontend::GuardedAllocator = berth::frontend::GuardedAllocator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, tree, cache, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: pack_layer TREE CACHE_DIR [gzip|zstd|none] [THREADS]");
    };
    let compression: Compression =
        rest.first().map_or(Ok(Compression::Gzip), |text| text.parse()).map_err(anyhow::Error::msg)?;
    let threads = rest.get(1).map_or(Ok(0), |text| text.parse())?;
    let tree = PathBuf::from(tree);
    let started = Instant::now();

    let mut action = PackLayer::new(compression, 0);
    action.threads = threads;
    let mut inputs = Vec::new();
    walk(&tree, &tree, &mut action, &mut inputs)?;
    let hashed = started.elapsed();

    let cas = Cas::open(Path::new(cache))?;
    let scratch = tempfile::tempdir()?;
    let exec = ExecutionContext::new(cas, LayerStore::new(Path::new(cache)));
    let ctx = ActionContext::new(&exec, inputs, scratch.path());
    let result = action.execute(&ctx).map_err(|error| anyhow::anyhow!("{error}"))?;
    let output = LayerOutput::from_result(&result).map_err(|error| anyhow::anyhow!("{error}"))?;
    let layer = output.blob;
    eprintln!(
        "{} entries, {} sources hashed in {:.2}s, packed in {:.2}s",
        action.entries.len(),
        action.sources.len(),
        hashed.as_secs_f64(),
        (started.elapsed() - hashed).as_secs_f64()
    );
    let diff_id = output.diff_id.map_or_else(|| "?".to_owned(), |digest| digest.to_string());
    println!("{} {} {} bytes", layer.digest, diff_id, layer.size);
    Ok(())
}

/// A sorted walk; sources are hashed as the engine hashes inputs.
fn walk(
    root: &Path,
    dir: &Path,
    action: &mut PackLayer,
    inputs: &mut Vec<ResolvedInput<'static>>,
) -> anyhow::Result<()> {
    let mut children: Vec<_> =
        fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.path())).collect::<Result<_, _>>()?;
    children.sort();
    for path in children {
        let relative = path.strip_prefix(root)?.to_str().ok_or_else(|| anyhow::anyhow!("not UTF-8"))?.to_owned();
        let dest = format!("/{relative}");
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            action.push(LayerEntry::symlink(dest, target.to_string_lossy()));
        } else if meta.is_dir() {
            action.push(LayerEntry::directory(dest));
            walk(root, &path, action, inputs)?;
        } else if meta.is_file() {
            let mut hasher = Sha256Writer::new(io::sink());
            io::copy(&mut fs::File::open(&path)?.take(u64::MAX), &mut hasher)?;
            let (digest, size, _): (Digest, u64, _) = hasher.finish();
            action.push_source(dest, PathBuf::from(&relative), meta.permissions().mode() & 0o111 != 0);
            let settled = FileStamp::of(&meta).is_settled();
            inputs.push(ResolvedInput::Source { path, digest, size, settled });
        }
    }
    Ok(())
}
