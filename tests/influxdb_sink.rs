//! The InfluxDB sink against a real `influxd` on loopback, through the two halves the queue runs
//! (`buffered`): Heapster's schema read back, database and retention set-up, partial writes, large windows in chunks,
//! credentials, and the event schema.

use bytes::Bytes;
use heapster::batch::MetricBatch;
use heapster::sinks::influxdb::{
    EventEncoder, InfluxConfig, InfluxDeliver, InfluxEncode, MAX_EVENT_BYTES_PER_WRITE, buffered,
};
use heapster::sinks::queue::{Chunk, Deliver, Encode, Encoded, Sent};
use heapster_dataflows::catalog::Kind;
use heapster_dataflows::model::{EventText, LabeledMetric, LabeledValue, ObjectRef, Resource};
use heapster_dataflows::{EntityKey, Event, LabelId, LabeledMetricId, MetricId, MetricSet, Value};
use heapster_testbed::testkit::influxd::Influxd;
use serde_json::Value as Json;

const T: u64 = 1_700_000_000_000;

fn config_for(url: &str, options: &str) -> InfluxConfig {
    InfluxConfig::from_uri(&format!("influxdb:{url}?{options}")).unwrap()
}

fn sink_for(url: &str, options: &str) -> Halves {
    let (encode, deliver) = buffered(config_for(url, options)).unwrap();
    Halves { encode, deliver }
}

/// The sink's halves run as the queue runs them: a batch is encoded once, its chunks sent
/// `parallel()` at a time, and a chunk left to retry sent again (here at most three times).
struct Halves {
    encode: InfluxEncode,
    deliver: InfluxDeliver,
}

/// What became of one window or event batch.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Points InfluxDB stored.
    written: u64,
    /// Points InfluxDB refused: in partial writes, or in chunks refused for good.
    refused: u64,
    /// Points never sent (see [`Encoded::skipped`]).
    skipped: u64,
    /// Entities whose `labels` tag was shortened.
    shortened: u64,
    /// Chunks (`/write` requests on a first attempt).
    chunks: usize,
    /// Why chunks were refused for good.
    refusals: Vec<String>,
    /// Why chunks were left to retry, one entry per attempt.
    retries: Vec<String>,
    /// Points still not written after the last retry.
    unsent: u64,
}

impl Outcome {
    fn written(written: u64, chunks: usize) -> Outcome {
        Outcome { written, chunks, ..Outcome::default() }
    }
}

impl Halves {
    /// Sets up the database and retention policy, as the first send does.
    fn start(&mut self) {
        assert_eq!(self.deliver.send(&[]), []);
    }

    fn write(&mut self, batch: &MetricBatch) -> Outcome {
        let mut chunks = Vec::new();
        let encoded = self.encode.metrics(batch.into(), &mut |c| chunks.push(c));
        self.send(chunks, encoded)
    }

    fn write_events(&mut self, events: &[Event]) -> Outcome {
        let mut chunks = Vec::new();
        let encoded = self.encode.events(events, &mut |c| chunks.push(c));
        self.send(chunks, encoded)
    }

    fn send(&mut self, chunks: Vec<Chunk>, encoded: Encoded) -> Outcome {
        let mut out = Outcome {
            skipped: encoded.skipped,
            shortened: encoded.shortened,
            chunks: chunks.len(),
            ..Outcome::default()
        };
        for group in chunks.chunks(self.deliver.parallel().max(1)) {
            let mut pending = group.to_vec();
            for _ in 0..3 {
                if pending.is_empty() {
                    break;
                }
                let sent = self.deliver.send(&pending);
                assert_eq!(sent.len(), pending.len(), "one outcome per chunk");
                let mut again = Vec::new();
                for (chunk, sent) in pending.into_iter().zip(sent) {
                    match sent {
                        Sent::Written { refused } => {
                            out.written += chunk.points - refused;
                            out.refused += refused;
                        }
                        Sent::Refused(why) => {
                            out.refused += chunk.points;
                            out.refusals.push(why);
                        }
                        Sent::Retry(why) => {
                            out.retries.push(why);
                            again.push(chunk);
                        }
                    }
                }
                pending = again;
            }
            out.unsent += pending.iter().map(|c| c.points).sum::<u64>();
        }
        out
    }
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

#[test]
fn writes_heapsters_schema_and_reads_back() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    assert_eq!(sink.write(&small_batch()), Outcome::written(4, 1), "one write, taken at once");

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

#[test]
fn with_fields_groups_by_measurement_and_floats_round_trip() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=grouped&withfields=true&cluster_name=prod%20east");
    let mut batch = small_batch();
    // Forms ryu writes that must parse: exponents, negative zero, integral floats.
    let floats = [1e20, 1.5e-7, -0.0, 123.0];
    for (i, f) in floats.iter().enumerate() {
        batch.sets[0].labeled.push(custom(&format!("custom/f{i}"), Value::Float(*f)));
    }
    assert_eq!(sink.write(&batch), Outcome::written(4 + floats.len() as u64, 1));

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

#[test]
fn creates_database_and_honours_retention() {
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
    sink.start();
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
    assert_eq!(sink.write(&batch), Outcome::written(4, 1));
    let now = policies(&influxd);
    assert!(now.contains(&("default".into(), "168h0m0s".into(), true)), "{now:?}");
    assert_eq!(now.iter().filter(|p| p.0 == "default").count(), 1);
    let count = rows(&influxd, "k8s", r#"SELECT count(value) FROM "default"."memory/usage""#);
    assert_eq!(count[0]["count"], 1, "points go to the default policy");

    // The database disappears under the sink: it is created again and the window written.
    influxd.query("", r#"DROP DATABASE "k8s""#).unwrap();
    let outcome = sink.write(&batch);
    assert_eq!(outcome.written, 4, "{outcome:?}");
    assert!(
        matches!(&outcome.retries[..], [why] if why.contains("database not found")),
        "the failed write goes back to the queue, and the next attempt sets the database up: {outcome:?}"
    );
    assert_eq!(rows(&influxd, "k8s", r#"SELECT count(value) FROM "memory/usage""#)[0]["count"], 1);
}

#[test]
fn partial_write_is_counted_and_the_rest_written() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    let mut first = MetricBatch { time: T, sets: vec![MetricSet::new(EntityKey::Cluster)] };
    first.sets[0].labeled.push(custom("custom/conflict", Value::Int(1)));
    assert_eq!(sink.write(&first), Outcome::written(1, 1));

    let mut second = small_batch();
    second.sets[1].labeled.push(custom("custom/conflict", Value::Float(1.5)));
    assert_eq!(sink.write(&second), Outcome { refused: 1, ..Outcome::written(4, 1) });
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

#[test]
fn a_series_key_over_influxdbs_limit_is_shortened_not_refused() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=k8s");
    let mut batch = small_batch();
    let labels = huge_labels();
    assert!(labels.len() > 65_535);
    batch.sets[1].labels.set(LabelId::Labels, labels.as_str().into());
    assert_eq!(sink.write(&batch), Outcome { shortened: 1, ..Outcome::written(4, 1) });
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

#[test]
fn wrong_password_fails_with_influxdbs_message_without_retry() {
    let influxd = Influxd::start_with_auth("admin", "right-one").unwrap();
    let mut sink = sink_for(&influxd.url(), "user=admin&pw=hunter2");
    let outcome = sink.write(&small_batch());
    assert_eq!(
        (outcome.written, outcome.refused, outcome.unsent, &outcome.retries[..]),
        (0, 4, 0, &[][..]),
        "refused for good, not retried: {outcome:?}"
    );
    assert_eq!(
        outcome.refusals,
        [r#"InfluxDB answered 401 to CREATE DATABASE "k8s": authorization failed"#],
        "InfluxDB's own message"
    );
    assert!(!format!("{outcome:?}").contains("hunter2"));

    // A refused large write (the password changed after the database was set up) still
    // reports InfluxDB's answer, although InfluxDB answers before reading the body.
    for q in
        ["CREATE DATABASE k8s", "CREATE USER writer WITH PASSWORD 'before'", "GRANT ALL ON k8s TO writer"]
    {
        influxd.query("", q).unwrap();
    }
    let mut sink = sink_for(&influxd.url(), "user=writer&pw=before");
    assert_eq!(
        sink.write(&small_batch()),
        Outcome::written(4, 1),
        "a user without admin rights is told the database exists"
    );
    influxd.query("", "SET PASSWORD FOR writer = 'after'").unwrap();
    let outcome = sink.write(&many_nodes(5_000));
    assert_eq!((outcome.written, outcome.refused, outcome.chunks), (0, 25_000, 3), "{outcome:?}");
    assert_eq!(outcome.refusals, ["InfluxDB answered 401: authorization failed"; 3]);

    let mut sink = sink_for(&influxd.url(), "user=admin&pw=right-one");
    assert_eq!(sink.write(&small_batch()), Outcome::written(4, 1));
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

#[test]
fn large_window_goes_in_chunks_of_ten_thousand() {
    let influxd = Influxd::start().unwrap();
    let mut sink = sink_for(&influxd.url(), "db=big&concurrency=2");
    sink.start();
    let batch = many_nodes(5_000);
    assert_eq!(batch.point_count(), 25_000);
    assert_eq!(sink.deliver.parallel(), 2);
    assert_eq!(sink.write(&batch), Outcome::written(25_000, 3));
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
fn raw_of(event: &Event) -> String {
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
fn service_event() -> Event {
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
        event.text = event.text.with_raw(raw_of(&event));
        event
    }

    #[test]
    fn heapsters_schema_reads_back_and_a_resent_state_overwrites() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s&cluster_name=east");
        let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
        assert_eq!(sink.write_events(&events), Outcome::written(2, 1), "one write, taken at once");

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
        assert_eq!(service_json["message"], service.message());

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
        assert_eq!(restarted.write_events(&events), Outcome::written(2, 1));
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 2);
        assert_eq!(log_events(&influxd), rows);

        // The event repeats later: a second point for it.
        let repeated = with_count(events[0].clone(), 2, LAST_MS + 30_000);
        assert_eq!(sink.write_events(std::slice::from_ref(&repeated)), Outcome::written(1, 1));
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 3);
        let counts: Vec<i64> = log_events(&influxd)
            .iter()
            .filter(|(row, _)| row["uid"] == pod.uid.as_str())
            .map(|(_, json)| json["count"].as_i64().unwrap())
            .collect();
        assert_eq!(counts, [1, 2]);
    }

    #[test]
    fn repeats_within_one_second_keep_the_newest_count() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let first = pulled(1, LAST_MS, "m");
        let second = with_count(first.clone(), 2, LAST_MS);
        let third = with_count(first.clone(), 3, LAST_MS);

        // In separate batches: the later write overwrites the earlier point.
        assert_eq!(sink.write_events(std::slice::from_ref(&first)), Outcome::written(1, 1));
        assert_eq!(sink.write_events(std::slice::from_ref(&second)), Outcome::written(1, 1));
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
        assert_eq!(log_events(&influxd)[0].1["count"], 2);

        // In one batch, out of order: the highest count is what is sent.
        // Two states, one point: the other is superseded, neither sent nor counted as skipped.
        assert_eq!(sink.write_events(&[third, second]), Outcome::written(1, 1));
        let rows = log_events(&influxd);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1["count"], 3);
        assert_eq!(rows[0].0["time"], Json::from(rfc3339(LAST_MS)));
    }

    #[test]
    fn with_fields_schema_reads_back() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s&withfields=true");
        let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
        assert_eq!(sink.write_events(&events), Outcome::written(2, 1));
        assert_eq!(sink.write_events(&events), Outcome::written(2, 1));

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

    #[test]
    fn large_messages_round_trip_in_chunks_of_bounded_size() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let events: Vec<Event> = (0..130)
            .map(|i| {
                let mut event = pulled(1, LAST_MS + i * 1_000, &long_message(i as usize));
                event.uid = format!("uid-{i}").as_str().into();
                event.text = event.text.with_raw(raw_of(&event));
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

        assert_eq!(sink.write_events(&events), Outcome::written(130, chunks));
        let rows = log_events(&influxd);
        assert_eq!(rows.len(), 130);
        for ((row, json), event) in rows.iter().zip(&events) {
            assert_eq!(row["uid"], event.uid.as_str());
            assert_eq!(json["message"], event.message());
        }
        assert_eq!(events[0].message().len(), 40 * 1024);
    }

    #[test]
    fn events_without_a_time_are_skipped_and_counted() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let mut timeless = service_event();
        timeless.last_timestamp = 0;
        timeless.first_timestamp = 0;
        assert_eq!(
            sink.write_events(&[timeless.clone()]),
            Outcome { skipped: 1, ..Outcome::default() },
            "no request at all"
        );

        assert_eq!(
            sink.write_events(&[timeless, pulled(1, LAST_MS, "m")]),
            Outcome { skipped: 1, ..Outcome::written(1, 1) }
        );
        assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
    }
}
