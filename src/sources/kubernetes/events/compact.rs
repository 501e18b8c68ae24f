//! An event's JSON made compact, keys sorted, `metadata.managedFields` left out, without
//! building a `serde_json::Value` tree: the same bytes as parsing into a `Value` and serializing
//! it again (keys in order, the last of duplicate keys kept, strings and numbers written as
//! serde_json writes them), at a fraction of the allocations.
//!
//! Anything unusual (nesting deeper than serde_json's limit, invalid JSON) returns `None` and
//! the caller takes the `Value` path, which reports the error as it always did.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// serde_json's own nesting limit for a `Value`; deeper input goes the `Value` way and fails there.
const MAX_DEPTH: usize = 127;

/// The compact, key-sorted JSON of the object `raw`, without `metadata.managedFields`; `None`
/// when `raw` is not a JSON object this path handles (the caller falls back).
pub(super) fn compact_event(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    write_value(raw.trim_ascii(), 0, Strip::Top, &mut out)?;
    String::from_utf8(out).ok()
}

/// Which key an object at this place leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    /// The event itself: its `metadata` strips `managedFields`.
    Top,
    Metadata,
    Nothing,
}

fn write_value(raw: &str, depth: usize, strip: Strip, out: &mut Vec<u8>) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    match raw.as_bytes().first()? {
        b'{' => {
            let mut entries = serde_json::from_str::<Entries<'_>>(raw).ok()?.0;
            // Stable: of duplicate keys the last stays last, and is the one kept (as a map keeps it).
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            let mut first = true;
            for (i, (key, value)) in entries.iter().enumerate() {
                if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                    continue;
                }
                if strip == Strip::Metadata && key == "managedFields" {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut *out, key.as_ref()).ok()?;
                out.push(b':');
                let inner =
                    if strip == Strip::Top && key == "metadata" { Strip::Metadata } else { Strip::Nothing };
                write_value(value.get(), depth + 1, inner, out)?;
            }
            out.push(b'}');
        }
        b'[' => {
            let items = serde_json::from_str::<Vec<&RawValue>>(raw).ok()?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item.get(), depth + 1, Strip::Nothing, out)?;
            }
            out.push(b']');
        }
        b'"' => {
            let text = serde_json::from_str::<Text<'_>>(raw).ok()?;
            serde_json::to_writer(&mut *out, text.0.as_ref()).ok()?;
        }
        b't' | b'f' | b'n' => {
            // true, false, null: as written (serde_json checked them when it split the parent).
            let literal = match raw {
                "true" | "false" | "null" => raw,
                _ => return None,
            };
            out.extend_from_slice(literal.as_bytes());
        }
        _ => {
            let number = serde_json::from_str::<serde_json::Number>(raw).ok()?;
            serde_json::to_writer(&mut *out, &number).ok()?;
        }
    }
    Some(())
}

/// A JSON string, borrowed when it holds no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

/// An object's entries in the order written, values left as raw JSON.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, value)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
            entries.push((key.0, value));
        }
        Ok(Entries(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// What the `Value` path makes of `raw`.
    fn via_value(raw: &str) -> String {
        let mut json: Value = serde_json::from_str(raw).unwrap();
        if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        serde_json::to_string(&json).unwrap()
    }

    #[test]
    fn same_bytes_as_the_value_path() {
        let cases = [
            r#"{"b":1,"a":{"z":[1,2.5,-0,1e3,{"y":null,"x":true}],"m":"\u00e9\/\"q\"\n"},"metadata":{"uid":"u","managedFields":[{"a":1}],"name":"n"}}"#,
            r#" { "kind" : "Event", "kind": "Other", "count": 18446744073709551616, "f": -1.25e-7, "s": "tab\there" } "#,
            r#"{"metadata":"not an object","x":{"metadata":{"managedFields":1}}}"#,
            r#"{"\u0061b":1,"ab":2,"a":[],"e":{},"n":[[1],[{}]],"u":"\ud83d\ude00 \u001f"}"#,
            r#"{"metadata":{"managedFields":null}}"#,
        ];
        for raw in cases {
            assert_eq!(compact_event(raw).as_deref(), Some(via_value(raw).as_str()), "{raw}");
        }
    }

    #[test]
    fn what_the_value_path_refuses_falls_back() {
        for raw in [r#"{"a":}"#, r#"{"a":"\ud800"}"#, r#"{"a":tru}"#, "[1,", r#"{"a":1}x"#] {
            assert_eq!(compact_event(raw), None, "{raw}");
            assert!(serde_json::from_str::<Value>(raw).is_err(), "{raw}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(compact_event(&format!("{{\"a\":{deep}}}")), None, "too deep for a Value");
    }
}
