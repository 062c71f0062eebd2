//! Action keys: the sha256 of the canonical JSON of everything that decides
//! an action's output, shaped like the Remote Execution API's Action (a
//! command — `kind`, `kind_version`, `params` — plus an input root).

use std::io::{self, Write};

use crate::cache::{canonical_json, CanonicalJson, Digest, Sha256Writer};

/// Bumped when the key or cache-entry format changes for every kind at once;
/// part of every key, so old cache entries are simply never hit again.
pub const BERTH_FORMAT_VERSION: u32 = 1;

/// Everything that goes into an action key. Recorded per build so that
/// `berth explain` can say which part changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyInputs {
    pub kind: String,
    pub kind_version: u32,
    pub berth_format_version: u32,
    /// The action's params, as it declared them (plain JSON, no absolute
    /// path, time, user or host name).
    pub params: CanonicalJson,
    /// One entry per declared input, in declaration order.
    pub inputs: Vec<KeyInput>,
}

/// One declared input as it enters the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyInput {
    /// A source file: its workspace-relative path (`/`-separated) and the
    /// digest of its bytes.
    File { path: String, digest: Digest },
    /// Another action's output: the digest of its canonical `ActionResult`
    /// JSON (see [`ActionResult::digest`](crate::cache::ActionResult::digest)).
    Action { output: Digest },
}

impl KeyInputs {
    /// The action key: sha256 of the canonical JSON of `self`, hashed as it
    /// is written, field by field in key order, so that the inputs of a
    /// 30,000-file layer are never held as one text.
    pub fn key(&self) -> Digest {
        let mut hasher = Sha256Writer::new(io::sink());
        let mut write = |bytes: &[u8]| hasher.write_all(bytes).expect("hashing into a sink cannot fail");
        write(b"{\"berth_format_version\":");
        write(&canonical_json(&self.berth_format_version));
        write(b",\"inputs\":[");
        for (index, input) in self.inputs.iter().enumerate() {
            if index > 0 {
                write(b",");
            }
            write(&canonical_json(input));
        }
        write(b"],\"kind\":");
        write(&canonical_json(&self.kind));
        write(b",\"kind_version\":");
        write(&canonical_json(&self.kind_version));
        write(b",\"params\":");
        write(self.params.as_str().as_bytes());
        write(b"}");
        hasher.finish().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> KeyInputs {
        KeyInputs {
            kind: "pack_layer".into(),
            kind_version: 1,
            berth_format_version: BERTH_FORMAT_VERSION,
            params: CanonicalJson::of(&serde_json::json!({"prefix": "/app", "mode": 420, "entries": ["a", "b"]})),
            inputs: vec![
                KeyInput::File { path: "app/main.py".into(), digest: Digest::of(b"print('hi')\n") },
                KeyInput::Action { output: Digest::of(b"dependency") },
            ],
        }
    }

    #[test]
    fn key_canonical_form_is_stable() {
        assert_eq!(
            String::from_utf8(canonical_json(&fixed())).unwrap(),
            concat!(
                r#"{"berth_format_version":1,"inputs":["#,
                r#"{"file":{"digest":"sha256:caf026f25d7140209f98072605307a438914b9ce6f3c14b23d15d9667241de52","path":"app/main.py"}},"#,
                r#"{"action":{"output":"sha256:f26350dafe3f19aabfd69ac463fb5daf76015c9a2763e76e2ad32fc0fcfedf31"}}],"#,
                r#""kind":"pack_layer","kind_version":1,"params":{"entries":["a","b"],"mode":420,"prefix":"/app"}}"#
            )
        );
    }

    #[test]
    fn golden_key() {
        // Checked independently: `printf %s <the canonical form above> | sha256sum`.
        // A change to the key format must change this literal on purpose:
        // every cache entry in the world becomes unreachable.
        assert_eq!(
            fixed().key().to_string(),
            "sha256:12ed0e1a74ec69a4a49532e688e2d11a9a515aec4a1e71ef940e015c18e88851"
        );
    }

    /// `key()` writes the canonical form itself; a field added to
    /// `KeyInputs` but not to `key()` fails here.
    #[test]
    fn key_is_the_digest_of_the_canonical_form() {
        let mut inputs = fixed();
        inputs.kind = "quote\"and\u{1}control".into();
        for inputs in [fixed(), inputs] {
            assert_eq!(inputs.key(), Digest::of(&canonical_json(&inputs)));
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = fixed().key();
        let mut changed = fixed();
        changed.kind_version = 2;
        assert_ne!(changed.key(), base);
        let mut changed = fixed();
        changed.params = CanonicalJson::of(&serde_json::json!({"prefix": "/app", "mode": 493, "entries": ["a", "b"]}));
        assert_ne!(changed.key(), base);
        let mut changed = fixed();
        changed.inputs.swap(0, 1);
        assert_ne!(changed.key(), base, "input order is part of the key");
        let mut changed = fixed();
        changed.inputs[0] = KeyInput::File { path: "app/main.py".into(), digest: Digest::of(b"other") };
        assert_ne!(changed.key(), base);
    }
}
