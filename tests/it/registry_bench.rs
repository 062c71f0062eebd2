//! The registry benchmark (run by `bench/registry/run.sh`, ignored by
//! `cargo test`): berth's client against `skopeo copy`, each pushing to its
//! own freshly started `docker-registry`.
//!
//! - fresh push of a ~200 MB, 4-layer image;
//! - re-push of the same image (berth: HEAD only, no blob uploaded);
//! - pull as the base of a build that adds a layer: berth fetches manifest and
//!   config only, skopeo copies every blob.
//!
//! Set `BERTH_BENCH_MB` (default 200) and `BERTH_BENCH_RUNS` (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use berth::cache::Cas;
use berth::registry::{Client, ImageRef};

use crate::util::images::{temp_cas, write_oci_layout, TestImage};
use crate::util::need::{skip, Need};
use crate::util::process::run;
use crate::util::registry::{insecure_client, manifest_push, Registry};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn client(host: &str, docker_config: &Path) -> Client {
    insecure_client(&[host.to_owned()], Some(docker_config))
}

fn berth_push(client: &Client, cas: &Cas, image: &TestImage, repository: &str) -> (Duration, usize) {
    let request = manifest_push(image.manifest, repository, &["v1"]);
    settle();
    let started = Instant::now();
    let outcome = client.push(cas, &request).unwrap();
    (started.elapsed(), outcome.uploaded_blobs)
}

fn skopeo(args: &[&str]) -> Duration {
    settle();
    let started = Instant::now();
    run("skopeo", args);
    started.elapsed()
}

/// Flushes dirty pages so that one step's writeback does not slow the next.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.filter_map(Result::ok).filter_map(|entry| entry.metadata().ok()).map(|meta| meta.len()).sum()
    })
}

#[test]
#[ignore = "benchmark: run bench/registry/run.sh"]
fn registry_benchmark() {
    if skip(&[Need::Registry, Need::Skopeo]) {
        return;
    }
    let total_mb = env_number("BERTH_BENCH_MB", 200) as usize;
    let runs = env_number("BERTH_BENCH_RUNS", 3).max(1);
    let (_cache, cas) = temp_cas();
    // Noise that gzip cannot shrink: the transfer, not compression, is measured.
    let layer_size = total_mb * 1_000_000 / 4;
    let image = TestImage::build(&cas, 7, &[layer_size; 4]);
    let total: u64 = image.blobs().iter().map(|blob| blob.size).sum();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    write_oci_layout(&cas, &image, &layout, "v1");
    let oci = format!("oci:{}:v1", layout.display());
    let no_creds = tempfile::tempdir().unwrap();

    let (mut berth_fresh, mut skopeo_fresh, mut berth_again, mut skopeo_again) = (vec![], vec![], vec![], vec![]);
    let (mut berth_pull, mut skopeo_pull) = (vec![], vec![]);
    let (mut berth_pull_bytes, mut skopeo_pull_bytes) = (0, 0);
    for run in 0..runs {
        let for_berth = Registry::start();
        let for_skopeo = Registry::start();
        let client = client(&for_berth.host(), no_creds.path());
        let repository = format!("{}/bench/app", for_berth.host());
        let skopeo_dest = format!("docker://{}/bench/app:v1", for_skopeo.host());

        let skopeo_push =
            || skopeo(&["--insecure-policy", "copy", "-q", "--dest-tls-verify=false", &oci, &skopeo_dest]);
        // Alternate who goes first, so neither always runs on a warmer machine.
        let berth_first = run % 2 == 0;
        if !berth_first {
            skopeo_fresh.push(skopeo_push());
        }
        let (elapsed, uploaded) = berth_push(&client, &cas, &image, &repository);
        assert_eq!(uploaded, 5);
        berth_fresh.push(elapsed);
        if berth_first {
            skopeo_fresh.push(skopeo_push());
        }

        let (elapsed, uploaded) = berth_push(&client, &cas, &image, &repository);
        assert_eq!(uploaded, 0, "a re-push uploads no blob");
        berth_again.push(elapsed);
        skopeo_again.push(skopeo_push());

        // Pull as a base: what berth needs before building on top.
        let (pull_dir, pull_cas) = temp_cas();
        let started = Instant::now();
        client.resolve(&pull_cas, &ImageRef::parse(&repository).unwrap(), image.manifest.digest, None, true).unwrap();
        berth_pull.push(started.elapsed());
        berth_pull_bytes = dir_bytes(&pull_dir.path().join("cas/sha256"));
        let copy = work.path().join("skopeo-pull");
        let _ = std::fs::remove_dir_all(&copy);
        skopeo_pull.push(skopeo(&[
            "--insecure-policy",
            "copy",
            "-q",
            "--src-tls-verify=false",
            &skopeo_dest,
            &format!("oci:{}:v1", copy.display()),
        ]));
        skopeo_pull_bytes = dir_bytes(&copy.join("blobs/sha256"));
    }

    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let (bf, sf, ba, sa, bp, sp) = (
        median(berth_fresh),
        median(skopeo_fresh),
        median(berth_again),
        median(skopeo_again),
        median(berth_pull),
        median(skopeo_pull),
    );
    println!(
        "image: 4 layers, {:.1} MB of blobs; median of {runs} runs, each tool against its own fresh registry",
        total as f64 / 1e6
    );
    println!("| step | berth | skopeo | berth / skopeo |");
    println!("|---|---|---|---|");
    println!("| fresh push | {:.0} ms | {:.0} ms | {:.2}x |", ms(bf), ms(sf), ms(bf) / ms(sf));
    println!("| re-push (nothing to upload) | {:.0} ms | {:.0} ms | {:.2}x |", ms(ba), ms(sa), ms(ba) / ms(sa));
    println!("| pull as a base | {:.0} ms | {:.0} ms | {:.2}x |", ms(bp), ms(sp), ms(bp) / ms(sp));
    println!(
        "| pull as a base: bytes fetched | {berth_pull_bytes} B (manifest + config) | {skopeo_pull_bytes} B (every blob) | {:.5}x |",
        berth_pull_bytes as f64 / skopeo_pull_bytes as f64
    );
}
