//! The events list's items as the apiserver serialises `core/v1` events.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Event, Involved};
use crate::synth::cluster::rfc3339;

pub(super) struct Items<'a>(pub(super) &'a BTreeMap<(String, String), Event>);

impl Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values().map(EventObj::from))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventObj<'a> {
    metadata: EventMeta<'a>,
    involved_object: &'a Involved,
    reason: &'a str,
    message: &'a str,
    source: SourceObj<'a>,
    first_timestamp: String,
    last_timestamp: String,
    count: u64,
    #[serde(rename = "type")]
    type_: &'static str,
    /// Always null: these are events of the core API, as kubelets and controllers record them.
    event_time: Option<&'a str>,
    reporting_component: &'a str,
    reporting_instance: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventMeta<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    resource_version: String,
    creation_timestamp: String,
}

#[derive(Serialize)]
struct SourceObj<'a> {
    component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl<'a> From<&'a Event> for EventObj<'a> {
    fn from(e: &'a Event) -> EventObj<'a> {
        let o = &e.occurrence;
        let first = rfc3339(e.first);
        EventObj {
            metadata: EventMeta {
                name: &e.name,
                namespace: &e.namespace,
                uid: &e.uid,
                resource_version: e.rv.to_string(),
                creation_timestamp: first.clone(),
            },
            involved_object: &o.involved,
            reason: o.reason,
            message: &o.message,
            source: SourceObj { component: o.source.component(), host: o.host.as_deref() },
            first_timestamp: first,
            last_timestamp: rfc3339(e.last),
            count: e.count,
            type_: if o.warning { "Warning" } else { "Normal" },
            event_time: None,
            reporting_component: o.source.component(),
            reporting_instance: o.host.as_deref().unwrap_or(""),
        }
    }
}
