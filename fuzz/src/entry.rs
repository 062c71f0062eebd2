//! The fuzz targets' bodies, shared with the regression test that feeds the
//! committed corpus through them (`tests/it/fuzz_corpus.rs` includes this
//! file), so CI runs exactly what the fuzzer ran.
#![allow(dead_code)]

use std::path::Path;

use berth::oci::{unpack, ExtractLimits, ImageConfig, Index, Manifest};

/// Limits small enough that one input is fast, large enough to reach every
/// entry kind.
fn limits() -> ExtractLimits {
    ExtractLimits {
        max_total_bytes: 8 << 20,
        max_entries: 4096,
        max_name_bytes: 4096,
        max_pax_bytes: 64 << 10,
        max_ratio: 1000,
        ratio_slack_bytes: 1 << 20,
        ..ExtractLimits::default()
    }
}

/// Unpacks `data` into a fresh directory; nothing may appear outside it.
pub fn layer_unpack(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("the root");
    let canary = dir.path().join("canary");
    std::fs::create_dir(&canary).expect("the canary");
    let _ = unpack(data, &root, &limits());
    let outside: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(outside.len(), 2, "an entry escaped the root: {outside:?}");
    assert_eq!(std::fs::read_dir(&canary).expect("canary").count(), 0, "the canary was written");
}

/// Parses `data` as each OCI document berth reads.
pub fn oci_json(data: &[u8]) {
    let _ = serde_json::from_slice::<Manifest>(data);
    let _ = serde_json::from_slice::<Index>(data);
    let _ = serde_json::from_slice::<ImageConfig>(data);
    let _ = berth::actions::ImageRuntimeConfig::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth::registry::parse_platform(text);
        let _ = berth::registry::ImageRef::parse(text);
    }
}

/// A short per-file deadline, so a slow input is an error, not a hang
/// (the fuzz targets set it; the regression test keeps the default).
pub fn short_deadline() {
    berth::frontend::set_load_timeout(std::time::Duration::from_secs(2));
}

/// Evaluates `data` as a `WORKSPACE.star`.
pub fn starlark_workspace(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth::frontend::evaluate_workspace_file("WORKSPACE.star", text);
    }
}

/// Loads `data` as `app/BUILD.star` of a small workspace.
pub fn starlark_build(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path();
    std::fs::write(root.join("WORKSPACE.star"), "workspace(name = \"fuzz\")\n").expect("WORKSPACE.star");
    std::fs::create_dir_all(root.join("app")).expect("app");
    std::fs::write(root.join("app/main.py"), "print('hi')\n").expect("a source");
    std::fs::write(root.join("app/BUILD.star"), text).expect("BUILD.star");
    load(root);
}

fn load(root: &Path) {
    let Ok(workspace) = berth::frontend::open_workspace(root) else { return };
    let Ok(pattern) = berth::workspace::Pattern::parse("//app/...") else { return };
    let _ = berth::frontend::load(&workspace, &[pattern]);
}

/// Parses `data` as a `WWW-Authenticate` header and asks whether berth
/// would follow its Bearer realm from a public https registry and from an
/// insecure loopback one. Whatever the header, an accepted realm is https
/// for the https registry, and credentials never go over plain HTTP to a
/// host other than the registry's; a challenge written back with quoting
/// parses to itself.
pub fn www_authenticate(data: &[u8]) {
    use berth::registry::{check_realm_of, parse_challenge, Challenge};
    let Ok(header) = std::str::from_utf8(data) else { return };
    let Some(Challenge::Bearer { realm, service, scope }) = parse_challenge(header) else { return };
    for (registry, registry_host) in
        [("https://registry.test/", "registry.test"), ("http://127.0.0.1:5000/", "127.0.0.1")]
    {
        for with_credentials in [false, true] {
            if check_realm_of(registry, &realm, with_credentials).is_err() {
                continue;
            }
            let url = reqwest::Url::parse(&realm).expect("an accepted realm is a URL");
            if registry.starts_with("https:") {
                assert_eq!(url.scheme(), "https", "plain realm `{realm}` accepted for an https registry");
            }
            if with_credentials && url.scheme() != "https" {
                assert_eq!(url.host_str(), Some(registry_host), "credentials over HTTP to `{realm}`");
            }
        }
    }
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let mut written = format!("Bearer realm={}", quote(&realm));
    if let Some(service) = &service {
        written += &format!(",service={}", quote(service));
    }
    if let Some(scope) = &scope {
        written += &format!(",scope={}", quote(scope));
    }
    assert_eq!(
        parse_challenge(&written),
        Some(Challenge::Bearer { realm, service, scope }),
        "`{written}` does not parse back"
    );
}
