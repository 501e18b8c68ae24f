//! Kubernetes events (core `v1` and `events.k8s.io/v1`) into the [`Event`] model: from a list
//! body, one watch line, or one decoded object.
//!
//! Both API versions describe the same thing with different field names and fallbacks; each is
//! mapped field by field to one model, so dedup and the sinks never see the difference.
//! Messages are bounded: InfluxDB 1.x refuses string fields over 64 KiB, and the event's JSON
//! (kept whole in [`Event::raw`]) must fit as well.

use super::raw_list::VersionMeta;
use heapster_dataflows::Event;
use heapster_dataflows::Name;
use heapster_dataflows::event_text::TextChunks;
use heapster_dataflows::model::{EventText, ObjectRef};
use heapster_dataflows::name::Interner;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

/// Messages longer than this are cut (half of InfluxDB 1.x's 64 KiB string limit, so the
/// event's JSON around the message fits too).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// The event's JSON in [`Event::raw`] is kept under this (InfluxDB 1.x's 64 KiB string limit,
/// less a margin); the message is cut further when its escaping makes the JSON larger.
pub const MAX_RAW_BYTES: usize = 60 * 1024;

const EVENTS_V1: &str = "events.k8s.io/v1";

#[derive(Debug, Error)]
pub enum EventError {
    #[error("event {namespace}/{name} has no uid")]
    MissingUid { namespace: String, name: String },
    #[error("event {namespace}/{name}: its JSON does not parse: {source}")]
    Raw {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("not an EventList: {0}")]
    NotAList(#[source] serde_json::Error),
    #[error("not an EventList: its kind is {0:?}")]
    WrongKind(String),
    #[error("not an EventList: it has no items")]
    NoItems,
    #[error("the EventList could not be read: {0}")]
    Read(#[source] std::io::Error),
    #[error("watch line is not a watch event: {0}")]
    WatchLine(#[source] serde_json::Error),
    #[error("watch event of unknown type {0:?}")]
    WatchType(String),
    #[error("{kind} watch event: its object is not an event: {source}")]
    WatchObject {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("BOOKMARK watch event without a resourceVersion")]
    BookmarkWithoutVersion,
}

/// An event list converted.
#[derive(Debug, Default)]
pub struct EventListParsed {
    pub events: Vec<Event>,
    pub resource_version: Option<String>,
    /// Items skipped, unknown types, cut messages: one line each, naming the event.
    pub warnings: Vec<String>,
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Event),
    Modified(Event),
    Deleted(Event),
    /// The stream's position moved without a change (`allowWatchBookmarks`).
    Bookmark {
        resource_version: String,
    },
    /// 410: the resourceVersion is too old; list again.
    Gone {
        message: String,
    },
    /// Any other error status the server sent in the stream.
    Error {
        code: Option<i32>,
        message: String,
    },
}

/// The fields both API versions have, once their fallbacks are applied.
#[derive(Default)]
struct Fields<'a> {
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    uid: Option<&'a str>,
    resource_version: Option<&'a str>,
    /// `metadata.creationTimestamp`, in ms.
    created: Option<i64>,
    /// kind, namespace, name, uid.
    involved: Option<[Option<&'a str>; 4]>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    type_: Option<&'a str>,
    source_component: Option<&'a str>,
    source_host: Option<&'a str>,
    first_timestamp: Option<i64>,
    last_timestamp: Option<i64>,
    count: Option<i64>,
    /// The key of the message in the JSON: `message` (core) or `note` (events.k8s.io).
    message_key: &'static str,
}

/// The typed objects' metadata and involved object as [`Fields`].
fn typed_meta<'a>(meta: &'a ObjectMeta, involved: Option<&'a ObjectReference>) -> Fields<'a> {
    Fields {
        namespace: meta.namespace.as_deref(),
        name: meta.name.as_deref(),
        uid: meta.uid.as_deref(),
        resource_version: meta.resource_version.as_deref(),
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_millisecond()),
        involved: involved
            .map(|o| [o.kind.as_deref(), o.namespace.as_deref(), o.name.as_deref(), o.uid.as_deref()]),
        ..Fields::default()
    }
}

/// A core `v1` Event -> the model, with warnings. `raw` is the object's JSON as received (it
/// keeps fields the typed object drops); empty means "serialize `ev`".
///
/// Fallbacks: `lastTimestamp`, else `series.lastObservedTime`, else `eventTime`, else
/// `metadata.creationTimestamp` (`firstTimestamp` likewise, without the series); `count`, else
/// `series.count`, else 1 (the API omits a zero count); `source`, else `reportingComponent` /
/// `reportingInstance`.
pub fn from_core_v1(ev: &CoreEvent, raw: &[u8]) -> Result<(Event, Vec<String>), EventError> {
    let series = ev.series.as_ref();
    let source = ev.source.as_ref();
    let fields = Fields {
        reason: ev.reason.as_deref(),
        message: ev.message.as_deref(),
        type_: ev.type_.as_deref(),
        source_component: source_field(source, |s| &s.component).or(non_empty(&ev.reporting_component)),
        source_host: source_field(source, |s| &s.host).or(non_empty(&ev.reporting_instance)),
        first_timestamp: ev
            .first_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .or(ev.event_time.as_ref().map(|t| t.0.as_millisecond())),
        last_timestamp: ev
            .last_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .or(series.and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0.as_millisecond()))
            .or(ev.event_time.as_ref().map(|t| t.0.as_millisecond())),
        count: positive(ev.count).or(positive(series.and_then(|s| s.count))),
        message_key: "message",
        ..typed_meta(&ev.metadata, Some(&ev.involved_object))
    };
    convert(fields, raw, None, || serde_json::to_value(ev), &mut Interner::default())
}

/// An `events.k8s.io/v1` Event -> the model, with warnings (see [`from_core_v1`] for `raw`).
///
/// `note` is the message, `regarding` the involved object, `reportingController` /
/// `reportingInstance` the source (else `deprecatedSource`). Fallbacks: `deprecatedLastTimestamp`,
/// else `series.lastObservedTime`, else `eventTime`, else `metadata.creationTimestamp`;
/// `deprecatedFirstTimestamp`, else `eventTime`, else the creation time; `deprecatedCount`, else
/// `series.count`, else 1.
pub fn from_events_v1(ev: &EventsV1, raw: &[u8]) -> Result<(Event, Vec<String>), EventError> {
    let series = ev.series.as_ref();
    let source = ev.deprecated_source.as_ref();
    let fields = Fields {
        reason: ev.reason.as_deref(),
        message: ev.note.as_deref(),
        type_: ev.type_.as_deref(),
        source_component: non_empty(&ev.reporting_controller).or(source_field(source, |s| &s.component)),
        source_host: non_empty(&ev.reporting_instance).or(source_field(source, |s| &s.host)),
        first_timestamp: ev
            .deprecated_first_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .or(ev.event_time.as_ref().map(|t| t.0.as_millisecond())),
        last_timestamp: ev
            .deprecated_last_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .or(series.map(|s| s.last_observed_time.0.as_millisecond()))
            .or(ev.event_time.as_ref().map(|t| t.0.as_millisecond())),
        count: positive(ev.deprecated_count).or(positive(series.map(|s| s.count))),
        message_key: "note",
        ..typed_meta(&ev.metadata, ev.regarding.as_ref())
    };
    convert(fields, raw, None, || serde_json::to_value(ev), &mut Interner::default())
}

/// The model's event from `fields`; `raw` is the object's JSON (empty: `typed` gives it).
/// Strings that repeat from event to event are shared through `names`.
fn convert(
    fields: Fields<'_>,
    raw: &[u8],
    compacted: Option<Compacted<'_>>,
    typed: impl FnOnce() -> Result<Value, serde_json::Error>,
    names: &mut Interner,
) -> Result<(Event, Vec<String>), EventError> {
    let namespace = fields.namespace.unwrap_or("");
    let name = fields.name.unwrap_or("");
    let who = || format!("event {namespace}/{name}");
    let Some(uid) = fields.uid.filter(|u| !u.is_empty()) else {
        if let Some(compacted) = compacted {
            compacted.give_up();
        }
        return Err(EventError::MissingUid { namespace: namespace.to_string(), name: name.to_string() });
    };
    let mut warnings = Vec::new();

    let kind = fields.type_.unwrap_or("");
    if kind != "Normal" && kind != "Warning" {
        warnings.push(format!("{}: type {kind:?} is neither Normal nor Warning; kept as given", who()));
    }

    let message = fields.message.unwrap_or("");
    let raw_error =
        |source| EventError::Raw { namespace: namespace.to_string(), name: name.to_string(), source };
    // The common case: a message within bounds, and JSON that fits once compacted.
    let compacted = if message.len() <= MAX_MESSAGE_BYTES {
        compacted.or_else(|| {
            std::str::from_utf8(raw)
                .ok()
                .and_then(compact::compact_event)
                .map(|raw| Compacted::Own(raw, [None; 3]))
        })
    } else {
        compacted
    };
    if let Some(compacted) = compacted {
        if message.len() <= MAX_MESSAGE_BYTES && compacted.len() <= MAX_RAW_BYTES {
            let text = compacted.text(&fields, message);
            return Ok((event_of(&fields, uid, kind, text, names), warnings));
        }
        compacted.give_up();
    }
    let mut json: Value = if raw.is_empty() {
        typed().map_err(raw_error)?
    } else {
        serde_json::from_slice(raw).map_err(raw_error)?
    };
    // Server-side bookkeeping, not part of the event; it would only take room in the sinks.
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let (message, raw) = bounded(&mut json, fields.message_key, message, &who, &mut warnings);
    let text = Compacted::Own(raw, [None; 3]).text(&fields, &message);
    Ok((event_of(&fields, uid, kind, text, names), warnings))
}

/// The model's event from the fields, with its message and JSON already bounded. The uid, the
/// name and the version are the event's own; the other strings repeat, and are shared.
fn event_of(fields: &Fields<'_>, uid: &str, kind: &str, text: EventText, names: &mut Interner) -> Event {
    // One slot per field: consecutive events mostly repeat each field's value.
    let mut shared = |slot: usize, s: Option<&str>| names.intern_at(slot, s.unwrap_or(""));
    let involved =
        fields.involved.map_or_else(ObjectRef::default, |[kind, namespace, name, uid]| ObjectRef {
            kind: shared(0, kind),
            namespace: shared(1, namespace),
            name: shared(2, name),
            uid: shared(3, uid),
        });
    Event {
        uid: Name::new(uid),
        namespace: shared(4, fields.namespace),
        involved,
        reason: shared(5, fields.reason),
        kind: shared(6, Some(kind)),
        source_component: shared(7, fields.source_component),
        source_host: shared(8, fields.source_host),
        first_timestamp: fields.first_timestamp.or(fields.created).unwrap_or(0),
        last_timestamp: fields.last_timestamp.or(fields.created).unwrap_or(0),
        count: fields.count.unwrap_or(1),
        text,
    }
}

/// The message and the compact JSON, both within their limits: the message is cut to
/// [`MAX_MESSAGE_BYTES`], then further while the JSON is over [`MAX_RAW_BYTES`] (escaping can
/// make a message up to six times longer in JSON).
fn bounded(
    json: &mut Value,
    key: &str,
    message: &str,
    who: &dyn Fn() -> String,
    warnings: &mut Vec<String>,
) -> (String, String) {
    let mut limit = MAX_MESSAGE_BYTES;
    let mut current = message.to_string();
    loop {
        if let Some(cut) = truncate_message(message, limit) {
            current = cut;
            if let Some(object) = json.as_object_mut() {
                object.insert(key.to_string(), Value::String(current.clone()));
            }
        }
        // A `Value` always serializes (its keys are strings).
        let raw = serde_json::to_string(json).unwrap_or_default();
        if raw.len() <= MAX_RAW_BYTES || current.is_empty() || limit == 0 {
            if current.len() < message.len() {
                warnings.push(format!(
                    "{}: message of {} bytes cut to {} bytes",
                    who(),
                    message.len(),
                    current.len()
                ));
            }
            if raw.len() > MAX_RAW_BYTES {
                warnings.push(format!(
                    "{}: its JSON is {} bytes even without a message; sinks may refuse it",
                    who(),
                    raw.len()
                ));
            }
            return (current, raw);
        }
        // Cut in proportion to how much the message grows in JSON, then check again.
        let message_json = serde_json::to_string(&current).map_or(current.len(), |j| j.len());
        let room = MAX_RAW_BYTES.saturating_sub(raw.len().saturating_sub(message_json));
        let scaled = (current.len() as u128 * room as u128 / message_json.max(1) as u128) as usize;
        limit = scaled.min(current.len().saturating_sub(1));
    }
}

/// `message` cut at a char boundary to at most `max` bytes, marker included, or `None` if it
/// fits. The marker says how many bytes were cut: `… [truncated N bytes]`.
pub fn truncate_message(message: &str, max: usize) -> Option<String> {
    if message.len() <= max {
        return None;
    }
    // The marker is longest when the most is cut; reserve that much.
    let reserve = marker(message.len()).len();
    let mut keep = max.saturating_sub(reserve);
    while !message.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut cut = String::with_capacity(keep + reserve);
    cut.push_str(&message[..keep]);
    cut.push_str(&marker(message.len() - keep));
    Some(cut)
}

fn marker(cut_bytes: usize) -> String {
    format!("… [truncated {cut_bytes} bytes]")
}

/// A `v1` `EventList` body (`GET /api/v1/events`), or an `events.k8s.io/v1` one -> events; bad
/// items are skipped with a warning.
pub fn parse_event_list(body: &[u8]) -> Result<EventListParsed, EventError> {
    let mut parsed = EventListParsed::default();
    parsed.resource_version = read_event_list(body, usize::MAX, |mut chunk| {
        parsed.events.append(&mut chunk.events);
        parsed.warnings.append(&mut chunk.warnings);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(parsed)
}

/// One line of a watch on events (`{"type": ..., "object": ...}`) -> what happened, with the
/// conversion's warnings. The object's `apiVersion` picks the conversion.
pub fn parse_watch_line(line: &[u8]) -> Result<(WatchEvent, Vec<String>), EventError> {
    let watch: RawWatch<'_> = serde_json::from_slice(line).map_err(EventError::WatchLine)?;
    let kind: &'static str = match watch.type_.as_str() {
        "ADDED" => "ADDED",
        "MODIFIED" => "MODIFIED",
        "DELETED" => "DELETED",
        "BOOKMARK" => {
            let bookmark: Bookmark = serde_json::from_str(watch.object.get())
                .map_err(|source| EventError::WatchObject { kind: "BOOKMARK", source })?;
            let resource_version = bookmark
                .metadata
                .and_then(|m| m.resource_version)
                .filter(|v| !v.is_empty())
                .ok_or(EventError::BookmarkWithoutVersion)?;
            return Ok((WatchEvent::Bookmark { resource_version }, Vec::new()));
        }
        "ERROR" => {
            let status: Status = serde_json::from_str(watch.object.get())
                .map_err(|source| EventError::WatchObject { kind: "ERROR", source })?;
            let message = status.message.unwrap_or_default();
            let gone =
                status.code == Some(410) || matches!(status.reason.as_deref(), Some("Expired" | "Gone"));
            let event = if gone {
                WatchEvent::Gone { message }
            } else {
                WatchEvent::Error { code: status.code, message }
            };
            return Ok((event, Vec::new()));
        }
        other => return Err(EventError::WatchType(other.to_string())),
    };
    let object = watch.object.get();
    let object_error = |source| EventError::WatchObject { kind, source };
    let version: ApiVersion = serde_json::from_str(object).map_err(object_error)?;
    let events_v1 = version.api_version.as_deref() == Some(EVENTS_V1);
    let (event, warnings) =
        convert_item(object, events_v1, &mut Interner::default()).map_err(object_error)??;
    let event = match kind {
        "ADDED" => WatchEvent::Added(event),
        "MODIFIED" => WatchEvent::Modified(event),
        _ => WatchEvent::Deleted(event),
    };
    Ok((event, warnings))
}

/// An event's compact JSON, with where its name, version and message may be in it.
enum Compacted<'t> {
    /// In a string of its own.
    Own(String, [Option<usize>; 3]),
    /// At the end of the chunk a list's texts are written to, from `start`.
    Chunk { texts: &'t mut TextChunks, start: usize, places: [Option<usize>; 3] },
}

impl Compacted<'_> {
    fn len(&self) -> usize {
        match self {
            Compacted::Own(raw, _) => raw.len(),
            Compacted::Chunk { texts, start, .. } => texts.written().saturating_sub(*start),
        }
    }

    /// The event's text: this JSON and its parts.
    fn text(self, fields: &Fields<'_>, message: &str) -> EventText {
        let (name, version) = (fields.name.unwrap_or(""), fields.resource_version.unwrap_or(""));
        match self {
            Compacted::Own(raw, places) => EventText::with_places(raw, name, version, message, places),
            Compacted::Chunk { texts, start, places } => texts.text(start, name, version, message, places),
        }
    }

    /// Takes the JSON back out of its chunk when the event does not keep it.
    fn give_up(self) {
        if let Compacted::Chunk { texts, start, .. } = self {
            texts.truncate(start);
        }
    }
}

/// The outcome of converting one object: the outer error when it does not decode as an event,
/// the inner one when it decodes but cannot be one.
type Converted = Result<Result<(Event, Vec<String>), EventError>, serde_json::Error>;

/// One object of a list or a watch -> the model.
fn convert_item(raw: &str, events_v1: bool, names: &mut Interner) -> Converted {
    let mut tape = compact::Tape::default();
    let scanned = tape.scan(raw.as_bytes(), 0) == Some(raw.len());
    convert_scanned(raw, events_v1, names, scanned.then_some(&mut tape), None)
}

/// [`convert_item`], given `raw` scanned whole onto `tape` if it was: a core `v1` event is then
/// read from the scan, not decoded again, and its text written into `texts` when given.
fn convert_scanned(
    raw: &str,
    events_v1: bool,
    names: &mut Interner,
    tape: Option<&mut compact::Tape>,
    texts: Option<&mut TextChunks>,
) -> Converted {
    // Only reached when `raw` is empty, which an object never is.
    let typed = || serde_json::from_str(raw);
    if !events_v1
        && let Some(tape) = tape
        && let Some((item, starts)) = light::CoreItem::from_tape(raw, tape)
    {
        let mut marks = starts.map(|start| (start.unwrap_or(u32::MAX), None));
        if let Some(texts) = texts {
            let start = texts.written();
            if tape.write_into(raw, texts.buf(), &mut marks).is_some() {
                let places = marks.map(|(_, place)| place);
                let compacted = Compacted::Chunk { texts, start, places };
                return Ok(convert(item.fields(), raw.as_bytes(), Some(compacted), typed, names));
            }
        } else if let Some(compacted) = tape.write(raw, &mut marks) {
            let places = marks.map(|(_, place)| place);
            return Ok(convert(
                item.fields(),
                raw.as_bytes(),
                Some(Compacted::Own(compacted, places)),
                typed,
                names,
            ));
        }
    }
    convert_decoded(raw, events_v1, names)
}

/// [`convert_item`] by decoding `raw`'s fields.
fn convert_decoded(raw: &str, events_v1: bool, names: &mut Interner) -> Converted {
    // Only reached when `raw` is empty, which an object never is.
    let typed = || serde_json::from_str(raw);
    Ok(if events_v1 {
        let item: light::V1Item<'_> = serde_json::from_str(raw)?;
        convert(item.fields(), raw.as_bytes(), None, typed, names)
    } else {
        let item: light::CoreItem<'_> = serde_json::from_str(raw)?;
        convert(item.fields(), raw.as_bytes(), None, typed, names)
    })
}

#[derive(Deserialize)]
struct RawWatch<'a> {
    #[serde(rename = "type")]
    type_: String,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiVersion {
    api_version: Option<String>,
}

#[derive(Deserialize)]
struct Bookmark {
    metadata: Option<VersionMeta>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn source_field(
    source: Option<&EventSource>,
    field: impl Fn(&EventSource) -> &Option<String>,
) -> Option<&str> {
    source.and_then(|s| non_empty(field(s)))
}

fn positive(count: Option<i32>) -> Option<i64> {
    count.filter(|c| *c > 0).map(i64::from)
}

mod compact;
mod light;
mod stream;

pub use stream::read_event_list;

#[cfg(test)]
mod tests;
