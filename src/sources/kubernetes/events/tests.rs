//! Event lists and watch lines against real captures and hand-edited bodies.

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
    assert_eq!(event.name(), str_of(item, &["metadata", "name"]));
    assert_eq!(event.resource_version(), str_of(item, &["metadata", "resourceVersion"]));
    assert_eq!(event.involved.kind.as_str(), str_of(item, &["involvedObject", "kind"]));
    assert_eq!(event.involved.namespace.as_str(), str_of(item, &["involvedObject", "namespace"]));
    assert_eq!(event.involved.name.as_str(), str_of(item, &["involvedObject", "name"]));
    assert_eq!(event.involved.uid.as_str(), str_of(item, &["involvedObject", "uid"]));
    assert_eq!(event.reason.as_str(), str_of(item, &["reason"]));
    assert_eq!(event.message(), str_of(item, &["message"]));
    assert_eq!(event.kind.as_str(), str_of(item, &["type"]));
    assert_eq!(event.source_component.as_str(), str_of(item, &["source", "component"]));
    assert_eq!(event.source_host.as_str(), str_of(item, &["source", "host"]));
    assert_eq!(event.first_timestamp, ms(str_of(item, &["firstTimestamp"])));
    assert_eq!(event.last_timestamp, ms(str_of(item, &["lastTimestamp"])));
    assert_eq!(event.count, item["count"].as_i64().unwrap());
    let raw: Value = serde_json::from_str(event.raw()).unwrap();
    assert_eq!(&raw, item, "raw keeps the whole event");
    assert!(!event.raw().contains('\n'), "raw is compact");
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
    assert!(!event.raw().contains("managedFields"));

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
    assert_eq!((event.namespace.as_str(), event.name()), ("data", "db.2"));
    assert_eq!(event.message(), "Pulling image \"postgres:16\"");
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
    assert_eq!(event.resource_version(), "90");
    assert_eq!(serde_json::from_str::<Value>(event.raw()).unwrap(), item);

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
    assert!(event.message().len() <= MAX_MESSAGE_BYTES, "{}", event.message().len());
    let (kept, marker) = event.message().split_once("… [truncated ").unwrap();
    assert!(long.starts_with(kept));
    assert!(kept.len() > MAX_MESSAGE_BYTES - 64);
    assert_eq!(marker, format!("{} bytes]", long.len() - kept.len()));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&long.len().to_string()));
    let raw: Value = serde_json::from_str(event.raw()).unwrap();
    assert_eq!(raw["message"].as_str(), Some(event.message()), "raw has the cut message");
    assert!(event.raw().len() <= MAX_RAW_BYTES);
}

#[test]
fn a_message_that_grows_in_json_is_cut_until_the_json_fits() {
    let mut item = core_json();
    // Each control character takes six bytes in JSON.
    let long = "\u{1}".repeat(MAX_MESSAGE_BYTES);
    item["message"] = json!(long);
    let (event, warnings) = core(&item).unwrap();
    assert!(event.raw().len() <= MAX_RAW_BYTES, "{}", event.raw().len());
    assert!(event.raw().len() > MAX_RAW_BYTES - 1024, "cut no more than needed: {}", event.raw().len());
    assert!(event.message().ends_with(" bytes]"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let raw: Value = serde_json::from_str(event.raw()).unwrap();
    assert_eq!(raw["message"].as_str(), Some(event.message()));
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
    let raw: Value = serde_json::from_str(event.raw()).unwrap();
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
    assert_eq!(parsed.events[0].message(), "hello");
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
    assert!(matches!(&event, WatchEvent::Added(e) if e.message() == "from events.k8s.io"), "{event:?}");
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

/// The list reader gives the very events the typed objects give (so every sink writes the same
/// bytes as before): every capture, and a core item with every fallback in play.
#[test]
fn list_events_are_the_typed_conversions() {
    let mut bodies: Vec<Vec<u8>> =
        ["k8s-events-gke-2016.json", "k8s-events-services-gke-2017.json"].into_iter().map(capture).collect();
    let mut odd = core_json();
    odd["message"] = json!("quotes \" and \\ and é and \u{1}");
    odd["series"] = json!({"count": 4, "lastObservedTime": "2024-01-01T00:01:00.123456Z"});
    odd["eventTime"] = json!("2024-01-01T00:00:05.250000Z");
    let mut long = core_json();
    long["metadata"]["uid"] = json!("u-long");
    long["message"] = json!("\u{1}".repeat(MAX_MESSAGE_BYTES));
    bodies.push(
        json!({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": [core_json(), odd, long]})
            .to_string()
            .into_bytes(),
    );
    for body in bodies {
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let parsed = parse_event_list(&body).unwrap();
        let items = raw["items"].as_array().unwrap();
        assert_eq!(parsed.events.len(), items.len());
        let mut warnings = Vec::new();
        for (event, item) in parsed.events.iter().zip(items) {
            let ev: CoreEvent = serde_json::from_value(item.clone()).unwrap();
            let (typed, mut typed_warnings) = from_core_v1(&ev, item.to_string().as_bytes()).unwrap();
            assert_eq!(event, &typed);
            warnings.append(&mut typed_warnings);
        }
        assert_eq!(parsed.warnings, warnings);
    }
    let v1 = json!({"metadata": {"name": "db.2", "namespace": "data", "uid": "u-2", "resourceVersion": "90"},
        "eventTime": "2024-02-01T10:00:01.500000Z", "deprecatedCount": 3,
        "series": {"count": 7, "lastObservedTime": "2024-02-01T10:05:00.000000Z"},
        "reportingController": "kubelet", "deprecatedSource": {"host": "n"}, "note": "x",
        "regarding": {"kind": "Pod", "name": "db"}, "type": "Normal"});
    let body = json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "items": [v1]}).to_string();
    let parsed = parse_event_list(body.as_bytes()).unwrap();
    assert_eq!(parsed.events, vec![events_v1(&v1).unwrap().0]);
}

/// A core item read from its scan converts exactly as when its fields are decoded, or the scan
/// leaves it to the decode; the odd ones (repeated keys, arrays for objects, numbers for
/// strings, escapes, out-of-range counts, bad times) included.
#[test]
fn a_scanned_item_converts_as_a_decoded_one() {
    let typical = core_json().to_string();
    let odd = [
        typical.clone(),
        r#"{"metadata":{"name":"a\"b","uid":"u\\1","resourceVersion":"7","namespace":null},"message":"tab\there \/ \u00e9 \"q\"","count":-3,"type":"Warning","involvedObject":null,"source":{"component":"c","host":""},"reportingComponent":"r","reportingInstance":"i","series":{"count":4,"lastObservedTime":"2024-01-01T00:01:00.123456Z"}}"#.to_string(),
        r#"{"metadata":{"name":"x","uid":"u","creationTimestamp":"2024-01-01T00:00:00Z"},"eventTime":"2024-01-01T00:00:05.250000Z","series":null,"count":null}"#.to_string(),
        r#"{"metadata":{"name":"x"},"reason":"no uid"}"#.to_string(),
        r#"{"metadata":{"uid":"u","uid":"v"}}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"reason":"a","reason":"b"}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"extra":1,"extra":2,"message":"repeated keys not read are fine"}"#.to_string(),
        r#"{"metadata":["n","ns"]}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"source":["c","h"]}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"count":"3"}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"count":3000000000}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"count":1.0}"#.to_string(),
        r#"{"metadata":{"uid":7}}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"lastTimestamp":"yesterday"}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"lastTimestamp":5}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"series":{"count":true}}"#.to_string(),
        r#"{"metadata":{"uid":"u"},"type":"Odd","involvedObject":{"kind":"Pod","uid":"\u0070"}}"#.to_string(),
        format!(r#"{{"metadata":{{"uid":"u"}},"message":"{}"}}"#, "m".repeat(MAX_MESSAGE_BYTES + 1)),
    ];
    let mut taken = 0;
    let mut chunks = TextChunks::default();
    let mut chunked = Vec::new();
    for raw in &odd {
        let mut tape = compact::Tape::default();
        // A float is left to serde_json by the scan itself.
        let whole = tape.scan(raw.as_bytes(), 0) == Some(raw.len());
        if whole && light::CoreItem::from_tape(raw, &tape).is_some() {
            taken += 1;
        }
        let in_chunk = convert_scanned(
            raw,
            false,
            &mut Interner::default(),
            whole.then_some(&mut tape),
            Some(&mut chunks),
        );
        let mut tape = compact::Tape::default();
        tape.scan(raw.as_bytes(), 0);
        let scanned = convert_scanned(raw, false, &mut Interner::default(), whole.then_some(&mut tape), None);
        let decoded = convert_decoded(raw, false, &mut Interner::default());
        assert_eq!(format!("{scanned:?}"), format!("{decoded:?}"), "{raw}");
        match in_chunk {
            Ok(Ok((event, warnings))) => {
                chunked.push((event, warnings, raw));
            }
            other => assert_eq!(format!("{other:?}"), format!("{decoded:?}"), "{raw}"),
        }
        if let Ok(Ok((event, _))) = &scanned {
            let text = &event.text;
            let again =
                EventText::new(text.raw().to_string(), text.name(), text.resource_version(), text.message());
            assert_eq!(text.heap_bytes(), again.heap_bytes(), "the places found hold their parts: {raw}");
        }
    }
    // Texts written into a chunk read as their own once sealed; those given up left nothing.
    let pending: Vec<bool> = chunked.iter().map(|(event, ..)| event.raw().is_empty()).collect();
    assert!(pending.iter().filter(|p| **p).count() >= 3, "the typical items went into the chunk");
    let written = chunks.written();
    chunks.seal(chunked.iter_mut().map(|(event, ..)| &mut event.text));
    let in_chunk: usize = chunked
        .iter()
        .zip(&pending)
        .filter(|(_, p)| **p)
        .map(|((event, ..), _)| event.text.heap_bytes())
        .sum();
    assert_eq!(written, in_chunk, "only the texts kept are in the chunk");
    for (event, warnings, raw) in chunked {
        let decoded = convert_decoded(raw, false, &mut Interner::default());
        assert_eq!(
            format!("{:?}", Ok::<_, EventError>((event, warnings))),
            format!("{:?}", decoded.unwrap()),
            "{raw}"
        );
    }
    assert!(
        light::CoreItem::from_tape(&typical, &{
            let mut tape = compact::Tape::default();
            tape.scan(typical.as_bytes(), 0);
            tape
        })
        .is_some()
    );
    // The first three, the one without a uid, the one repeating a key not read, the odd type
    // and the long message; the rest are the decode's to refuse.
    assert_eq!(taken, 7, "items read from their scan");
}
