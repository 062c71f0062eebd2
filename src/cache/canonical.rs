//! The one canonical JSON serializer: object keys sorted by their UTF-8
//! bytes, no insignificant whitespace. Everything that gets a digest (action
//! keys, action cache entries, configs, manifests, indexes) goes through
//! [`canonical_json`].

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` as canonical JSON.
///
/// Keys are sorted here rather than trusting the map types: oci-spec keeps
/// labels in `HashMap`s, and a dependency could turn on `serde_json`'s
/// `preserve_order`. The value is written while it is walked, never copied,
/// so a 30,000-entry layer's params cost one tree, not two.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("berth's types serialize to JSON: string keys, finite numbers");
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out);
    out
}

/// Scalars and keys are written by `serde_json` itself (its escaping is the
/// canonical one), which is why this is the one place allowed to call it.
#[allow(clippy::disallowed_methods)]
fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&serde_json::to_vec(key).expect("a string serializes"));
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(&serde_json::to_vec(scalar).expect("a JSON scalar serializes")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn sorts_keys_at_every_depth_without_whitespace() {
        let value = serde_json::json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "m": "é"}, "A": "x\"y", "f": 1.5});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"A":"x\"y","a":{"m":"é","z":[{"x":1,"y":2}]},"b":1,"f":1.5}"#
        );
    }

    #[test]
    fn hash_map_order_does_not_matter() {
        let forward: HashMap<String, u32> = (0..64).map(|i| (format!("k{i}"), i)).collect();
        let backward: HashMap<String, u32> = (0..64).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(canonical_json(&forward), canonical_json(&backward));
    }
}
