//! The one JSON serializer for everything that gets a digest: configs,
//! manifests, indexes, action keys. Keys are sorted by their bytes and the
//! output is compact, so the same value always gives the same bytes whatever
//! the map types (oci-spec's `HashMap`s, `serde_json`'s `preserve_order`).

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` as canonical JSON: object keys sorted by their UTF-8
/// bytes, no whitespace, strings escaped as `serde_json` does.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Sorted so the bytes do not depend on insertion order; scalars are written
/// by `serde_json` itself, which is why this is the one place allowed to call it.
// The canonical serializer the `disallowed-methods` ban points to.
#[allow(clippy::disallowed_methods)]
fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&serde_json::to_vec(key)?);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(&serde_json::to_vec(scalar)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn sorts_keys_at_every_depth_and_is_compact() {
        let value = serde_json::json!({"b": 1, "a": {"z": [true, null, "x\"y"], "m": 1.5}, "A": "é"});
        assert_eq!(
            String::from_utf8(canonical_json(&value).unwrap()).unwrap(),
            r#"{"A":"é","a":{"m":1.5,"z":[true,null,"x\"y"]},"b":1}"#
        );
    }

    #[test]
    fn hash_map_order_does_not_matter() {
        let forward: HashMap<String, u32> = (0..64).map(|i| (format!("k{i}"), i)).collect();
        let backward: HashMap<String, u32> = (0..64).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(canonical_json(&forward).unwrap(), canonical_json(&backward).unwrap());
    }
}
