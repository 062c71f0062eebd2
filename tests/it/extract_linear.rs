//! Extraction is linear in the archive: N and 2N replaced directories (a
//! directory with a file in it, later replaced by a file of the same name)
//! cost work in proportion, counted as steps through extraction's tree of
//! known directories (`UnpackStats::dir_steps`), not timed (timings are not
//! asserted in tests; `bench/extract/replaced_dirs.sh` times it).

use berth::oci::{unpack, ExtractLimits, UnpackStats};

use crate::util::need::{skip, Need};
use crate::util::runc::TarBuilder;

/// `N` directories `dK/` with a file and a subdirectory each, then every
/// `dK` replaced by a file.
fn replaced_dirs(n: usize) -> Vec<u8> {
    let mut tar = TarBuilder::default().dir("top", 0o755);
    for k in 0..n {
        tar = tar.dir(&format!("top/d{k}"), 0o755).dir(&format!("top/d{k}/sub"), 0o755).file(
            &format!("top/d{k}/sub/f"),
            0o644,
            b"x",
        );
    }
    for k in 0..n {
        tar = tar.file(&format!("top/d{k}"), 0o644, b"replaced");
    }
    tar.finish()
}

fn extract(n: usize) -> UnpackStats {
    // On tmpfs where there is one: the count is what is asserted, and a
    // disk shared with other builds makes 90,000 entries take minutes.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let stats = unpack(&replaced_dirs(n)[..], dir.path(), &ExtractLimits::default()).unwrap();
    let left = std::fs::read_dir(dir.path().join("top")).unwrap().count();
    assert_eq!(left, n);
    assert!(dir.path().join("top/d0").is_file());
    stats
}

#[test]
fn replaced_directories_cost_linear_work() {
    // Extraction restores owners, which needs root.
    if skip(&[Need::Root]) {
        return;
    }
    const N: usize = 5_000;
    let (once, twice) = (extract(N), extract(2 * N));
    assert_eq!(twice.entries, 2 * once.entries - 1, "the top directory is counted once");
    assert!(
        twice.dir_steps as f64 <= 2.2 * once.dir_steps as f64,
        "N = {N}: {} steps, 2N: {} steps",
        once.dir_steps,
        twice.dir_steps
    );
    // About a handful of steps per entry, whatever N is.
    assert!(once.dir_steps <= 6 * once.entries, "{} steps for {} entries", once.dir_steps, once.entries);
}
