//! The fault campaign: pushes and pulls through a proxy that damages 10% of
//! the requests (dropped connections, truncated and flipped bodies, 500s,
//! 429s, stalls, flipped or cut request bodies, and all of that on the
//! token server too), with the client's default retry settings. Every push
//! and every pull succeeds, every tag names the pushed digest, and no cache
//! holds a corrupt blob.
//!
//! CI runs a small seeded sample; `bench/faults/run.sh` runs the full
//! campaign (1,000 pulls, 200 pushes, blobs up to 50 MB) through the ignored
//! test below, with its size in `BERTH_FAULTS_*` variables.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::registry::{BlobSources, Client, ClientOptions, ImageRef, PushRequest, Reference};
use berth::workspace::RegistrySetting;

use crate::util::faults::{FaultProxy, Faults, Rng};
use crate::util::http::{forward, Reply, Server};
use crate::util::images::{temp_cas, TestImage, OCI_MANIFEST};
use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::token::TokenProxy;

/// The size of a campaign.
struct Campaign {
    pushes: usize,
    pulls: usize,
    /// The largest layer; one image carries a layer of exactly this size.
    max_blob: usize,
    /// Share of requests with a fault.
    rate: f64,
    stall_for: Duration,
    seed: u64,
    /// Pulls running at once through one client, as a build's fetches do.
    threads: usize,
}

/// What a campaign did; `failures` lists every push or pull that failed
/// and every corrupt blob found.
#[derive(Default)]
struct Outcome {
    pushed: usize,
    pulled: usize,
    blobs_checked: u64,
    bytes_pulled: u64,
    failures: Vec<String>,
}

/// A client with the default retry settings (6 attempts, 200 ms backoff
/// doubling), for the proxy's host; no credentials.
fn default_client(host: &str, no_credentials: &std::path::Path) -> Client {
    Client::new(ClientOptions {
        registries: vec![RegistrySetting {
            host: host.to_owned(),
            mirrors: Vec::new(),
            insecure: true,
            ..RegistrySetting::default()
        }],
        docker_config: Some(no_credentials.to_owned()),
        ..ClientOptions::default()
    })
    .unwrap()
}

/// Layer sizes of image `index`: mostly small, some of megabytes, a few of
/// tens of megabytes (drawn from `rng`); image 0 carries a `max_blob` layer.
fn layer_sizes(rng: &Rng, index: usize, max_blob: usize) -> Vec<usize> {
    let layers = 1 + rng.below(3) as usize;
    let mut sizes: Vec<usize> = (0..layers)
        .map(|_| {
            let band = rng.below(100);
            let (low, high) = match band {
                0..70 => (1 << 10, 64 << 10),
                70..95 => (64 << 10, 4 << 20),
                _ => (4 << 20, max_blob),
            };
            (low + rng.below((high.max(low + 1) - low) as u64) as usize).min(max_blob)
        })
        .collect();
    if index == 0 {
        sizes.push(max_blob);
    }
    sizes
}

fn run(campaign: &Campaign) -> Outcome {
    let started = Instant::now();
    let registry = Registry::start();
    // Tokens that run out after 20 uses: a pull often needs a new one.
    let tokens = TokenProxy::start(registry.port, 20, None);
    let proxy = FaultProxy::start(tokens.server.port, Faults::spread(campaign.rate, campaign.stall_for), campaign.seed);
    let no_credentials = tempfile::tempdir().unwrap();
    let client = default_client(&proxy.server.host(), no_credentials.path());
    let rng = Rng::new(campaign.seed ^ 0x1a7e);
    let mut outcome = Outcome::default();

    // Pushes: distinct images, each with its own tag.
    let (_source_dir, source) = temp_cas();
    let mut images = Vec::new();
    for index in 0..campaign.pushes {
        let image = TestImage::build(
            &source,
            campaign.seed.wrapping_add(index as u64),
            &layer_sizes(&rng, index, campaign.max_blob),
        );
        let destination = ImageRef::parse(&format!("{}/campaign/app{}", proxy.server.host(), index % 7)).unwrap();
        let request = PushRequest {
            root: image.manifest,
            media_type: OCI_MANIFEST.to_owned(),
            destination: destination.clone(),
            tags: vec![format!("v{index}")],
            sources: BlobSources::new(),
        };
        match client.push(&source, &request) {
            Ok(pushed) if pushed.digest == image.manifest.digest => {
                outcome.pushed += 1;
                images.push((image, destination));
            }
            Ok(pushed) => outcome.failures.push(format!("push {index}: pushed {} instead", pushed.digest)),
            Err(error) => outcome.failures.push(format!("push {index}: {error}")),
        }
    }

    // What the registry holds, read past the proxy: every blob, and every
    // tag naming the digest that was pushed (a request body damaged on the
    // way must not have been stored under a tag).
    let clean = default_client(&registry.host(), no_credentials.path());
    for (index, (image, destination)) in images.iter().enumerate() {
        for blob in image.blobs() {
            if !registry.stored_blob(&blob.digest) {
                outcome.failures.push(format!("push {index}: blob {} is not in the registry", blob.digest));
            }
        }
        let tagged = Reference::parse(&format!("{}/{}:v{index}", registry.host(), destination.repository)).unwrap();
        match clean.resolve_tag(&tagged, true) {
            Ok((digest, _)) if digest == image.manifest.digest => {}
            Ok((digest, _)) => {
                outcome.failures.push(format!("tag v{index} names {digest}, not {}", image.manifest.digest))
            }
            Err(error) => outcome.failures.push(format!("tag v{index}: {error}")),
        }
    }

    // Pulls into fresh caches, a few at once through the one client.
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let (pulled, checked, bytes) = (AtomicUsize::new(0), AtomicU64::new(0), AtomicU64::new(0));
    if !images.is_empty() {
        std::thread::scope(|scope| {
            for _ in 0..campaign.threads {
                scope.spawn(|| loop {
                    let pull = next.fetch_add(1, Ordering::SeqCst);
                    if pull >= campaign.pulls {
                        break;
                    }
                    let (image, repository) = &images[pull % images.len()];
                    match pull_and_check(&client, &source, image, repository) {
                        Ok((blobs, size)) => {
                            pulled.fetch_add(1, Ordering::SeqCst);
                            checked.fetch_add(blobs, Ordering::SeqCst);
                            bytes.fetch_add(size, Ordering::SeqCst);
                        }
                        Err(failure) => failures.lock().unwrap().push(format!("pull {pull}: {failure}")),
                    }
                });
            }
        });
    }
    outcome.pulled = pulled.into_inner();
    outcome.blobs_checked = checked.into_inner();
    outcome.bytes_pulled = bytes.into_inner();
    outcome.failures.extend(failures.into_inner().unwrap());
    eprintln!(
        "fault campaign (seed {:#x}, {:.0}% faults, stalls {:?}): {}/{} pushes, {}/{} pulls, {} pulled blobs checked ({} MB), {} failures, {:.0} s",
        campaign.seed,
        campaign.rate * 100.0,
        campaign.stall_for,
        outcome.pushed,
        campaign.pushes,
        outcome.pulled,
        campaign.pulls,
        outcome.blobs_checked,
        outcome.bytes_pulled >> 20,
        outcome.failures.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{}", proxy.counts.summary());
    let expected_faults = (proxy.counts.requests.load(Ordering::SeqCst) as f64 * campaign.rate) as u64;
    assert!(
        proxy.counts.faults() * 3 > expected_faults * 2,
        "the faults really happened: {} of about {expected_faults}",
        proxy.counts.faults()
    );
    outcome
}

/// Pulls `image` into a fresh cache: manifest, config, every layer; then
/// every file in that cache must hash to its name and equal the source.
fn pull_and_check(
    client: &Client,
    source: &berth::cache::Cas,
    image: &TestImage,
    repository: &ImageRef,
) -> Result<(u64, u64), String> {
    let (cache, cas) = temp_cas();
    let pulled = client.resolve(&cas, repository, image.manifest.digest, None, true).map_err(|e| e.to_string())?;
    for layer in &pulled.layers {
        client.fetch_blob(&cas, repository, layer, true).map_err(|e| e.to_string())?;
    }
    let mut checked = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(cache.path().join("cas/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if berth::cache::Digest::of(&content).hex() != name {
            return Err(format!("corrupt blob cached: {name}"));
        }
        let digest: berth::cache::Digest = format!("sha256:{name}").parse().unwrap();
        if source.contains(&digest) && std::fs::read(source.path(&digest)).unwrap() != content {
            return Err(format!("blob {name} differs from what was pushed"));
        }
        checked += 1;
        bytes += content.len() as u64;
    }
    if checked < 2 + image.layers.len() as u64 {
        return Err(format!("only {checked} blobs cached"));
    }
    Ok((checked, bytes))
}

fn assert_all_succeeded(outcome: &Outcome, campaign: &Campaign) {
    assert!(outcome.failures.is_empty(), "{} failures:\n{}", outcome.failures.len(), outcome.failures.join("\n"));
    assert_eq!((outcome.pushed, outcome.pulled), (campaign.pushes, campaign.pulls));
}

#[test]
fn a_seeded_sample_of_pushes_and_pulls_through_ten_percent_faults_all_succeed_and_cache_nothing_corrupt() {
    if skip(&[Need::Registry]) {
        return;
    }
    let campaign = Campaign {
        pushes: 12,
        pulls: 36,
        max_blob: 3 << 20,
        rate: 0.10,
        stall_for: Duration::from_millis(300),
        seed: 0xfa17,
        threads: 3,
    };
    assert_all_succeeded(&run(&campaign), &campaign);
}

/// The full campaign, sized by `BERTH_FAULTS_{PUSHES,PULLS,MAX_BLOB_MB,
/// RATE_PERCENT,STALL_MS,SEED,THREADS}` (`bench/faults/run.sh`).
#[test]
#[ignore = "the full fault campaign: bench/faults/run.sh"]
fn fault_campaign() {
    if skip(&[Need::Registry]) {
        return;
    }
    let setting = |name: &str, default: u64| crate::util::env_number(&format!("BERTH_FAULTS_{name}"), default);
    let campaign = Campaign {
        pushes: setting("PUSHES", 200) as usize,
        pulls: setting("PULLS", 1000) as usize,
        max_blob: (setting("MAX_BLOB_MB", 50) << 20) as usize,
        rate: setting("RATE_PERCENT", 10) as f64 / 100.0,
        stall_for: Duration::from_millis(setting("STALL_MS", 2000)),
        seed: setting("SEED", 0x5eed),
        threads: setting("THREADS", 4) as usize,
    };
    assert_all_succeeded(&run(&campaign), &campaign);
}

/// A manifest damaged on its way up: put under its digest, the registry
/// refuses it (400); put under a tag, it is valid JSON with another digest,
/// which the registry stores. Both are put again, and the tag ends up
/// naming the pushed digest.
#[test]
fn a_manifest_damaged_on_the_way_up_is_put_again() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let upstream = registry.port;
    let puts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let proxy = {
        let puts = puts.clone();
        Server::start(move |mut request| {
            if request.method == "PUT" && request.path().contains("/manifests/") {
                let mut puts = puts.lock().unwrap();
                let count = puts.entry(request.path().to_owned()).or_default();
                *count += 1;
                if *count == 1 {
                    // Still JSON, no longer the same bytes.
                    request.body.push(b' ');
                }
            }
            match forward(upstream, &request) {
                Ok(response) => Reply::Send(response),
                Err(_) => Reply::Drop,
            }
        })
    };
    let no_credentials = tempfile::tempdir().unwrap();
    let client = default_client(&proxy.host(), no_credentials.path());
    let (_source_dir, source) = temp_cas();
    let image = TestImage::build(&source, 77, &[2_000]);
    let request = PushRequest {
        root: image.manifest,
        media_type: OCI_MANIFEST.to_owned(),
        destination: ImageRef::parse(&format!("{}/damaged/app", proxy.host())).unwrap(),
        tags: vec!["v1".to_owned()],
        sources: BlobSources::new(),
    };
    client.push(&source, &request).unwrap();
    let puts = puts.lock().unwrap().clone();
    assert_eq!(puts.values().copied().collect::<Vec<_>>(), vec![2, 2], "each manifest put twice: {puts:?}");
    let clean = default_client(&registry.host(), no_credentials.path());
    let tagged = Reference::parse(&format!("{}/damaged/app:v1", registry.host())).unwrap();
    assert_eq!(clean.resolve_tag(&tagged, true).unwrap().0, image.manifest.digest);
}
