//! What an action produced, as the action cache stores it and dependents'
//! keys name it: REAPI's `ActionResult`. The form is generic (named blobs
//! plus a little JSON), so the action cache, `cache gc` and a remote cache
//! handle every kind alike, through the blobs it names; the typed view of
//! each kind lives with the actions (`actions::outputs`).
//!
//! [`ActionId`] lives here too, below both the actions that register work
//! and the reports that show it, so neither `cache` nor `report` needs the
//! `actions` module to name an action.

use std::collections::BTreeMap;

use crate::cache::{canonical_json, BlobRef, Digest};

/// Index of an action in its action graph (`actions::ActionGraph`): inputs
/// always have lower ids than the actions that read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ActionId(pub usize);

/// What an action produced: blobs already in the CAS, by name, plus small
/// structured facts about them (a layer's diff_id, a manifest's media type).
/// Stored as its canonical JSON under `ac/<key>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionResult {
    pub blobs: BTreeMap<String, BlobRef>,
    pub metadata: serde_json::Value,
}

impl ActionResult {
    /// The digest that names this result when another action depends on
    /// it: sha256 of its canonical JSON (blob digests and sizes plus
    /// metadata).
    pub fn digest(&self) -> Digest {
        Digest::of(&canonical_json(self))
    }

    /// Every blob the result names, each once, in name order.
    pub fn blob_refs(&self) -> impl Iterator<Item = &BlobRef> {
        self.blobs.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_of_the_canonical_form_whatever_the_map_order() {
        let blob = BlobRef { digest: Digest::of(b"x"), size: 1 };
        let a = ActionResult {
            blobs: BTreeMap::from([("layer".to_owned(), blob), ("config".to_owned(), blob)]),
            metadata: serde_json::json!({"b": 1, "a": 2}),
        };
        let b = ActionResult {
            blobs: BTreeMap::from([("config".to_owned(), blob), ("layer".to_owned(), blob)]),
            metadata: serde_json::from_str(r#"{"a": 2, "b": 1}"#).unwrap(),
        };
        assert_eq!(a.digest(), b.digest());
        // The stored form, byte for byte: every output digest (and through
        // them every key) depends on it.
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            format!(
                r#"{{"blobs":{{"config":{{"digest":"{d}","size":1}},"layer":{{"digest":"{d}","size":1}}}},"metadata":{{"a":2,"b":1}}}}"#,
                d = Digest::of(b"x")
            )
        );
        assert_eq!(a.digest(), Digest::of(&canonical_json(&a)));
    }
}
