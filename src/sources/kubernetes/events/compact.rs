//! An event's JSON made compact, keys sorted, `metadata.managedFields` left out, without
//! building a `serde_json::Value` tree: the same bytes as parsing into a `Value` and serializing
//! it again (keys in order, the last of duplicate keys kept, strings and numbers written as
//! serde_json writes them), at a fraction of the allocations.
//!
//! Invalid JSON (or nesting past serde_json's limit) returns `None`; the caller then takes the
//! `Value` path, which reports the error as it always did.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

mod fast;

pub(super) use fast::{Kind, Node, Tape, unescape_simple};

/// The compact, key-sorted JSON of the object `raw`, without `metadata.managedFields`; `None`
/// when `raw` is not a JSON object (the caller falls back and reports why).
pub(super) fn compact_event(raw: &str) -> Option<String> {
    if let Some(out) = fast::compact(raw) {
        return Some(out);
    }
    // One parse: strings borrowed where they hold no escapes, nesting bounded by serde_json.
    let mut tree: Json<'_> = serde_json::from_str(raw).ok()?;
    let Json::Object(_) = tree else { return None };
    let mut out = Vec::with_capacity(raw.len());
    write(&mut tree, Strip::Top, &mut out);
    String::from_utf8(out).ok()
}

/// A JSON value as read: objects keep their entries in the order written.
enum Json<'a> {
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
    Array(Vec<Json<'a>>),
    String(Cow<'a, str>),
    Number(Number),
    Literal(&'static str),
}

/// Which key an object at this place leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    /// The event itself: its `metadata` leaves out `managedFields`.
    Top,
    Metadata,
    Nothing,
}

fn write(value: &mut Json<'_>, strip: Strip, out: &mut Vec<u8>) {
    match value {
        Json::Object(entries) => {
            // Stable, so of duplicate keys the last written stays last: it is the one kept, as a
            // map keeps it. Most nested objects are in order already.
            if !entries.is_sorted_by(|a, b| key_order(&a.0, &b.0).is_le()) {
                entries.sort_by(|a, b| key_order(&a.0, &b.0));
            }
            out.push(b'{');
            let mut first = true;
            let count = entries.len();
            for i in 0..count {
                let duplicate = i + 1 < count && entries[i + 1].0 == entries[i].0;
                let (key, value) = &mut entries[i];
                if duplicate || (strip == Strip::Metadata && key == "managedFields") {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(key, out);
                out.push(b':');
                let inner =
                    if strip == Strip::Top && key == "metadata" { Strip::Metadata } else { Strip::Nothing };
                write(value, inner, out);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter_mut().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, Strip::Nothing, out);
            }
            out.push(b']');
        }
        Json::String(text) => write_str(text, out),
        Json::Number(number) => {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, number);
        }
        Json::Literal(literal) => out.extend_from_slice(literal.as_bytes()),
    }
}

/// Keys in byte order, as a map sorts them; most differ in their first byte, which is compared
/// without a call.
#[inline]
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

// The `Cow` itself is the point: whether the string was borrowed says whether it needs escaping.
#[allow(clippy::ptr_arg)]
fn write_str(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        // Read without escapes, so it has nothing to escape: JSON strings hold no raw control
        // characters, quotes or backslashes.
        Cow::Borrowed(text) => {
            out.reserve(text.len() + 2);
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        // Writing to a Vec cannot fail.
        Cow::Owned(text) => {
            let _ = serde_json::to_writer(&mut *out, text);
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// A key, borrowed when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(JsonVisitor)? {
            Json::String(text) => Ok(Key(text)),
            _ => Err(de::Error::custom("a key that is not a string")),
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Literal(if v { "true" } else { "false" }))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Literal("null"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As a `Value` does: a float JSON cannot hold is null.
        Ok(Number::from_f64(v).map_or(Json::Literal("null"), Json::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, value)) = map.next_entry::<Key<'de>, Json<'de>>()? {
            entries.push((key.0, value));
        }
        Ok(Json::Object(entries))
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

    /// The tree path alone, for comparing with the fast one.
    fn via_tree(raw: &str) -> Option<String> {
        let mut tree: Json<'_> = serde_json::from_str(raw).ok()?;
        let Json::Object(_) = tree else { return None };
        let mut out = Vec::new();
        write(&mut tree, Strip::Top, &mut out);
        String::from_utf8(out).ok()
    }

    #[test]
    fn the_fast_path_writes_what_the_tree_path_writes_or_declines() {
        let event = r#"{"metadata": {"name": "a.1", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:count": {}}}], "creationTimestamp": "2026-11-01T10:00:21Z"},
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"}, "reason": "Pulled",
            "message": "image \"x:1\" present\n\u00e9 \/", "source": {"component": "kubelet", "host": "n1"},
            "count": 12, "delta": -3, "zero": 0, "type": "Normal", "eventTime": null, "series": {}, "related": [],
            "b": [true, false, [], {}], "metadata2": {"managedFields": 1}}"#;
        assert_eq!(
            fast::compact(event).as_deref(),
            Some(via_value(event).as_str()),
            "a typical event takes the fast path"
        );
        let declined = [
            r#"{"b":1,"a":{"z":[1,2.5,-0,1e3,{"y":null,"x":true}]}}"#,
            r#"{"\u0061b":1,"ab":2}"#,
            r#"{"count": 18446744073709551616}"#,
            r#"{"n": -0}"#,
            r#"{"n": 01}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"raw\u{1}control\"}",
            r#"{"a":}"#,
            r#"{"a":1}x"#,
            r#"{"a":tru}"#,
            r#"[1]"#,
        ];
        for raw in declined {
            assert_eq!(fast::compact(raw), None, "{raw}");
        }
        let taken = [
            r#" { "kind" : "Event", "kind": "Other", "s": "tab\there", "n": -12, "e": {} } "#,
            r#"{"metadata":"not an object","x":{"metadata":{"managedFields":1}}}"#,
            r#"{"metadata":{"managedFields":null,"b":[1,{"z":1,"a":2}]}}"#,
            r#"{"a":"\ud83d\ude00 \u001f"}"#,
            r#"{"z":"q\"\\\b\f\n\r\t x","a":["\"",{"y":"\\","b":"\/"}]}"#,
        ];
        for raw in taken {
            assert_eq!(fast::compact(raw).as_deref(), Some(via_value(raw).as_str()), "{raw}");
            assert_eq!(fast::compact(raw), via_tree(raw), "{raw}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(fast::compact(&format!("{{\"a\":{deep}}}")), None, "too deep for a Value");
    }

    /// A body cut anywhere (a broken connection, a short file) is declined or written exactly as
    /// the tree path writes it, never a panic or a different text.
    #[test]
    fn every_cut_of_an_event_is_declined_or_written_as_the_tree_path_writes_it() {
        let event = r#"{"metadata": {"name": "a.1", "uid": "u-1", "managedFields": [{"f": {}}]},
            "message": "image \"x:1\" \u00e9", "count": 12, "delta": -3, "b": [true, null, []]}"#;
        let mut cuts = 0;
        for (end, _) in event.char_indices().skip(1) {
            let raw = &event[..end];
            assert_eq!(fast::compact(raw), via_tree(raw), "cut at {end}: {raw}");
            assert_eq!(fast::object_end(raw.as_bytes()), None, "cut at {end}: {raw}");
            cuts += 1;
        }
        assert!(cuts > 100, "only {cuts} cuts tried");
        assert!(fast::object_end(event.as_bytes()).is_some(), "the whole event has an end");
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
