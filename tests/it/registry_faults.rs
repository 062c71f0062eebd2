//! berth's registry client over a bad network: dropped connections,
//! truncated bodies, 500s, 429s and flipped bytes, injected by a proxy in
//! front of a real `docker-registry`; and registries that lie.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::cache::{Cas, Digest};
use berth::error::ErrorKind;
use berth::registry::{Client, ClientOptions, ImageRef, RegistryError};

use crate::util::faults::{FaultProxy, Faults};
use crate::util::http::{HttpResponse, Reply, Server};
use crate::util::images::{assert_cas_sound, temp_cas, TestImage, OCI_MANIFEST};
use crate::util::need::{skip, Need};
use crate::util::registry::{free_port, insecure_options, manifest_push, Registry};

fn client(host: &str, docker_config: &Path, max_attempts: u32) -> Client {
    let options = insecure_options(&[host.to_owned()], Some(docker_config));
    Client::new(ClientOptions { max_attempts, backoff: Duration::from_millis(5), ..options }).unwrap()
}

#[test]
fn a_hundred_pulls_and_fifty_pushes_succeed_through_a_faulty_proxy_and_cache_nothing_corrupt() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let faults = Faults { drop: 0.03, truncate: 0.03, error_500: 0.02, error_429: 0.02, flip: 0.10, ..Faults::NONE };
    let proxy = FaultProxy::start(registry.port, faults, 0x5eed);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&proxy.server.host(), no_creds.path(), 12);

    // 50 pushes of distinct images, each of three small layers.
    let (source_dir, source) = temp_cas();
    let mut images = Vec::new();
    for seed in 0..50 {
        let image = TestImage::build(&source, 100 + seed, &[20_000, 8_000, 3_000]);
        let request = manifest_push(
            image.manifest,
            &format!("{}/faulty/app{}", proxy.server.host(), seed % 5),
            &[&format!("v{seed}")],
        );
        let outcome = client.push(&source, &request).unwrap_or_else(|error| panic!("push {seed}: {error}"));
        assert_eq!(outcome.digest, image.manifest.digest);
        images.push((image, request.destination));
    }
    for (image, _) in &images {
        for blob in image.blobs() {
            assert!(registry.stored_blob(&blob.digest), "pushed {}", blob.digest);
        }
    }

    // 100 pulls into fresh caches: manifest, config and every layer.
    for pull in 0..100 {
        let (image, repository) = &images[pull % images.len()];
        let (cache, cas) = temp_cas();
        let pulled = client
            .resolve(&cas, repository, image.manifest.digest, None, true)
            .unwrap_or_else(|error| panic!("pull {pull}: {error}"));
        for layer in &pulled.layers {
            let blob = client.fetch_blob(&cas, repository, layer, true).unwrap_or_else(|e| panic!("pull {pull}: {e}"));
            assert_eq!(
                std::fs::read(cas.path(&blob.digest)).unwrap(),
                std::fs::read(source.path(&blob.digest)).unwrap()
            );
        }
        assert_cas_sound(cache.path());
    }
    assert_cas_sound(source_dir.path());

    let counts = &proxy.counts;
    let seen = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::SeqCst);
    eprintln!(
        "{} requests: {} dropped, {} truncated, {} 500/429, {} flipped",
        seen(&counts.requests),
        seen(&counts.dropped),
        seen(&counts.truncated),
        seen(&counts.errors),
        seen(&counts.flipped)
    );
    assert!(seen(&counts.dropped) > 10 && seen(&counts.truncated) > 5 && seen(&counts.errors) > 10);
    assert!(seen(&counts.flipped) > 30, "the faults really happened");
}

/// A registry that serves `blobs` from memory, corrupting `corrupt` and
/// counting the GETs of each path.
fn lying_registry(blobs: BTreeMap<Digest, Vec<u8>>, corrupt: Digest) -> (Server, Arc<Mutex<BTreeMap<String, usize>>>) {
    let gets: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let server = {
        let gets = gets.clone();
        Server::start(move |request| {
            *gets.lock().unwrap().entry(request.path().to_owned()).or_default() += 1;
            let digest = request.path().rsplit('/').next().and_then(|text| text.parse::<Digest>().ok());
            match digest.and_then(|digest| blobs.get(&digest).map(|bytes| (digest, bytes))) {
                Some((digest, bytes)) => {
                    let mut bytes = bytes.clone();
                    if digest == corrupt {
                        let middle = bytes.len() / 2;
                        bytes[middle] ^= 1;
                    }
                    let mut response = HttpResponse::new(200).body(bytes);
                    if request.path().contains("/manifests/") {
                        response = response.header("Content-Type", OCI_MANIFEST);
                    }
                    Reply::Send(response)
                }
                None => Reply::Send(HttpResponse::new(404)),
            }
        })
    };
    (server, gets)
}

fn blobs_of(cas: &Cas, image: &TestImage) -> BTreeMap<Digest, Vec<u8>> {
    image
        .blobs()
        .into_iter()
        .chain([image.manifest])
        .map(|blob| (blob.digest, std::fs::read(cas.path(&blob.digest)).unwrap()))
        .collect()
}

#[test]
fn a_registry_that_always_corrupts_a_blob_gives_a_digest_mismatch_naming_it() {
    let (_source_dir, source) = temp_cas();
    let image = TestImage::build(&source, 7, &[5_000, 6_000]);
    let bad = image.layers[1].digest;
    let (server, gets) = lying_registry(blobs_of(&source, &image), bad);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&server.host(), no_creds.path(), 4);
    let repository = ImageRef::parse(&format!("{}/liar", server.host())).unwrap();

    let (cache, cas) = temp_cas();
    let pulled = client.resolve(&cas, &repository, image.manifest.digest, None, true).unwrap();
    client.fetch_blob(&cas, &repository, &pulled.layers[0], true).unwrap();
    let error = client.fetch_blob(&cas, &repository, &pulled.layers[1], true).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RegistryError::DigestMismatch { .. }), "{message}");
    assert!(message.contains(&bad.to_string()) && message.contains("liar"), "{message}");
    assert_eq!(berth::error::Error::from(error).kind, ErrorKind::User);
    assert_eq!(gets.lock().unwrap()[&format!("/v2/liar/blobs/{bad}")], 4, "fetched again before giving up");
    assert!(!cas.contains(&bad), "a corrupt blob is never cached");
    assert_eq!(std::fs::read_dir(cache.path().join("cas/sha256")).unwrap().count(), 3, "manifest, config, layer 0");
    assert_eq!(std::fs::read_dir(cache.path().join("cas/tmp")).unwrap().count(), 0, "no temp file left behind");
    assert_cas_sound(cache.path());
}

#[test]
fn a_corrupt_manifest_is_refused_by_digest() {
    let (_source_dir, source) = temp_cas();
    let image = TestImage::build(&source, 8, &[100]);
    let (server, _) = lying_registry(blobs_of(&source, &image), image.manifest.digest);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&server.host(), no_creds.path(), 2);
    let (cache, cas) = temp_cas();
    let repository = ImageRef::parse(&format!("{}/liar", server.host())).unwrap();
    let error = client.resolve(&cas, &repository, image.manifest.digest, None, true).unwrap_err();
    assert!(error.to_string().contains(&format!("manifest `{}`", image.manifest.digest)), "{error}");
    assert_eq!(std::fs::read_dir(cache.path().join("cas/sha256")).unwrap().count(), 0);
}

#[test]
fn retry_after_is_honoured() {
    let (_source_dir, source) = temp_cas();
    let image = TestImage::build(&source, 9, &[100]);
    let blobs = blobs_of(&source, &image);
    let calls = Arc::new(AtomicUsize::new(0));
    let server = {
        let calls = calls.clone();
        Server::start(move |request| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return Reply::Send(HttpResponse::new(429).header("Retry-After", "1"));
            }
            let digest: Digest = request.path().rsplit('/').next().unwrap().parse().unwrap();
            Reply::Send(HttpResponse::new(200).header("Content-Type", OCI_MANIFEST).body(blobs[&digest].clone()))
        })
    };
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&server.host(), no_creds.path(), 3);
    let (_cache, cas) = temp_cas();
    let started = Instant::now();
    let repository = ImageRef::parse(&format!("{}/slow", server.host())).unwrap();
    client.resolve(&cas, &repository, image.manifest.digest, None, true).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited as `Retry-After` asked");
}

#[test]
fn an_unreachable_registry_is_an_environment_error() {
    let port = free_port(); // nothing listens there
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&format!("127.0.0.1:{port}"), no_creds.path(), 2);
    let (_cache, cas) = temp_cas();
    let repository = ImageRef::parse(&format!("127.0.0.1:{port}/gone")).unwrap();
    let error = client.resolve(&cas, &repository, Digest::of(b"x"), None, true).unwrap_err();
    assert!(matches!(error, RegistryError::Unreachable { .. }), "{error}");
    let error = berth::error::Error::from(error);
    assert_eq!((error.kind, error.kind.exit_code()), (ErrorKind::Environment, 3));
}
