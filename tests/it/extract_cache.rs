//! The extracted-layer cache: one extraction per digest even when many
//! callers ask at once, no half layer after a killed extraction, and a blob
//! that changed in the CAS is refused.

use std::fs;

use crate::util::need::{skip, Need};
use crate::util::runc::{gzip, TarBuilder};
use berth::cache::Cas;
use berth::oci::{ExtractError, ExtractLimits, LayerStore};

fn layer_blob(cas: &Cas) -> berth::cache::BlobRef {
    let tar = TarBuilder::default().dir("etc", 0o755).file("etc/motd", 0o644, b"hello\n").finish();
    cas.put_bytes(&gzip(&tar)).unwrap()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn concurrent_callers_share_one_extraction() {
    if skip(&[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let blob = layer_blob(&cas);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| LayerStore::new(dir.path()).extract(&cas, &blob.digest, &ExtractLimits::default())))
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap().unwrap()).collect()
    });
    assert!(results.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(fs::read(results[0].root.join("etc/motd")).unwrap(), b"hello\n");
    let hex = blob.digest.hex();
    assert_eq!(entries(&dir.path().join("layers")), [hex.clone(), format!("{hex}.lock")]);
}

#[test]
fn leftovers_of_a_killed_extraction_are_replaced() {
    if skip(&[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let blob = layer_blob(&cas);
    let layers = dir.path().join("layers");
    // A temp dir of a process that no longer exists, and a final directory
    // without its side file (not a finished extraction).
    let dead_pid = i32::MAX - 1;
    fs::create_dir_all(layers.join(format!("tmp-{}-{dead_pid}-0/root/half", &blob.digest.hex()[..16]))).unwrap();
    fs::create_dir_all(layers.join(blob.digest.hex()).join("root/half")).unwrap();
    let layer = LayerStore::new(dir.path()).extract(&cas, &blob.digest, &ExtractLimits::default()).unwrap();
    assert_eq!(entries(&layer.root), ["etc"]);
    assert_eq!(entries(&layers).len(), 2, "only the layer and its lock are left: {:?}", entries(&layers));
}

#[test]
fn a_blob_that_changed_in_the_cas_is_refused() {
    if skip(&[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    let blob = layer_blob(&cas);
    let other = TarBuilder::default().file("evil", 0o644, b"swapped").finish();
    fs::write(cas.path(&blob.digest), gzip(&other)).unwrap();
    let error = LayerStore::new(dir.path()).extract(&cas, &blob.digest, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(error, ExtractError::Changed { .. }), "{error:?}");
    let layers = dir.path().join("layers");
    assert!(entries(&layers).iter().all(|name| name.ends_with(".lock")), "{:?}", entries(&layers));
}
