//! Kubernetes events as InfluxDB points, in the schema of Heapster's eventer (see [`super`] for
//! the table); the event's JSON is [`crate::sinks::event_json`]'s.
//!
//! A point's identity in InfluxDB is (measurement, tag set, time). Every tag and the time come
//! from the event's own state (plus the configured `cluster_name`), never from when it was
//! seen, so a state sent twice (after a restart) lands on the same point and overwrites it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use heapster_dataflows::Event;
use tracing::warn;

use super::line_protocol::push_tag;
use crate::sinks::event_json::{event_json, event_time_ms};

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
            push_string_field(out, event.message());
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

#[cfg(test)]
pub(crate) mod tests;
