//! Registry authentication: the Bearer token flow (anonymous pulls,
//! credentialed pushes, a token that expires mid-pull), and `Authorization`
//! staying on the registry's origin when a blob GET redirects elsewhere.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::cache::Digest;
use berth::registry::{Client, ClientOptions, ImageRef, RegistryError};

use crate::util::http::{HttpResponse, Reply, Server};
use crate::util::images::{assert_cas_sound, temp_cas, TestImage, OCI_MANIFEST};
use crate::util::need::{skip, Need};
use crate::util::registry::{docker_config_with, insecure_options, manifest_push, Registry};
use crate::util::token::TokenProxy;

fn client(host: &str, docker_config: &Path) -> Client {
    let options = insecure_options(&[host.to_owned()], Some(docker_config));
    Client::new(ClientOptions { backoff: Duration::from_millis(5), ..options }).unwrap()
}

#[test]
fn bearer_tokens_carry_push_credentials_and_pull_anonymously() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    let tokens = TokenProxy::start(registry.port, u32::MAX, Some(("alice", "s3cret")));
    let host = tokens.server.host();
    let (_cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 20, &[30_000, 10_000]);
    let repository = ImageRef::parse(&format!("{host}/team/app")).unwrap();
    let push = |client: &Client| {
        let request = manifest_push(image.manifest, &repository.to_string(), &["v1"]);
        client.push(&cas, &request)
    };

    let no_creds = tempfile::tempdir().unwrap();
    let error = push(&client(&host, no_creds.path())).unwrap_err();
    assert!(matches!(error, RegistryError::Denied { .. }), "{error}");

    let config = docker_config_with(&host, "alice", "s3cret");
    let outcome = push(&client(&host, config.path())).unwrap();
    assert_eq!(outcome.uploaded_blobs, 3);
    {
        let log = tokens.log.lock().unwrap();
        let (user, scopes) = log.requests.last().unwrap();
        assert_eq!(user, "alice");
        assert!(scopes.contains(&"repository:team/app:pull,push".to_owned()), "{scopes:?}");
    }

    let (_fresh_dir, fresh) = temp_cas();
    let anonymous = client(&host, config.path());
    let pulled = anonymous.resolve(&fresh, &repository, outcome.digest, None, true).unwrap();
    for layer in &pulled.layers {
        anonymous.fetch_blob(&fresh, &repository, layer, true).unwrap();
    }
    let log = tokens.log.lock().unwrap();
    let (user, scopes) = log.requests.last().unwrap();
    assert_eq!((user.as_str(), scopes.as_slice()), ("", &["repository:team/app:pull".to_owned()][..]));
}

#[test]
fn a_token_that_expires_mid_pull_is_refreshed() {
    if skip(&[Need::Registry]) {
        return;
    }
    let registry = Registry::start();
    // Every token is good for two requests only.
    let tokens = TokenProxy::start(registry.port, 2, None);
    let host = tokens.server.host();
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&host, no_creds.path());
    let (cache, cas) = temp_cas();
    let image = TestImage::build(&cas, 21, &[1_000, 2_000, 3_000, 4_000]);
    let repository = ImageRef::parse(&format!("{host}/team/app")).unwrap();
    let request = manifest_push(image.manifest, &repository.to_string(), &[]);
    client.push(&cas, &request).unwrap();

    let (fresh_dir, fresh) = temp_cas();
    let before = tokens.log.lock().unwrap().requests.len();
    let pulled = client.resolve(&fresh, &repository, image.manifest.digest, None, false).unwrap();
    for layer in &pulled.layers {
        client.fetch_blob(&fresh, &repository, layer, false).unwrap();
    }
    let issued = tokens.log.lock().unwrap().requests.len() - before;
    assert!(issued >= 3, "six GETs with two-use tokens need three tokens, got {issued}");
    assert_cas_sound(fresh_dir.path());
    assert_cas_sound(cache.path());
}

#[test]
fn authorization_is_not_sent_to_another_host_after_a_redirect() {
    let (_source_dir, source) = temp_cas();
    let image = TestImage::build(&source, 22, &[4_000]);
    let layer = image.layers[0];
    let layer_bytes = std::fs::read(source.path(&layer.digest)).unwrap();
    let manifest_bytes = image.manifest_bytes.clone();
    let config_bytes = std::fs::read(source.path(&image.config.digest)).unwrap();

    // The storage host: records the Authorization headers it is sent.
    let storage_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let storage = {
        let seen = storage_seen.clone();
        let blobs = [(layer.digest, layer_bytes.clone()), (image.config.digest, config_bytes)];
        Server::start(move |request| {
            seen.lock().unwrap().push(request.header("authorization").map(str::to_owned));
            let digest: Digest = request.path().rsplit('/').next().unwrap().parse().unwrap();
            let bytes = blobs.iter().find(|(d, _)| *d == digest).map(|(_, bytes)| bytes.clone()).unwrap();
            Reply::Send(HttpResponse::new(200).body(bytes))
        })
    };
    // The registry: Basic auth, manifests served, blobs redirected.
    let registry_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let storage_host = storage.host();
    let registry = {
        let seen = registry_seen.clone();
        let manifest_digest = image.manifest.digest;
        Server::start(move |request| {
            let authorization = request.header("authorization").map(str::to_owned);
            seen.lock().unwrap().push(authorization.clone());
            if authorization.is_none() {
                return Reply::Send(HttpResponse::new(401).header("WWW-Authenticate", "Basic realm=\"test\""));
            }
            let path = request.path();
            if path.ends_with(&format!("/manifests/{manifest_digest}")) {
                return Reply::Send(
                    HttpResponse::new(200).header("Content-Type", OCI_MANIFEST).body(manifest_bytes.clone()),
                );
            }
            let digest = path.rsplit('/').next().unwrap();
            Reply::Send(
                HttpResponse::new(307).header("Location", &format!("http://{storage_host}/storage/{digest}?signed=1")),
            )
        })
    };

    let config = docker_config_with(&registry.host(), "bob", "hunter2");
    let client = client(&registry.host(), config.path());
    let repository = ImageRef::parse(&format!("{}/team/app", registry.host())).unwrap();
    let (cache, cas) = temp_cas();
    let pulled = client.resolve(&cas, &repository, image.manifest.digest, None, false).unwrap();
    let blob = client.fetch_blob(&cas, &repository, &pulled.layers[0], false).unwrap();
    assert_eq!(std::fs::read(cas.path(&blob.digest)).unwrap(), layer_bytes);
    assert_cas_sound(cache.path());

    let storage_seen = storage_seen.lock().unwrap();
    assert_eq!(storage_seen.len(), 2, "config and layer came from storage");
    assert!(storage_seen.iter().all(Option::is_none), "storage saw credentials: {storage_seen:?}");
    let registry_seen = registry_seen.lock().unwrap();
    assert!(registry_seen.iter().skip(1).all(|auth| auth.as_deref().is_some_and(|a| a.starts_with("Basic "))));
}

#[test]
fn oversized_tokens_and_manifests_are_refused() {
    let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let server = {
        let port = port.clone();
        Server::start(move |request| {
            let port = port.load(std::sync::atomic::Ordering::SeqCst);
            if request.path() == "/token" {
                let huge = format!("{{\"token\": \"{}\"}}", "x".repeat(2 << 20));
                return Reply::Send(HttpResponse::new(200).body(huge));
            }
            if request.path().contains("/big/") {
                // No token needed here: a manifest over the 4 MiB cap.
                return Reply::Send(
                    HttpResponse::new(200).header("Content-Type", OCI_MANIFEST).body(vec![b' '; 5 << 20]),
                );
            }
            let challenge = format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\"");
            Reply::Send(HttpResponse::new(401).header("WWW-Authenticate", &challenge))
        })
    };
    port.store(server.port, std::sync::atomic::Ordering::SeqCst);
    let no_creds = tempfile::tempdir().unwrap();
    let client = client(&server.host(), no_creds.path());
    let (cache, cas) = temp_cas();

    let repository = ImageRef::parse(&format!("{}/team/app", server.host())).unwrap();
    let error = client.resolve(&cas, &repository, Digest::of(b"m"), None, true).unwrap_err();
    assert!(matches!(error, RegistryError::Token { .. }) && error.to_string().contains("larger than"), "{error}");

    let big = ImageRef::parse(&format!("{}/big/app", server.host())).unwrap();
    let fresh_client = self::client(&server.host(), no_creds.path());
    let error = fresh_client.resolve(&cas, &big, Digest::of(b"m"), None, true).unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error}");
    assert_eq!(std::fs::read_dir(cache.path().join("cas/sha256")).unwrap().count(), 0);
}
