//! berth's action key as a REAPI `Action`. A REAPI server caches results by
//! the digest of an `Action` whose `Command` and input root it may ask for,
//! so the key is wrapped in a small deterministic one: the input root holds
//! one file, `key.json`, the key's canonical JSON (its digest is berth's key
//! itself); the `Command` is the same for every action and names the outputs
//! `berth/output.json` (the canonical `ActionResult`, whose digest is the
//! output digest dependents' keys name) and `berth/blobs/<name>` (each blob).
//! The same key gives the same action digest on every machine.

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use prost::Message;

use crate::cache::Digest;

/// Where the canonical `ActionResult` sits among the outputs.
pub(crate) const OUTPUT_JSON: &str = "berth/output.json";
/// The directory of the blobs among the outputs; a blob is `berth/blobs/<name>`.
pub(crate) const BLOBS_DIR: &str = "berth/blobs";

/// The wrapping of one action key: the `Action` to look up and store under,
/// and the three small blobs the server must hold before a result is stored.
#[derive(Debug, Clone)]
pub struct WrappedAction {
    pub action_digest: reapi::Digest,
    /// `(digest, bytes)` of `key.json`, the input root `Directory`, the
    /// `Command` and the `Action`.
    pub blobs: Vec<(reapi::Digest, Vec<u8>)>,
}

impl WrappedAction {
    /// Wraps the action whose key is the sha256 of `key_json` (the key's
    /// canonical JSON).
    pub fn new(key_json: Vec<u8>) -> WrappedAction {
        let key = digest_of(&key_json);
        let root = reapi::Directory {
            files: vec![reapi::FileNode {
                name: "key.json".to_owned(),
                digest: Some(key.clone()),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let command = command().encode_to_vec();
        let (root_digest, command_digest) = (digest_of(&root), digest_of(&command));
        let action = reapi::Action {
            command_digest: Some(command_digest.clone()),
            input_root_digest: Some(root_digest.clone()),
            ..Default::default()
        }
        .encode_to_vec();
        let action_digest = digest_of(&action);
        WrappedAction {
            action_digest: action_digest.clone(),
            blobs: vec![(key, key_json), (root_digest, root), (command_digest, command), (action_digest, action)],
        }
    }
}

/// The one `Command` every wrapped action has. Output paths are sorted, as
/// REAPI requires.
fn command() -> reapi::Command {
    reapi::Command {
        arguments: vec!["berth-action".to_owned(), "key.json".to_owned()],
        output_paths: vec![BLOBS_DIR.to_owned(), OUTPUT_JSON.to_owned()],
        ..Default::default()
    }
}

/// The REAPI digest of `bytes` (sha256, the only function berth asks for).
pub(crate) fn digest_of(bytes: &[u8]) -> reapi::Digest {
    to_reapi(&Digest::of(bytes), bytes.len() as u64)
}

pub(crate) fn to_reapi(digest: &Digest, size: u64) -> reapi::Digest {
    reapi::Digest { hash: digest.hex(), size_bytes: size as i64 }
}

/// A REAPI digest as berth's, if it is a well-formed sha256 with a size.
pub(crate) fn from_reapi(digest: &reapi::Digest) -> Option<(Digest, u64)> {
    let size = u64::try_from(digest.size_bytes).ok()?;
    if digest.hash.len() != 64 || !digest.hash.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let parsed = Digest::parse_lenient(&digest.hash).ok()?;
    Some((parsed, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapping_is_deterministic_and_its_key_file_is_the_key() {
        let json = br#"{"berth_format_version":1,"inputs":[],"kind":"write_index","kind_version":1,"params":{}}"#;
        let a = WrappedAction::new(json.to_vec());
        let b = WrappedAction::new(json.to_vec());
        assert_eq!(a.action_digest, b.action_digest);
        assert_eq!(a.blobs[0].0.hash, Digest::of(json).hex(), "key.json's digest is berth's key");
        for (digest, bytes) in &a.blobs {
            assert_eq!(*digest, digest_of(bytes));
        }
        assert_eq!(a.action_digest, a.blobs[3].0, "the action digest names the Action blob");
        // Pinned (Python's protobuf, from BuildGrid's venv, computes the same
        // digest): a change here orphans every remote cache entry.
        assert_eq!(a.action_digest.hash, "6ed5e87233eae809bfbe030b8a0644e8752b2b4be4285e18722ccfca317b0032");
        let other = WrappedAction::new(br#"{"kind":"x"}"#.to_vec());
        assert_ne!(other.action_digest, a.action_digest);
        assert_eq!(other.blobs[2], a.blobs[2], "one Command for every action");
    }

    #[test]
    fn only_sha256_digests_convert() {
        let good = digest_of(b"x");
        assert_eq!(from_reapi(&good), Some((Digest::of(b"x"), 1)));
        assert_eq!(from_reapi(&reapi::Digest { hash: "abc".into(), size_bytes: 1 }), None);
        assert_eq!(from_reapi(&reapi::Digest { hash: good.hash.to_uppercase(), size_bytes: 1 }), None);
        assert_eq!(from_reapi(&reapi::Digest { hash: good.hash, size_bytes: -1 }), None);
    }
}
