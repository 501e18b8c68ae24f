//! Kubernetes events as InfluxDB points, in the schema of Heapster's eventer (see
//! [`super`] for the table), and the pieces every event sink shares: the time a state
//! is stored at and the event as JSON.
//!
//! A point's identity in InfluxDB is (measurement, tag set, time). Every tag and the time come
//! from the event's own state (plus the configured `cluster_name`), never from when it was
//! seen, so a state sent twice (after a restart) lands on the same point and overwrites it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use heapster_dataflows::Event;
use serde::Serialize;
use serde::de::IgnoredAny;
use tracing::warn;

use super::line_protocol::push_tag;

/// Heapster's measurement for events: one string field `value` holding the event as JSON.
pub const MEASUREMENT: &str = "log/events";
/// The measurement with `withfields=true`: one string field `message`, more tags.
pub const MEASUREMENT_WITH_FIELDS: &str = "events";

/// Why an event cannot be a point.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    #[error("event {uid:?} has neither lastTimestamp nor firstTimestamp; InfluxDB needs a time")]
    NoTime { uid: String },
    #[error("event {uid:?}: time {ms} ms is outside what InfluxDB stores (years 1677 to 2262)")]
    OutOfRange { uid: String, ms: i64 },
}

/// The time an event's state is stored at, in ms: its `lastTimestamp` as Heapster used, else its
/// `firstTimestamp` (Heapster wrote year 1 there, which InfluxDB refuses).
pub fn event_time_ms(event: &Event) -> Option<i64> {
    [event.last_timestamp, event.first_timestamp].into_iter().find(|ms| *ms != 0)
}

/// The point time in ns.
pub fn event_time_ns(event: &Event) -> Result<i64, Unwritable> {
    let ms = event_time_ms(event).ok_or_else(|| Unwritable::NoTime { uid: event.uid.to_string() })?;
    ms.checked_mul(1_000_000).ok_or_else(|| Unwritable::OutOfRange { uid: event.uid.to_string(), ms })
}

/// The events of a batch that become points.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// The newest state for each point, in the order given.
    pub events: Vec<&'a Event>,
    /// States left out because a newer one of the batch has the same point (the same event,
    /// repeated within one second): InfluxDB would keep only one of them anyway.
    pub superseded: usize,
    /// Events without a time InfluxDB can store (logged).
    pub unwritable: usize,
}

/// Encodes events as line protocol, one point each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventEncoder {
    with_fields: bool,
    cluster_name: String,
}

impl EventEncoder {
    pub fn new(with_fields: bool, cluster_name: impl Into<String>) -> EventEncoder {
        EventEncoder { with_fields, cluster_name: cluster_name.into() }
    }

    pub fn measurement(&self) -> &'static str {
        if self.with_fields { MEASUREMENT_WITH_FIELDS } else { MEASUREMENT }
    }

    /// Appends the point's tags, `,key=value` sorted by key; empty values are left out, as
    /// InfluxDB refuses them.
    pub fn push_tags(&self, event: &Event, out: &mut Vec<u8>) {
        let pod = event.involved.kind.as_str() == "Pod";
        let involved = &event.involved;
        let tags: &[(&str, &str, bool)] = if self.with_fields {
            &[
                ("cluster_name", &self.cluster_name, true),
                ("component", &event.source_component, true),
                ("hostname", &event.source_host, true),
                ("kind", &involved.kind, true),
                ("namespace_name", &event.namespace, true),
                ("object_name", &involved.name, true),
                ("pod_id", &involved.uid, pod),
                ("reason", &event.reason, true),
                ("type", &event.kind, true),
                ("uid", &event.uid, true),
            ]
        } else {
            &[
                ("cluster_name", &self.cluster_name, true),
                ("hostname", &event.source_host, true),
                ("pod_id", &involved.uid, pod),
                ("pod_name", &involved.name, pod),
                ("uid", &event.uid, true),
            ]
        };
        for &(key, value, wanted) in tags {
            if wanted && !value.is_empty() {
                push_tag(out, key, value);
            }
        }
    }

    /// Appends the event's point as one line (newline included). Nothing is appended when the
    /// event cannot be a point.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), Unwritable> {
        let ns = event_time_ns(event)?;
        out.extend_from_slice(self.measurement().as_bytes());
        self.push_tags(event, out);
        if self.with_fields {
            out.extend_from_slice(b" message=");
            push_string_field(out, &event.message);
        } else {
            out.extend_from_slice(b" value=");
            push_string_field(out, &event_json(event));
        }
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
        out.push(b'\n');
        Ok(())
    }

    /// Keeps, of the events that share a point, the state with the highest count (the later one
    /// on a tie): when an event repeats within one second, the newest count wins, whatever
    /// order the batch is in and however it is split into requests.
    pub fn select<'a>(&self, events: &'a [Event]) -> Selection<'a> {
        let mut selection = Selection::default();
        let mut slot_of: HashMap<(Vec<u8>, i64), usize> = HashMap::with_capacity(events.len());
        let mut kept: Vec<&Event> = Vec::with_capacity(events.len());
        for event in events {
            let ns = match event_time_ns(event) {
                Ok(ns) => ns,
                Err(e) => {
                    warn!(error = %e, "event not written to InfluxDB");
                    selection.unwritable += 1;
                    continue;
                }
            };
            let mut tags = Vec::with_capacity(128);
            self.push_tags(event, &mut tags);
            match slot_of.entry((tags, ns)) {
                Entry::Vacant(v) => {
                    v.insert(kept.len());
                    kept.push(event);
                }
                Entry::Occupied(o) => {
                    selection.superseded += 1;
                    let slot = &mut kept[*o.get()];
                    if event.count >= slot.count {
                        // The newer state takes the older one's place in the order.
                        *slot = event;
                    }
                }
            }
        }
        selection.events = kept;
        selection
    }
}

/// Appends a line-protocol string field value: in double quotes, with backslashes and double
/// quotes escaped. Line breaks may stay as they are inside the quotes.
fn push_string_field(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The event as Heapster stored it: a core `v1` Event as indented JSON (Go's
/// `json.MarshalIndent(event, "", " ")`). The API server's own JSON is kept, re-indented, when
/// it is a core `v1` Event; otherwise (an `events.k8s.io/v1` body, or none) the core `v1` fields
/// are rebuilt from the event.
pub fn event_json(event: &Event) -> String {
    let raw = event.raw.trim();
    // Only the top-level keys are looked at; parsing the whole body also checks it is JSON.
    let members = serde_json::from_str::<HashMap<String, IgnoredAny>>(raw);
    if members.is_ok_and(|m| m.contains_key("involvedObject")) {
        return indent_json(raw);
    }
    rebuilt_json(event)
}

/// Re-indents valid JSON as Go's `json.Indent` with a one-space indent does: one member or
/// element per line, `": "` after keys, empty objects and arrays kept as `{}` and `[]`. Strings
/// are copied as they are, escapes included.
fn indent_json(json: &str) -> String {
    fn newline(out: &mut Vec<u8>, depth: usize) {
        out.push(b'\n');
        out.resize(out.len() + depth, b' ');
    }
    let bytes = json.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if b == b'\\' {
                if let Some(&next) = bytes.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                let next = bytes[i + 1..]
                    .iter()
                    .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
                    .map(|p| i + 1 + p);
                match next {
                    Some(j) if matches!(bytes[j], b'}' | b']') => {
                        out.push(bytes[j]);
                        i = j;
                    }
                    _ => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
        i += 1;
    }
    // Only ASCII whitespace was removed and ASCII bytes added between tokens of valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A core `v1` Event from the model's fields, members in the order of Go's struct, empty ones
/// left out as Go's `omitempty` does (timestamps are `null` when unknown, as in Go).
fn rebuilt_json(event: &Event) -> String {
    fn is_empty(s: &&str) -> bool {
        s.is_empty()
    }
    fn is_zero(n: &i64) -> bool {
        *n == 0
    }
    fn time(ms: i64) -> Option<String> {
        if ms == 0 {
            return None;
        }
        jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
    }
    #[derive(Serialize)]
    struct Meta<'a> {
        #[serde(skip_serializing_if = "is_empty")]
        name: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        namespace: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        uid: &'a str,
        #[serde(rename = "resourceVersion", skip_serializing_if = "is_empty")]
        resource_version: &'a str,
    }
    #[derive(Serialize)]
    struct Reference<'a> {
        #[serde(skip_serializing_if = "is_empty")]
        kind: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        namespace: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        name: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        uid: &'a str,
    }
    #[derive(Serialize)]
    struct Source<'a> {
        #[serde(skip_serializing_if = "is_empty")]
        component: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        host: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CoreEvent<'a> {
        metadata: Meta<'a>,
        involved_object: Reference<'a>,
        #[serde(skip_serializing_if = "is_empty")]
        reason: &'a str,
        #[serde(skip_serializing_if = "is_empty")]
        message: &'a str,
        source: Source<'a>,
        first_timestamp: Option<String>,
        last_timestamp: Option<String>,
        #[serde(skip_serializing_if = "is_zero")]
        count: i64,
        #[serde(rename = "type", skip_serializing_if = "is_empty")]
        kind: &'a str,
    }
    let core = CoreEvent {
        metadata: Meta {
            name: &event.name,
            namespace: &event.namespace,
            uid: &event.uid,
            resource_version: &event.resource_version,
        },
        involved_object: Reference {
            kind: &event.involved.kind,
            namespace: &event.involved.namespace,
            name: &event.involved.name,
            uid: &event.involved.uid,
        },
        reason: &event.reason,
        message: &event.message,
        source: Source { component: &event.source_component, host: &event.source_host },
        first_timestamp: time(event.first_timestamp),
        last_timestamp: time(event.last_timestamp),
        count: event.count,
        kind: &event.kind,
    };
    let mut out = Vec::with_capacity(512 + event.message.len());
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing borrowed strings and integers into a Vec cannot fail.
    if core.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests;
