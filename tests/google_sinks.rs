//! The Google Cloud sinks end to end: the heapster binary writing to the fixture server's
//! emulation of Google (metadata server, token endpoint, Cloud Monitoring, Cloud Logging), which
//! checks every request against Google's API descriptions and limits.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::FixtureServer;
use heapster_testbed::fixture_server::google::{Burst, GoogleConfig, GoogleFaults, GoogleServer};
use support::*;

const PATIENCE: Duration = Duration::from_secs(90);

/// The emulation on its own runtime, so the test's blocking calls do not stall it.
struct Google {
    server: GoogleServer,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Google {
    fn start() -> Google {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let dir = tempfile::tempdir().expect("tempdir");
        let server = runtime
            .block_on(GoogleServer::start(GoogleConfig::new(dir.path().join("keys"))))
            .expect("google");
        Google { server, runtime, dir }
    }

    /// `--sink=<scheme>?...` authenticating with the issued key file.
    fn sink_with_key(&self, scheme: &str, extra: &str) -> String {
        format!(
            "--sink={scheme}?endpoint={}&credentials={}{extra}",
            self.server.url(),
            self.server.key_file().display()
        )
    }

    /// `--sink=<scheme>?...` authenticating through the metadata server.
    fn sink_with_metadata(&self, scheme: &str, extra: &str) -> String {
        format!(
            "--sink={scheme}?endpoint={}&metadata_host={}{extra}",
            self.server.url(),
            self.server.metadata_host()
        )
    }

    fn assert_every_request_well_formed(&self) {
        let stats = self.server.stats();
        assert_eq!(stats.shape_rejections, 0, "requests refused for their shape: {:?}", stats.shape_errors);
        assert_eq!(stats.series_invalid, 0, "series refused for their shape: {:?}", stats.shape_errors);
    }
}

/// Equal maps, or a panic listing only the differences.
fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    context: &str,
) {
    let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(k) != Some(v)).take(10).collect();
    let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(k)).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected, {} got; missing or different: {missing:?}; unexpected: {extra:?}\n{context}",
        want.len(),
        got.len()
    );
}

/// What Cloud Logging holds: (insertId, timestamp in ms) -> the event's count; every entry
/// checked against the event it carries.
fn stored_entries(google: &GoogleServer) -> BTreeMap<(String, i64), i64> {
    let mut stored = BTreeMap::new();
    for entry in google.entries() {
        let uid = entry["insertId"].as_str().expect("insertId").to_string();
        let payload = &entry["jsonPayload"];
        assert_eq!(payload["metadata"]["uid"].as_str(), Some(uid.as_str()), "{entry}");
        assert_eq!(entry["logName"], format!("projects/{}/logs/kubernetes.io%2Fevents", google.project()));
        let severity = if payload["type"] == "Warning" { "WARNING" } else { "INFO" };
        assert_eq!(entry["severity"], severity, "{entry}");
        let resource = entry["resource"]["type"].as_str().expect("resource");
        match payload["involvedObject"]["kind"].as_str() {
            Some("Pod") => assert_eq!(resource, "k8s_pod"),
            Some("Node") => assert_eq!(resource, "k8s_node"),
            _ => assert_eq!(resource, "k8s_cluster"),
        }
        let ms = rfc3339_ns(&entry["timestamp"]) / 1_000_000;
        let previous = stored.insert((uid, ms), payload["count"].as_i64().unwrap_or(1));
        assert!(previous.is_none(), "two entries for one event state: {entry}");
    }
    stored
}

#[test]
fn gcl_replay_writes_each_event_state_once_as_influxdb_does() {
    let google = Google::start();
    let scenario = events_scenario();
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &google.sink_with_key("gcl", ""),
        "--event_ttl=3650d",
    ]);
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");
    let expected = expected_event_points(&scenario);
    assert!(expected.len() > 10, "the scenario has events");
    assert_same(&stored_entries(&google.server), &expected, &log);
    google.assert_every_request_well_formed();
    assert_eq!(google.server.stats().duplicate_entries, 0, "nothing sent twice");
    assert_eq!(logged_count(&log, "dropped_events"), 0, "{log}");
}

#[test]
fn gcl_rides_out_429_503_and_token_expiry_and_counts_refused_entries() {
    let google = Google::start();
    let scenario = events_scenario();
    let expected = expected_event_points(&scenario);
    // Entries of one event are refused for good; everything else must arrive.
    let (refused_uid, _) = expected.keys().next().expect("an event").clone();
    let refused = expected.keys().filter(|(uid, _)| *uid == refused_uid).count();
    google.server.set_faults(GoogleFaults {
        bursts: vec![
            Burst { api: "logging".into(), status: 429, count: 2, retry_after_s: Some(1) },
            Burst { api: "logging".into(), status: 503, count: 2, retry_after_s: None },
            Burst { api: "metadata".into(), status: 503, count: 1, retry_after_s: None },
        ],
        reject_insert_id_prefix: Some(refused_uid.clone()),
        expire_tokens_after: 3,
        ..GoogleFaults::default()
    });
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &google.sink_with_metadata("gcl", ""),
        "--event_ttl=3650d",
    ]);
    let log = stderr(&run);
    let stats = google.server.stats();
    assert_eq!(stats.faults_served, 4 + 1, "{stats:?}");
    assert!(
        stats.unauthenticated > 0 && stats.token_grants > 1,
        "tokens expired and were renewed: {stats:?}"
    );
    let mut wanted = expected.clone();
    wanted.retain(|(uid, _), _| *uid != refused_uid);
    assert_same(&stored_entries(&google.server), &wanted, &log);
    assert_eq!(stats.entries_refused, refused as u64);
    assert_eq!(logged_count(&log, "dropped_events"), refused as u64, "{log}");
    assert!(log.contains("Cloud Logging refused"), "{log}");
    google.assert_every_request_well_formed();
    // A refused entry is the backend's verdict, not a failure of the run.
    assert!(run.status.success(), "{log}");
}

#[test]
fn bad_credentials_and_a_missing_metadata_server_stop_the_start_with_exit_2() {
    let google = Google::start();
    let source = format!("--source=replay:{}", small().display());
    let missing = google.dir.path().join("missing.json");
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!(
                "--sink=gcl?endpoint={}&credentials={}",
                google.server.url(),
                google.server.wrong_key_file().display()
            ),
            vec!["wrong-key.json".into(), "Invalid JWT Signature".into()],
        ),
        (
            format!("--sink=gcl?endpoint={}&credentials={}", google.server.url(), missing.display()),
            vec!["missing.json".into(), "cannot read".into()],
        ),
        (
            // Nothing listens on port 1.
            format!("--sink=gcl?endpoint={}&metadata_host=127.0.0.1:1", google.server.url()),
            vec!["metadata server 127.0.0.1:1".into(), "GOOGLE_APPLICATION_CREDENTIALS".into()],
        ),
    ];
    for (sink, needles) in cases {
        let run = heapster(&[&source, &sink]);
        let log = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{sink}: {log}");
        for needle in needles {
            assert!(log.contains(&needle), "{sink}: {needle:?} missing in: {log}");
        }
        assert!(!log.contains("ya29."), "a token in the log: {log}");
    }
    assert_eq!(google.server.stats().entries_written, 0);
}

/// Each fixture window lasts this long; the events scenario has 8.
const WINDOW: Duration = Duration::from_secs(2);

fn start_live(server: &FixtureServer, sink: &str, state_dir: &Path, dir: &Path, name: &str) -> Collector {
    Collector::start(
        dir,
        name,
        &[
            events_source(server),
            sink.to_string(),
            "--metric_resolution=5s".to_string(),
            "--event_ttl=3650d".to_string(),
            format!("--state_dir={}", state_dir.display()),
        ],
    )
}

#[test]
fn gcl_sigkill_and_restart_write_no_entry_twice_and_miss_none() {
    let google = Google::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server =
        google.runtime.block_on(serve(&events_scenario(), tmp.path(), |c| c.advance_every = Some(WINDOW)));
    let sink = google.sink_with_key("gcl", "");
    let state = tmp.path().join("state");
    let mut first = start_live(&server, &sink, &state, tmp.path(), "first");
    let started = Instant::now();
    while server.window() < 3 || !state.join("state.bin").is_file() {
        assert!(started.elapsed() < PATIENCE, "no checkpoint before window 3");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill();
    let before_restart = google.server.entries().len();

    let second = start_live(&server, &sink, &state, tmp.path(), "second");
    let expected = expected_event_points(&events_scenario());
    while started.elapsed() < PATIENCE
        && (server.window() + 1 < server.windows() || google.server.entries().len() < expected.len())
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = second.stop();
    assert!(log.contains("event checkpoint loaded"), "{log}");
    assert!(before_restart > 0, "the first run wrote entries before it was killed");
    // No state stored twice (stored_entries asserts it) and none missing.
    assert_same(&stored_entries(&google.server), &expected, &log);
    assert!(logged_count(&log, "events_exported") < expected.len() as u64, "the restart resumed: {log}");
    google.assert_every_request_well_formed();
    drop(server);
}

/// One point's identity as both backends can name it: (window in ns, metric, type,
/// namespace, pod, container, node for node-level sets, resource id, accelerator id).
type PointKey = (i64, String, String, String, String, String, String, String, String);

/// Splits at `sep` where it is not escaped with a backslash; unescapes the parts.
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    parts.last_mut().expect("part").push(next);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().expect("part").push(c),
        }
    }
    parts
}

fn point_key(time_ns: i64, metric: &str, labels: &BTreeMap<String, String>, node: &str) -> PointKey {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let ty = get("type");
    let node = if ty == "node" || ty == "sys_container" { node.to_string() } else { String::new() };
    (
        time_ns,
        metric.to_string(),
        ty,
        get("namespace_name"),
        get("pod_name"),
        get("container_name"),
        node,
        get("resource_id"),
        get("accelerator_id"),
    )
}

/// The file sink's points: key -> value as f64 (integers are exact at these sizes).
fn file_points(path: &Path) -> BTreeMap<PointKey, f64> {
    let text = std::fs::read_to_string(path).expect("file sink output");
    let mut points = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // measurement,tags field=value time: tag values may hold escaped spaces.
        let fields = split_unescaped(line, ' ');
        assert_eq!(fields.len(), 3, "{line}");
        let head = {
            // Re-split the head on unescaped commas: take it raw from the line.
            let raw_head_len = line.len() - fields[1].len() - fields[2].len() - 2;
            split_unescaped(&line[..raw_head_len], ',')
        };
        let labels: BTreeMap<String, String> = head[1..]
            .iter()
            .map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).expect("tag"))
            .collect();
        let value = fields[1].strip_prefix("value=").expect("value field").trim_end_matches('i');
        let time: i64 = fields[2].parse().expect("time");
        let node = labels.get("nodename").cloned().unwrap_or_default();
        let key = point_key(time, &head[0], &labels, &node);
        let previous = points.insert(key.clone(), value.parse::<f64>().expect("number"));
        assert!(previous.is_none(), "two file points for {key:?}");
    }
    points
}

/// What Cloud Monitoring holds, in the same terms; checks each series' points are in order.
fn gcm_points(google: &GoogleServer) -> BTreeMap<PointKey, f64> {
    let mut points = BTreeMap::new();
    for series in google.series() {
        let metric = series.metric_type.strip_prefix("custom.googleapis.com/kubernetes.io/").expect("prefix");
        let mut labels = series.metric_labels.clone();
        for (k, v) in &series.resource_labels {
            if k != "node_name" {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if series.resource_type == "k8s_node" && !labels.contains_key("type") {
            // metrics=autoscaling sends node series without Heapster's type label.
            labels.insert("type".into(), "node".into());
        }
        let node = series.resource_labels.get("node_name").cloned().unwrap_or_default();
        let mut last = i64::MIN;
        for point in &series.points {
            let end = rfc3339_ns(&point["interval"]["endTime"]);
            assert!(end > last, "points in order: {series:?}");
            last = end;
            let value = match &point["value"] {
                v if v.get("int64Value").is_some() => {
                    v["int64Value"].as_str().expect("int64 string").parse::<f64>().expect("int")
                }
                v => v["doubleValue"].as_f64().expect("double"),
            };
            let key = point_key(end, metric, &labels, &node);
            let previous = points.insert(key.clone(), value);
            assert!(previous.is_none(), "two Cloud Monitoring points for {key:?}");
        }
    }
    points
}

/// Replays `scenario` into the file sink at `out` and `sink`; returns the run and its log.
fn replay_into_gcm(scenario: &Path, sink: &str, out: &Path) -> (std::process::Output, String) {
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", out.display()),
        sink,
    ]);
    let log = strip_ansi(&stderr(&run));
    (run, log)
}

#[test]
fn gcm_replay_holds_every_point_the_influxdb_schema_has_with_equal_values() {
    let google = Google::start();
    let out = google.dir.path().join("metrics.lp");
    let (run, log) = replay_into_gcm(&small(), &google.sink_with_key("gcm", ""), &out);
    assert!(run.status.success(), "{log}");
    let expected = file_points(&out);
    assert!(expected.len() > 1000, "the scenario has points");
    assert_same(&gcm_points(&google.server), &expected, &log);
    google.assert_every_request_well_formed();
    let stats = google.server.stats();
    assert!(stats.descriptors_created > 50, "{stats:?}");
    assert!(stats.max_series_per_request <= 200, "{stats:?}");
    assert_eq!(logged_count(&log, "dropped_points"), 0, "{log}");
    // Every series names a monitored resource of its level.
    for series in google.server.series() {
        let ty = series.metric_labels.get("type").map(String::as_str).unwrap_or_default();
        let expected = match ty {
            "pod_container" => "k8s_container",
            "pod" => "k8s_pod",
            "node" | "sys_container" => "k8s_node",
            _ => "k8s_cluster",
        };
        assert_eq!(series.resource_type, expected, "{series:?}");
        assert!(series.metric_labels.len() <= 10, "{series:?}");
    }
}

#[test]
fn gcm_autoscaling_sends_only_node_autoscaling_metrics() {
    let google = Google::start();
    let out = google.dir.path().join("metrics.lp");
    let (run, log) = replay_into_gcm(&small(), &google.sink_with_key("gcm", "&metrics=autoscaling"), &out);
    assert!(run.status.success(), "{log}");
    let autoscaling = [
        "cpu/node_capacity",
        "memory/node_capacity",
        "cpu/node_allocatable",
        "memory/node_allocatable",
        "cpu/node_utilization",
        "memory/node_utilization",
        "cpu/node_reservation",
        "memory/node_reservation",
    ];
    let mut expected = file_points(&out);
    expected.retain(|k, _| k.2 == "node" && autoscaling.contains(&k.1.as_str()));
    assert!(!expected.is_empty());
    let got: BTreeMap<(i64, String, String), f64> = google
        .server
        .series()
        .iter()
        .flat_map(|s| {
            assert_eq!(s.resource_type, "k8s_node");
            assert!(s.metric_labels.keys().all(|k| k == "hostname" || k == "host_id"), "{s:?}");
            let metric = s.metric_type.trim_start_matches("custom.googleapis.com/kubernetes.io/").to_string();
            let node = s.resource_labels["node_name"].clone();
            s.points.iter().map(move |p| {
                (
                    (rfc3339_ns(&p["interval"]["endTime"]), metric.clone(), node.clone()),
                    p["value"]["doubleValue"].as_f64().expect("double"),
                )
            })
        })
        .collect();
    let want: BTreeMap<(i64, String, String), f64> =
        expected.into_iter().map(|(k, v)| ((k.0, k.1, k.6), v)).collect();
    assert_same(&got, &want, &log);
    google.assert_every_request_well_formed();
}

#[test]
fn gcm_rides_out_faults_and_counts_exactly_the_refused_series() {
    let google = Google::start();
    let out = google.dir.path().join("metrics.lp");
    // Pick a pod of the scenario: its series (pod and containers) are refused for good.
    let pod = pods(&small(), 0).into_iter().next().expect("a pod").1;
    google.server.set_faults(GoogleFaults {
        bursts: vec![
            Burst { api: "monitoring".into(), status: 429, count: 2, retry_after_s: Some(1) },
            Burst { api: "monitoring".into(), status: 503, count: 3, retry_after_s: None },
        ],
        reject_label_value: Some(pod.clone()),
        expire_tokens_after: 20,
        ..GoogleFaults::default()
    });
    let (run, log) = replay_into_gcm(&small(), &google.sink_with_metadata("gcm", ""), &out);
    assert!(run.status.success(), "{log}");
    let stats = google.server.stats();
    assert_eq!(stats.faults_served, 5, "{stats:?}");
    assert!(
        stats.unauthenticated > 0 && stats.token_grants > 1,
        "tokens expired and were renewed: {stats:?}"
    );
    let mut expected = file_points(&out);
    let refused = expected.keys().filter(|k| k.4 == pod).count();
    assert!(refused > 0);
    expected.retain(|k, _| k.4 != pod);
    assert_same(&gcm_points(&google.server), &expected, &log);
    assert_eq!(stats.series_refused, refused as u64);
    assert_eq!(logged_count(&log, "dropped_points"), refused as u64, "{log}");
    assert!(log.contains("fault injected"), "Google's message is logged: {log}");
    google.assert_every_request_well_formed();
}

/// Nodes of the all-metrics window below: the size the API's limits must hold at (one pod per
/// node keeps the run near a minute in a debug build, most of it the emulation's schema checks).
const ALL_METRICS_NODES: usize = 1000;

#[test]
fn gcm_a_large_window_with_every_metric_arrives_whole_and_in_order() {
    let google = Google::start();
    let scenario = google.dir.path().join("big");
    heapster_testbed::synth::synth(
        &heapster_testbed::synth::SynthSpec::new(ALL_METRICS_NODES, 1, 2),
        &scenario,
    )
    .expect("synth");
    let out = google.dir.path().join("metrics.lp");
    let (run, log) = replay_into_gcm(&scenario, &google.sink_with_key("gcm", "&concurrency=8"), &out);
    assert!(run.status.success(), "{log}");
    let expected = file_points(&out);
    let node_names: std::collections::BTreeSet<&str> =
        expected.keys().filter(|k| k.2 == "node").map(|k| k.6.as_str()).collect();
    assert_eq!(node_names.len(), ALL_METRICS_NODES, "every node");
    let windows: std::collections::BTreeSet<i64> = expected.keys().map(|k| k.0).collect();
    assert_eq!(windows.len(), 2, "two windows");
    // Every point of both windows, with its value; `gcm_points` also checks that each series'
    // points are in time order, so the second window's are all newer than the first's.
    assert_same(&gcm_points(&google.server), &expected, &log);
    let stats = google.server.stats();
    assert_eq!(stats.max_series_per_request, 200, "{stats:?}");
    assert!(stats.time_series_requests as usize >= expected.len() / 200, "{stats:?}");
    assert_eq!(logged_count(&log, "dropped_points"), 0, "{log}");
    // The emulation refuses a request that repeats a series or holds a point not newer than
    // the series' last one: none was refused.
    google.assert_every_request_well_formed();
}
