//! Times in-container steps (`run_step`) on a base image: the overhead of a
//! trivial step on a warm base, and a big base extracted once for many
//! steps. Driven by `bench/runc/run.sh`; prints one line per measurement.
//!
//! Usage: step_bench busybox-tar OUT.tar.gz
//!        step_bench big-tar OUT.tar.gz MIB
//!        step_bench steps CACHE_DIR BASE.tar.gz N COMMAND

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use berth::actions::{
    Action, ActionContext, ActionId, ActionResult, BaseConfig, ResolvedInput, RunStep, RunStepRuntime, RunStepSpec,
};
use berth::cache::Cas;

const APPLETS: &[&str] = &["sh", "echo", "cat", "sleep", "ls", "mkdir", "true", "rm", "cp", "wc", "head"];

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

fn busybox_tar(builder: &mut tar::Builder<impl Write>) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        builder.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), dir, std::io::empty()).unwrap();
    }
    builder
        .append_data(&mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64), "bin/busybox", &busybox[..])
        .unwrap();
    for applet in APPLETS {
        builder
            .append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), format!("bin/{applet}"), "busybox")
            .unwrap();
    }
}

fn write_base(out: &Path, extra_mib: usize) {
    let file = std::fs::File::create(out).unwrap();
    let gzip = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gzip);
    busybox_tar(&mut builder);
    if extra_mib > 0 {
        builder
            .append_data(&mut header(tar::EntryType::Directory, 0o755, 0), "usr/share/data", std::io::empty())
            .unwrap();
        // 1 MiB files of xorshift noise: incompressible, like real binaries.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; 1 << 20];
        for index in 0..extra_mib {
            for chunk in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            let path = format!("usr/share/data/{index:04}.bin");
            builder
                .append_data(&mut header(tar::EntryType::Regular, 0o644, block.len() as u64), path, &block[..])
                .unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn run_steps(cache: &Path, base: &Path, count: usize, command: &str) {
    let cas = Cas::open(cache).unwrap();
    let blob = cas.put_bytes(&std::fs::read(base).unwrap()).unwrap();
    let base = ActionResult { blobs: [("layer".to_owned(), blob)].into(), metadata: serde_json::Value::Null };
    let extracted = cache.join("layers").join(blob.digest.hex());
    for index in 0..count {
        let warm = extracted.exists();
        let step = RunStep {
            base_config: BaseConfig::None,
            base_layers: vec![ActionId(0)],
            packages: vec![],
            spec: RunStepSpec {
                command: vec![command.to_owned()],
                outputs: vec!["/out".to_owned()],
                timeout_secs: 60,
                ..RunStepSpec::default()
            },
            runtime: RunStepRuntime { runc: None, cache_dir: Some(cache.to_owned()), stack: Default::default() },
        };
        let scratch = tempfile::tempdir_in(cache).unwrap();
        let started = Instant::now();
        let ctx = ActionContext { inputs: vec![ResolvedInput::Action(&base)], cas: &cas, scratch: scratch.path() };
        step.execute(&ctx).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        println!("step {index} {} {seconds:.4}", if warm { "warm" } else { "cold(extracts)" });
    }
    let layers = std::fs::read_dir(cache.join("layers")).unwrap().flatten().filter(|e| e.path().is_dir()).count();
    println!("extracted layer directories: {layers}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("busybox-tar") => write_base(Path::new(&args[2]), 0),
        Some("big-tar") => write_base(Path::new(&args[2]), args[3].parse().unwrap()),
        Some("steps") => run_steps(Path::new(&args[2]), Path::new(&args[3]), args[4].parse().unwrap(), &args[5]),
        _ => {
            eprintln!("usage: step_bench busybox-tar OUT | big-tar OUT MIB | steps CACHE BASE N COMMAND");
            std::process::exit(2);
        }
    }
}
