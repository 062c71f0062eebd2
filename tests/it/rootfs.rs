//! `exec::RootFs` stacks extracted layers into one root: overlayfs and the
//! copying fallback agree on whiteouts and opaque directories, and the
//! cached layers underneath are never written (needs root).

use std::fs;
use std::path::Path;

use berth::cache::Digest;
use berth::exec::{RootFs, StackMode};
use berth::oci::ExtractedLayer;

use crate::util::need::{skip, Need};

/// A layer as `oci::extract` leaves it: whiteouts as 0/0 character
/// devices, opaque directories with the overlay xattr (needs root).
fn layer(dir: &Path, name: &str, entries: &[&str]) -> ExtractedLayer {
    let root = dir.join(name);
    fs::create_dir(&root).unwrap();
    let mut opaque_root = false;
    for entry in entries {
        let path = root.join(entry);
        let parent = path.parent().unwrap().to_path_buf();
        fs::create_dir_all(&parent).unwrap();
        let file_name = path.file_name().unwrap().to_str().unwrap();
        if file_name == ".wh..wh..opq" {
            if parent == root {
                opaque_root = true;
            } else {
                berth::sys::set_xattr(&parent, berth::oci::OPAQUE_XATTR.as_bytes(), b"y").unwrap();
            }
        } else if let Some(hidden) = file_name.strip_prefix(".wh.") {
            berth::sys::make_whiteout(&parent.join(hidden)).unwrap();
        } else {
            fs::write(&path, entry).unwrap();
        }
    }
    ExtractedLayer { digest: Digest::of(name.as_bytes()), diff_id: Digest::of(b""), opaque_root, tree: None, root }
}

fn files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn overlay_and_copies_agree_on_whiteouts_and_opaque_roots() {
    if skip(&[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = layer(dir.path(), "base", &["a", "b", "d/x"]);
    let upper = layer(dir.path(), "upper", &[".wh.a", "c", "d/.wh..wh..opq", "d/y"]);
    let reset = layer(dir.path(), "reset", &[".wh..wh..opq", "only"]);
    for mode in [StackMode::Overlay, StackMode::Copy] {
        let stacked =
            RootFs::stack(&[base.clone(), upper.clone()], &dir.path().join("s1"), mode, None, 0, None).unwrap();
        assert_eq!(stacked.is_overlay(), mode == StackMode::Overlay);
        assert_eq!(files(stacked.merged()), ["b", "c", "d"], "{mode:?}");
        assert_eq!(files(&stacked.merged().join("d")), ["y"], "{mode:?}");
        drop(stacked);
        assert!(!dir.path().join("s1").exists(), "dropping unmounts and removes");
        let stacked =
            RootFs::stack(&[base.clone(), upper.clone(), reset.clone()], &dir.path().join("s2"), mode, None, 0, None)
                .unwrap();
        assert_eq!(files(stacked.merged()), ["only"], "{mode:?}: an opaque root hides every lower layer");
    }
    // The cached layers were never written.
    assert_eq!(files(&base.root), ["a", "b", "d"]);
}
