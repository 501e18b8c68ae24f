//! Kubernetes events (core `v1` and `events.k8s.io/v1`) into the [`Event`] model: from a list
//! body, one watch line, or one decoded object.
//!
//! Both API versions describe the same thing with different field names and fallbacks; each is
//! mapped field by field to one model, so dedup and the sinks never see the difference.
//! Messages are bounded: InfluxDB 1.x refuses string fields over 64 KiB, and the event's JSON
//! (kept whole in [`Event::raw`]) must fit as well.

use super::raw_list::{RawList, VersionMeta, identity};
use heapster_dataflows::Event;
use heapster_dataflows::Name;
use heapster_dataflows::model::ObjectRef;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status};
use serde::{Deserialize, Serialize};
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
struct Fields<'a> {
    meta: &'a ObjectMeta,
    involved: Option<&'a ObjectReference>,
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
        meta: &ev.metadata,
        involved: Some(&ev.involved_object),
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
    };
    convert(fields, raw, ev)
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
        meta: &ev.metadata,
        involved: ev.regarding.as_ref(),
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
    };
    convert(fields, raw, ev)
}

fn convert(
    fields: Fields<'_>,
    raw: &[u8],
    typed: &impl Serialize,
) -> Result<(Event, Vec<String>), EventError> {
    let meta = fields.meta;
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    let who = || format!("event {namespace}/{name}");
    let uid = non_empty(&meta.uid)
        .ok_or_else(|| EventError::MissingUid { namespace: namespace.to_string(), name: name.to_string() })?;
    let mut warnings = Vec::new();

    let kind = fields.type_.unwrap_or("");
    if kind != "Normal" && kind != "Warning" {
        warnings.push(format!("{}: type {kind:?} is neither Normal nor Warning; kept as given", who()));
    }

    let created = meta.creation_timestamp.as_ref().map(|t| t.0.as_millisecond());
    let message = fields.message.unwrap_or("");
    let raw_error =
        |source| EventError::Raw { namespace: namespace.to_string(), name: name.to_string(), source };
    let mut json: Value = if raw.is_empty() {
        serde_json::to_value(typed).map_err(raw_error)?
    } else {
        serde_json::from_slice(raw).map_err(raw_error)?
    };
    // Server-side bookkeeping, not part of the event; it would only take room in the sinks.
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let (message, raw) = bounded(&mut json, fields.message_key, message, &who, &mut warnings);

    let involved = fields.involved.map_or_else(ObjectRef::default, |o| ObjectRef {
        kind: name_of(&o.kind),
        namespace: name_of(&o.namespace),
        name: name_of(&o.name),
        uid: name_of(&o.uid),
    });
    let event = Event {
        uid: Name::new(uid),
        namespace: Name::new(namespace),
        name: Name::new(name),
        involved,
        reason: Name::new(fields.reason.unwrap_or("")),
        message,
        kind: Name::new(kind),
        source_component: Name::new(fields.source_component.unwrap_or("")),
        source_host: Name::new(fields.source_host.unwrap_or("")),
        first_timestamp: fields.first_timestamp.or(created).unwrap_or(0),
        last_timestamp: fields.last_timestamp.or(created).unwrap_or(0),
        count: fields.count.unwrap_or(1),
        resource_version: name_of(&meta.resource_version),
        raw,
    };
    Ok((event, warnings))
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
    let list: RawList<'_> = serde_json::from_slice(body).map_err(EventError::NotAList)?;
    if let Some(found) = list.kind.filter(|k| k != "EventList") {
        return Err(EventError::WrongKind(found));
    }
    // List items carry no apiVersion of their own: the list's tells which API they come from.
    let events_v1 = list.api_version.as_deref() == Some(EVENTS_V1);
    let items = list.items.ok_or(EventError::NoItems)?.unwrap_or_default();
    let mut parsed = EventListParsed {
        resource_version: list.metadata.and_then(|m| m.resource_version).filter(|v| !v.is_empty()),
        ..EventListParsed::default()
    };
    for (index, raw) in items.into_iter().enumerate() {
        let converted = if events_v1 {
            serde_json::from_str::<EventsV1>(raw.get()).map(|ev| from_events_v1(&ev, raw.get().as_bytes()))
        } else {
            serde_json::from_str::<CoreEvent>(raw.get()).map(|ev| from_core_v1(&ev, raw.get().as_bytes()))
        };
        match converted {
            Ok(Ok((event, mut warnings))) => {
                parsed.events.push(event);
                parsed.warnings.append(&mut warnings);
            }
            Ok(Err(e)) => parsed.warnings.push(format!("EventList item {index} skipped: {e}")),
            Err(e) => parsed.warnings.push(format!("EventList item {index}{}: {e}", identity(raw, "event"))),
        }
    }
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
    let (event, warnings) = if version.api_version.as_deref() == Some(EVENTS_V1) {
        let ev: EventsV1 = serde_json::from_str(object).map_err(object_error)?;
        from_events_v1(&ev, object.as_bytes())?
    } else {
        let ev: CoreEvent = serde_json::from_str(object).map_err(object_error)?;
        from_core_v1(&ev, object.as_bytes())?
    };
    let event = match kind {
        "ADDED" => WatchEvent::Added(event),
        "MODIFIED" => WatchEvent::Modified(event),
        _ => WatchEvent::Deleted(event),
    };
    Ok((event, warnings))
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

fn name_of(s: &Option<String>) -> Name {
    Name::new(s.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn capture(name: &str) -> Vec<u8> {
        let path = format!("{}/../shared/captures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn core(value: &Value) -> Result<(Event, Vec<String>), EventError> {
        let ev: CoreEvent = serde_json::from_value(value.clone()).unwrap();
        from_core_v1(&ev, value.to_string().as_bytes())
    }

    fn events_v1(value: &Value) -> Result<(Event, Vec<String>), EventError> {
        let ev: EventsV1 = serde_json::from_value(value.clone()).unwrap();
        from_events_v1(&ev, value.to_string().as_bytes())
    }

    fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
        path.iter().fold(v, |v, key| &v[*key]).as_str().unwrap_or("")
    }

    /// Every field of a converted core event against the JSON it came from.
    fn assert_matches_json(event: &Event, item: &Value) {
        assert_eq!(event.uid.as_str(), str_of(item, &["metadata", "uid"]));
        assert_eq!(event.namespace.as_str(), str_of(item, &["metadata", "namespace"]));
        assert_eq!(event.name.as_str(), str_of(item, &["metadata", "name"]));
        assert_eq!(event.resource_version.as_str(), str_of(item, &["metadata", "resourceVersion"]));
        assert_eq!(event.involved.kind.as_str(), str_of(item, &["involvedObject", "kind"]));
        assert_eq!(event.involved.namespace.as_str(), str_of(item, &["involvedObject", "namespace"]));
        assert_eq!(event.involved.name.as_str(), str_of(item, &["involvedObject", "name"]));
        assert_eq!(event.involved.uid.as_str(), str_of(item, &["involvedObject", "uid"]));
        assert_eq!(event.reason.as_str(), str_of(item, &["reason"]));
        assert_eq!(event.message, str_of(item, &["message"]));
        assert_eq!(event.kind.as_str(), str_of(item, &["type"]));
        assert_eq!(event.source_component.as_str(), str_of(item, &["source", "component"]));
        assert_eq!(event.source_host.as_str(), str_of(item, &["source", "host"]));
        assert_eq!(event.first_timestamp, ms(str_of(item, &["firstTimestamp"])));
        assert_eq!(event.last_timestamp, ms(str_of(item, &["lastTimestamp"])));
        assert_eq!(event.count, item["count"].as_i64().unwrap());
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(&raw, item, "raw keeps the whole event");
        assert!(!event.raw.contains('\n'), "raw is compact");
    }

    #[test]
    fn every_capture_list_converts() {
        for (name, expected_rv) in
            [("k8s-events-gke-2016.json", "4002"), ("k8s-events-services-gke-2017.json", "2709")]
        {
            let body = capture(name);
            let raw: Value = serde_json::from_slice(&body).unwrap();
            let items = raw["items"].as_array().unwrap();
            let parsed = parse_event_list(&body).unwrap();
            assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
            assert_eq!(parsed.events.len(), items.len(), "{name}");
            assert_eq!(parsed.resource_version.as_deref(), Some(expected_rv));
            for (event, item) in parsed.events.iter().zip(items) {
                assert_matches_json(event, item);
            }
        }
    }

    #[test]
    fn single_capture_event_converts() {
        let body = capture("k8s-events-single-gke-2019.json");
        let item: Value = serde_json::from_slice(&body).unwrap();
        let ev: CoreEvent = serde_json::from_slice(&body).unwrap();
        let (event, warnings) = from_core_v1(&ev, &body).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_matches_json(&event, &item);
        assert_eq!(event.last_timestamp, ms("2019-08-30T20:43:05Z"));
        assert_eq!(event.source_host.as_str(), "gke-k9s-default-pool-0fa2fb89-qnkc");
    }

    fn core_json() -> Value {
        json!({
            "metadata": {"name": "web.1", "namespace": "prod", "uid": "u-1", "resourceVersion": "77",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "involvedObject": {"kind": "Pod", "namespace": "prod", "name": "web", "uid": "p-1"},
            "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
            "reportingComponent": "kubelet", "reportingInstance": "node-1"
        })
    }

    #[test]
    fn core_fallbacks() {
        let created = ms("2024-01-01T00:00:00Z");
        let mut item = core_json();
        let (event, warnings) = core(&item).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((event.first_timestamp, event.last_timestamp), (created, created), "creation time");
        assert_eq!(event.count, 1);
        assert_eq!(event.source_component.as_str(), "kubelet", "reportingComponent without source");
        assert_eq!(event.source_host.as_str(), "node-1");
        assert!(!event.raw.contains("managedFields"));

        item["eventTime"] = json!("2024-01-01T00:00:05.250000Z");
        let (event, _) = core(&item).unwrap();
        assert_eq!(event.first_timestamp, created + 5250);
        assert_eq!(event.last_timestamp, created + 5250);

        item["series"] = json!({"count": 4, "lastObservedTime": "2024-01-01T00:01:00.000000Z"});
        let (event, _) = core(&item).unwrap();
        assert_eq!((event.count, event.last_timestamp), (4, created + 60_000));
        assert_eq!(event.first_timestamp, created + 5250);

        item["count"] = json!(0);
        assert_eq!(core(&item).unwrap().0.count, 4, "a zero count is an absent one");
        item["count"] = json!(9);
        item["lastTimestamp"] = json!("2024-01-01T00:02:00Z");
        item["firstTimestamp"] = json!("2023-12-31T23:59:00Z");
        item["source"] = json!({"component": "kubelet-x", "host": "node-2"});
        let (event, _) = core(&item).unwrap();
        assert_eq!(event.count, 9);
        assert_eq!(event.last_timestamp, created + 120_000);
        assert_eq!(event.first_timestamp, created - 60_000);
        assert_eq!((event.source_component.as_str(), event.source_host.as_str()), ("kubelet-x", "node-2"));

        item["metadata"].as_object_mut().unwrap().remove("creationTimestamp");
        for key in ["lastTimestamp", "firstTimestamp", "series", "eventTime"] {
            item.as_object_mut().unwrap().remove(key);
        }
        let (event, _) = core(&item).unwrap();
        assert_eq!((event.first_timestamp, event.last_timestamp), (0, 0), "no time at all");
    }

    #[test]
    fn events_v1_mapping() {
        let item = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "db.2", "namespace": "data", "uid": "u-2", "resourceVersion": "90",
                "creationTimestamp": "2024-02-01T10:00:00Z"},
            "eventTime": "2024-02-01T10:00:01.500000Z",
            "series": {"count": 7, "lastObservedTime": "2024-02-01T10:05:00.000000Z"},
            "reportingController": "kubernetes.io/kubelet", "reportingInstance": "node-9",
            "action": "Pulling", "reason": "Pulling", "note": "Pulling image \"postgres:16\"",
            "regarding": {"kind": "Pod", "namespace": "data", "name": "db", "uid": "p-2"},
            "type": "Normal"
        });
        let (event, warnings) = events_v1(&item).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let t0 = ms("2024-02-01T10:00:00Z");
        assert_eq!(event.uid.as_str(), "u-2");
        assert_eq!((event.namespace.as_str(), event.name.as_str()), ("data", "db.2"));
        assert_eq!(event.message, "Pulling image \"postgres:16\"");
        assert_eq!(event.reason.as_str(), "Pulling");
        assert_eq!(
            event.involved,
            ObjectRef { kind: "Pod".into(), namespace: "data".into(), name: "db".into(), uid: "p-2".into() }
        );
        assert_eq!(event.source_component.as_str(), "kubernetes.io/kubelet");
        assert_eq!(event.source_host.as_str(), "node-9");
        assert_eq!(event.count, 7, "series.count");
        assert_eq!(event.first_timestamp, t0 + 1500, "eventTime");
        assert_eq!(event.last_timestamp, t0 + 300_000, "series.lastObservedTime");
        assert_eq!(event.resource_version.as_str(), "90");
        assert_eq!(serde_json::from_str::<Value>(&event.raw).unwrap(), item);

        // The deprecated core fields win when set; no series and no eventTime fall back further.
        let mut item = item;
        let object = item.as_object_mut().unwrap();
        object.remove("series");
        object.remove("reportingController");
        object.insert("deprecatedCount".into(), json!(3));
        object.insert("deprecatedFirstTimestamp".into(), json!("2024-02-01T09:00:00Z"));
        object.insert("deprecatedSource".into(), json!({"component": "old-kubelet", "host": "n"}));
        let (event, _) = events_v1(&item).unwrap();
        assert_eq!(event.count, 3);
        assert_eq!(event.first_timestamp, t0 - 3_600_000);
        assert_eq!(event.last_timestamp, t0 + 1500, "eventTime");
        assert_eq!(event.source_component.as_str(), "old-kubelet");
        item.as_object_mut().unwrap().remove("eventTime");
        item.as_object_mut().unwrap().remove("deprecatedCount");
        let (event, _) = events_v1(&item).unwrap();
        assert_eq!((event.last_timestamp, event.count), (t0, 1));
    }

    #[test]
    fn missing_uid_is_an_error_naming_the_event() {
        let mut item = core_json();
        item["metadata"].as_object_mut().unwrap().remove("uid");
        let err = core(&item).unwrap_err();
        assert!(matches!(err, EventError::MissingUid { .. }));
        assert!(err.to_string().contains("prod/web.1"), "{err}");
        item["metadata"]["uid"] = json!("");
        assert!(matches!(core(&item), Err(EventError::MissingUid { .. })));
    }

    #[test]
    fn unknown_type_is_kept_with_a_warning() {
        let mut item = core_json();
        item["type"] = json!("Critical");
        let (event, warnings) = core(&item).unwrap();
        assert_eq!(event.kind.as_str(), "Critical");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("prod/web.1") && warnings[0].contains("Critical"), "{warnings:?}");
    }

    #[test]
    fn a_long_message_is_cut_with_a_marker() {
        let mut item = core_json();
        let long = "ab€".repeat(1024 * 1024 / 5);
        item["message"] = json!(long);
        let (event, warnings) = core(&item).unwrap();
        assert!(event.message.len() <= MAX_MESSAGE_BYTES, "{}", event.message.len());
        let (kept, marker) = event.message.split_once("… [truncated ").unwrap();
        assert!(long.starts_with(kept));
        assert!(kept.len() > MAX_MESSAGE_BYTES - 64);
        assert_eq!(marker, format!("{} bytes]", long.len() - kept.len()));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(&long.len().to_string()));
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(raw["message"].as_str(), Some(event.message.as_str()), "raw has the cut message");
        assert!(event.raw.len() <= MAX_RAW_BYTES);
    }

    #[test]
    fn a_message_that_grows_in_json_is_cut_until_the_json_fits() {
        let mut item = core_json();
        // Each control character takes six bytes in JSON.
        let long = "\u{1}".repeat(MAX_MESSAGE_BYTES);
        item["message"] = json!(long);
        let (event, warnings) = core(&item).unwrap();
        assert!(event.raw.len() <= MAX_RAW_BYTES, "{}", event.raw.len());
        assert!(event.raw.len() > MAX_RAW_BYTES - 1024, "cut no more than needed: {}", event.raw.len());
        assert!(event.message.ends_with(" bytes]"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(raw["message"].as_str(), Some(event.message.as_str()));
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate_message("short", 10), None);
        let cut = truncate_message(&"é".repeat(100), 41).unwrap();
        assert!(cut.len() <= 41, "{cut}");
        let kept = cut.split_once('…').unwrap().0;
        assert_eq!(cut, format!("{kept}… [truncated {} bytes]", 200 - kept.len()));
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(truncate_message("abcdef", 3).unwrap(), "… [truncated 6 bytes]", "no room left");
    }

    #[test]
    fn empty_raw_serializes_the_object() {
        let item = core_json();
        let ev: CoreEvent = serde_json::from_value(item.clone()).unwrap();
        let (event, _) = from_core_v1(&ev, b"").unwrap();
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(raw["message"], item["message"]);
        assert_eq!(raw["metadata"]["uid"], item["metadata"]["uid"]);
        assert!(matches!(from_core_v1(&ev, b"{not json"), Err(EventError::Raw { .. })));
    }

    #[test]
    fn list_keeps_good_items_and_names_bad_ones() {
        let mut no_uid = core_json();
        no_uid["metadata"]["name"] = json!("no-uid");
        no_uid["metadata"].as_object_mut().unwrap().remove("uid");
        let broken = json!({"metadata": {"name": "broken", "namespace": "prod"}, "involvedObject": 5});
        let body = json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "12"},
            "items": [core_json(), no_uid, broken]});
        let parsed = parse_event_list(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.resource_version.as_deref(), Some("12"));
        assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].contains("item 1") && parsed.warnings[0].contains("prod/no-uid"));
        assert!(parsed.warnings[1].contains("item 2 (event prod/broken)"), "{:?}", parsed.warnings);

        let empty = parse_event_list(br#"{"kind":"EventList","items":null,"metadata":{}}"#).unwrap();
        assert!(empty.events.is_empty() && empty.resource_version.is_none());
        assert!(
            matches!(parse_event_list(br#"{"kind":"PodList","items":[]}"#), Err(EventError::WrongKind(k)) if k == "PodList")
        );
        assert!(matches!(parse_event_list(br#"{"kind":"EventList"}"#), Err(EventError::NoItems)));
        assert!(matches!(parse_event_list(b"[1,2"), Err(EventError::NotAList(_))));
    }

    #[test]
    fn events_v1_list() {
        let item = json!({"metadata": {"name": "x.1", "namespace": "ns", "uid": "u-9"},
            "eventTime": "2024-03-01T00:00:00.000000Z", "note": "hello", "type": "Normal",
            "reportingController": "c", "reportingInstance": "i"});
        let body =
            json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "metadata": {}, "items": [item]});
        let parsed = parse_event_list(body.to_string().as_bytes()).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(parsed.events[0].message, "hello");
        assert_eq!(parsed.events[0].last_timestamp, ms("2024-03-01T00:00:00Z"));
    }

    fn line(type_: &str, object: Value) -> Vec<u8> {
        json!({"type": type_, "object": object}).to_string().into_bytes()
    }

    #[test]
    fn watch_lines_of_each_type() {
        let mut object = core_json();
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Event");
        for (type_, check) in [
            ("ADDED", (|e| matches!(e, WatchEvent::Added(_))) as fn(&WatchEvent) -> bool),
            ("MODIFIED", |e| matches!(e, WatchEvent::Modified(_))),
            ("DELETED", |e| matches!(e, WatchEvent::Deleted(_))),
        ] {
            let (event, warnings) = parse_watch_line(&line(type_, object.clone())).unwrap();
            assert!(check(&event), "{type_}: {event:?}");
            assert!(warnings.is_empty());
            let (WatchEvent::Added(e) | WatchEvent::Modified(e) | WatchEvent::Deleted(e)) = event else {
                unreachable!()
            };
            assert_eq!((e.uid.as_str(), e.reason.as_str()), ("u-1", "BackOff"));
        }

        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u-3"}, "note": "from events.k8s.io",
            "type": "Weird"});
        let (event, warnings) = parse_watch_line(&line("ADDED", v1)).unwrap();
        assert!(matches!(&event, WatchEvent::Added(e) if e.message == "from events.k8s.io"), "{event:?}");
        assert_eq!(warnings.len(), 1, "the unknown type is reported");

        let bookmark = json!({"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": "12746",
            "annotations": {"k8s.io/initial-events-end": "true"}}});
        assert_eq!(
            parse_watch_line(&line("BOOKMARK", bookmark)).unwrap().0,
            WatchEvent::Bookmark { resource_version: "12746".into() }
        );
        assert!(matches!(
            parse_watch_line(&line("BOOKMARK", json!({"metadata": {}}))),
            Err(EventError::BookmarkWithoutVersion)
        ));

        let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: 1 (3790)", "reason": "Expired", "code": 410});
        assert_eq!(
            parse_watch_line(&line("ERROR", gone)).unwrap().0,
            WatchEvent::Gone { message: "too old resource version: 1 (3790)".into() }
        );
        let other = json!({"kind": "Status", "status": "Failure", "message": "etcdserver: request timed out",
            "reason": "InternalError", "code": 500});
        assert_eq!(
            parse_watch_line(&line("ERROR", other)).unwrap().0,
            WatchEvent::Error { code: Some(500), message: "etcdserver: request timed out".into() }
        );
    }

    #[test]
    fn garbage_watch_lines_are_errors() {
        assert!(matches!(parse_watch_line(b"not json"), Err(EventError::WatchLine(_))));
        assert!(matches!(parse_watch_line(b""), Err(EventError::WatchLine(_))));
        assert!(matches!(parse_watch_line(br#"{"type":"ADDED"}"#), Err(EventError::WatchLine(_))));
        assert!(
            matches!(parse_watch_line(&line("EXPLODED", json!({}))), Err(EventError::WatchType(t)) if t == "EXPLODED")
        );
        assert!(matches!(
            parse_watch_line(&line("ADDED", json!(42))),
            Err(EventError::WatchObject { kind: "ADDED", .. })
        ));
        assert!(matches!(
            parse_watch_line(&line("MODIFIED", json!({"metadata": {"uid": 5}}))),
            Err(EventError::WatchObject { kind: "MODIFIED", .. })
        ));
        let mut no_uid = core_json();
        no_uid["metadata"].as_object_mut().unwrap().remove("uid");
        assert!(matches!(parse_watch_line(&line("ADDED", no_uid)), Err(EventError::MissingUid { .. })));
        assert!(matches!(
            parse_watch_line(&line("ERROR", json!("x"))),
            Err(EventError::WatchObject { kind: "ERROR", .. })
        ));
    }
}
