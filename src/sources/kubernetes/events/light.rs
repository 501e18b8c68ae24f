//! Only the fields of an event that the model takes, borrowed from the item's JSON: one cheap
//! decode per item instead of the full typed object (labels, annotations, managed fields and
//! every string copied), which used to be most of the time spent on a large list.
//!
//! The fields read are checked as the typed objects check them (strings, `i32` counts, RFC 3339
//! times, `series.lastObservedTime` required in `events.k8s.io/v1`); the fields the model does
//! not take are not looked at, so an odd value there no longer costs the event.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::Fields;
use super::compact::{Kind, Node, Tape, unescape_simple};

/// A string, borrowed from the body when it holds no escapes.
#[derive(Default)]
pub(super) struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// A `Time` or `MicroTime`, in ms since the epoch (as the typed objects parse it: jiff's RFC 3339).
pub(super) struct Ms(pub i64);

impl<'de> Deserialize<'de> for Ms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Str::deserialize(deserializer)?;
        let time: jiff::Timestamp = text.0.parse().map_err(de::Error::custom)?;
        Ok(Ms(time.as_millisecond()))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Meta<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub resource_version: Option<Str<'a>>,
    pub creation_timestamp: Option<Ms>,
}

#[derive(Deserialize, Default)]
pub(super) struct Ref<'a> {
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Source<'a> {
    #[serde(borrow)]
    pub component: Option<Str<'a>>,
    #[serde(borrow)]
    pub host: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CoreSeries {
    pub count: Option<i32>,
    pub last_observed_time: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct V1Series {
    pub count: Option<i32>,
    pub last_observed_time: Ms,
}

/// A core `v1` Event, as much as the model takes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CoreItem<'a> {
    #[serde(borrow)]
    pub metadata: Option<Meta<'a>>,
    #[serde(borrow)]
    pub involved_object: Option<Ref<'a>>,
    #[serde(borrow)]
    pub reason: Option<Str<'a>>,
    #[serde(borrow)]
    pub message: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow)]
    pub source: Option<Source<'a>>,
    #[serde(borrow)]
    pub reporting_component: Option<Str<'a>>,
    #[serde(borrow)]
    pub reporting_instance: Option<Str<'a>>,
    pub first_timestamp: Option<Ms>,
    pub last_timestamp: Option<Ms>,
    pub event_time: Option<Ms>,
    pub series: Option<CoreSeries>,
    pub count: Option<i32>,
}

/// An `events.k8s.io/v1` Event, as much as the model takes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct V1Item<'a> {
    #[serde(borrow)]
    pub metadata: Option<Meta<'a>>,
    #[serde(borrow)]
    pub regarding: Option<Ref<'a>>,
    #[serde(borrow)]
    pub reason: Option<Str<'a>>,
    #[serde(borrow)]
    pub note: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow)]
    pub deprecated_source: Option<Source<'a>>,
    #[serde(borrow)]
    pub reporting_controller: Option<Str<'a>>,
    #[serde(borrow)]
    pub reporting_instance: Option<Str<'a>>,
    pub deprecated_first_timestamp: Option<Ms>,
    pub deprecated_last_timestamp: Option<Ms>,
    pub event_time: Option<Ms>,
    pub series: Option<V1Series>,
    pub deprecated_count: Option<i32>,
}

fn text<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
    s.as_ref().map(|s| s.0.as_ref())
}

fn non_empty<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
    text(s).filter(|s| !s.is_empty())
}

fn positive(count: Option<i32>) -> Option<i64> {
    count.filter(|c| *c > 0).map(i64::from)
}

fn ms(time: &Option<Ms>) -> Option<i64> {
    time.as_ref().map(|t| t.0)
}

/// The metadata and involved object's fields, which both versions share.
fn meta_fields<'s>(meta: &'s Option<Meta<'_>>, involved: Option<&'s Ref<'_>>) -> Fields<'s> {
    let meta = meta.as_ref();
    Fields {
        namespace: meta.and_then(|m| text(&m.namespace)),
        name: meta.and_then(|m| text(&m.name)),
        uid: meta.and_then(|m| text(&m.uid)),
        resource_version: meta.and_then(|m| text(&m.resource_version)),
        created: meta.and_then(|m| ms(&m.creation_timestamp)),
        involved: involved.map(|r| [text(&r.kind), text(&r.namespace), text(&r.name), text(&r.uid)]),
        ..Fields::default()
    }
}

impl CoreItem<'_> {
    /// The model's fields, with the fallbacks of [`super::from_core_v1`].
    pub fn fields(&self) -> Fields<'_> {
        let series = self.series.as_ref();
        let source = self.source.as_ref();
        Fields {
            reason: text(&self.reason),
            message: text(&self.message),
            type_: text(&self.type_),
            source_component: source
                .and_then(|s| non_empty(&s.component))
                .or(non_empty(&self.reporting_component)),
            source_host: source.and_then(|s| non_empty(&s.host)).or(non_empty(&self.reporting_instance)),
            first_timestamp: ms(&self.first_timestamp).or(ms(&self.event_time)),
            last_timestamp: ms(&self.last_timestamp)
                .or(series.and_then(|s| ms(&s.last_observed_time)))
                .or(ms(&self.event_time)),
            count: positive(self.count).or(positive(series.and_then(|s| s.count))),
            message_key: "message",
            ..meta_fields(&self.metadata, Some(self.involved_object.as_ref().unwrap_or(&EMPTY_REF)))
        }
    }
}

/// The typed object's default when `involvedObject` is absent or null.
static EMPTY_REF: Ref<'static> = Ref { kind: None, namespace: None, name: None, uid: None };

impl V1Item<'_> {
    /// The model's fields, with the fallbacks of [`super::from_events_v1`].
    pub fn fields(&self) -> Fields<'_> {
        let series = self.series.as_ref();
        let source = self.deprecated_source.as_ref();
        Fields {
            reason: text(&self.reason),
            message: text(&self.note),
            type_: text(&self.type_),
            source_component: non_empty(&self.reporting_controller)
                .or(source.and_then(|s| non_empty(&s.component))),
            source_host: non_empty(&self.reporting_instance).or(source.and_then(|s| non_empty(&s.host))),
            first_timestamp: ms(&self.deprecated_first_timestamp).or(ms(&self.event_time)),
            last_timestamp: ms(&self.deprecated_last_timestamp)
                .or(series.map(|s| s.last_observed_time.0))
                .or(ms(&self.event_time)),
            count: positive(self.deprecated_count).or(positive(series.and_then(|s| s.count))),
            message_key: "note",
            ..meta_fields(&self.metadata, self.regarding.as_ref())
        }
    }
}

/// A scanned object's members, looked up by key as the typed decode reads them.
#[derive(Clone, Copy)]
struct Members<'t, 'a> {
    raw: &'a str,
    tape: &'t Tape,
    members: &'t [Node],
    /// The last time read, as written and in ms: an event's times are most often the same.
    last_time: &'t Cell<Option<(&'a str, i64)>>,
}

/// `None`: the scan cannot say what the typed decode would (the caller decodes instead);
/// `Some(None)`: the member is absent or `null`.
type Read<T> = Option<Option<T>>;

impl<'t, 'a> Members<'t, 'a> {
    /// The members named `keys`, in one pass over the object; `None` when one of them is given
    /// twice (the typed decode refuses that).
    fn pick<const N: usize>(&self, keys: [&str; N]) -> Option<[Option<Node>; N]> {
        let mut found = [None; N];
        for member in self.members {
            let key = self.tape.key(self.raw, member);
            // Lengths first: most keys differ in length.
            if let Some(slot) = keys.iter().position(|k| k.len() == key.len() && *k == key) {
                if found[slot].is_some() {
                    return None;
                }
                found[slot] = Some(*member);
            }
        }
        Some(found)
    }

    fn text(&self, node: &Node) -> &'a str {
        self.raw.get(node.start as usize..node.end as usize).unwrap_or("")
    }

    /// The member's value unless it is `null`.
    fn present(&self, node: Option<Node>) -> Option<Node> {
        node.filter(|node| self.text(node) != "null")
    }

    fn object(&self, node: Option<Node>) -> Read<Members<'t, 'a>> {
        match self.present(node) {
            None => Some(None),
            Some(node) if node.kind == Kind::Object => {
                Some(Some(Members { members: self.tape.members(&node), ..*self }))
            }
            // An array decodes as a struct too, by position: left to the typed decode.
            Some(_) => None,
        }
    }

    fn str(&self, node: Option<Node>) -> Read<Str<'a>> {
        let Some(node) = self.present(node) else { return Some(None) };
        let text = self.text(&node);
        if !text.starts_with('"') {
            return None;
        }
        let inner = text.get(1..text.len() - 1)?;
        Some(Some(Str(match (node.kind, node.escaped) {
            (Kind::Verbatim, false) => Cow::Borrowed(inner),
            (Kind::Verbatim, true) => Cow::Owned(unescape_simple(inner)?),
            _ => Cow::Owned(serde_json::from_str(text).ok()?),
        })))
    }

    fn ms(&self, node: Option<Node>) -> Read<Ms> {
        if let Some(node) = self.present(node)
            && node.kind == Kind::Verbatim
            && !node.escaped
            && let Some((last, ms)) = self.last_time.get()
            && self.text(&node).get(1..).and_then(|t| t.strip_suffix('"')) == Some(last)
        {
            return Some(Some(Ms(ms)));
        }
        let Some(text) = self.str(node)? else { return Some(None) };
        let time: jiff::Timestamp = text.0.parse().ok()?;
        if let Cow::Borrowed(text) = text.0 {
            self.last_time.set(Some((text, time.as_millisecond())));
        }
        Some(Some(Ms(time.as_millisecond())))
    }

    fn i32(&self, node: Option<Node>) -> Read<i32> {
        let Some(node) = self.present(node) else { return Some(None) };
        let text = self.text(&node);
        // The scan takes integers only; a string, a literal or an object is the typed decode's.
        if node.kind != Kind::Verbatim || !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return None;
        }
        Some(Some(text.parse::<i32>().ok()?))
    }

    fn meta(&self, node: Option<Node>) -> Read<Meta<'a>> {
        let Some(m) = self.object(node)? else { return Some(None) };
        let [name, namespace, uid, version, created] =
            m.pick(["name", "namespace", "uid", "resourceVersion", "creationTimestamp"])?;
        Some(Some(Meta {
            name: m.str(name)?,
            namespace: m.str(namespace)?,
            uid: m.str(uid)?,
            resource_version: m.str(version)?,
            creation_timestamp: m.ms(created)?,
        }))
    }

    fn reference(&self, node: Option<Node>) -> Read<Ref<'a>> {
        let Some(r) = self.object(node)? else { return Some(None) };
        let [kind, namespace, name, uid] = r.pick(["kind", "namespace", "name", "uid"])?;
        Some(Some(Ref {
            kind: r.str(kind)?,
            namespace: r.str(namespace)?,
            name: r.str(name)?,
            uid: r.str(uid)?,
        }))
    }

    fn source(&self, node: Option<Node>) -> Read<Source<'a>> {
        let Some(s) = self.object(node)? else { return Some(None) };
        let [component, host] = s.pick(["component", "host"])?;
        Some(Some(Source { component: s.str(component)?, host: s.str(host)? }))
    }

    fn series(&self, node: Option<Node>) -> Read<CoreSeries> {
        let Some(s) = self.object(node)? else { return Some(None) };
        let [count, last] = s.pick(["count", "lastObservedTime"])?;
        Some(Some(CoreSeries { count: s.i32(count)?, last_observed_time: s.ms(last)? }))
    }
}

impl<'a> CoreItem<'a> {
    /// The item from its scan (`raw` is the text scanned), as the typed decode reads it, with
    /// where its name, resource version and message start in `raw`; `None` when the scan alone
    /// cannot say what the decode would (odd types, repeated keys): decode it then.
    pub fn from_tape(raw: &'a str, tape: &Tape) -> Option<(CoreItem<'a>, [Option<u32>; 3])> {
        let root = tape.root()?;
        let last_time = Cell::new(None);
        let top = Members { raw, tape, members: tape.members(&root), last_time: &last_time };
        let [
            metadata,
            involved_object,
            reason,
            message,
            type_,
            source,
            reporting_component,
            reporting_instance,
            first_timestamp,
            last_timestamp,
            event_time,
            series,
            count,
        ] = top.pick([
            "metadata",
            "involvedObject",
            "reason",
            "message",
            "type",
            "source",
            "reportingComponent",
            "reportingInstance",
            "firstTimestamp",
            "lastTimestamp",
            "eventTime",
            "series",
            "count",
        ])?;
        let item = CoreItem {
            metadata: top.meta(metadata)?,
            involved_object: top.reference(involved_object)?,
            reason: top.str(reason)?,
            message: top.str(message)?,
            type_: top.str(type_)?,
            source: top.source(source)?,
            reporting_component: top.str(reporting_component)?,
            reporting_instance: top.str(reporting_instance)?,
            first_timestamp: top.ms(first_timestamp)?,
            last_timestamp: top.ms(last_timestamp)?,
            event_time: top.ms(event_time)?,
            series: top.series(series)?,
            count: top.i32(count)?,
        };
        // Where the strings start, so the event's text need not search for them.
        let meta = top.object(metadata).flatten().and_then(|m| m.pick(["name", "resourceVersion"]));
        let [name, version] = meta.unwrap_or([None; 2]);
        let starts = [name, version, message].map(|node| node.map(|node| node.start));
        Some((item, starts))
    }
}
