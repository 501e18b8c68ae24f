//! An event as Heapster's event sinks sent it: a core `v1` Event as indented JSON, stored at the
//! time of its state. InfluxDB's `log/events` value, Cloud Logging's `jsonPayload` and the log
//! sink's time column all come from here.

use std::collections::HashMap;

use heapster_dataflows::Event;
use serde::Serialize;
use serde::de::IgnoredAny;

/// The time an event's state is stored at, in ms: its `lastTimestamp` as Heapster used, else its
/// `firstTimestamp` (Heapster wrote year 1 there, which InfluxDB refuses).
pub fn event_time_ms(event: &Event) -> Option<i64> {
    [event.last_timestamp, event.first_timestamp].into_iter().find(|ms| *ms != 0)
}

/// The event as Heapster stored it: a core `v1` Event as indented JSON (Go's
/// `json.MarshalIndent(event, "", " ")`). The API server's own JSON is kept, re-indented, when
/// it is a core `v1` Event; otherwise (an `events.k8s.io/v1` body, or none) the core `v1` fields
/// are rebuilt from the event.
pub fn event_json(event: &Event) -> String {
    let raw = event.raw().trim();
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
pub(crate) fn indent_json(json: &str) -> String {
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
            name: event.name(),
            namespace: &event.namespace,
            uid: &event.uid,
            resource_version: event.resource_version(),
        },
        involved_object: Reference {
            kind: &event.involved.kind,
            namespace: &event.involved.namespace,
            name: &event.involved.name,
            uid: &event.involved.uid,
        },
        reason: &event.reason,
        message: event.message(),
        source: Source { component: &event.source_component, host: &event.source_host },
        first_timestamp: time(event.first_timestamp),
        last_timestamp: time(event.last_timestamp),
        count: event.count,
        kind: &event.kind,
    };
    let mut out = Vec::with_capacity(512 + event.message().len());
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing borrowed strings and integers into a Vec cannot fail.
    if core.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
