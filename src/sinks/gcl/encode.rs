//! Events as `entries.write` request bodies, written straight into bytes.

use heapster_dataflows::Event;

use crate::sinks::event_json::{event_json, event_time_ms};
use crate::sinks::google::json::{push_member, push_str, push_time};

use super::{MAX_BYTES_PER_WRITE, MAX_ENTRIES_PER_WRITE};

/// The log every event goes to (the `/` of `kubernetes.io/events` escaped, as Heapster did).
pub const LOG_ID: &str = "kubernetes.io%2Fevents";

/// How an entry's severity is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `Warning` -> `WARNING`, anything else -> `INFO`.
    FromType,
    /// `NOTICE` for all, as Heapster sent.
    Notice,
}

/// Encodes entries; the parts every entry shares are built once.
pub struct EntryEncoder {
    /// `{"logName":"...","partialSuccess":true,"entries":[`.
    head: Vec<u8>,
    /// `"project_id":"..","location":"..","cluster_name":".."`.
    cluster_labels: Vec<u8>,
    severity: Severity,
}

impl EntryEncoder {
    pub fn new(project: &str, location: &str, cluster_name: &str, severity: Severity) -> EntryEncoder {
        let mut head = b"{".to_vec();
        push_member(&mut head, "logName", &log_name(project));
        head.extend_from_slice(b",\"partialSuccess\":true,\"entries\":[");
        let mut cluster_labels = Vec::new();
        push_member(&mut cluster_labels, "project_id", project);
        cluster_labels.push(b',');
        push_member(&mut cluster_labels, "location", location);
        cluster_labels.push(b',');
        push_member(&mut cluster_labels, "cluster_name", cluster_name);
        EntryEncoder { head, cluster_labels, severity }
    }

    /// One request body for the first events of `events`: returns the body, the entries in it
    /// and how many events it consumed (events without a time are consumed and left out).
    pub fn request(&self, events: &[&Event]) -> (Vec<u8>, usize, usize) {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(&self.head);
        let mut entries = 0;
        let mut consumed = 0;
        for event in events {
            if entries == MAX_ENTRIES_PER_WRITE || (entries > 0 && out.len() >= MAX_BYTES_PER_WRITE) {
                break;
            }
            consumed += 1;
            let Some(ms) = event_time_ms(event) else { continue };
            if entries > 0 {
                out.push(b',');
            }
            self.entry(event, ms, &mut out);
            entries += 1;
        }
        out.extend_from_slice(b"]}");
        (out, entries, consumed)
    }

    /// One `LogEntry`.
    pub fn entry(&self, event: &Event, ms: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"insertId\":");
        push_str(out, &event.uid);
        out.extend_from_slice(b",\"timestamp\":");
        push_time(out, ms);
        let severity = match self.severity {
            Severity::Notice => "NOTICE",
            Severity::FromType if event.kind.as_str() == "Warning" => "WARNING",
            Severity::FromType => "INFO",
        };
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(severity.as_bytes());
        out.extend_from_slice(b"\",\"resource\":{\"type\":");
        let involved = &event.involved;
        let namespace = if involved.namespace.is_empty() { &event.namespace } else { &involved.namespace };
        match involved.kind.as_str() {
            "Pod" if !involved.name.is_empty() && !namespace.is_empty() => {
                out.extend_from_slice(b"\"k8s_pod\",\"labels\":{");
                out.extend_from_slice(&self.cluster_labels);
                out.push(b',');
                push_member(out, "namespace_name", namespace);
                out.push(b',');
                push_member(out, "pod_name", &involved.name);
            }
            "Node" if !involved.name.is_empty() => {
                out.extend_from_slice(b"\"k8s_node\",\"labels\":{");
                out.extend_from_slice(&self.cluster_labels);
                out.push(b',');
                push_member(out, "node_name", &involved.name);
            }
            _ => {
                out.extend_from_slice(b"\"k8s_cluster\",\"labels\":{");
                out.extend_from_slice(&self.cluster_labels);
            }
        }
        out.extend_from_slice(b"}},\"jsonPayload\":");
        out.extend_from_slice(event_json(event).as_bytes());
        out.push(b'}');
    }
}

/// `projects/<project>/logs/kubernetes.io%2Fevents`.
pub fn log_name(project: &str) -> String {
    format!("projects/{project}/logs/{LOG_ID}")
}

#[cfg(test)]
mod tests {
    use heapster_dataflows::model::{EventText, ObjectRef};

    use super::*;

    fn event(uid: &str, kind: &str, involved: &str, last_ms: i64) -> Event {
        Event {
            uid: uid.into(),
            namespace: "web".into(),
            involved: ObjectRef {
                kind: involved.into(),
                namespace: "web".into(),
                name: "api-1".into(),
                uid: "p-1".into(),
            },
            kind: kind.into(),
            last_timestamp: last_ms,
            count: 1,
            text: EventText::new(String::new(), &format!("{uid}.1"), "", ""),
            ..Event::default()
        }
    }

    #[test]
    fn entries_carry_uid_time_severity_resource_and_the_event() {
        let encoder = EntryEncoder::new("proj", "us-central1-a", "prod", Severity::FromType);
        let events = [
            event("u1", "Warning", "Pod", 1_700_000_000_000),
            event("u2", "Normal", "Node", 1_700_000_001_000),
            event("u3", "Normal", "Deployment", 0),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let (body, entries, consumed) = encoder.request(&refs);
        assert_eq!((entries, consumed), (2, 3), "the event without a time is left out");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["logName"], "projects/proj/logs/kubernetes.io%2Fevents");
        assert_eq!(json["partialSuccess"], true);
        let e = &json["entries"];
        assert_eq!(e[0]["insertId"], "u1");
        assert_eq!(e[0]["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e[0]["severity"], "WARNING");
        assert_eq!(e[0]["resource"]["type"], "k8s_pod");
        assert_eq!(e[0]["resource"]["labels"]["pod_name"], "api-1");
        assert_eq!(e[0]["resource"]["labels"]["cluster_name"], "prod");
        assert_eq!(e[0]["jsonPayload"]["metadata"]["uid"], "u1");
        assert_eq!(e[1]["severity"], "INFO");
        assert_eq!(e[1]["resource"]["type"], "k8s_node");
        assert_eq!(e[1]["resource"]["labels"]["node_name"], "api-1");
        let notice = EntryEncoder::new("proj", "l", "c", Severity::Notice);
        let (body, _, _) = notice.request(&refs[..1]);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["entries"][0]["severity"], "NOTICE");
    }

    #[test]
    fn requests_hold_at_most_a_thousand_entries() {
        let encoder = EntryEncoder::new("p", "l", "c", Severity::FromType);
        let events: Vec<Event> =
            (0..2500).map(|i| event(&format!("u{i}"), "Normal", "Pod", 1_000 + i)).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let (_, entries, consumed) = encoder.request(&refs);
        assert_eq!((entries, consumed), (MAX_ENTRIES_PER_WRITE, MAX_ENTRIES_PER_WRITE));
    }
}
