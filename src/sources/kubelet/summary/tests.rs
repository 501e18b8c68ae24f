// Over 600 lines on purpose: one test per Heapster summary rule, most checked against a real capture.
//! The summary parser against real captures and hand-edited bodies.

use serde_json::{Value as Json, json};

use super::*;

const GKE: &str = "kubelet-summary-gke.json";
const GKE_NODE: &str = "gke-lenaic-pool-1-1c8b424c-wnkn";
const WINDOWS: &str = "kubelet-summary-windows.json";
const WINDOWS_NODE: &str = "ip-172-29-160-189.ec2.internal";
const FALLBACK: i64 = 1_700_000_000_000_000_000;

fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/../shared/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(body: &[u8], node: &str) -> (Result<SummaryReport, SummaryError>, Vec<MetricSet>) {
    let mut interner = Interner::default();
    let mut out = Vec::new();
    let result = parse_summary(body, &NodeTarget::named(node), FALLBACK, &mut interner, &mut out);
    (result, out)
}

fn parse_ok(body: &[u8], node: &str) -> (SummaryReport, Vec<MetricSet>) {
    let (result, out) = parse(body, node);
    (result.unwrap_or_else(|e| panic!("{e}")), out)
}

fn parse_json(body: &Json, node: &str) -> (SummaryReport, Vec<MetricSet>) {
    parse_ok(&serde_json::to_vec(body).unwrap(), node)
}

fn find<'s>(out: &'s [MetricSet], key: &str) -> &'s MetricSet {
    out.iter().find(|s| s.key.to_string() == key).unwrap_or_else(|| panic!("no set {key}"))
}

fn count(out: &[MetricSet], type_label: &str) -> usize {
    out.iter().filter(|s| s.key.type_label() == type_label).count()
}

fn ns(json: &Json) -> i64 {
    let ts: jiff::Timestamp = json.as_str().unwrap().parse().unwrap();
    ts.as_nanosecond() as i64
}

fn label(set: &MetricSet, id: LabelId) -> Option<&str> {
    set.labels.get(id).map(|n| n.as_str())
}

fn fs_value(set: &MetricSet, id: LabeledMetricId, resource: &str) -> Option<i64> {
    set.labeled_value(id, &Resource::Id(Name::new(resource))).map(Value::as_i64)
}

/// Every unlabeled value the body gives for a container, and only those.
fn check_memory_cpu(set: &MetricSet, c: &Json) {
    let fields = [
        (MetricId::CpuUsage, "/cpu/usageCoreNanoSeconds"),
        (MetricId::MemoryUsage, "/memory/usageBytes"),
        (MetricId::MemoryWorkingSet, "/memory/workingSetBytes"),
        (MetricId::MemoryRss, "/memory/rssBytes"),
        (MetricId::MemoryPageFaults, "/memory/pageFaults"),
        (MetricId::MemoryMajorPageFaults, "/memory/majorPageFaults"),
    ];
    for (id, pointer) in fields {
        let expected = c.pointer(pointer).and_then(Json::as_i64);
        assert_eq!(set.values.get_i64(id), expected, "{} {}", set.key, id.name());
    }
}

fn check_fs(set: &MetricSet, fs: &Json, resource: &str) {
    let fields = [
        (LabeledMetricId::FsUsage, "usedBytes"),
        (LabeledMetricId::FsLimit, "capacityBytes"),
        (LabeledMetricId::FsAvailable, "availableBytes"),
        (LabeledMetricId::FsInodes, "inodes"),
        (LabeledMetricId::FsInodesFree, "inodesFree"),
    ];
    for (id, field) in fields {
        let expected = fs.get(field).and_then(Json::as_i64);
        assert_eq!(fs_value(set, id, resource), expected, "{} {resource} {field}", set.key);
    }
}

fn check_container(set: &MetricSet, c: &Json) {
    check_memory_cpu(set, c);
    let start = ns(&c["startTime"]);
    let scrape = c.pointer("/cpu/time").or(c.pointer("/memory/time")).map_or(FALLBACK, ns);
    assert_eq!(set.create_time, start);
    assert_eq!(set.scrape_time, scrape);
    assert_eq!(set.values.get_i64(MetricId::Uptime), Some((scrape - start) / 1_000_000));
    if let Some(fs) = c.get("rootfs") {
        check_fs(set, fs, "/");
    }
    if let Some(fs) = c.get("logs") {
        check_fs(set, fs, "logs");
    }
    let used = |fs: &str| c.get(fs).and_then(|f| f.get("usedBytes")).and_then(Json::as_i64);
    let ephemeral = used("rootfs").zip(used("logs")).map(|(rootfs, logs)| rootfs + logs);
    assert_eq!(set.values.get_i64(MetricId::EphemeralStorageUsage), ephemeral, "{}", set.key);
}

/// Every unlabeled value a pod set may carry, as the capture's `PodStats` gives it.
fn pod_values_from_json(p: &Json) -> Vec<(MetricId, i64)> {
    let scrape = ns(&p["network"]["time"]);
    let mut expected = vec![(MetricId::Uptime, (scrape - ns(&p["startTime"])) / 1_000_000)];
    let fields = [
        (MetricId::CpuUsage, "/cpu/usageCoreNanoSeconds"),
        (MetricId::MemoryUsage, "/memory/usageBytes"),
        (MetricId::MemoryWorkingSet, "/memory/workingSetBytes"),
        (MetricId::MemoryRss, "/memory/rssBytes"),
        (MetricId::MemoryPageFaults, "/memory/pageFaults"),
        (MetricId::MemoryMajorPageFaults, "/memory/majorPageFaults"),
        (MetricId::NetworkRx, "/network/rxBytes"),
        (MetricId::NetworkRxErrors, "/network/rxErrors"),
        (MetricId::NetworkTx, "/network/txBytes"),
        (MetricId::NetworkTxErrors, "/network/txErrors"),
        (MetricId::EphemeralStorageUsage, "/ephemeral-storage/usedBytes"),
    ];
    for (id, pointer) in fields {
        if let Some(v) = p.pointer(pointer).and_then(Json::as_i64) {
            expected.push((id, v));
        }
    }
    expected.sort();
    expected
}

/// Checks every set of a capture against the capture's own JSON.
fn check_capture(body: &[u8], node: &str) -> Vec<MetricSet> {
    let json: Json = serde_json::from_slice(body).unwrap();
    let (report, out) = parse_ok(body, node);
    assert_eq!(report.warnings, Vec::<String>::new());
    assert_eq!(report.sets, out.len());

    let sys = json["node"]["systemContainers"].as_array().unwrap();
    let pods = json["pods"].as_array().unwrap();
    let mut container_keys = std::collections::BTreeSet::new();
    for p in pods {
        for c in p["containers"].as_array().unwrap() {
            let r = &p["podRef"];
            container_keys.insert((r["namespace"].as_str(), r["name"].as_str(), c["name"].as_str()));
        }
    }
    assert_eq!(count(&out, "node"), 1);
    assert_eq!(count(&out, "sys_container"), sys.len());
    assert_eq!(count(&out, "pod"), pods.len());
    assert_eq!(count(&out, "pod_container"), container_keys.len());
    assert_eq!(out.len(), 1 + sys.len() + pods.len() + container_keys.len());

    let n = &json["node"];
    let node_set = find(&out, &format!("node:{node}"));
    check_memory_cpu(node_set, n);
    check_fs(node_set, &n["fs"], "/");
    assert_eq!(node_set.create_time, ns(&n["startTime"]));
    assert_eq!(node_set.scrape_time, ns(&n["cpu"]["time"]));
    assert_eq!(node_set.values.get_i64(MetricId::EphemeralStorageUsage), n["fs"]["usedBytes"].as_i64());
    assert_eq!(label(node_set, LabelId::Nodename), Some(node));
    assert_eq!(label(node_set, LabelId::Hostname), Some(node));
    assert_eq!(label(node_set, LabelId::HostId), None, "empty host id is skipped");
    assert_eq!(label(node_set, LabelId::Schedulable), None, "only when the source asks for it");

    for c in sys {
        let name = system_container_name(c["name"].as_str().unwrap());
        let set = find(&out, &format!("node:{node}/container:{name}"));
        check_container(set, c);
        assert_eq!(label(set, LabelId::ContainerName), Some(name));
        assert_eq!(label(set, LabelId::Nodename), Some(node));
    }

    for p in pods {
        let r = &p["podRef"];
        let (pod_ns, pod_name) = (r["namespace"].as_str().unwrap(), r["name"].as_str().unwrap());
        let key = format!("namespace:{pod_ns}/pod:{pod_name}");
        let set = find(&out, &key);
        assert_eq!(label(set, LabelId::PodId), r["uid"].as_str());
        assert_eq!(label(set, LabelId::PodName), Some(pod_name));
        assert_eq!(label(set, LabelId::NamespaceName), Some(pod_ns));
        assert_eq!(label(set, LabelId::Hostname), Some(node));
        assert_eq!(set.create_time, ns(&p["startTime"]));
        assert_eq!(set.scrape_time, ns(&p["network"]["time"]));
        // Every value of the pod set is the kubelet's own pod-level number, and nothing else.
        let mut got: Vec<(MetricId, i64)> = set.values.iter().map(|(id, v)| (id, v.as_i64())).collect();
        got.sort();
        assert_eq!(got, pod_values_from_json(p), "{key}");
        assert!(got.iter().any(|(id, _)| *id == MetricId::CpuUsage), "{key}: the capture has pod cpu");
        assert!(got.iter().any(|(id, _)| *id == MetricId::MemoryWorkingSet), "{key}: and pod memory");
        let volumes = p["volume"].as_array().map_or(&[][..], Vec::as_slice);
        for v in volumes {
            check_fs(set, v, &format!("Volume:{}", v["name"].as_str().unwrap()));
        }
        assert_eq!(set.labeled.len(), volumes.len() * 5 - count_missing_fs(volumes));
        assert_eq!(
            set.values.get_i64(MetricId::EphemeralStorageUsage),
            p["ephemeral-storage"]["usedBytes"].as_i64()
        );
        for c in p["containers"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let set = find(&out, &format!("{key}/container:{name}"));
            check_container(set, c);
            assert_eq!(label(set, LabelId::ContainerName), Some(name));
            assert_eq!(label(set, LabelId::PodId), r["uid"].as_str());
        }
    }
    out
}

fn count_missing_fs(volumes: &[Json]) -> usize {
    let fields = ["usedBytes", "capacityBytes", "availableBytes", "inodes", "inodesFree"];
    volumes.iter().map(|v| fields.iter().filter(|f| v.get(**f).is_none()).count()).sum()
}

#[test]
fn gke_capture_matches_its_json() {
    let body = capture(GKE);
    assert!(body.windows(2).any(|w| w == b"\r\n"), "the capture keeps its CRLF line endings");
    let out = check_capture(&body, GKE_NODE);
    let json: Json = serde_json::from_slice(&body).unwrap();
    // GKE sends top-level network counters: they win over the interface sum.
    let node_set = find(&out, &format!("node:{GKE_NODE}"));
    assert_eq!(node_set.values.get_i64(MetricId::NetworkRx), json["node"]["network"]["rxBytes"].as_i64());
    let uptime = (ns(&json["node"]["cpu"]["time"]) - ns(&json["node"]["startTime"])) / 1_000_000;
    assert_eq!(node_set.values.get_i64(MetricId::Uptime), Some(uptime));
    assert!(out.iter().any(|s| {
        s.labeled.iter().any(|l| matches!(&l.resource, Resource::Id(id) if id.starts_with("Volume:")))
    }));
}

#[test]
fn windows_capture_matches_its_json() {
    let body = capture(WINDOWS);
    let out = check_capture(&body, WINDOWS_NODE);
    let json: Json = serde_json::from_slice(&body).unwrap();
    let network = &json["node"]["network"];
    assert_eq!(network["name"], "", "no default interface");
    assert!(network.get("rxBytes").is_none());
    let node_set = find(&out, &format!("node:{WINDOWS_NODE}"));
    for (id, field) in [
        (MetricId::NetworkRx, "rxBytes"),
        (MetricId::NetworkRxErrors, "rxErrors"),
        (MetricId::NetworkTx, "txBytes"),
        (MetricId::NetworkTxErrors, "txErrors"),
    ] {
        let sum: i64 =
            network["interfaces"].as_array().unwrap().iter().map(|i| i[field].as_i64().unwrap()).sum();
        assert_eq!(node_set.values.get_i64(id), Some(sum), "{field}");
    }
    assert!(node_set.values.get_i64(MetricId::NetworkRx).unwrap() > 0);
    // A zero the kubelet sent stays a zero.
    assert_eq!(node_set.values.get_i64(MetricId::MemoryRss), Some(0));
    assert_eq!(json["node"]["memory"]["rssBytes"], 0);
}

#[test]
fn absent_stays_absent() {
    let body = capture(WINDOWS);
    let json: Json = serde_json::from_slice(&body).unwrap();
    let (_, out) = parse_ok(&body, WINDOWS_NODE);
    let pod = &json["pods"][0];
    let c = &pod["containers"][0];
    assert!(c["memory"].get("rssBytes").is_none() && c["memory"].get("usageBytes").is_none());
    let key = format!(
        "namespace:{}/pod:{}/container:{}",
        pod["podRef"]["namespace"].as_str().unwrap(),
        pod["podRef"]["name"].as_str().unwrap(),
        c["name"].as_str().unwrap()
    );
    let set = find(&out, &key);
    assert_eq!(set.values.get(MetricId::MemoryRss), None);
    assert_eq!(set.values.get(MetricId::MemoryUsage), None);
    assert_eq!(set.values.get(MetricId::MemoryPageFaults), None);
    assert!(set.values.get(MetricId::MemoryWorkingSet).is_some());
    assert_eq!(fs_value(set, LabeledMetricId::FsInodes, "/"), None);
    // Pods without rxErrors: no interface has them either, so nothing is summed.
    let pod_set = find(&out, key.rsplit_once('/').unwrap().0);
    assert!(pod["network"].get("rxErrors").is_none());
    assert_eq!(pod_set.values.get(MetricId::NetworkRxErrors), None);

    // `null` is absent too, and no warning.
    let body = json!({"node": {"cpu": {"time": null, "usageCoreNanoSeconds": null},
            "memory": null, "fs": {"usedBytes": null, "capacityBytes": 10}},
            "pods": [{"podRef": {"name": "p", "namespace": "n"}, "containers": null, "volume": null}]});
    let (report, out) = parse_json(&body, "n1");
    assert_eq!(report.warnings, Vec::<String>::new());
    let node = find(&out, "node:n1");
    assert_eq!(node.values.len(), 0, "{:?}", node.values);
    assert_eq!(node.scrape_time, FALLBACK);
    assert_eq!(node.labeled.len(), 1);
    assert_eq!(fs_value(node, LabeledMetricId::FsLimit, "/"), Some(10));
    assert_eq!(find(&out, "namespace:n/pod:p").values.len(), 0);
}

#[test]
fn system_container_names_are_heapsters() {
    let (_, out) = parse_ok(&capture(GKE), GKE_NODE);
    let mut names: Vec<_> = out
        .iter()
        .filter_map(|s| match &s.key {
            EntityKey::SysContainer { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(names, ["docker-daemon", "kubelet", "pods"]);

    let body =
        json!({"node": {"systemContainers": [{"name": "misc"}, {"name": "runtime"}, {"name": "other"}]}});
    let (_, out) = parse_json(&body, "n1");
    for name in ["system", "docker-daemon", "other"] {
        let set = find(&out, &format!("node:n1/container:{name}"));
        assert_eq!(label(set, LabelId::ContainerName), Some(name));
        assert_eq!(label(set, LabelId::Schedulable), None, "only the node set says so");
    }
}

#[test]
fn volumes_are_resources() {
    let body = json!({"pods": [{"podRef": {"name": "p", "namespace": "n", "uid": "u1"},
            "volume": [{"name": "config", "usedBytes": 5, "capacityBytes": 9, "inodes": 3},
                       {"usedBytes": 1}],
            "ephemeral-storage": {"usedBytes": 77}}]});
    let (report, out) = parse_json(&body, "n1");
    let pod = find(&out, "namespace:n/pod:p");
    assert_eq!(fs_value(pod, LabeledMetricId::FsUsage, "Volume:config"), Some(5));
    assert_eq!(fs_value(pod, LabeledMetricId::FsLimit, "Volume:config"), Some(9));
    assert_eq!(fs_value(pod, LabeledMetricId::FsInodes, "Volume:config"), Some(3));
    assert_eq!(fs_value(pod, LabeledMetricId::FsAvailable, "Volume:config"), None);
    assert_eq!(pod.labeled.len(), 3);
    assert_eq!(pod.values.get_i64(MetricId::EphemeralStorageUsage), Some(77));
    assert_eq!(label(pod, LabelId::PodId), Some("u1"));
    assert_eq!(report.warnings, ["node n1: pods[0].volume[1].name: missing; volume skipped"]);
}

#[test]
fn pod_level_stats_and_their_time() {
    let body = json!({"pods": [
            {"podRef": {"name": "net", "namespace": "n"},
             "network": {"time": "2020-01-01T00:00:03Z", "rxBytes": 1},
             "cpu": {"time": "2020-01-01T00:00:02Z", "usageCoreNanoSeconds": 7},
             "memory": {"time": "2020-01-01T00:00:01Z", "usageBytes": 9, "pageFaults": 4, "majorPageFaults": 2}},
            {"podRef": {"name": "cpu", "namespace": "n"},
             "cpu": {"time": "2020-01-01T00:00:02Z", "usageCoreNanoSeconds": 7},
             "memory": {"time": "2020-01-01T00:00:01Z", "workingSetBytes": 5}},
            {"podRef": {"name": "mem", "namespace": "n"}, "memory": {"time": "2020-01-01T00:00:01Z", "rssBytes": 3}},
            {"podRef": {"name": "none", "namespace": "n"}, "memory": {"rssBytes": 3}}]});
    let (report, out) = parse_json(&body, "n1");
    assert_eq!(report.warnings, Vec::<String>::new());
    let second = |s: i64| 1_577_836_800_000_000_000 + s * 1_000_000_000;
    let net = find(&out, "namespace:n/pod:net");
    assert_eq!(net.scrape_time, second(3), "network time first, as Heapster");
    assert_eq!(net.values.get_i64(MetricId::CpuUsage), Some(7));
    assert_eq!(net.values.get_i64(MetricId::MemoryUsage), Some(9));
    assert_eq!(net.values.get_i64(MetricId::MemoryPageFaults), Some(4));
    assert_eq!(net.values.get_i64(MetricId::MemoryMajorPageFaults), Some(2));
    let cpu = find(&out, "namespace:n/pod:cpu");
    assert_eq!(cpu.scrape_time, second(2));
    assert_eq!(cpu.values.get_i64(MetricId::MemoryWorkingSet), Some(5));
    assert_eq!(cpu.values.get(MetricId::MemoryUsage), None, "absent stays absent");
    assert_eq!(find(&out, "namespace:n/pod:mem").scrape_time, second(1));
    assert_eq!(find(&out, "namespace:n/pod:none").scrape_time, FALLBACK);
}

#[test]
fn container_ephemeral_storage_needs_rootfs_and_logs() {
    let (_, out) = parse_json(
        &pod_with(json!([
                {"name": "both", "rootfs": {"usedBytes": 40}, "logs": {"usedBytes": 2}},
                {"name": "rootfs", "rootfs": {"usedBytes": 40}},
                {"name": "unused", "rootfs": {"capacityBytes": 40}, "logs": {"usedBytes": 2}}])),
        "n1",
    );
    let usage = |c: &str| {
        find(&out, &format!("namespace:n/pod:p/container:{c}"))
            .values
            .get_i64(MetricId::EphemeralStorageUsage)
    };
    assert_eq!(usage("both"), Some(42));
    assert_eq!(usage("rootfs"), None);
    assert_eq!(usage("unused"), None);
}

#[test]
fn truncated_body_names_node_and_offset() {
    let body = capture(GKE);
    let cut = (20_000..).find(|c| !body[c - 1].is_ascii_whitespace()).unwrap();
    let (result, out) = parse(&body[..cut], "gke-1");
    let Err(err @ SummaryError::Malformed { offset, line, column, .. }) = &result else {
        panic!("{result:?}")
    };
    assert!(out.is_empty(), "nothing is appended on error");
    assert_eq!(*offset, cut - 1, "the last byte read");
    let prefix = format!("node gke-1: malformed summary at byte offset {offset} (line {line}");
    assert_eq!(*line, 1 + body[..cut].iter().filter(|b| **b == b'\n').count());
    let line_start = body[..cut].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    assert_eq!(*column, cut - line_start);
    let text = err.to_string();
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains("EOF while parsing"), "{text}");
}

#[test]
fn pods_are_sets_as_read_yet_a_broken_tail_appends_nothing() {
    let body = capture(GKE);
    let json: Json = serde_json::from_slice(&body).unwrap();
    let (_, node_first) = parse_ok(&body, GKE_NODE);
    // The node's entry last (or twice, or absent): the node's sets still come first.
    let mut text = String::from("{\"pods\": ");
    text.push_str(&json["pods"].to_string());
    text.push_str(", \"node\": ");
    text.push_str(&json["node"].to_string());
    text.push('}');
    let (report, node_last) = parse_ok(text.as_bytes(), GKE_NODE);
    assert_eq!(report.sets, node_first.len());
    assert_eq!(node_last, node_first);
    let (_, no_node) = parse_json(&json!({"pods": json["pods"]}), GKE_NODE);
    assert_eq!(no_node[0].key.to_string(), format!("node:{GKE_NODE}"));
    assert_eq!(no_node.len(), node_first.len() - count(&node_first, "sys_container"));

    // Pods already turned into sets are taken back when the body breaks after them.
    let mut out = vec![MetricSet::new(EntityKey::Cluster)];
    for broken in [format!("{}, \"node\": 5}}", &text[..text.len() - 1]), format!("{text} x")] {
        let mut interner = Interner::default();
        let target = NodeTarget::named(GKE_NODE);
        let result = parse_summary(broken.as_bytes(), &target, FALLBACK, &mut interner, &mut out);
        assert!(matches!(result, Err(SummaryError::Malformed { .. })), "{result:?}");
        assert_eq!(out, [MetricSet::new(EntityKey::Cluster)], "nothing is appended on error");
    }
}

#[test]
fn garbage_is_an_error_at_its_offset() {
    let body = b"{\"node\": {\"cpu\": x}}";
    let (result, _) = parse(body, "n1");
    let Err(SummaryError::Malformed { offset, line, message, .. }) = result else { panic!("{result:?}") };
    assert_eq!(offset, body.iter().position(|b| *b == b'x').unwrap());
    assert_eq!(line, 1);
    assert_eq!(message, "expected value");

    // Multi-line, CRLF: the offset still points at the bad byte.
    let body = b"{\r\n \"node\": {\r\n  \"cpu\": ?\r\n }\r\n}";
    let (result, _) = parse(body, "n1");
    let Err(SummaryError::Malformed { offset, line, column, .. }) = result else { panic!("{result:?}") };
    assert_eq!(body[offset], b'?');
    assert_eq!((line, column), (3, 10));

    for body in [&b""[..], b"   ", b"\x00\xff\xfe", b"{\"node\": {}} trailing", b"{\"pods\": [\"\xff\"]}"] {
        let (result, out) = parse(body, "n1");
        assert!(matches!(result, Err(SummaryError::Malformed { .. })), "{body:?}: {result:?}");
        assert!(out.is_empty());
    }
    for (body, found) in [(&b"[]"[..], "an array"), (b"null", "null"), (b"\n 42", "number 42")] {
        let (result, _) = parse(body, "n1");
        let Err(SummaryError::Malformed { message, offset, .. }) = result else { panic!("{result:?}") };
        assert_eq!(message, format!("expected a summary object, found {found}"));
        assert_eq!(offset, body.iter().position(|b| !b.is_ascii_whitespace()).unwrap());
    }
}

/// The GKE capture with its node renamed, so warnings read as in the issue.
fn gke_as(node: &str) -> Json {
    let mut json: Json = serde_json::from_slice(&capture(GKE)).unwrap();
    json["node"]["nodeName"] = json!(node);
    json
}

#[test]
fn wrong_type_costs_one_metric() {
    let clean = gke_as("gke-1");
    let (report, expected) = parse_json(&clean, "gke-1");
    assert!(report.warnings.is_empty());
    let mut json = clean.clone();
    json["pods"][3]["containers"][0]["memory"]["usageBytes"] = json!("12");
    let (report, out) = parse_json(&json, "gke-1");
    assert_eq!(
        report.warnings,
        [
            "node gke-1: pods[3].containers[0].memory.usageBytes: expected an unsigned integer, found string \"12\""
        ]
    );
    assert_eq!(out.len(), expected.len());
    let c = &json["pods"][3];
    let key = format!(
        "namespace:{}/pod:{}/container:{}",
        c["podRef"]["namespace"].as_str().unwrap(),
        c["podRef"]["name"].as_str().unwrap(),
        c["containers"][0]["name"].as_str().unwrap()
    );
    let mut changed = 0;
    for (got, mut want) in out.iter().zip(expected) {
        if got.key.to_string() == key {
            assert!(want.values.contains(MetricId::MemoryUsage));
            want.values.remove(MetricId::MemoryUsage);
            changed += 1;
        }
        // Debug shows present values only; removed ones keep their raw bits.
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }
    assert_eq!(changed, 1);
}

#[test]
fn wrong_kinds_everywhere_are_warnings() {
    let mut json = gke_as("gke-1");
    json["node"]["network"]["rxBytes"] = json!({"a": [1, {"b": 2}]});
    json["node"]["cpu"] = json!([1, 2]);
    json["pods"][1]["network"] = json!("eth0");
    json["pods"][2]["containers"] = json!(5);
    json["pods"][4]["startTime"] = json!(true);
    json["pods"][5]["containers"][0]["startTime"] = json!("yesterday");
    json["pods"][0]["podRef"].as_object_mut().unwrap().remove("name");
    let (report, out) = parse_json(&json, "gke-1");
    let expected = [
        "node gke-1: node.cpu: expected an object, found an array",
        "node gke-1: node.network.rxBytes: expected an unsigned integer, found an object",
        "node gke-1: pods[0].podRef.name: missing; pod skipped",
        "node gke-1: pods[1].network: expected an object, found string \"eth0\"",
        "node gke-1: pods[2].containers: expected an array, found number 5",
        "node gke-1: pods[4].startTime: expected a string, found boolean true",
    ];
    assert_eq!(&report.warnings[..6], expected);
    assert_eq!(report.warnings.len(), 7);
    assert!(
        report.warnings[6].starts_with(
            "node gke-1: pods[5].containers[0].startTime: \"yesterday\" is not an RFC 3339 time"
        ),
        "{}",
        report.warnings[6]
    );

    let clean_json = gke_as("gke-1");
    let (_, clean) = parse_json(&clean_json, "gke-1");
    let containers = |i: usize| clean_json["pods"][i]["containers"].as_array().unwrap().len();
    // pods[0] is skipped with its containers; pods[2] keeps its set but loses its containers.
    assert_eq!(out.len(), clean.len() - (1 + containers(0)) - containers(2));
    let pods = json["pods"].as_array().unwrap();

    let node = find(&out, "node:gke-1");
    assert_eq!(node.values.get(MetricId::NetworkRx), None);
    assert_eq!(node.values.get(MetricId::CpuUsage), None);
    assert!(node.values.get(MetricId::NetworkTx).is_some());
    // Without cpu, the node's scrape time comes from memory.
    assert_eq!(node.scrape_time, ns(&json["node"]["memory"]["time"]));

    let name = |p: &Json| {
        format!(
            "namespace:{}/pod:{}",
            p["podRef"]["namespace"].as_str().unwrap(),
            p["podRef"]["name"].as_str().unwrap()
        )
    };
    let pod1 = find(&out, &name(&pods[1]));
    assert_eq!(pod1.values.get(MetricId::NetworkRx), None);
    // Without network stats, the pod is timed by its cpu stats.
    assert_eq!(pod1.scrape_time, ns(&pods[1]["cpu"]["time"]));
    assert_ne!(pods[1]["cpu"]["time"], clean_json["pods"][1]["network"]["time"]);
    let pod4 = find(&out, &name(&pods[4]));
    assert_eq!((pod4.create_time, pod4.values.get(MetricId::Uptime)), (0, None));
    let c = &pods[5]["containers"][0];
    let c5 = find(&out, &format!("{}/container:{}", name(&pods[5]), c["name"].as_str().unwrap()));
    assert_eq!((c5.create_time, c5.values.get(MetricId::Uptime)), (0, None));
    assert_eq!(c5.values.get_i64(MetricId::CpuUsage), c["cpu"]["usageCoreNanoSeconds"].as_i64());
}

#[test]
fn negative_and_odd_numbers() {
    let body = json!({"node": {"memory": {
            "usageBytes": -5, "workingSetBytes": 12.0, "rssBytes": 7.9, "pageFaults": 1e3,
            "majorPageFaults": 18446744073709551615u64}}});
    let (report, out) = parse_json(&body, "n1");
    let node = find(&out, "node:n1");
    assert_eq!(node.values.get(MetricId::MemoryUsage), None);
    assert_eq!(node.values.get_i64(MetricId::MemoryWorkingSet), Some(12));
    assert_eq!(node.values.get_i64(MetricId::MemoryRss), Some(7));
    assert_eq!(node.values.get_i64(MetricId::MemoryPageFaults), Some(1000));
    assert_eq!(node.values.get(MetricId::MemoryMajorPageFaults), None);
    assert_eq!(
        report.warnings,
        [
            "node n1: node.memory.usageBytes: expected an unsigned integer, found negative number -5",
            "node n1: node.memory.majorPageFaults: expected an unsigned integer, found number 18446744073709551615, which is out of range",
        ]
    );
}

#[test]
fn a_number_out_of_range_costs_only_its_value() {
    let body = br#"{"node": {"nodeName": "n1", "memory": {"usageBytes": 1e400, "workingSetBytes": -1e308,
            "rssBytes": 7, "pageFaults": -1e400}, "cpu": {"usageCoreNanoSeconds": 5}}}"#;
    let (report, out) = parse_ok(body, "n1");
    let node = find(&out, "node:n1");
    assert_eq!(node.values.get(MetricId::MemoryUsage), None);
    assert_eq!(node.values.get(MetricId::MemoryWorkingSet), None);
    assert_eq!(node.values.get_i64(MetricId::MemoryRss), Some(7));
    assert_eq!(node.values.get_i64(MetricId::CpuUsage), Some(5));
    assert_eq!(
        report.warnings,
        [
            "node n1: node.memory.usageBytes: expected an unsigned integer, found number 1e400, which is out of range",
            "node n1: node.memory.workingSetBytes: expected an unsigned integer, found negative number -1e308",
            "node n1: node.memory.pageFaults: expected an unsigned integer, found number -1e400, which is out of range",
        ]
    );
    // Broken JSON after such a number is still an error, at its place in the body.
    let body = br#"{"node": {"memory": {"usageBytes": 1e400}, "cpu": x}}"#;
    let (result, out) = parse(body, "n1");
    let Err(SummaryError::Malformed { offset, message, .. }) = result else { panic!("{result:?}") };
    assert_eq!(offset, body.iter().position(|b| *b == b'x').unwrap());
    assert_eq!(message, "expected value");
    assert!(out.is_empty());
}

#[test]
fn warnings_are_capped() {
    let containers: Vec<Json> =
        (0..150).map(|i| json!({"name": format!("c{i}"), "cpu": {"usageCoreNanoSeconds": "x"}})).collect();
    let (report, out) = parse_json(&pod_with(json!(containers)), "n1");
    assert_eq!(count(&out, "pod_container"), 150);
    assert_eq!(report.warnings.len(), MAX_WARNINGS + 1);
    assert_eq!(report.warnings[MAX_WARNINGS], "node n1: 50 more warnings not shown");
}

#[test]
fn time_forms() {
    let container = |i: usize, start: &str| {
        json!({"name": format!("c{i}"), "startTime": start,
            "cpu": {"time": "2020-01-01T00:00:10.5Z", "usageCoreNanoSeconds": 1}})
    };
    let starts = [
        "2020-01-01T00:00:00Z",
        "2020-01-01T01:00:00.25+01:00",
        "",
        GO_ZERO_TIME,
        "9999-01-01T00:00:00Z",
        "2020-01-01",
    ];
    let (report, out) =
        parse_json(&pod_with(starts.iter().enumerate().map(|(i, s)| container(i, s)).collect()), "n1");
    let set = |i: usize| find(&out, &format!("namespace:n/pod:p/container:c{i}"));
    let scrape = 1_577_836_810_500_000_000;
    assert_eq!(set(0).scrape_time, scrape);
    assert_eq!(set(0).values.get_i64(MetricId::Uptime), Some(10_500));
    assert_eq!(set(1).create_time, 1_577_836_800_250_000_000);
    assert_eq!(set(1).values.get_i64(MetricId::Uptime), Some(10_250));
    for absent in 2..starts.len() {
        assert_eq!((set(absent).create_time, set(absent).values.get(MetricId::Uptime)), (0, None));
    }
    // Go's zero time is Heapster's "no start time": no warning for it.
    let warned: Vec<_> = report.warnings.iter().map(|w| w.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        warned,
        [
            "pods[0].containers[2].startTime",
            "pods[0].containers[4].startTime",
            "pods[0].containers[5].startTime"
        ]
    );
    assert!(report.warnings[1].ends_with("\"9999-01-01T00:00:00Z\" is out of range"));
}

/// The direct reading of the kubelet's usual time form agrees with jiff's, day by day over
/// the years it reads and at the edges of every field.
#[test]
fn usual_times_read_as_jiff_reads_them() {
    let jiff_ns =
        |s: &str| s.parse::<jiff::Timestamp>().ok().and_then(|t| i64::try_from(t.as_nanosecond()).ok());
    let mut checked = 0;
    let mut day = jiff::civil::date(1677, 1, 1);
    while day.year() < 2263 {
        for time in ["00:00:00", "23:59:59", "12:34:56"] {
            let s = format!("{day}T{time}Z");
            assert_eq!(super::utc_seconds_ns(&s).or_else(|| jiff_ns(&s)), jiff_ns(&s), "{s}");
            checked += usize::from(super::utc_seconds_ns(&s).is_some());
        }
        day = day.tomorrow().unwrap();
    }
    assert!(checked > 3 * 365 * 580, "{checked}");
    for s in [
        "2020-02-29T00:00:00Z",
        "2019-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2000-02-29T00:00:00Z",
        "2020-04-31T00:00:00Z",
        "2020-00-10T00:00:00Z",
        "2020-13-10T00:00:00Z",
        "2020-01-00T00:00:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T23:60:00Z",
        "2020-01-01T23:59:60Z",
        "2020-01-01t00:00:00Z",
        "2020-01-01T00:00:00z",
        "2020-01-01 00:00:00Z",
        "2020-01-01T00:00:0xZ",
        "+020-01-01T00:00:00Z",
        "2020-01-01T00:00:00.5Z",
        "2020-01-01T00:00:00+00:00",
    ] {
        let direct = super::utc_seconds_ns(s);
        assert!(direct.is_none() || direct == jiff_ns(s), "{s}: {direct:?} against {:?}", jiff_ns(s));
        assert_eq!(super::parse_time(s).ok().flatten(), jiff_ns(s), "{s}");
    }
}

fn pod_with(containers: Json) -> Json {
    json!({"pods": [{"podRef": {"name": "p", "namespace": "n"}, "containers": containers}]})
}

#[test]
fn duplicate_container_keeps_the_newer() {
    let old = json!({"name": "app", "startTime": "2020-01-01T00:00:00Z", "cpu": {"usageCoreNanoSeconds": 1}});
    let new = json!({"name": "app", "startTime": "2020-01-02T00:00:00Z", "cpu": {"usageCoreNanoSeconds": 2}});
    for containers in [json!([old, new]), json!([new, old])] {
        let (report, out) = parse_json(&pod_with(containers), "n1");
        assert_eq!(count(&out, "pod_container"), 1);
        assert_eq!(report.sets, out.len());
        let set = find(&out, "namespace:n/pod:p/container:app");
        assert_eq!(set.values.get_i64(MetricId::CpuUsage), Some(2));
        assert_eq!(set.create_time, ns(&new["startTime"]));
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("namespace:n/pod:p/container:app appears twice"));
    }
}

#[test]
fn custom_metrics_and_accelerators() {
    let body = pod_with(json!([{"name": "gpu", "accelerators": [
                {"make": "nvidia", "model": "tesla-p100", "id": "GPU-1", "memoryTotal": 100, "memoryUsed": 40, "dutyCycle": 7},
                {"make": "nvidia", "model": "tesla-p100", "id": "GPU-2", "memoryTotal": 100}],
            "userDefinedMetrics": [
                {"name": "qps", "type": "gauge", "units": "1/s", "time": "2020-01-01T00:00:00Z", "value": 2.5},
                {"name": "reqs", "type": "cumulative", "value": 10},
                {"name": "delta", "type": "delta", "value": 1},
                {"name": "hist", "type": "histogram", "value": 1},
                {"name": "noval", "type": "gauge"}]}]));
    let (report, out) = parse_json(&body, "n1");
    assert_eq!(
        report.warnings,
        [
            "node n1: pods[0].containers[0].userDefinedMetrics[3].type: unknown type \"histogram\"; metric skipped"
        ]
    );
    let set = find(&out, "namespace:n/pod:p/container:gpu");
    let gpu = |id: &str| Resource::accelerator("nvidia".into(), "tesla-p100".into(), id.into());
    assert_eq!(
        set.labeled_value(LabeledMetricId::AcceleratorMemoryUsed, &gpu("GPU-1")),
        Some(Value::Int(40))
    );
    assert_eq!(set.labeled_value(LabeledMetricId::AcceleratorDutyCycle, &gpu("GPU-1")), Some(Value::Int(7)));
    assert_eq!(
        set.labeled_value(LabeledMetricId::AcceleratorMemoryTotal, &gpu("GPU-2")),
        Some(Value::Int(100))
    );
    assert_eq!(set.labeled_value(LabeledMetricId::AcceleratorDutyCycle, &gpu("GPU-2")), None);
    let custom: Vec<_> = set
        .labeled
        .iter()
        .filter_map(|l| match &l.metric {
            LabeledMetric::Custom(c) => Some((c.name.as_str(), c.kind, l.value, &l.resource)),
            _ => None,
        })
        .collect();
    assert_eq!(
        custom,
        [
            ("custom/qps", Kind::Gauge, Value::Float(2.5), &Resource::None),
            ("custom/reqs", Kind::Cumulative, Value::Float(10.0), &Resource::None),
            ("custom/delta", Kind::Gauge, Value::Float(1.0), &Resource::None),
        ]
    );
}

#[test]
fn names_escapes_and_interning() {
    let body = br#"{"pods": [{"podRef": {"name": "web\u002d1", "namespace": "n"}, "containers": [{"name": "c"}]},
                                 {"podRef": {"name": "web-2", "namespace": "n"}, "containers": [{"name": "c"}]}]}"#;
    let mut interner = Interner::default();
    let mut out = Vec::new();
    let report = parse_summary(body, &NodeTarget::named("n1"), 0, &mut interner, &mut out).unwrap();
    assert_eq!(report.sets, 5);
    find(&out, "namespace:n/pod:web-1/container:c");
    let namespaces: Vec<_> = out.iter().filter_map(|s| s.key.pod().map(|(ns, _)| ns.clone())).collect();
    assert_eq!(namespaces.len(), 4);
    assert!(namespaces.windows(2).all(|w| std::ptr::eq(w[0].as_str(), w[1].as_str())), "one shared name");
    // Appends after what is already there.
    let report = parse_summary(body, &NodeTarget::named("n1"), 0, &mut interner, &mut out).unwrap();
    assert_eq!((report.sets, out.len()), (5, 10));
}

#[test]
fn node_identity_comes_from_the_target() {
    let mut target = NodeTarget::named("gke-1");
    target.hostname = Name::new("host-1");
    target.host_id = Name::new("gce://p/z/gke-1");
    target.schedulable = false;
    target.schedulable_label = true;
    let mut out = Vec::new();
    let report = parse_summary(&capture(GKE), &target, 0, &mut Interner::default(), &mut out).unwrap();
    assert_eq!(report.warnings, [format!("node gke-1: node.nodeName: the body is from node {GKE_NODE:?}")]);
    let node = find(&out, "node:gke-1");
    assert_eq!(label(node, LabelId::Hostname), Some("host-1"));
    assert_eq!(label(node, LabelId::HostId), Some("gce://p/z/gke-1"));
    assert_eq!(label(node, LabelId::Schedulable), Some("false"));
    let kubelet = find(&out, "node:gke-1/container:kubelet");
    assert_eq!(label(kubelet, LabelId::HostId), Some("gce://p/z/gke-1"));
}

#[test]
fn deep_nesting_does_not_recurse() {
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = |template: &str| template.replace('X', &deep(100_000)).into_bytes();

    // Only the summary's own structure is decoded recursively; anything deeper is skipped by
    // serde_json's iterative skipper, so no input can exhaust the stack.
    let (result, _) = parse(&body(r#"{"pods": X}"#), "n1");
    assert_eq!(result.unwrap().warnings, ["node n1: pods[0]: expected an object, found an array"]);
    let (result, _) = parse(&body(r#"{"node": {"cpu": {"usageCoreNanoSeconds": X}}}"#), "n1");
    assert_eq!(
        result.unwrap().warnings,
        ["node n1: node.cpu.usageCoreNanoSeconds: expected an unsigned integer, found an array"]
    );
    let (result, _) = parse(&body(r#"{"node": {"unknown": X}}"#), "n1");
    assert_eq!(result.unwrap().sets, 1);
    let (result, _) = parse(&body("X"), "n1");
    let Err(SummaryError::Malformed { message, .. }) = result else { panic!("{result:?}") };
    assert_eq!(message, "expected a summary object, found an array");
}

/// Cuts and corrupts both captures at many places: every result is a value or an error.
#[test]
fn never_panics() {
    for name in [GKE, WINDOWS] {
        let body = capture(name);
        for cut in (0..body.len()).step_by(97) {
            let (result, out) = parse(&body[..cut], "n1");
            assert!(result.is_err() && out.is_empty(), "{name} cut at {cut}");
        }
        for (n, at) in (0..body.len()).step_by(389).enumerate() {
            let mut bad = body.clone();
            bad[at] = b"\"{}[],:-0e.x\\\xff"[n % 14];
            if let (Ok(report), out) = parse(&bad, "n1") {
                assert_eq!(report.sets, out.len());
            }
        }
    }
}

/// `cargo test --release -p heapster --lib parse_speed -- --ignored --nocapture`; the body is
/// the GKE capture, or the file `SUMMARY_SPEED_BODY` names (a synthesized node's, say).
#[test]
#[ignore]
fn parse_speed() {
    let (body, node) = match std::env::var_os("SUMMARY_SPEED_BODY") {
        Some(path) => (std::fs::read(path).unwrap(), "n1"),
        None => (capture(GKE), GKE_NODE),
    };
    let target = NodeTarget::named(node);
    let mut interner = Interner::default();
    let mut out = Vec::new();
    let rounds = 1_000;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        out.clear();
        parse_summary(&body, &target, 0, &mut interner, &mut out).unwrap();
    }
    let elapsed = start.elapsed();
    let sets = out.len() * rounds;
    let mb = (body.len() * rounds) as f64 / 1e6;
    println!(
        "{rounds} x {} B: {elapsed:?}, {:.0} MB/s, {:.2} M sets/s",
        body.len(),
        mb / elapsed.as_secs_f64(),
        sets as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert!(sets > 0);
}

/// The day cache reads every time as [`super::utc_seconds_ns`] does, whatever came before it:
/// the same day, another, an invalid one, or another form.
#[test]
fn day_cache_reads_as_the_direct_reading() {
    let times = [
        "2024-05-01T10:00:00Z",
        "2024-05-01T23:59:59Z",
        "2024-05-02T00:00:00Z",
        "2024-05-01T00:00:01Z",
        "2024-04-01T00:00:01Z",
        "2024-05-01T00:00:02Z",
        "2024-04-01T00:00:03Z",
        "2024-02-30T00:00:00Z",
        "2024-02-29T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "2024-02-29T24:00:00Z",
        "2024-02-29T12:00:00.5Z",
        "\0\0\0\0\0\0\0\0\0\0T00:00:00Z",
        GO_ZERO_TIME,
        "2024-02-29T12:60:00Z",
        "2024-02-29T12:00:01Z",
        "2261-12-31T23:59:59Z",
        "2262-01-01T00:00:00Z",
        "1678-01-01T00:00:00Z",
    ];
    let mut cache = super::DayCache::default();
    let mut read = 0;
    for round in 0..2 {
        for s in times {
            assert_eq!(cache.utc_seconds_ns(s), super::utc_seconds_ns(s), "round {round}: {s:?}");
            read += usize::from(cache.utc_seconds_ns(s).is_some());
        }
    }
    assert_eq!(read, 2 * 11);
}
