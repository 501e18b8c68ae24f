//! `fixtures/small` replayed into a real influxd, then read back over HTTP: Heapster's schema,
//! rates, sums, restarts and deletions, each checked against values computed here from the
//! scenario's own files.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use heapster_testbed::testkit::influxd::Influxd;
use serde_json::Value;
use support::*;

type Row = BTreeMap<String, Value>;

fn rows(influxd: &Influxd, q: &str) -> Vec<Row> {
    let answer = influxd.query("k8s", q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut out = Vec::new();
    for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
        let columns: Vec<String> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or("").to_string())
            .collect();
        let tags = series["tags"].as_object().cloned().unwrap_or_default();
        for values in series["values"].as_array().expect("values") {
            let mut row: Row = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (c, v) in columns.iter().zip(values.as_array().expect("row")) {
                row.insert(c.clone(), v.clone());
            }
            out.push(row);
        }
    }
    out
}

fn value_at(influxd: &Influxd, measurement: &str, filter: &str, time_ns: i64) -> Option<f64> {
    let q = format!(r#"SELECT value FROM "{measurement}" WHERE {filter} AND time = {time_ns}"#);
    let found = rows(influxd, &q);
    assert!(found.len() <= 1, "{q}: {found:?}");
    found.first().and_then(|r| r["value"].as_f64())
}

fn replay_into(influxd: &Influxd) {
    let source = format!("--source=replay:{}", small().display());
    let sink = format!("--sink=influxdb:{}?db=k8s", influxd.url());
    let run = heapster(&[&source, &sink, "-w", "2"]);
    assert!(run.status.success(), "heapster failed: {}", stderr(&run));
}

/// A container of some pod on a node, present with the same start time in two windows.
struct Sample {
    ns: String,
    pod: String,
    container: String,
    usage: [i64; 2],
    time: [i64; 2],
}

fn steady_container(node: &str, windows: [usize; 2]) -> Sample {
    let first = summary(&small(), windows[0], node);
    let second = summary(&small(), windows[1], node);
    for pod in first["pods"].as_array().expect("pods") {
        for c in pod["containers"].as_array().expect("containers") {
            let name = c["name"].as_str().expect("name");
            let later = second["pods"]
                .as_array()
                .expect("pods")
                .iter()
                .find(|p| p["podRef"] == pod["podRef"])
                .and_then(|p| {
                    p["containers"].as_array().and_then(|cs| cs.iter().find(|x| x["name"] == name)).cloned()
                });
            let Some(later) = later else { continue };
            if later["startTime"] != c["startTime"] || c["cpu"]["usageCoreNanoSeconds"].is_null() {
                continue;
            }
            return Sample {
                ns: pod["podRef"]["namespace"].as_str().expect("ns").to_string(),
                pod: pod["podRef"]["name"].as_str().expect("pod").to_string(),
                container: name.to_string(),
                usage: [
                    c["cpu"]["usageCoreNanoSeconds"].as_i64().expect("usage"),
                    later["cpu"]["usageCoreNanoSeconds"].as_i64().expect("usage"),
                ],
                time: [rfc3339_ns(&c["cpu"]["time"]), rfc3339_ns(&later["cpu"]["time"])],
            };
        }
    }
    panic!("no steady container on {node}");
}

#[test]
fn replay_into_influxdb_has_heapsters_schema_and_values() {
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    replay_into(&influxd);
    let times = window_times_ns(&small());
    assert!(times.len() >= 4);

    // Measurements: Heapster's names, raw and derived.
    let measurements: BTreeSet<String> = rows(&influxd, "SHOW MEASUREMENTS")
        .into_iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    for m in [
        "cpu/usage",
        "cpu/usage_rate",
        "cpu/request",
        "cpu/node_utilization",
        "cpu/node_allocatable",
        "memory/usage",
        "memory/working_set",
        "memory/node_reservation",
        "network/rx_rate",
        "filesystem/usage",
        "uptime",
        "restart_count",
    ] {
        assert!(measurements.contains(m), "missing measurement {m}: {measurements:?}");
    }

    // Tag sets per metric-set type.
    let expect_tags: &[(&str, &[&str])] = &[
        ("node", &["nodename", "labels", "cluster_name"]),
        ("sys_container", &["nodename", "container_name"]),
        ("pod", &["namespace_name", "pod_name", "nodename", "labels"]),
        (
            "pod_container",
            &["namespace_name", "pod_name", "container_name", "container_base_image", "nodename"],
        ),
        ("ns", &["namespace_name"]),
        ("cluster", &["cluster_name"]),
    ];
    for (ty, tags) in expect_tags {
        let measurement = if *ty == "ns" || *ty == "cluster" { "cpu/request" } else { "memory/usage" };
        let q = format!(r#"SELECT * FROM "{measurement}" WHERE type = '{ty}' LIMIT 1"#);
        let found = rows(&influxd, &q);
        let row = found.first().unwrap_or_else(|| panic!("no {ty} point in {measurement}"));
        for tag in *tags {
            assert!(
                row.get(*tag).is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())),
                "{ty} lacks {tag}: {row:?}"
            );
        }
        assert_eq!(row["cluster_name"], "default");
    }
    // Heapster's summary source writes no `schedulable` tag; an extra tag would split its series.
    let tag_keys = rows(&influxd, r#"SHOW TAG KEYS FROM "memory/usage""#);
    assert!(!tag_keys.is_empty());
    assert!(tag_keys.iter().all(|r| r["tagKey"] != "schedulable"), "{tag_keys:?}");

    // A rate computed here from two raw samples of the scenario.
    let node = &ready_nodes(&small(), 1)[0];
    let s = steady_container(node, [0, 1]);
    let expected = 1000 * (s.usage[1] - s.usage[0]) / (s.time[1] - s.time[0]);
    let filter =
        format!("type = 'pod_container' AND pod_name = '{}' AND container_name = '{}'", s.pod, s.container);
    assert_eq!(
        value_at(&influxd, "cpu/usage_rate", &filter, times[1]),
        Some(expected as f64),
        "{}/{}",
        s.ns,
        s.pod
    );
    assert_eq!(value_at(&influxd, "cpu/usage_rate", &filter, times[0]), None, "no rate in the first window");

    // A pod's rate comes from the kubelet's own pod counter (its whole cgroup), timed by the pod's
    // network stats as Heapster times pods; it is not the sum of its containers' rates.
    let (pod_ns, pod_name, pod_rate) = steady_pod_rate(node, [0, 1]);
    let filter = format!("type = 'pod' AND namespace_name = '{pod_ns}' AND pod_name = '{pod_name}'");
    assert_eq!(value_at(&influxd, "cpu/usage_rate", &filter, times[1]), Some(pod_rate as f64), "{pod_name}");
    let containers_sum: f64 = rows(
        &influxd,
        &format!(
            r#"SELECT value FROM "cpu/usage_rate" WHERE type = 'pod_container' AND namespace_name = '{pod_ns}' AND pod_name = '{pod_name}' AND time = {}"#,
            times[1]
        ),
    )
    .iter()
    .map(|r| r["value"].as_f64().expect("v"))
    .sum();
    assert!(containers_sum > 0.0);
    assert_ne!(containers_sum, pod_rate as f64, "the pod's overhead is in its own counter only");

    // Node memory utilization: memory/usage over allocatable, as Heapster (not the working set).
    let nodes = api_list(&small(), 1, "nodes.json");
    let item =
        nodes["items"].as_array().expect("items").iter().find(|n| n["metadata"]["name"] == node.as_str());
    let allocatable = item.expect("node")["status"]["allocatable"]["memory"].as_str().expect("memory");
    let allocatable = 1024.0 * allocatable.strip_suffix("Ki").expect("Ki").parse::<f64>().expect("number");
    let memory = &summary(&small(), 1, node)["node"]["memory"];
    let usage = memory["usageBytes"].as_f64().expect("usage");
    assert_ne!(memory["usageBytes"], memory["workingSetBytes"]);
    assert_eq!(
        value_at(
            &influxd,
            "memory/node_utilization",
            &format!("type = 'node' AND nodename = '{node}'"),
            times[1]
        ),
        Some(usage / allocatable)
    );

    // Namespace sums of pods, and the cluster sum of namespaces.
    let w = 2;
    let mut per_ns: BTreeMap<String, f64> = BTreeMap::new();
    for r in rows(
        &influxd,
        &format!(
            r#"SELECT value, namespace_name FROM "cpu/usage_rate" WHERE type = 'pod' AND time = {}"#,
            times[w]
        ),
    ) {
        *per_ns.entry(r["namespace_name"].as_str().expect("ns").to_string()).or_default() +=
            r["value"].as_f64().expect("v");
    }
    assert!(per_ns.len() >= 3, "{per_ns:?}");
    let mut cluster = 0.0;
    for (ns, sum) in &per_ns {
        let got = value_at(
            &influxd,
            "cpu/usage_rate",
            &format!("type = 'ns' AND namespace_name = '{ns}'"),
            times[w],
        );
        assert_eq!(got, Some(*sum), "namespace {ns}");
        cluster += sum;
    }
    assert_eq!(value_at(&influxd, "cpu/usage_rate", "type = 'cluster'", times[w]), Some(cluster));

    // The restarted container: a new start time, and no rate in the window it restarted.
    let (restart_window, ns, pod, container) = find_restart();
    let filter = format!(
        "type = 'pod_container' AND namespace_name = '{ns}' AND pod_name = '{pod}' AND container_name = '{container}'"
    );
    assert_eq!(
        value_at(&influxd, "cpu/usage_rate", &filter, times[restart_window]),
        None,
        "rate across a restart"
    );
    assert!(
        value_at(&influxd, "cpu/usage", &filter, times[restart_window]).is_some(),
        "the container itself is written"
    );
    if restart_window + 1 < times.len() {
        assert!(
            value_at(&influxd, "cpu/usage_rate", &filter, times[restart_window + 1]).is_some(),
            "rate resumes"
        );
    }
    let restarts =
        value_at(&influxd, "restart_count", &filter, times[restart_window]).expect("restart_count");
    let before =
        value_at(&influxd, "restart_count", &filter, times[restart_window - 1]).expect("restart_count");
    assert_eq!(restarts, before + 1.0);
    // The pod's restart_count: its containers' restarts, from the pod list in force.
    let listed = api_list(&small(), restart_window, "pods.json");
    let item = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["metadata"]["namespace"] == ns.as_str() && p["metadata"]["name"] == pod.as_str())
        .expect("restarted pod listed");
    let statuses = item["status"]["containerStatuses"].as_array().expect("statuses");
    let sum: i64 = statuses.iter().map(|c| c["restartCount"].as_i64().expect("restartCount")).sum();
    assert!(sum >= 1);
    let pod_filter = format!("type = 'pod' AND namespace_name = '{ns}' AND pod_name = '{pod}'");
    assert_eq!(value_at(&influxd, "restart_count", &pod_filter, times[restart_window]), Some(sum as f64));

    // The deleted pod: written before its deletion, absent from then on.
    let (deleted_window, ns, pod) = find_deletion();
    let q = |cmp: &str, t: i64| {
        format!(
            r#"SELECT count(value) FROM "memory/usage" WHERE namespace_name = '{ns}' AND pod_name = '{pod}' AND time {cmp} {t}"#
        )
    };
    assert!(!rows(&influxd, &q("<", times[deleted_window])).is_empty(), "written before deletion");
    assert!(rows(&influxd, &q(">=", times[deleted_window])).is_empty(), "{ns}/{pod} written after deletion");
}

/// The first pod of a node present with the same start time in two windows, and its cpu rate
/// in millicores from its own pod-level counter.
fn steady_pod_rate(node: &str, windows: [usize; 2]) -> (String, String, i64) {
    let first = summary(&small(), windows[0], node);
    let second = summary(&small(), windows[1], node);
    for pod in first["pods"].as_array().expect("pods") {
        let Some(later) =
            second["pods"].as_array().expect("pods").iter().find(|p| p["podRef"] == pod["podRef"])
        else {
            continue;
        };
        if later["startTime"] != pod["startTime"] {
            continue;
        }
        let usage = |p: &Value| p["cpu"]["usageCoreNanoSeconds"].as_i64().expect("pod cpu");
        let time = |p: &Value| rfc3339_ns(&p["network"]["time"]);
        let rate = 1000 * (usage(later) - usage(pod)) / (time(later) - time(pod));
        let s = |v: &Value| v.as_str().expect("string").to_string();
        return (s(&pod["podRef"]["namespace"]), s(&pod["podRef"]["name"]), rate);
    }
    panic!("no steady pod on {node}");
}

/// The first container whose start time changes between two windows.
fn find_restart() -> (usize, String, String, String) {
    let windows = window_times_ns(&small()).len();
    for w in 1..windows {
        for node in ready_nodes(&small(), w) {
            let (before, now) = (summary(&small(), w - 1, &node), summary(&small(), w, &node));
            for pod in now["pods"].as_array().expect("pods") {
                let Some(old) =
                    before["pods"].as_array().expect("pods").iter().find(|p| p["podRef"] == pod["podRef"])
                else {
                    continue;
                };
                for c in pod["containers"].as_array().expect("containers") {
                    let prev = old["containers"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|x| x["name"] == c["name"]));
                    if prev.is_some_and(|p| p["startTime"] != c["startTime"]) {
                        let s = |v: &Value| v.as_str().expect("string").to_string();
                        return (w, s(&pod["podRef"]["namespace"]), s(&pod["podRef"]["name"]), s(&c["name"]));
                    }
                }
            }
        }
    }
    panic!("fixtures/small has no container restart");
}

/// The first pod that leaves the pod list.
fn find_deletion() -> (usize, String, String) {
    let windows = window_times_ns(&small()).len();
    for w in 1..windows {
        let now = pods(&small(), w);
        if let Some((ns, pod)) = pods(&small(), w - 1).into_iter().find(|p| !now.contains(p)) {
            return (w, ns, pod);
        }
    }
    panic!("fixtures/small deletes no pod");
}
