//! The InfluxDB sink against a real `influxd` on loopback, through its public API: Heapster's
//! schema read back, database and retention set-up, partial writes, large windows in chunks,
//! credentials, and the event schema.

use std::time::Duration;

use bytes::Bytes;
use heapster::backoff::Backoff;
use heapster::batch::MetricBatch;
use heapster::sinks::influxdb::{
    EventEncoder, InfluxConfig, InfluxError, InfluxSink, MAX_EVENT_BYTES_PER_WRITE, WriteReport, buffered,
};
use heapster::sinks::queue::{Chunk, Deliver, Sent};
use heapster_dataflows::catalog::Kind;
use heapster_dataflows::model::{LabeledMetric, LabeledValue, ObjectRef, Resource};
use heapster_dataflows::{EntityKey, Event, LabelId, LabeledMetricId, MetricId, MetricSet, Value};
use heapster_testbed::testkit::influxd::Influxd;
use serde_json::Value as Json;

const T: u64 = 1_700_000_000_000;

fn config_for(url: &str, options: &str) -> InfluxConfig {
    let mut config = InfluxConfig::from_uri(&format!("influxdb:{url}?{options}")).unwrap();
    config.attempts = 3;
    config.backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
    config
}

fn sink_for(url: &str, options: &str) -> InfluxSink {
    InfluxSink::new(config_for(url, options)).unwrap()
}

/// An InfluxQL identifier in double quotes.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Rows of the first series of a query, as column -> value maps.
fn rows(influxd: &Influxd, db: &str, q: &str) -> Vec<serde_json::Map<String, Json>> {
    let json = influxd.query(db, q).unwrap();
    let series = &json["results"][0]["series"][0];
    let columns: Vec<String> = series["columns"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    series["values"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|row| columns.iter().cloned().zip(row.as_array().unwrap().iter().cloned()).collect())
        .collect()
}

/// The first column of every row of every series, as strings.
fn names(influxd: &Influxd, db: &str, q: &str) -> Vec<String> {
    let json = influxd.query(db, q).unwrap();
    let mut out = Vec::new();
    for series in json["results"][0]["series"].as_array().unwrap_or(&Vec::new()) {
        for row in series["values"].as_array().unwrap() {
            out.push(row[0].as_str().unwrap().to_string());
        }
    }
    out
}

fn field_types(influxd: &Influxd, db: &str, measurement: &str) -> Vec<(String, String)> {
    rows(influxd, db, &format!("SHOW FIELD KEYS FROM {}", quote_ident(measurement)))
        .into_iter()
        .map(|r| (r["fieldKey"].as_str().unwrap().to_string(), r["fieldType"].as_str().unwrap().to_string()))
        .collect()
}

fn small_batch() -> MetricBatch {
    let mut node = MetricSet::new(EntityKey::Node { node: "node-1".into() });
    node.labels.set(LabelId::Nodename, "node-1".into());
    node.labels.set(LabelId::Hostname, "host-1".into());
    node.labels.set(LabelId::Schedulable, "true".into());
    node.values.set(MetricId::CpuUsageRate, Value::Int(250));
    node.values.set(MetricId::MemoryNodeUtilization, Value::Float(0.5));

    let mut pod = MetricSet::new(EntityKey::PodContainer {
        ns: "kube-system".into(),
        pod: "dns-1".into(),
        container: "dnsmasq".into(),
    });
    pod.labels.set(LabelId::NamespaceName, "kube-system".into());
    pod.labels.set(LabelId::PodName, "dns-1".into());
    pod.labels.set(LabelId::ContainerName, "dnsmasq".into());
    pod.labels.set(LabelId::Labels, "app:dns,tier:x y".into());
    pod.values.set(MetricId::MemoryUsage, Value::Int(1024));
    pod.labeled.push(LabeledValue {
        metric: LabeledMetric::Catalog(LabeledMetricId::FsUsage),
        resource: Resource::Id("Volume:my vol".into()),
        value: Value::Int(5),
    });
    MetricBatch { time: T, sets: vec![node, pod] }
}

fn custom(name: &str, value: Value) -> LabeledValue {
    LabeledValue { metric: LabeledMetric::custom(name.into(), Kind::Gauge), resource: Resource::None, value }
}

#[tokio::test]
async fn writes_heapsters_schema_and_reads_back() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    let report = sink.write(&small_batch()).await.unwrap();
    assert_eq!(
        report,
        WriteReport {
            points_written: 4,
            points_dropped: 0,
            points_skipped: 0,
            points_superseded: 0,
            requests: 2
        },
        "one CREATE DATABASE and one write"
    );

    assert_eq!(
        names(&influxd, "k8s", "SHOW MEASUREMENTS"),
        ["cpu/usage_rate", "filesystem/usage", "memory/node_utilization", "memory/usage"]
    );
    let rows = rows(&influxd, "k8s", r#"SELECT * FROM "filesystem/usage""#);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let expected_time = jiff::Timestamp::from_millisecond(T as i64).unwrap().to_string();
    assert_eq!(row["time"], Json::from(expected_time));
    assert_eq!(row["labels"], "app:dns,tier:x y");
    assert_eq!(row["resource_id"], "Volume:my vol");
    assert_eq!(row["namespace_name"], "kube-system");
    assert_eq!(row["type"], "pod_container");
    assert_eq!(row["cluster_name"], "default");
    assert_eq!(row["value"], 5);

    let node_tags = names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "cpu/usage_rate""#);
    assert_eq!(node_tags, ["cluster_name", "nodename", "schedulable", "type"], "hostname is not a tag");
    assert_eq!(field_types(&influxd, "k8s", "memory/usage"), [("value".into(), "integer".into())]);
    assert_eq!(field_types(&influxd, "k8s", "memory/node_utilization"), [("value".into(), "float".into())]);
}

#[tokio::test]
async fn with_fields_groups_by_measurement_and_floats_round_trip() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=grouped&withfields=true&cluster_name=prod%20east");
    let mut batch = small_batch();
    // Forms ryu writes that must parse: exponents, negative zero, integral floats.
    let floats = [1e20, 1.5e-7, -0.0, 123.0];
    for (i, f) in floats.iter().enumerate() {
        batch.sets[0].labeled.push(custom(&format!("custom/f{i}"), Value::Float(*f)));
    }
    let report = sink.write(&batch).await.unwrap();
    assert_eq!(report.points_written, 4 + floats.len());

    assert_eq!(names(&influxd, "grouped", "SHOW MEASUREMENTS"), ["cpu", "custom", "filesystem", "memory"]);
    assert_eq!(
        field_types(&influxd, "grouped", "memory"),
        [("node_utilization".into(), "float".into()), ("usage".into(), "integer".into())]
    );
    let custom_rows = rows(&influxd, "grouped", r#"SELECT f0, f1, f2, f3, cluster_name FROM "custom""#);
    assert_eq!(custom_rows.len(), 1);
    for (i, f) in floats.iter().enumerate() {
        assert_eq!(custom_rows[0][&format!("f{i}")].as_f64(), Some(*f));
    }
    assert_eq!(custom_rows[0]["cluster_name"], "prod east");
}

#[tokio::test]
async fn creates_database_and_honours_retention() {
    let influxd = Influxd::start().unwrap();
    let policies = |influxd: &Influxd| -> Vec<(String, String, bool)> {
        rows(influxd, "", r#"SHOW RETENTION POLICIES ON "k8s""#)
            .into_iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().into(),
                    r["duration"].as_str().unwrap().into(),
                    r["default"] == true,
                )
            })
            .collect()
    };
    let mut sink = sink_for(&influxd.url(), "retention=48h");
    sink.start().await.unwrap();
    assert!(
        policies(&influxd).contains(&("default".into(), "48h0m0s".into(), true)),
        "{:?}",
        policies(&influxd)
    );

    // Another duration later: the policy is altered, not duplicated.
    let mut sink = sink_for(&influxd.url(), "retention=1w");
    // Points must be recent: older than the policy's duration, InfluxDB drops them.
    let mut batch = small_batch();
    batch.time = jiff::Timestamp::now().as_millisecond() as u64;
    let report = sink.write(&batch).await.unwrap();
    assert_eq!(report.points_written, 4);
    let now = policies(&influxd);
    assert!(now.contains(&("default".into(), "168h0m0s".into(), true)), "{now:?}");
    assert_eq!(now.iter().filter(|p| p.0 == "default").count(), 1);
    let count = rows(&influxd, "k8s", r#"SELECT count(value) FROM "default"."memory/usage""#);
    assert_eq!(count[0]["count"], 1, "points go to the default policy");

    // The database disappears under the sink: it is created again and the window written.
    influxd.query("", r#"DROP DATABASE "k8s""#).unwrap();
    let report = sink.write(&batch).await.unwrap();
    assert_eq!(report.points_written, 4);
    assert_eq!(report.requests, 4, "failed write, CREATE DATABASE, CREATE RETENTION POLICY, write again");
    assert_eq!(rows(&influxd, "k8s", r#"SELECT count(value) FROM "memory/usage""#)[0]["count"], 1);
}

#[tokio::test]
async fn partial_write_is_counted_and_the_rest_written() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    let mut first = MetricBatch { time: T, sets: vec![MetricSet::new(EntityKey::Cluster)] };
    first.sets[0].labeled.push(custom("custom/conflict", Value::Int(1)));
    sink.write(&first).await.unwrap();

    let mut second = small_batch();
    second.sets[1].labeled.push(custom("custom/conflict", Value::Float(1.5)));
    let report = sink.write(&second).await.unwrap();
    assert_eq!(
        report,
        WriteReport {
            points_written: 4,
            points_dropped: 1,
            points_skipped: 0,
            points_superseded: 0,
            requests: 1
        }
    );
    for m in ["cpu/usage_rate", "memory/usage", "filesystem/usage", "memory/node_utilization"] {
        let count = rows(&influxd, "k8s", &format!("SELECT count(value) FROM {}", quote_ident(m)));
        assert_eq!(count[0]["count"], 1, "{m}");
    }
    assert_eq!(field_types(&influxd, "k8s", "custom/conflict"), [("value".into(), "integer".into())]);
}

/// Pod labels of about 70 KiB as Heapster's `labels` tag: `k0:v0,k1:v1,...`.
fn huge_labels() -> String {
    (0..5_000).map(|i| format!("label-{i}:value-{i}")).collect::<Vec<_>>().join(",")
}

#[tokio::test]
async fn a_series_key_over_influxdbs_limit_is_shortened_not_refused() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    let mut batch = small_batch();
    let labels = huge_labels();
    assert!(labels.len() > 65_535);
    batch.sets[1].labels.set(LabelId::Labels, labels.as_str().into());
    let report = sink.write(&batch).await.unwrap();
    assert_eq!((report.points_written, report.points_dropped, report.points_skipped), (4, 0, 0));
    assert_eq!(sink.shortened(), 1);
    let rows = rows(&influxd, "k8s", r#"SELECT * FROM "memory/usage""#);
    assert_eq!(rows.len(), 1);
    let stored = rows[0]["labels"].as_str().unwrap();
    assert!(stored.len() < 65_535 && stored.len() > 55_000, "{}", stored.len());
    assert!(labels.starts_with(stored) && labels[stored.len()..].starts_with(','), "cut at a label");
}

#[test]
fn lines_influxdb_could_not_parse_are_counted_as_refused() {
    let influxd = Influxd::start().unwrap();
    influxd.query("", "CREATE DATABASE k8s").unwrap();
    let long = "x".repeat(70_000);
    let body = format!("m,a=b value=1 1\nm,l={long} value=2 1\nm,a=c value=3 1\nm,l=y{long} value=4 1\n");
    // One attempt, as the sink's queue makes it.
    let (_, mut deliver) = buffered(config_for(&influxd.url(), "db=k8s")).unwrap();
    let outcome = deliver.send(&[Chunk { body: Bytes::from(body), points: 4 }]);
    assert_eq!(outcome, [Sent::Written { refused: 2 }], "InfluxDB says dropped=0 for unparsable lines");
    assert_eq!(rows(&influxd, "k8s", "SELECT count(value) FROM m")[0]["count"], 2);
}

#[tokio::test]
async fn wrong_password_fails_with_influxdbs_message_without_retry() {
    let influxd = Influxd::start_with_auth("admin", "right-one").unwrap();
    let mut sink = sink_for(&influxd.url(), "user=admin&pw=hunter2");
    let err = sink.write(&small_batch()).await.unwrap_err();
    let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
    assert_eq!(
        report,
        &WriteReport {
            points_written: 0,
            points_dropped: 4,
            points_skipped: 0,
            points_superseded: 0,
            requests: 1
        }
    );
    assert!(
        matches!(&**cause, InfluxError::Server { status: 401, message, .. } if message == "authorization failed"),
        "{cause:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"));

    // A refused large write (the password changed after the database was set up) still
    // reports InfluxDB's answer, although InfluxDB answers before reading the body.
    for q in
        ["CREATE DATABASE k8s", "CREATE USER writer WITH PASSWORD 'before'", "GRANT ALL ON k8s TO writer"]
    {
        influxd.query("", q).unwrap();
    }
    let mut sink = sink_for(&influxd.url(), "user=writer&pw=before");
    sink.start().await.expect("a user without admin rights is told the database exists");
    influxd.query("", "SET PASSWORD FOR writer = 'after'").unwrap();
    let err = sink.write(&many_nodes(5_000)).await.unwrap_err();
    let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
    assert_eq!((report.points_dropped, report.requests), (25_000, 3), "{cause:?}");
    assert!(matches!(&**cause, InfluxError::Server { status: 401, .. }), "{cause:?}");

    let mut sink = sink_for(&influxd.url(), "user=admin&pw=right-one");
    assert_eq!(sink.write(&small_batch()).await.unwrap().points_written, 4);
}

/// `nodes` node sets of five integer metrics each.
fn many_nodes(nodes: i64) -> MetricBatch {
    let metrics = [
        MetricId::CpuUsageRate,
        MetricId::MemoryUsage,
        MetricId::MemoryRss,
        MetricId::MemoryCache,
        MetricId::MemoryWorkingSet,
    ];
    let sets = (0..nodes)
        .map(|i| {
            let node: heapster_dataflows::Name = format!("node-{i}").as_str().into();
            let mut set = MetricSet::new(EntityKey::Node { node: node.clone() });
            // Tags come from labels: without a distinct one, points would overwrite each other.
            set.labels.set(LabelId::Nodename, node);
            for (k, m) in metrics.iter().enumerate() {
                set.values.set(*m, Value::Int(i * 10 + k as i64));
            }
            set
        })
        .collect();
    MetricBatch { time: T, sets }
}

#[tokio::test]
async fn large_window_goes_in_chunks_of_ten_thousand() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=big&concurrency=2");
    sink.start().await.unwrap();
    let batch = many_nodes(5_000);
    assert_eq!(batch.point_count(), 25_000);
    let report = sink.write(&batch).await.unwrap();
    assert_eq!(
        report,
        WriteReport {
            points_written: 25_000,
            points_dropped: 0,
            points_skipped: 0,
            points_superseded: 0,
            requests: 3
        }
    );
    let json = influxd.query("big", "SELECT count(value) FROM /.*/").unwrap();
    let series = json["results"][0]["series"].as_array().unwrap();
    let total: i64 = series.iter().map(|s| s["values"][0][1].as_i64().unwrap()).sum();
    assert_eq!(series.len(), 5);
    assert_eq!(total, 25_000);
}

// Events, as the API server sends them.

/// 2019-08-30T20:43:05Z.
const LAST_MS: i64 = 1_567_197_785_000;

/// A kubelet event about a pod, with the API server's JSON as `raw`.
fn pulled(count: i64, last_ms: i64, message: &str) -> Event {
    let mut event = Event {
        uid: "c443d4b3-cb66-11e9-990f-42010a800218".into(),
        namespace: "default".into(),
        name: "hello-1567197780-mn4mv.15bfce150bd764dd".into(),
        involved: ObjectRef {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "hello-1567197780-mn4mv".into(),
            uid: "c31fdeb8-cb66-11e9-990f-42010a800218".into(),
        },
        reason: "Pulled".into(),
        message: message.to_string(),
        kind: "Normal".into(),
        source_component: "kubelet".into(),
        source_host: "gke-k9s-default-pool-0fa2fb89-qnkc".into(),
        first_timestamp: LAST_MS - 60_000,
        last_timestamp: last_ms,
        count,
        resource_version: format!("5907{count}").as_str().into(),
        raw: String::new(),
    };
    event.raw = raw_of(&event);
    event
}

/// What the API server sends for `event`: compact core `v1` JSON with fields the model
/// does not keep.
fn raw_of(event: &Event) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap();
    let time = |ms: i64| s(&jiff::Timestamp::from_millisecond(ms).unwrap().to_string());
    let (involved, first) = (&event.involved, time(event.first_timestamp));
    format!(
        r#"{{"metadata":{{"name":{},"namespace":{},"uid":{},"resourceVersion":{},"creationTimestamp":{first}}},"#,
        s(&event.name),
        s(&event.namespace),
        s(&event.uid),
        s(&event.resource_version),
    ) + &format!(
        r#""involvedObject":{{"kind":{},"namespace":{},"name":{},"uid":{},"apiVersion":"v1","fieldPath":"spec.containers{{c1}}"}},"#,
        s(&involved.kind),
        s(&involved.namespace),
        s(&involved.name),
        s(&involved.uid),
    ) + &format!(
        r#""reason":{},"message":{},"source":{{"component":{},"host":{}}},"firstTimestamp":{first},"lastTimestamp":{},"count":{},"type":{},"eventTime":null,"series":{{}},"related":[]}}"#,
        s(&event.reason),
        s(&event.message),
        s(&event.source_component),
        s(&event.source_host),
        time(event.last_timestamp),
        event.count,
        s(&event.kind),
    )
}

/// A controller event about a service: no host, not a pod.
fn service_event() -> Event {
    Event {
        uid: "d341d3aa".into(),
        namespace: "default".into(),
        name: "all-hello.14b2c5d6e72d8d72".into(),
        involved: ObjectRef {
            kind: "Service".into(),
            namespace: "default".into(),
            name: "all-hello".into(),
            uid: "94813607".into(),
        },
        reason: "CreatingLoadBalancer".into(),
        message: "Creating load balancer".into(),
        kind: "Normal".into(),
        source_component: "service-controller".into(),
        source_host: "".into(),
        first_timestamp: 1_491_471_953_000,
        last_timestamp: 1_491_471_953_000,
        count: 1,
        resource_version: "2709".into(),
        raw: String::new(),
    }
}

mod events {
    use heapster_dataflows::Event;
    use serde_json::Value as Json;

    use super::*;

    const MESSAGE: &str = "Back-off pulling image \"reg/app:1\"\nC:\\data\r\n\ttab é";

    fn rfc3339(ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    fn count(influxd: &Influxd, db: &str, measurement: &str, field: &str) -> i64 {
        let q = format!("SELECT count({field}) FROM {}", quote_ident(measurement));
        rows(influxd, db, &q).first().map_or(0, |r| r["count"].as_i64().unwrap())
    }

    /// The `log/events` rows, with the JSON value parsed.
    fn log_events(influxd: &Influxd) -> Vec<(serde_json::Map<String, Json>, Json)> {
        rows(influxd, "k8s", r#"SELECT * FROM "log/events""#)
            .into_iter()
            .map(|row| {
                let value = serde_json::from_str(row["value"].as_str().unwrap()).unwrap();
                (row, value)
            })
            .collect()
    }

    fn with_count(mut event: Event, count: i64, last_ms: i64) -> Event {
        event.count = count;
        event.last_timestamp = last_ms;
        event.raw = raw_of(&event);
        event
    }

    #[tokio::test]
    async fn heapsters_schema_reads_back_and_a_resent_state_overwrites() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s&cluster_name=east");
        let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
        let report = sink.write_events(&events).await.unwrap();
        assert_eq!(
            report,
            WriteReport { points_written: 2, requests: 2, ..WriteReport::default() },
            "one CREATE DATABASE and one write"
        );

        assert_eq!(names(&influxd, "k8s", "SHOW MEASUREMENTS"), ["log/events"]);
        assert_eq!(
            names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "log/events""#),
            ["cluster_name", "hostname", "pod_id", "pod_name", "uid"]
        );
        assert_eq!(field_types(&influxd, "k8s", "log/events"), [("value".into(), "string".into())]);

        let rows = log_events(&influxd);
        assert_eq!(rows.len(), 2);
        // Ordered by time: the service event is older.
        let (service_row, service_json) = &rows[0];
        let service = &events[1];
        assert_eq!(service_row["time"], Json::from(rfc3339(service.last_timestamp)));
        assert_eq!(service_row["uid"], service.uid.as_str());
        assert_eq!((&service_row["pod_id"], &service_row["hostname"]), (&Json::Null, &Json::Null));
        assert_eq!(service_json["involvedObject"]["kind"], "Service");
        assert_eq!(service_json["message"], service.message);

        let (pod_row, pod_json) = &rows[1];
        let pod = &events[0];
        assert_eq!(pod_row["time"], Json::from(rfc3339(LAST_MS)));
        assert_eq!(pod_row["uid"], pod.uid.as_str());
        assert_eq!(pod_row["pod_id"], pod.involved.uid.as_str());
        assert_eq!(pod_row["pod_name"], pod.involved.name.as_str());
        assert_eq!(pod_row["hostname"], pod.source_host.as_str());
        assert_eq!(pod_row["cluster_name"], "east");
        assert_eq!(pod_json["metadata"]["uid"], pod.uid.as_str());
        assert_eq!(pod_json["metadata"]["namespace"], pod.namespace.as_str());
        assert_eq!(pod_json["involvedObject"]["name"], pod.involved.name.as_str());
        assert_eq!(pod_json["reason"], pod.reason.as_str());
        assert_eq!(pod_json["message"], MESSAGE);
        assert_eq!(pod_json["type"], pod.kind.as_str());
        assert_eq!(pod_json["count"], pod.count);
        assert_eq!(pod_json["lastTimestamp"], Json::from(rfc3339(LAST_MS)));
        assert_eq!(pod_json["source"]["component"], pod.source_component.as_str());

        // After a restart the same states come again: nothing is added, nothing changes.
        let mut restarted = sink_for(&influxd.url(), "db=k8s&cluster_name=east");
        assert_eq!(restarted.write_events(&events).await.unwrap().points_written, 2);
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 2);
        assert_eq!(log_events(&influxd), rows);

        // The event repeats later: a second point for it.
        let repeated = with_count(events[0].clone(), 2, LAST_MS + 30_000);
        sink.write_events(std::slice::from_ref(&repeated)).await.unwrap();
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 3);
        let counts: Vec<i64> = log_events(&influxd)
            .iter()
            .filter(|(row, _)| row["uid"] == pod.uid.as_str())
            .map(|(_, json)| json["count"].as_i64().unwrap())
            .collect();
        assert_eq!(counts, [1, 2]);
    }

    #[tokio::test]
    async fn repeats_within_one_second_keep_the_newest_count() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let first = pulled(1, LAST_MS, "m");
        let second = with_count(first.clone(), 2, LAST_MS);
        let third = with_count(first.clone(), 3, LAST_MS);

        // In separate batches: the later write overwrites the earlier point.
        sink.write_events(std::slice::from_ref(&first)).await.unwrap();
        sink.write_events(std::slice::from_ref(&second)).await.unwrap();
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
        assert_eq!(log_events(&influxd)[0].1["count"], 2);

        // In one batch, out of order: the highest count is what is sent.
        let report = sink.write_events(&[third, second]).await.unwrap();
        assert_eq!((report.points_written, report.points_superseded), (1, 1));
        let rows = log_events(&influxd);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1["count"], 3);
        assert_eq!(rows[0].0["time"], Json::from(rfc3339(LAST_MS)));
    }

    #[tokio::test]
    async fn with_fields_schema_reads_back() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s&withfields=true");
        let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
        assert_eq!(sink.write_events(&events).await.unwrap().points_written, 2);
        assert_eq!(sink.write_events(&events).await.unwrap().points_written, 2);

        assert_eq!(names(&influxd, "k8s", "SHOW MEASUREMENTS"), ["events"]);
        assert_eq!(
            names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "events""#),
            [
                "cluster_name",
                "component",
                "hostname",
                "kind",
                "namespace_name",
                "object_name",
                "pod_id",
                "reason",
                "type",
                "uid"
            ]
        );
        assert_eq!(field_types(&influxd, "k8s", "events"), [("message".into(), "string".into())]);
        let rows = rows(&influxd, "k8s", r#"SELECT * FROM "events""#);
        assert_eq!(rows.len(), 2, "sent twice, stored once");
        let (service, pod) = (&rows[0], &rows[1]);
        assert_eq!(pod["message"], MESSAGE);
        assert_eq!(pod["time"], Json::from(rfc3339(LAST_MS)));
        let pod_event = &events[0];
        for (tag, want) in [
            ("cluster_name", "default"),
            ("component", pod_event.source_component.as_str()),
            ("hostname", pod_event.source_host.as_str()),
            ("kind", "Pod"),
            ("namespace_name", pod_event.namespace.as_str()),
            ("object_name", pod_event.involved.name.as_str()),
            ("pod_id", pod_event.involved.uid.as_str()),
            ("reason", pod_event.reason.as_str()),
            ("type", pod_event.kind.as_str()),
            ("uid", pod_event.uid.as_str()),
        ] {
            assert_eq!(pod[tag], want, "{tag}");
        }
        assert_eq!((&service["kind"], &service["pod_id"]), (&Json::from("Service"), &Json::Null));
    }

    /// A message of 40 KiB mixing every character line protocol treats specially.
    fn long_message(seed: usize) -> String {
        let unit = format!("line {seed} \"quoted\" back\\slash, a=b é\n");
        let mut message = unit.repeat((40 * 1024 - 1) / unit.len());
        message.extend(std::iter::repeat_n('x', 40 * 1024 - 1 - message.len()));
        message + "\\"
    }

    #[tokio::test]
    async fn large_messages_round_trip_in_chunks_of_bounded_size() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let events: Vec<Event> = (0..130)
            .map(|i| {
                let mut event = pulled(1, LAST_MS + i * 1_000, &long_message(i as usize));
                event.uid = format!("uid-{i}").as_str().into();
                event.raw = raw_of(&event);
                event
            })
            .collect();
        // The requests the byte bound makes: a chunk closes once it holds the bound.
        let encoder = EventEncoder::new(false, "default");
        let mut chunks = 0;
        let mut bytes = 0;
        for event in &events {
            if bytes == 0 || bytes >= MAX_EVENT_BYTES_PER_WRITE {
                chunks += 1;
                bytes = 0;
            }
            let mut line = Vec::new();
            encoder.encode(event, &mut line).unwrap();
            bytes += line.len();
        }
        assert!(chunks > 1);

        let report = sink.write_events(&events).await.unwrap();
        assert_eq!(report, WriteReport { points_written: 130, requests: 1 + chunks, ..Default::default() });
        let rows = log_events(&influxd);
        assert_eq!(rows.len(), 130);
        for ((row, json), event) in rows.iter().zip(&events) {
            assert_eq!(row["uid"], event.uid.as_str());
            assert_eq!(json["message"], event.message);
        }
        assert_eq!(events[0].message.len(), 40 * 1024);
    }

    #[tokio::test]
    async fn events_without_a_time_are_skipped_and_counted() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let mut timeless = service_event();
        timeless.last_timestamp = 0;
        timeless.first_timestamp = 0;
        let report = sink.write_events(&[timeless.clone()]).await.unwrap();
        assert_eq!(report, WriteReport { points_skipped: 1, ..Default::default() }, "no request at all");

        let report = sink.write_events(&[timeless, pulled(1, LAST_MS, "m")]).await.unwrap();
        assert_eq!(
            report,
            WriteReport { points_written: 1, points_skipped: 1, requests: 2, ..Default::default() }
        );
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
    }
}
