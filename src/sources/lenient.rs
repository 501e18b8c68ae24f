//! JSON values that tolerate the wrong type.
//!
//! A kubelet that sends `"usageBytes": "12"` or `-5` should cost the collector that one value,
//! not the whole node. Each type here accepts any JSON value: the expected kind is kept, `null`
//! and a missing field are [`Absent`](Lenient::Absent), and anything else is consumed and kept
//! as a [`Found`] so the caller, which knows the field's path, can report it.
//!
//! Strings borrow from the body unless they contain escapes.
//!
//! A number past `f64`'s range (`1e400`) fails serde_json's whole parse; [`quote_out_of_range`]
//! rewrites each such number as a marked string, which every type here reports as
//! [`Found::TooLarge`] at the field's own path.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The longest excerpt of a body's string kept for a warning.
const EXCERPT_CHARS: usize = 40;

/// A value of the wrong type (or out of range), described for a warning.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    Str(String),
    Bool(bool),
    Object,
    Array,
    /// A number where a string belongs.
    Number(String),
    /// A negative number where an unsigned one belongs.
    Negative(String),
    /// A number too large for a signed 64-bit integer.
    TooLarge(String),
}

impl Found {
    fn string(s: &str) -> Found {
        match s.strip_prefix(OUT_OF_RANGE) {
            Some(number) => Found::TooLarge(excerpt(number)),
            None => Found::Str(excerpt(s)),
        }
    }
}

/// A float for a warning: as written up to 1e21, in exponent form past it (`-1e308`, not its
/// 309 digits).
fn float_text(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e21 { format!("{v:e}") } else { v.to_string() }
}

/// What a number out of `f64`'s range becomes, followed by the number as written. The NUL makes
/// it a string no kubelet sends by mistake.
const OUT_OF_RANGE: &str = "\0out of range:";
/// The same, as JSON string content.
const OUT_OF_RANGE_JSON: &str = "\\u0000out of range:";

/// A body with its out-of-range numbers quoted, and how to find original byte offsets.
#[derive(Debug)]
pub struct Quoted {
    pub text: String,
    /// `(end of a replacement in text, bytes added up to there)`, in order.
    shifts: Vec<(usize, usize)>,
}

impl Quoted {
    /// The offset in the original body of a byte at `offset` in [`Quoted::text`] outside the
    /// replacements.
    pub fn original_offset(&self, offset: usize) -> usize {
        let added = self.shifts.iter().take_while(|(end, _)| *end <= offset).last().map_or(0, |s| s.1);
        offset.saturating_sub(added)
    }
}

/// Each number token outside strings that no `f64` holds (`1e400`, 400 digits), quoted as an
/// [`OUT_OF_RANGE`] string; `None` when there is none. Anything else, well-formed or not, is
/// left for the parser to judge.
pub fn quote_out_of_range(text: &str) -> Option<Quoted> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut shifts = Vec::new();
    let (mut copied, mut i, mut in_string) = (0, 0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let token = &text[start..i];
                if token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    out.push_str(&text[copied..start]);
                    out.push('"');
                    out.push_str(OUT_OF_RANGE_JSON);
                    out.push_str(token);
                    out.push('"');
                    copied = i;
                    shifts.push((out.len(), out.len() - i));
                }
            }
            _ => i += 1,
        }
    }
    if shifts.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(Quoted { text: out, shifts })
}

/// The start of a string from the body, short enough for a warning.
pub fn excerpt(s: &str) -> String {
    s.chars().take(EXCERPT_CHARS).collect()
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Str(s) => write!(f, "string {s:?}"),
            Found::Bool(b) => write!(f, "boolean {b}"),
            Found::Object => f.write_str("an object"),
            Found::Array => f.write_str("an array"),
            Found::Number(n) => write!(f, "number {n}"),
            Found::Negative(n) => write!(f, "negative number {n}"),
            Found::TooLarge(n) => write!(f, "number {n}, which is out of range"),
        }
    }
}

/// A field that was absent, held a value of the expected kind, or held something else.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Lenient<T> {
    #[default]
    Absent,
    Value(T),
    Wrong(Box<Found>),
}

impl<T> Lenient<T> {
    fn wrong(found: Found) -> Self {
        Lenient::Wrong(Box::new(found))
    }

    /// The value, `None` when absent, or what was found instead.
    pub fn get(&self) -> Result<Option<&T>, &Found> {
        match self {
            Lenient::Absent => Ok(None),
            Lenient::Value(v) => Ok(Some(v)),
            Lenient::Wrong(found) => Err(found),
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Lenient::Absent)
    }
}

/// A kubelet `uint64`, kept as the `i64` the metric model stores.
pub type Num = Lenient<i64>;
/// A JSON number of any kind, as `f64`.
pub type Float = Lenient<f64>;
/// A string.
pub type Text<'a> = Lenient<Cow<'a, str>>;
/// A JSON object decoded as `T`.
pub type Obj<T> = Lenient<Object<T>>;
/// A JSON array.
pub type List<T> = Lenient<Vec<T>>;

/// Wraps a struct so it is only ever decoded from a JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object<T>(pub T);

/// What each lenient kind expects, for warnings.
pub trait Expected {
    const EXPECTED: &'static str;
}

impl Expected for i64 {
    const EXPECTED: &'static str = "an unsigned integer";
}
impl Expected for f64 {
    const EXPECTED: &'static str = "a number";
}
impl Expected for Cow<'_, str> {
    const EXPECTED: &'static str = "a string";
}
impl<T> Expected for Object<T> {
    const EXPECTED: &'static str = "an object";
}
impl<T> Expected for Vec<T> {
    const EXPECTED: &'static str = "an array";
}

/// Consumes a wrong-typed object so parsing can go on after it.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The visitor methods of the JSON kinds a lenient type does not expect: each consumes the value
/// and keeps what it was; `null` is absent.
macro_rules! reject {
    ($out:ty; $($kind:ident),*) => { $( reject!(@one $out; $kind); )* };
    (@one $out:ty; bool) => {
        fn visit_bool<E>(self, v: bool) -> Result<$out, E> {
            Ok(Lenient::wrong(Found::Bool(v)))
        }
    };
    (@one $out:ty; i64) => {
        fn visit_i64<E>(self, v: i64) -> Result<$out, E> {
            Ok(Lenient::wrong(Found::Number(v.to_string())))
        }
    };
    (@one $out:ty; u64) => {
        fn visit_u64<E>(self, v: u64) -> Result<$out, E> {
            Ok(Lenient::wrong(Found::Number(v.to_string())))
        }
    };
    (@one $out:ty; f64) => {
        fn visit_f64<E>(self, v: f64) -> Result<$out, E> {
            Ok(Lenient::wrong(Found::Number(float_text(v))))
        }
    };
    (@one $out:ty; str) => {
        fn visit_str<E>(self, v: &str) -> Result<$out, E> {
            Ok(Lenient::wrong(Found::string(v)))
        }
    };
    (@one $out:ty; map) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$out, A::Error> {
            skip_map(map)?;
            Ok(Lenient::wrong(Found::Object))
        }
    };
    (@one $out:ty; seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$out, A::Error> {
            skip_seq(seq)?;
            Ok(Lenient::wrong(Found::Array))
        }
    };
    (@one $out:ty; null) => {
        fn visit_unit<E>(self) -> Result<$out, E> {
            Ok(Lenient::Absent)
        }

        fn visit_none<E>(self) -> Result<$out, E> {
            Ok(Lenient::Absent)
        }
    };
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => Lenient::Value(v),
            Err(_) => Lenient::wrong(Found::TooLarge(v.to_string())),
        })
    }

    fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
        Ok(if v < 0 { Lenient::wrong(Found::Negative(v.to_string())) } else { Lenient::Value(v) })
    }

    /// Integral floats (`12.0`, `1e3`) are taken as they are; fractions are truncated.
    fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
        // 2^63: the first float past i64::MAX.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        Ok(if v <= -1.0 {
            Lenient::wrong(Found::Negative(float_text(v)))
        } else if v >= LIMIT || v.is_nan() {
            Lenient::wrong(Found::TooLarge(float_text(v)))
        } else {
            // In range, so the cast only drops the fraction.
            Lenient::Value(v as i64)
        })
    }

    reject!(Num; bool, str, map, seq, null);
}

impl<'de> Deserialize<'de> for Lenient<i64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct FloatVisitor;

impl<'de> Visitor<'de> for FloatVisitor {
    type Value = Float;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Float, E> {
        Ok(Lenient::Value(v as f64))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Float, E> {
        Ok(Lenient::Value(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Float, E> {
        Ok(Lenient::Value(v))
    }

    reject!(Float; bool, str, map, seq, null);
}

impl<'de> Deserialize<'de> for Lenient<f64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FloatVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Lenient::Value(Cow::Borrowed(v)))
    }

    /// Escaped strings cannot borrow from the body; a quoted out-of-range number is one.
    fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(match v.starts_with(OUT_OF_RANGE) {
            true => Lenient::wrong(Found::string(v)),
            false => Lenient::Value(Cow::Owned(v.to_owned())),
        })
    }

    fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
        Ok(match v.starts_with(OUT_OF_RANGE) {
            true => Lenient::wrong(Found::string(&v)),
            false => Lenient::Value(Cow::Owned(v)),
        })
    }

    reject!(Text<'de>; bool, i64, u64, f64, map, seq, null);
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<Cow<'a, str>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|v| Lenient::Value(Object(v)))
    }

    reject!(Obj<T>; bool, i64, u64, f64, str, seq, null);
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<Object<T>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Lenient::Value(items))
    }

    reject!(List<T>; bool, i64, u64, f64, str, map, null);
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<Vec<T>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// Takes a JSON object apart entry by entry as it is read (see [`StreamObj`]).
pub trait Entries<'de> {
    fn entries<A: MapAccess<'de>>(&mut self, map: A) -> Result<(), A::Error>;
}

/// Takes a JSON array apart item by item as it is read (see [`StreamList`]).
pub trait Items<'de> {
    fn items<A: SeqAccess<'de>>(&mut self, seq: A) -> Result<(), A::Error>;
}

/// An [`Obj`] whose entries go to an [`Entries`] as they are read, so nothing of it is kept;
/// the result says only whether it was an object (as an empty `Obj<()>`), absent, or what else.
pub struct StreamObj<'s, S>(pub &'s mut S);

/// A [`List`] whose items go to an [`Items`] as they are read, never collected; the result is
/// an empty list, absent, or what was found instead.
pub struct StreamList<'s, S>(pub &'s mut S);

impl<'de, S: Entries<'de>> DeserializeSeed<'de> for StreamObj<'_, S> {
    type Value = Obj<()>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Obj<()>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Entries<'de>> Visitor<'de> for StreamObj<'_, S> {
    type Value = Obj<()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<()>, A::Error> {
        self.0.entries(map)?;
        Ok(Lenient::Value(Object(())))
    }

    reject!(Obj<()>; bool, i64, u64, f64, str, seq, null);
}

impl<'de, S: Items<'de>> DeserializeSeed<'de> for StreamList<'_, S> {
    type Value = List<()>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<List<()>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Items<'de>> Visitor<'de> for StreamList<'_, S> {
    type Value = List<()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<List<()>, A::Error> {
        self.0.items(seq)?;
        Ok(Lenient::Value(Vec::new()))
    }

    reject!(List<()>; bool, i64, u64, f64, str, map, null);
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Probe<'a> {
        num: Num,
        float: Float,
        #[serde(borrow)]
        text: Text<'a>,
        obj: Obj<Inner>,
        list: List<Num>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        a: Num,
    }

    fn probe(json: &str) -> Probe<'_> {
        serde_json::from_str(json).unwrap()
    }

    fn found<T>(v: &Lenient<T>) -> String {
        match v.get() {
            Err(found) => found.to_string(),
            Ok(_) => "ok".to_owned(),
        }
    }

    #[test]
    fn expected_kinds_are_values() {
        let p = probe(
            r#"{"num": 7, "float": -1.5, "text": "abc", "obj": {"a": 1, "b": [2]}, "list": [1, null, "x"]}"#,
        );
        assert_eq!(p.num, Lenient::Value(7));
        assert_eq!(p.float, Lenient::Value(-1.5));
        assert!(matches!(p.text, Lenient::Value(Cow::Borrowed("abc"))));
        assert_eq!(p.obj, Lenient::Value(Object(Inner { a: Lenient::Value(1) })));
        let Lenient::Value(list) = &p.list else { panic!("{:?}", p.list) };
        assert_eq!(list[..2], [Lenient::Value(1), Lenient::Absent]);
        assert_eq!(found(&list[2]), "string \"x\"");
    }

    #[test]
    fn null_and_missing_are_absent() {
        let p = probe(r#"{"num": null, "text": null, "obj": null, "list": null}"#);
        assert!(p.num.is_absent() && p.float.is_absent() && p.text.is_absent());
        assert!(p.obj.is_absent() && p.list.is_absent());
    }

    #[test]
    fn other_kinds_are_kept_for_the_warning() {
        let p = probe(
            r#"{"num": {"deep": [[1], {"x": null}]}, "float": "1.5", "text": 12, "obj": [1], "list": {"a": 1}}"#,
        );
        assert_eq!(found(&p.num), "an object");
        assert_eq!(found(&p.float), "string \"1.5\"");
        assert_eq!(found(&p.text), "number 12");
        assert_eq!(found(&p.obj), "an array");
        assert_eq!(found(&p.list), "an object");
        let p = probe(r#"{"num": true, "text": false}"#);
        assert_eq!((found(&p.num), found(&p.text)), ("boolean true".to_owned(), "boolean false".to_owned()));
    }

    #[test]
    fn unsigned_range() {
        let num = |json: &str| probe(&format!(r#"{{"num": {json}}}"#)).num;
        assert_eq!(found(&num("-1")), "negative number -1");
        assert_eq!(found(&num("-2.5")), "negative number -2.5");
        assert_eq!(num("-0.5"), Lenient::Value(0));
        assert_eq!(num("9223372036854775807"), Lenient::Value(i64::MAX));
        assert_eq!(found(&num("9223372036854775808")), "number 9223372036854775808, which is out of range");
        assert_eq!(found(&num("1e19")), "number 10000000000000000000, which is out of range");
        assert_eq!(num("2.0e3"), Lenient::Value(2000));
    }

    #[test]
    fn numbers_out_of_range_are_quoted_and_reported() {
        let body =
            r#"{"num": 1e400, "float": -1e400, "text": 1e999, "list": [5, 1E+400], "obj": {"a": "1e400"}}"#;
        let quoted = quote_out_of_range(body).unwrap();
        let p = probe(&quoted.text);
        assert_eq!(found(&p.num), "number 1e400, which is out of range");
        assert_eq!(found(&p.float), "number -1e400, which is out of range");
        assert_eq!(found(&p.text), "number 1e999, which is out of range");
        let Lenient::Value(list) = &p.list else { panic!("{:?}", p.list) };
        assert_eq!(list[0], Lenient::Value(5));
        assert_eq!(found(&list[1]), "number 1E+400, which is out of range");
        // A string that reads like one is a string, untouched.
        assert_eq!(found(&p.obj.get().unwrap().unwrap().0.a), "string \"1e400\"");
        // Offsets past a replacement map back to the body's.
        let tail = quoted.text.rfind("\"obj\"").unwrap();
        assert_eq!(quoted.original_offset(tail), body.rfind("\"obj\"").unwrap());
        assert_eq!(quoted.original_offset(1), 1);
        // Within range, in strings, or not a number at all: nothing to quote.
        let digits = format!("{{\"num\": 1{}}}", "0".repeat(300));
        assert!(quote_out_of_range(&digits).is_none());
        assert!(quote_out_of_range(r#"{"a": "1e400", "b\"1e400": 0e999, "c": 1-e}"#).is_none());
        let digits = format!("{{\"num\": 1{}}}", "0".repeat(400));
        let quoted = quote_out_of_range(&digits).unwrap();
        assert_eq!(
            found(&probe(&quoted.text).num),
            format!("number 1{}, which is out of range", "0".repeat(39))
        );
    }

    #[test]
    fn huge_floats_are_written_short() {
        let num = |json: &str| probe(&format!(r#"{{"num": {json}}}"#)).num;
        assert_eq!(found(&num("-1e308")), "negative number -1e308");
        assert_eq!(found(&num("1.5e300")), "number 1.5e300, which is out of range");
        assert_eq!(found(&probe(r#"{"text": -2.5e200}"#).text), "number -2.5e200");
    }

    /// Counts what it is handed, as a streamed object's or array's consumer would.
    #[derive(Default)]
    struct Counter(Vec<i64>);

    impl<'de> Entries<'de> for Counter {
        fn entries<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
            while let Some((_, v)) = map.next_entry::<IgnoredAny, Num>()? {
                self.0.push(v.get().ok().flatten().copied().unwrap_or(-1));
            }
            Ok(())
        }
    }

    impl<'de> Items<'de> for Counter {
        fn items<A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<Num>()? {
                self.0.push(v.get().ok().flatten().copied().unwrap_or(-1));
            }
            Ok(())
        }
    }

    #[test]
    fn streamed_values_are_handed_over_and_other_kinds_kept() {
        let obj = |json: &str| {
            let mut counter = Counter::default();
            let kind =
                StreamObj(&mut counter).deserialize(&mut serde_json::Deserializer::from_str(json)).unwrap();
            (kind, counter.0)
        };
        let list = |json: &str| {
            let mut counter = Counter::default();
            let kind =
                StreamList(&mut counter).deserialize(&mut serde_json::Deserializer::from_str(json)).unwrap();
            (kind, counter.0)
        };
        let (kind, seen) = obj(r#"{"a": 1, "b": "x", "c": 3}"#);
        assert!(matches!(kind, Lenient::Value(_)));
        assert_eq!(seen, [1, -1, 3]);
        let (kind, seen) = list("[4, null, 6]");
        assert!(matches!(kind, Lenient::Value(ref v) if v.is_empty()));
        assert_eq!(seen, [4, -1, 6]);
        assert_eq!(found(&obj("[1]").0), "an array");
        assert_eq!(found(&list(r#"{"a": [1]}"#).0), "an object");
        assert!(obj("null").0.is_absent() && list("null").0.is_absent());
        assert_eq!(found(&list("\"s\"").0), "string \"s\"");
        // Broken JSON inside is the parse's error, not a kept value.
        let mut counter = Counter::default();
        assert!(
            StreamList(&mut counter).deserialize(&mut serde_json::Deserializer::from_str("[1, }")).is_err()
        );
        assert_eq!(counter.0, [1], "items before the break were handed over");
    }

    #[test]
    fn escaped_strings_are_owned_and_long_ones_cut() {
        let p = probe(r#"{"text": "a\u002db", "num": "0123456789012345678901234567890123456789xyz"}"#);
        assert!(matches!(&p.text, Lenient::Value(Cow::Owned(s)) if s == "a-b"));
        assert_eq!(found(&p.num), format!("string {:?}", &"0123456789".repeat(4)));
    }
}
