//! Times extraction of a layer whose N directories (each with a
//! subdirectory and a file) are later replaced by files, for N and 2N:
//! extraction must be linear in the archive, time(2N) <= 2.2 x time(N).
//! Run by `bench/extract/replaced_dirs.sh`.

use std::time::Instant;

use berth::oci::{unpack, ExtractLimits};

fn replaced_dirs(n: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let append = |builder: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    };
    let b = &mut builder;
    append(b, "top", tar::EntryType::Directory, b"");
    for k in 0..n {
        append(b, &format!("top/d{k}"), tar::EntryType::Directory, b"");
        append(b, &format!("top/d{k}/sub"), tar::EntryType::Directory, b"");
        append(b, &format!("top/d{k}/sub/f"), tar::EntryType::Regular, b"x");
    }
    for k in 0..n {
        append(b, &format!("top/d{k}"), tar::EntryType::Regular, b"replaced");
    }
    builder.into_inner().unwrap()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(5_000);
    let dir = std::env::args().nth(2).unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let mut seconds = Vec::new();
    for count in [n, 2 * n] {
        let tar = replaced_dirs(count);
        let root = tempfile::tempdir_in(&dir).unwrap();
        let start = Instant::now();
        let stats = unpack(&tar[..], root.path(), &ExtractLimits::default()).unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        println!("N = {count}: {} entries, {elapsed:.3} s", stats.entries);
        seconds.push(elapsed);
    }
    println!("time(2N) / time(N) = {:.2}", seconds[1] / seconds[0]);
}
