//! The one canonical JSON serializer: object keys sorted by their UTF-8
//! bytes, no insignificant whitespace. Everything that gets a digest (action
//! keys, action cache entries, outputs) goes through [`canonical_json`].

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` as canonical JSON.
///
/// Sorted explicitly (rather than trusting `serde_json`'s default `BTreeMap`)
/// so the bytes stay the same even if some dependency turns on the
/// `preserve_order` feature of `serde_json`.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("berth types serialize to JSON infallibly: string keys only");
    // The one place allowed to call `serde_json::to_vec`: the value is sorted first.
    #[allow(clippy::disallowed_methods)]
    serde_json::to_vec(&sorted(value)).expect("a JSON value with string keys always serializes")
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            Value::Object(entries.into_iter().map(|(key, value)| (key, sorted(value))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_at_every_depth_without_whitespace() {
        let value = serde_json::json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "m": "é"}});
        assert_eq!(String::from_utf8(canonical_json(&value)).unwrap(), r#"{"a":{"m":"é","z":[{"x":1,"y":2}]},"b":1}"#);
    }
}
