//! The one canonical JSON serializer: object keys sorted by their UTF-8
//! bytes, no insignificant whitespace. Everything that gets a digest (action
//! keys, action cache entries, configs, manifests, indexes) goes through
//! [`canonical_json`].

use std::io::{self, Write};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use serde_json::value::RawValue;
use serde_json::Value;

/// Serializes `value` as canonical JSON.
///
/// Keys are sorted here rather than trusting the map types: oci-spec keeps
/// labels in `HashMap`s, and a dependency could turn on `serde_json`'s
/// `preserve_order`. The value is written while it is walked, with no
/// `serde_json::Value` tree in between: only each object's entries wait to be
/// sorted, so a 30,000-entry layer's params cost their text, not a tree ten
/// times its size. Scalars and escapes are `serde_json`'s own.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, CanonicalFormatter::default());
    value.serialize(&mut serializer).expect("berth's types serialize to JSON: string keys, finite numbers");
    out
}

/// JSON already in canonical form, written verbatim wherever it is embedded:
/// an action's params go into its key, its record and the build log without
/// being rebuilt, and clones share one text.
#[derive(Clone)]
pub struct CanonicalJson(Arc<RawValue>);

impl CanonicalJson {
    pub fn of<T: Serialize + ?Sized>(value: &T) -> CanonicalJson {
        let text = String::from_utf8(canonical_json(value)).expect("serde_json writes UTF-8");
        CanonicalJson(Arc::from(RawValue::from_string(text).expect("canonical JSON is JSON")))
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON as a tree, for the few readers that walk it (`berth explain`).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).expect("canonical JSON is JSON")
    }
}

impl std::fmt::Debug for CanonicalJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for CanonicalJson {
    fn eq(&self, other: &CanonicalJson) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for CanonicalJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Read back as written: a build log holds what [`CanonicalJson::of`] made.
impl<'de> Deserialize<'de> for CanonicalJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CanonicalJson, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| CanonicalJson(Arc::from(raw)))
    }
}

/// A `serde_json` formatter that holds each object's entries until the object
/// ends, then writes them sorted by key. Everything else is written through.
#[derive(Default)]
struct CanonicalFormatter {
    /// The objects being written, innermost last.
    open: Vec<Object>,
}

#[derive(Default)]
struct Object {
    entries: Vec<Entry>,
    in_key: bool,
}

/// One `"key":value` of an object: the key's JSON text (quoted, escaped) and
/// the value's.
#[derive(Default)]
struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Entry {
    /// The key's UTF-8 bytes, which order the entries.
    fn sort_key(&self) -> std::borrow::Cow<'_, [u8]> {
        let quoted = &self.key[1..self.key.len() - 1];
        if quoted.contains(&b'\\') {
            let key: String = serde_json::from_slice(&self.key).expect("serde_json wrote a valid key");
            key.into_bytes().into()
        } else {
            quoted.into()
        }
    }
}

/// Where the next bytes go: the innermost open object's current key or
/// value, else the output.
struct Sink<'a, W: ?Sized> {
    open: &'a mut [Object],
    writer: &'a mut W,
}

impl<W: ?Sized + Write> Write for Sink<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.open.last_mut() {
            Some(object) => {
                let entry = object.entries.last_mut().expect("an object's content is written inside an entry");
                (if object.in_key { &mut entry.key } else { &mut entry.value }).extend_from_slice(bytes);
                Ok(())
            }
            None => self.writer.write_all(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl CanonicalFormatter {
    fn sink<'a, W: ?Sized>(&'a mut self, writer: &'a mut W) -> Sink<'a, W> {
        Sink { open: &mut self.open, writer }
    }
}

/// Forwards scalar writers to [`CompactFormatter`], into the current sink.
macro_rules! through {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<W: ?Sized + Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            CompactFormatter.$method(&mut self.sink(writer) $(, $arg)*)
        }
    )*};
}

impl Formatter for CanonicalFormatter {
    through! {
        write_null();
        write_bool(value: bool);
        write_i8(value: i8);
        write_i16(value: i16);
        write_i32(value: i32);
        write_i64(value: i64);
        write_i128(value: i128);
        write_u8(value: u8);
        write_u16(value: u16);
        write_u32(value: u32);
        write_u64(value: u64);
        write_u128(value: u128);
        write_f32(value: f32);
        write_f64(value: f64);
        write_number_str(value: &str);
        begin_string();
        end_string();
        write_string_fragment(fragment: &str);
        write_char_escape(char_escape: CharEscape);
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        write_raw_fragment(fragment: &str);
    }

    fn begin_object<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.open.push(Object::default());
        Ok(())
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, _writer: &mut W, _first: bool) -> io::Result<()> {
        let object = self.open.last_mut().expect("a key is inside an object");
        object.entries.push(Entry::default());
        object.in_key = true;
        Ok(())
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.open.last_mut().expect("a key is inside an object").in_key = false;
        Ok(())
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        let entries = self.open.pop().expect("an object ends after it begins").entries;
        let mut sorted: Vec<(std::borrow::Cow<'_, [u8]>, &Entry)> =
            entries.iter().map(|entry| (entry.sort_key(), entry)).collect();
        // Stable, so that of two equal keys the later is kept, as a map would.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sink = self.sink(writer);
        sink.write_all(b"{")?;
        let mut first = true;
        for (index, (key, entry)) in sorted.iter().enumerate() {
            if sorted.get(index + 1).is_some_and(|(next, _)| next == key) {
                continue;
            }
            if !first {
                sink.write_all(b",")?;
            }
            first = false;
            sink.write_all(&entry.key)?;
            sink.write_all(b":")?;
            sink.write_all(&entry.value)?;
        }
        sink.write_all(b"}")
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

    /// The tree-free writer gives what sorting a `serde_json::Value` (a
    /// `BTreeMap`, ordered by key bytes) gives, escapes and number keys included.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn agrees_with_a_sorted_value_tree() {
        #[derive(Serialize)]
        enum Kind {
            File { source: usize, executable: bool },
            Directory,
        }
        #[derive(Serialize)]
        struct Entry {
            path: &'static str,
            kind: Kind,
            mode: Option<u32>,
            labels: HashMap<&'static str, &'static str>,
            by_number: std::collections::BTreeMap<u32, f64>,
        }
        let labels = HashMap::from([("\"q", "1"), ("#", "2"), ("\u{1}ctl", "3"), ("é", "4"), ("Z", "5"), ("", "6")]);
        let entries = [
            Entry {
                path: "/a\\b",
                kind: Kind::File { source: 3, executable: true },
                mode: None,
                labels: labels.clone(),
                by_number: [(10, 1.5), (9, -0.25)].into(),
            },
            Entry { path: "/z", kind: Kind::Directory, mode: Some(0o755), labels, by_number: Default::default() },
        ];
        let tree = serde_json::to_vec(&serde_json::to_value(&entries).unwrap()).unwrap();
        assert_eq!(String::from_utf8(canonical_json(&entries)).unwrap(), String::from_utf8(tree).unwrap());
    }

    #[test]
    fn canonical_json_is_embedded_verbatim() {
        let params = CanonicalJson::of(&serde_json::json!({"b": [1, {"d": 2, "c": 3}], "a": null}));
        assert_eq!(params.as_str(), r#"{"a":null,"b":[1,{"c":3,"d":2}]}"#);
        let outer = serde_json::json!({"z": 1}).as_object().unwrap().clone();
        #[derive(Serialize, Deserialize)]
        struct Record {
            params: CanonicalJson,
            z: serde_json::Map<String, Value>,
        }
        let record = Record { params: params.clone(), z: outer };
        let text = canonical_json(&record);
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            r#"{"params":{"a":null,"b":[1,{"c":3,"d":2}]},"z":{"z":1}}"#
        );
        let back: Record = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.params, params);
        assert_eq!(params.to_value()["b"][1]["c"], 3);
    }
}
