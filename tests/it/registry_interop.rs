//! berth's registry client against a real `docker-registry`, checked with a
//! tool nobody here wrote (`skopeo`).

use std::path::Path;

use berth::cache::{Cas, Digest};
use berth::error::ErrorKind;
use berth::registry::{BlobSources, Client, ImageRef, PushRequest, Reference, RegistryError};

use crate::util::http::{forward, Reply, Server};
use crate::util::images::{
    assert_cas_sound, index_of, layer_tar_gz, noise, temp_cas, write_oci_layout, TestImage, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER, OCI_MANIFEST,
};
use crate::util::need::{skip, Need};
use crate::util::process::run;
use crate::util::registry::{docker_config_with, insecure_client, insecure_options, manifest_push, Registry};

const SKOPEO: &str = "skopeo";

fn client(hosts: &[String], docker_config: &Path) -> Client {
    insecure_client(hosts, Some(docker_config))
}

fn push(
    client: &Client,
    cas: &Cas,
    image: &TestImage,
    repository: &str,
    tags: &[&str],
) -> berth::registry::PushOutcome {
    let request = manifest_push(image.manifest, repository, tags);
    client.push(cas, &request).unwrap()
}

/// Adds up the bytes the client reports moving.
#[derive(Default)]
struct CountBytes(std::sync::atomic::AtomicU64);

impl berth::report::Reporter for CountBytes {
    fn report(&self, event: &berth::report::Event<'_>) {
        if let berth::report::Event::BytesTransferred { bytes } = event {
            self.0.fetch_add(*bytes, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn an_image_pushed_by_berth_is_copied_by_skopeo_and_a_second_push_uploads_nothing() {
    if skip(&[Need::Registry, Need::Skopeo]) {
        return;
    }
    let registry = Registry::start();
    let (_cache, cas) = temp_cas();
    let no_creds = tempfile::tempdir().unwrap();
    let bytes = std::sync::Arc::new(CountBytes::default());
    let client = client(&[registry.host()], no_creds.path()).with_reporter(bytes.clone());
    let image = TestImage::build(&cas, 1, &[300_000, 200_000, 100_000]);

    let first = push(&client, &cas, &image, &format!("{}/team/app", registry.host()), &["v1", "latest"]);
    assert_eq!(first.digest, image.manifest.digest);
    assert_eq!((first.uploaded_blobs, first.existing_blobs, first.mounted_blobs), (4, 0, 0));
    assert_eq!(first.uploaded_bytes, image.blobs().iter().map(|blob| blob.size).sum::<u64>());
    for blob in image.blobs() {
        assert!(registry.stored_blob(&blob.digest), "{} stored", blob.digest);
    }

    assert_eq!(bytes.0.load(std::sync::atomic::Ordering::SeqCst), first.uploaded_bytes, "progress reported");

    let again = push(&client, &cas, &image, &format!("{}/team/app", registry.host()), &["v1"]);
    assert_eq!((again.uploaded_blobs, again.existing_blobs, again.uploaded_bytes), (0, 4, 0));
    assert_eq!(bytes.0.load(std::sync::atomic::Ordering::SeqCst), first.uploaded_bytes, "nothing moved");

    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    run(
        SKOPEO,
        &[
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/team/app:v1", registry.host()),
            &format!("oci:{}:v1", layout.display()),
        ],
    );
    for blob in image.blobs().into_iter().chain([image.manifest]) {
        let copied = std::fs::read(layout.join("blobs/sha256").join(blob.digest.hex())).unwrap();
        assert_eq!(Digest::of(&copied), blob.digest);
        assert_eq!(copied, std::fs::read(cas.path(&blob.digest)).unwrap());
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], image.manifest.digest.to_string());
}

#[test]
fn an_image_pushed_by_skopeo_is_resolved_lazily_and_fetched_by_berth() {
    if skip(&[Need::Registry, Need::Skopeo]) {
        return;
    }
    let registry = Registry::start();
    let (_source_cache, source_cas) = temp_cas();
    let image = TestImage::build(&source_cas, 2, &[150_000, 50_000]);
    let out = tempfile::tempdir().unwrap();
    write_oci_layout(&source_cas, &image, &out.path().join("layout"), "v2");
    run(
        SKOPEO,
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v2", out.path().join("layout").display()),
            &format!("docker://{}/lib/base:v2", registry.host()),
        ],
    );

    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&[registry.host()], no_creds.path());
    let reference = Reference::parse(&format!("{}/lib/base:v2", registry.host())).unwrap();
    let (digest, media_type) = client.resolve_tag(&reference, true).unwrap();
    assert_eq!(media_type, OCI_MANIFEST);

    let (cache, cas) = temp_cas();
    let pulled = client.resolve(&cas, &reference.image, digest, None, true).unwrap();
    assert_eq!(pulled.config, image.config);
    assert_eq!(
        pulled.layers.iter().map(|layer| layer.digest).collect::<Vec<_>>(),
        [image.layers[0].digest, image.layers[1].digest]
    );
    assert!(cas.contains(&pulled.manifest.digest) && cas.contains(&pulled.config.digest));
    assert!(pulled.layers.iter().all(|layer| !cas.contains(&layer.digest)), "layers are fetched lazily");

    for layer in &pulled.layers {
        let blob = client.fetch_blob(&cas, &pulled.image, layer, true).unwrap();
        assert_eq!(
            std::fs::read(cas.path(&blob.digest)).unwrap(),
            std::fs::read(source_cas.path(&blob.digest)).unwrap()
        );
    }
    assert_cas_sound(cache.path());

    // Pinned digests are immutable: with the manifest and config cached,
    // resolving needs no registry at all.
    drop(registry);
    let again = client.resolve(&cas, &reference.image, digest, None, true).unwrap();
    assert_eq!(again, pulled);
}

#[test]
fn an_index_resolves_to_the_requested_platform_or_lists_the_available_ones() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let (_cache, cas) = temp_cas();
    let amd64 = TestImage::build_for(&cas, 3, &[1000], "amd64");
    let arm64 = TestImage::build_for(&cas, 4, &[1000], "arm64");
    let index = index_of(&cas, &[(&amd64, "amd64"), (&arm64, "arm64")]);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&[registry.host()], no_creds.path());
    let destination = ImageRef::parse(&format!("{}/multi", registry.host())).unwrap();
    let request = PushRequest {
        root: index,
        media_type: OCI_INDEX.to_owned(),
        destination: destination.clone(),
        tags: vec!["v1".to_owned()],
        sources: BlobSources::new(),
    };
    let outcome = client.push(&cas, &request).unwrap();
    assert_eq!((outcome.digest, outcome.uploaded_blobs), (index.digest, 4));

    let (_fresh, fresh) = temp_cas();
    let arm = client.resolve(&fresh, &destination, index.digest, Some("linux/arm64"), false).unwrap();
    assert_eq!((arm.index, arm.manifest, arm.config), (Some(index), arm64.manifest, arm64.config));
    assert_eq!(arm.platform.unwrap().to_string(), "linux/arm64");

    if std::env::consts::ARCH == "x86_64" {
        let host = client.resolve(&fresh, &destination, index.digest, None, false).unwrap();
        assert_eq!(host.manifest, amd64.manifest, "the default platform is the host's");
    }

    let error = client.resolve(&fresh, &destination, index.digest, Some("linux/s390x"), false).unwrap_err();
    assert!(matches!(error, RegistryError::NoMatchingPlatform { .. }));
    let message = error.to_string();
    assert!(message.contains("linux/amd64, linux/arm64") && message.contains("linux/s390x"), "{message}");
    assert_eq!(berth::error::Error::from(error).kind, ErrorKind::User);
}

#[test]
fn base_layers_are_mounted_within_a_registry_and_fetched_across_registries() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let other = Registry::start();
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&[registry.host(), other.host()], no_creds.path());

    // The base image is pushed by someone else; this build only resolved it.
    let (_upstream, upstream_cas) = temp_cas();
    let base = TestImage::build(&upstream_cas, 5, &[80_000, 40_000]);
    push(&client, &upstream_cas, &base, &format!("{}/lib/base", registry.host()), &[]);

    let (_cache, cas) = temp_cas();
    let base_ref = ImageRef::parse(&format!("{}/lib/base", registry.host())).unwrap();
    let pulled = client.resolve(&cas, &base_ref, base.manifest.digest, None, false).unwrap();
    // A derived image: the base's layers (not in this CAS) plus its own.
    let (own_layer, _) = layer_tar_gz("app", &noise(99, 30_000));
    let own_layer = cas.put_bytes(&own_layer).unwrap();
    let descriptor = |digest: Digest, size: u64| serde_json::json!({"mediaType": OCI_LAYER, "digest": digest.to_string(), "size": size});
    let mut layers: Vec<_> = pulled.layers.iter().map(|layer| descriptor(layer.digest, layer.size)).collect();
    layers.push(descriptor(own_layer.digest, own_layer.size));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": pulled.config.digest.to_string(), "size": pulled.config.size},
        "layers": layers,
    })
    .to_string();
    let manifest = cas.put_bytes(manifest.as_bytes()).unwrap();
    let mut sources = BlobSources::new();
    sources.add_image(&pulled);
    let request = |repository: String| PushRequest {
        root: manifest,
        media_type: OCI_MANIFEST.to_owned(),
        destination: ImageRef::parse(&repository).unwrap(),
        tags: vec!["v1".to_owned()],
        sources: sources.clone(),
    };

    let same_registry = client.push(&cas, &request(format!("{}/team/app", registry.host()))).unwrap();
    assert_eq!((same_registry.mounted_blobs, same_registry.uploaded_blobs), (3, 1), "config + 2 layers mounted");
    assert!(pulled.layers.iter().all(|layer| !cas.contains(&layer.digest)), "mounting needs no bytes");

    let across = client.push(&cas, &request(format!("{}/team/app", other.host()))).unwrap();
    assert_eq!((across.mounted_blobs, across.uploaded_blobs), (0, 4));
    for layer in &pulled.layers {
        assert!(other.stored_blob(&layer.digest));
        assert!(cas.contains(&layer.digest), "fetched from the source registry to be uploaded");
    }
}

#[test]
fn credentials_come_from_docker_config_and_their_absence_is_a_clear_error() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start_with_htpasswd("alice", "s3cret");
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 6, &[10_000]);
    let repository = format!("{}/private/app", registry.host());

    let config = docker_config_with(&registry.host(), "alice", "s3cret");
    let with_creds = client(&[registry.host()], config.path());
    let outcome = push(&with_creds, &cas, &image, &repository, &["v1"]);
    assert_eq!(outcome.uploaded_blobs, 2);
    let (_fresh, fresh) = temp_cas();
    let pulled = with_creds.resolve(&fresh, &ImageRef::parse(&repository).unwrap(), outcome.digest, None, false);
    assert_eq!(pulled.unwrap().config, image.config);

    let no_creds = tempfile::tempdir().unwrap();
    let anonymous = client(&[registry.host()], no_creds.path());
    let (_empty, empty) = temp_cas();
    let error = anonymous.resolve(&empty, &ImageRef::parse(&repository).unwrap(), outcome.digest, None, false);
    let error = error.unwrap_err();
    assert!(matches!(error, RegistryError::Denied { .. }), "{error}");
    let error = berth::error::Error::from(error);
    assert!(error.to_string().contains("config.json"), "{error}");

    let wrong = docker_config_with(&registry.host(), "alice", "wrong");
    let error = client(&[registry.host()], wrong.path())
        .resolve_tag(&Reference::parse(&format!("{repository}:v1")).unwrap(), false)
        .unwrap_err();
    assert!(error.to_string().contains("refused the credentials"), "{error}");

    // `anonymous = True` never sends credentials, even when they exist.
    let error = with_creds.resolve_tag(&Reference::parse(&format!("{repository}:v1")).unwrap(), true).unwrap_err();
    assert!(error.to_string().contains("anonymous = True"), "{error}");
}

#[test]
fn blobs_are_uploaded_in_chunks_when_the_registry_asks() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let upstream = registry.port;
    let patches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = {
        let patches = patches.clone();
        Server::start(move |request| {
            if request.method == "PATCH" {
                patches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let is_start = request.method == "POST";
            match forward(upstream, &request) {
                Ok(response) if is_start => Reply::Send(response.header("OCI-Chunk-Min-Length", "1048576")),
                Ok(response) => Reply::Send(response),
                Err(_) => Reply::Drop,
            }
        })
    };
    let (_cache, cas) = temp_cas();
    // 20 MB of noise stays ~20 MB gzip'd: three 8 MiB chunks.
    let image = TestImage::build(&cas, 7, &[20_000_000]);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&[proxy.host()], no_creds.path());
    push(&client, &cas, &image, &format!("{}/chunked", proxy.host()), &["v1"]);
    assert_eq!(
        patches.load(std::sync::atomic::Ordering::SeqCst),
        3 + 1,
        "three PATCHes for the layer, one for the config"
    );

    let (fresh_dir, fresh) = temp_cas();
    let pulled = client.resolve(
        &fresh,
        &ImageRef::parse(&format!("{}/chunked", proxy.host())).unwrap(),
        image.manifest.digest,
        None,
        true,
    );
    let pulled = pulled.unwrap();
    client.fetch_blob(&fresh, &pulled.image, &pulled.layers[0], true).unwrap();
    assert_cas_sound(fresh_dir.path());
}

#[test]
fn mirrors_are_tried_first_for_pulls_and_the_registry_after_them() {
    if skip(&[Need::Registry]) {
        return;
    }
    let main = Registry::start();
    let mirror = Registry::start();
    // Count what reaches the main registry.
    let upstream = main.port;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let hits = hits.clone();
        Server::start(move |request| {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            forward(upstream, &request).map_or(Reply::Drop, Reply::Send)
        })
    };
    let (_cache, cas) = temp_cas();
    let everywhere = TestImage::build(&cas, 40, &[5_000]);
    let only_main = TestImage::build(&cas, 41, &[5_000]);
    let no_creds = tempfile::tempdir().unwrap();
    let direct = client(&[main.host(), mirror.host()], no_creds.path());
    push(&direct, &cas, &everywhere, &format!("{}/lib/base", main.host()), &[]);
    push(&direct, &cas, &everywhere, &format!("{}/lib/base", mirror.host()), &[]);
    push(&direct, &cas, &only_main, &format!("{}/lib/base", main.host()), &[]);

    let mut options = insecure_options(&[counted.host()], Some(no_creds.path()));
    options.registries[0].mirrors = vec![mirror.host()];
    let mirrored = Client::new(options).unwrap();
    let repository = ImageRef::parse(&format!("{}/lib/base", counted.host())).unwrap();
    let (_fresh_dir, fresh) = temp_cas();
    let pulled = mirrored.resolve(&fresh, &repository, everywhere.manifest.digest, None, true).unwrap();
    mirrored.fetch_blob(&fresh, &repository, &pulled.layers[0], true).unwrap();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the mirror served everything");

    let pulled = mirrored.resolve(&fresh, &repository, only_main.manifest.digest, None, true).unwrap();
    mirrored.fetch_blob(&fresh, &repository, &pulled.layers[0], true).unwrap();
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 3, "manifest, config and layer from the registry");
}
