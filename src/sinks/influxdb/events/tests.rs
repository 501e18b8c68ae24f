use heapster_dataflows::model::{EventText, ObjectRef};
use serde_json::Value as Json;

use super::*;
use crate::sinks::event_json::indent_json;

/// 2019-08-30T20:43:05Z.
pub(crate) const LAST_MS: i64 = 1_567_197_785_000;

/// A kubelet event about a pod, with the API server's JSON as `raw`.
pub(crate) fn pulled(count: i64, last_ms: i64, message: &str) -> Event {
    let mut event = Event {
        uid: "c443d4b3-cb66-11e9-990f-42010a800218".into(),
        namespace: "default".into(),
        involved: ObjectRef {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "hello-1567197780-mn4mv".into(),
            uid: "c31fdeb8-cb66-11e9-990f-42010a800218".into(),
        },
        reason: "Pulled".into(),
        kind: "Normal".into(),
        source_component: "kubelet".into(),
        source_host: "gke-k9s-default-pool-0fa2fb89-qnkc".into(),
        first_timestamp: LAST_MS - 60_000,
        last_timestamp: last_ms,
        count,
        text: EventText::new(
            String::new(),
            "hello-1567197780-mn4mv.15bfce150bd764dd",
            &format!("5907{count}"),
            message,
        ),
    };
    event.text = event.text.with_raw(raw_of(&event));
    event
}

/// What the API server sends for `event`: compact core `v1` JSON with fields the model
/// does not keep.
pub(crate) fn raw_of(event: &Event) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap();
    let time = |ms: i64| s(&jiff::Timestamp::from_millisecond(ms).unwrap().to_string());
    let (involved, first) = (&event.involved, time(event.first_timestamp));
    format!(
        r#"{{"metadata":{{"name":{},"namespace":{},"uid":{},"resourceVersion":{},"creationTimestamp":{first}}},"#,
        s(event.name()),
        s(&event.namespace),
        s(&event.uid),
        s(event.resource_version()),
    ) + &format!(
        r#""involvedObject":{{"kind":{},"namespace":{},"name":{},"uid":{},"apiVersion":"v1","fieldPath":"spec.containers{{c1}}"}},"#,
        s(&involved.kind),
        s(&involved.namespace),
        s(&involved.name),
        s(&involved.uid),
    ) + &format!(
        r#""reason":{},"message":{},"source":{{"component":{},"host":{}}},"firstTimestamp":{first},"lastTimestamp":{},"count":{},"type":{},"eventTime":null,"series":{{}},"related":[]}}"#,
        s(&event.reason),
        s(event.message()),
        s(&event.source_component),
        s(&event.source_host),
        time(event.last_timestamp),
        event.count,
        s(&event.kind),
    )
}

/// A controller event about a service: no host, not a pod.
pub(crate) fn service_event() -> Event {
    Event {
        uid: "d341d3aa".into(),
        namespace: "default".into(),
        involved: ObjectRef {
            kind: "Service".into(),
            namespace: "default".into(),
            name: "all-hello".into(),
            uid: "94813607".into(),
        },
        reason: "CreatingLoadBalancer".into(),
        kind: "Normal".into(),
        source_component: "service-controller".into(),
        source_host: "".into(),
        first_timestamp: 1_491_471_953_000,
        last_timestamp: 1_491_471_953_000,
        count: 1,
        text: EventText::new(String::new(), "all-hello.14b2c5d6e72d8d72", "2709", "Creating load balancer"),
    }
}

fn line(encoder: &EventEncoder, event: &Event) -> String {
    let mut out = Vec::new();
    encoder.encode(event, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn heapster_schema_exact_bytes() {
    let encoder = EventEncoder::new(false, "prod east");
    let service = line(&encoder, &service_event());
    let json = concat!(
        "{\n",
        r#" \"metadata\": {"#,
        "\n",
        r#"  \"name\": \"all-hello.14b2c5d6e72d8d72\","#,
        "\n",
        r#"  \"namespace\": \"default\","#,
        "\n",
        r#"  \"uid\": \"d341d3aa\","#,
        "\n",
        r#"  \"resourceVersion\": \"2709\""#,
        "\n },\n",
        r#" \"involvedObject\": {"#,
        "\n",
        r#"  \"kind\": \"Service\","#,
        "\n",
        r#"  \"namespace\": \"default\","#,
        "\n",
        r#"  \"name\": \"all-hello\","#,
        "\n",
        r#"  \"uid\": \"94813607\""#,
        "\n },\n",
        r#" \"reason\": \"CreatingLoadBalancer\","#,
        "\n",
        r#" \"message\": \"Creating load balancer\","#,
        "\n",
        r#" \"source\": {"#,
        "\n",
        r#"  \"component\": \"service-controller\""#,
        "\n },\n",
        r#" \"firstTimestamp\": \"2017-04-06T09:45:53Z\","#,
        "\n",
        r#" \"lastTimestamp\": \"2017-04-06T09:45:53Z\","#,
        "\n",
        r#" \"count\": 1,"#,
        "\n",
        r#" \"type\": \"Normal\""#,
        "\n}",
    );
    assert_eq!(
        service,
        format!("log/events,cluster_name=prod\\ east,uid=d341d3aa value=\"{json}\" 1491471953000000000\n")
    );

    let pod = pulled(3, LAST_MS, "Successfully pulled image \"blang/busybox-bash\"\nC:\\tmp");
    let pod_line = line(&EventEncoder::new(false, "default"), &pod);
    let (head, rest) = pod_line.split_once(" value=\"").unwrap();
    assert_eq!(
        head,
        "log/events,cluster_name=default,hostname=gke-k9s-default-pool-0fa2fb89-qnkc,\
         pod_id=c31fdeb8-cb66-11e9-990f-42010a800218,pod_name=hello-1567197780-mn4mv,\
         uid=c443d4b3-cb66-11e9-990f-42010a800218"
    );
    assert!(rest.ends_with("}\" 1567197785000000000\n"), "{rest}");
    // The API server's JSON, members in its order, indented as Go indents.
    assert!(
        rest.starts_with(
            "{\n \\\"metadata\\\": {\n  \\\"name\\\": \\\"hello-1567197780-mn4mv.15bfce150bd764dd\\\",\n"
        ),
        "{rest}"
    );
    assert!(rest.contains(" \\\"eventTime\\\": null,\n \\\"series\\\": {},\n \\\"related\\\": []\n}"));
    assert!(
        rest.contains(
            r#"\"message\": \"Successfully pulled image \\\"blang/busybox-bash\\\"\\nC:\\\\tmp\","#
        ),
        "{rest}"
    );
}

#[test]
fn with_fields_exact_bytes() {
    let encoder = EventEncoder::new(true, "default");
    let pod = pulled(3, LAST_MS, "pulled \"x\"\nline two \\ end");
    assert_eq!(
        line(&encoder, &pod),
        "events,cluster_name=default,component=kubelet,hostname=gke-k9s-default-pool-0fa2fb89-qnkc,\
         kind=Pod,namespace_name=default,object_name=hello-1567197780-mn4mv,\
         pod_id=c31fdeb8-cb66-11e9-990f-42010a800218,reason=Pulled,type=Normal,\
         uid=c443d4b3-cb66-11e9-990f-42010a800218 \
         message=\"pulled \\\"x\\\"\nline two \\\\ end\" 1567197785000000000\n"
    );
    assert_eq!(
        line(&encoder, &service_event()),
        "events,cluster_name=default,component=service-controller,kind=Service,namespace_name=default,\
         object_name=all-hello,reason=CreatingLoadBalancer,type=Normal,uid=d341d3aa \
         message=\"Creating load balancer\" 1491471953000000000\n"
    );
}

#[test]
fn json_value_parses_back_to_the_event() {
    for raw in [true, false] {
        let mut event = pulled(7, LAST_MS + 1_500, "a \"quoted\"\nmessage \u{2028} é");
        if !raw {
            event.text = event.text.with_raw(String::new());
        }
        let json: Json = serde_json::from_str(&event_json(&event)).unwrap();
        assert_eq!(json["metadata"]["uid"], event.uid.as_str());
        assert_eq!(json["metadata"]["name"], event.name());
        assert_eq!(json["involvedObject"]["name"], event.involved.name.as_str());
        assert_eq!(json["reason"], "Pulled");
        assert_eq!(json["message"], event.message());
        assert_eq!(json["count"], 7);
        assert_eq!(json["lastTimestamp"], "2019-08-30T20:43:06.5Z");
        assert_eq!(json["source"]["host"], event.source_host.as_str());
        assert_eq!(json.get("involvedObject").and_then(|o| o.get("fieldPath")).is_some(), raw);
    }
}

#[test]
fn other_bodies_are_rebuilt_as_core_v1() {
    let mut event = service_event();
    for raw in ["", "not json", r#"{"apiVersion":"events.k8s.io/v1","note":"x"}"#, "[1]"] {
        event.text = event.text.with_raw(raw.to_string());
        let json: Json = serde_json::from_str(&event_json(&event)).unwrap();
        assert_eq!(json["message"], "Creating load balancer", "{raw}");
        assert!(json.get("note").is_none());
    }
    event.last_timestamp = 0;
    event.first_timestamp = 0;
    event.count = 0;
    let json: Json = serde_json::from_str(&event_json(&event)).unwrap();
    assert_eq!(json["lastTimestamp"], Json::Null);
    assert!(json.get("count").is_none(), "omitted when zero, as Go does");
}

#[test]
fn indents_as_go_does() {
    assert_eq!(
        indent_json(r#" {"a" : [1, {"b":"x, y: {z}"}], "e":{ }, "f":[ ],"g":"q\"}"} "#),
        "{\n \"a\": [\n  1,\n  {\n   \"b\": \"x, y: {z}\"\n  }\n ],\n \"e\": {},\n \"f\": [],\n \"g\": \"q\\\"}\"\n}"
    );
}

#[test]
fn time_is_last_timestamp_else_first_and_must_fit() {
    let mut event = service_event();
    assert_eq!(event_time_ns(&event), Ok(1_491_471_953_000_000_000));
    event.last_timestamp = 0;
    event.first_timestamp = 1_000;
    assert_eq!(event_time_ns(&event), Ok(1_000_000_000));
    event.first_timestamp = 0;
    assert_eq!(event_time_ns(&event), Err(Unwritable::NoTime { uid: "d341d3aa".into() }));
    event.last_timestamp = 9_300_000_000_000_000;
    assert!(matches!(event_time_ns(&event), Err(Unwritable::OutOfRange { .. })));
    let mut out = Vec::new();
    assert!(EventEncoder::new(false, "c").encode(&event, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn select_keeps_the_newest_state_of_each_point() {
    let encoder = EventEncoder::new(false, "default");
    let mut no_time = service_event();
    no_time.last_timestamp = 0;
    no_time.first_timestamp = 0;
    let events = vec![
        pulled(3, LAST_MS, "m"),
        service_event(),
        // Same second: the same point; the higher count wins wherever it stands.
        pulled(2, LAST_MS, "m"),
        pulled(4, LAST_MS + 5_000, "m"),
        no_time,
        pulled(5, LAST_MS + 5_000, "m"),
    ];
    let selection = encoder.select(&events);
    let kept: Vec<(i64, i64)> = selection.events.iter().map(|e| (e.count, e.last_timestamp)).collect();
    assert_eq!(kept, [(3, LAST_MS), (1, 1_491_471_953_000), (5, LAST_MS + 5_000)]);
    assert_eq!((selection.superseded, selection.unwritable), (2, 1));

    // The same state twice is one point.
    let twice = vec![pulled(3, LAST_MS, "m"), pulled(3, LAST_MS, "m")];
    let selection = encoder.select(&twice);
    assert_eq!((selection.events.len(), selection.superseded), (1, 1));
    assert!(std::ptr::eq(selection.events[0], &twice[1]));
}
