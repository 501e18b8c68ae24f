//! The direct reader against the serde path: the same sets and report for every capture and for
//! pods of every key order, and the bodies it leaves to the byte reader left to it.

use super::super::{SummaryError, SummaryReport, fast, parse_summary, parse_summary_serde};
use super::*;

const FALLBACK_NS: i64 = 1_700_000_000_000_000_000;

type Outcome = Result<(SummaryReport, Vec<MetricSet>), String>;

fn outcome(result: Result<SummaryReport, SummaryError>, out: Vec<MetricSet>) -> Outcome {
    result.map(|report| (report, out)).map_err(|e| e.to_string())
}

/// Each path with its own interner: the direct reader alone (`None` when it gives up), the
/// whole parse, and the serde path. Panics (with `what`) when the parse and serde differ, or
/// the direct reader and serde do where it takes the body.
fn paths(body: &[u8], node: &NodeTarget, what: &str) -> (Option<Vec<MetricSet>>, Outcome) {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    let direct =
        decode(text, node, FALLBACK_NS, &mut Interner::default(), &mut out).ok().map(|report| (report, out));
    let run = |parse: fn(&[u8], &NodeTarget, i64, &mut Interner, &mut Vec<MetricSet>) -> _| {
        let mut out = Vec::new();
        outcome(parse(body, node, FALLBACK_NS, &mut Interner::default(), &mut out), out)
    };
    let (whole, serde) = (run(parse_summary), run(parse_summary_serde));
    assert_eq!(whole, serde, "{what}: {}", String::from_utf8_lossy(body));
    if let Some(direct) = &direct {
        assert_eq!(Ok(direct), serde.as_ref(), "{what}: {}", String::from_utf8_lossy(body));
    }
    (direct.map(|(_, sets)| sets), serde)
}

fn capture(file: &str) -> Vec<u8> {
    let path = format!("{}/../shared/captures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn captures_are_read_directly_with_the_same_sets() {
    for (file, node) in [
        ("kubelet-summary-gke.json", "gke-lenaic-pool-1-1c8b424c-wnkn"),
        ("kubelet-summary-windows.json", "ip-172-29-160-189.ec2.internal"),
    ] {
        let body = capture(file);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // As served, and compact with its keys sorted (serde_json's map), out of the usual order.
        for (what, body) in
            [(file.to_owned(), body), (format!("{file} sorted"), serde_json::to_vec(&json).unwrap())]
        {
            let (direct, serde) = paths(&body, &NodeTarget::named(node), &what);
            let sets = direct.unwrap_or_else(|| panic!("{what}: the direct reader gave up"));
            assert!(sets.len() >= 10, "{what}: {} sets", sets.len());
            assert!(serde.unwrap().0.warnings.is_empty(), "{what}");
        }
    }
}

/// A pod as kubelets send it, `{}` replaced by its `podRef` and the rest of its keys.
const POD: &str = r#"{
    "podRef": {"name": "web-{i}", "namespace": "ns-{n}", "uid": "uid-{i}"},
    "startTime": "2024-05-01T10:00:00Z",
    "containers": [
        {"name": "app", "startTime": "2024-05-01T10:00:01Z",
         "cpu": {"time": "2024-05-01T12:00:00Z", "usageNanoCores": 5, "usageCoreNanoSeconds": 123456789},
         "memory": {"time": "2024-05-01T12:00:01Z", "availableBytes": 1, "usageBytes": 2000, "workingSetBytes": 1500,
                    "rssBytes": 1000, "pageFaults": 10, "majorPageFaults": 1},
         "rootfs": {"time": "2024-05-01T12:00:00Z", "availableBytes": 100, "capacityBytes": 200, "usedBytes": 50,
                    "inodesFree": 7, "inodes": 9, "inodesUsed": 2},
         "logs": {"time": "2024-05-01T12:00:00Z", "availableBytes": 300, "capacityBytes": 400, "usedBytes": 60,
                  "inodesFree": 3, "inodes": 4, "inodesUsed": 1},
         "userDefinedMetrics": null},
        {"name": "sidecar", "startTime": "2024-05-01T10:00:02Z",
         "cpu": {"time": "2024-05-01T12:00:00Z", "usageCoreNanoSeconds": 42},
         "memory": null,
         "rootfs": {"usedBytes": 5, "inodes": 6},
         "accelerators": []}
    ],
    "cpu": {"time": "2024-05-01T12:00:02Z", "usageNanoCores": 9, "usageCoreNanoSeconds": 999},
    "memory": {"time": "2024-05-01T12:00:03Z", "usageBytes": 3000, "workingSetBytes": 2500},
    "network": {"time": "2024-05-01T12:00:04Z", "name": "eth0", "rxBytes": 11, "rxErrors": 0, "txBytes": 22,
                "interfaces": [{"name": "eth0", "rxBytes": 11, "txBytes": 22, "txErrors": 1},
                               {"name": "eth1", "rxBytes": 5, "txErrors": 2}, null]},
    "volume": [
        {"time": "2024-05-01T12:00:00Z", "availableBytes": 1, "capacityBytes": 2, "usedBytes": 3, "inodesFree": 4,
         "inodes": 5, "inodesUsed": 1, "name": "data"},
        {"usedBytes": 8, "name": "token"}, null
    ],
    "ephemeral-storage": {"time": "2024-05-01T12:00:00Z", "usedBytes": 110}
}"#;

/// A change to one pod's text.
type Edit = Box<dyn Fn(String) -> String>;

/// A body of `pods` pods made from [`POD`] by `edit`, with a node.
fn body_of(pods: usize, edit: impl Fn(String) -> String) -> Vec<u8> {
    let pods: Vec<String> = (0..pods)
        .map(|i| edit(POD.replace("{i}", &i.to_string()).replace("{n}", &(i % 3).to_string())))
        .collect();
    format!(
        r#"{{"node": {{"nodeName": "n1", "startTime": "2024-05-01T09:00:00Z",
            "cpu": {{"time": "2024-05-01T12:00:00Z", "usageCoreNanoSeconds": 5}}}},
           "pods": [{}]}}"#,
        pods.join(",")
    )
    .into_bytes()
}

/// Moves member `key` of each of `text`'s objects that has it to the object's end.
fn member_last(text: &str, key: &str) -> String {
    let mut json: serde_json::Value = serde_json::from_str(text).unwrap();
    fn walk(v: &mut serde_json::Value, key: &str) -> String {
        match v {
            serde_json::Value::Object(map) => {
                let mut members: Vec<String> = Vec::new();
                let mut last = None;
                for (k, v) in map.iter_mut() {
                    let member = format!("{}:{}", serde_json::to_string(k).unwrap(), walk(v, key));
                    if k == key { last = Some(member) } else { members.push(member) }
                }
                members.extend(last);
                format!("{{{}}}", members.join(","))
            }
            serde_json::Value::Array(items) => {
                format!("[{}]", items.iter_mut().map(|v| walk(v, key)).collect::<Vec<_>>().join(","))
            }
            other => other.to_string(),
        }
    }
    walk(&mut json, key)
}

#[test]
fn pods_of_every_usual_and_unusual_key_order_are_read_directly() {
    let node = NodeTarget::named("n1");
    let edits: Vec<(&str, Edit)> = vec![
        ("as sent", Box::new(|p| p)),
        ("podRef last", Box::new(|p| member_last(&p, "podRef"))),
        ("name last", Box::new(|p| member_last(&p, "name"))),
        ("rootfs last", Box::new(|p| member_last(&p, "rootfs"))),
        ("time last", Box::new(|p| member_last(&p, "time"))),
        (
            "no network counters",
            Box::new(|p| p.replace("\"rxBytes\": 11, \"rxErrors\": 0, \"txBytes\": 22,", "")),
        ),
        (
            "nulls",
            Box::new(|p| {
                p.replace(
                    "\"cpu\": {\"time\": \"2024-05-01T12:00:02Z\"",
                    "\"cpu\": null, \"x\": {\"time\": \"\"",
                )
                .replace("\"ephemeral-storage\": {", "\"ephemeral-storage\": null, \"y\": {")
            }),
        ),
        (
            "no times",
            Box::new(|p| p.replace("\"time\": \"2024-05-01T12:00:0", "\"t\": \"2024-05-01T12:00:0")),
        ),
        (
            "zero times",
            Box::new(|p| {
                p.replace("2024-05-01T12:00:02Z", "0001-01-01T00:00:00Z")
                    .replace("2024-05-01T12:00:04Z", "0001-01-01T00:00:00Z")
            }),
        ),
        ("odd time forms", Box::new(|p| p.replace("2024-05-01T12:00:04Z", "2024-05-01T12:00:04.5+02:00"))),
        ("no uid", Box::new(|p| p.replace("\"uid\": \"uid-", "\"x\": \"uid-"))),
        ("empty uid", Box::new(|p| p.replace("\"uid-", "\"").replace("\"uid\": \"0\"", "\"uid\": \"\""))),
        (
            "unknown members",
            Box::new(|p| p.replace("\"startTime\"", "\"extra\": [1, {\"a\": null}], \"startTime\"")),
        ),
    ];
    for (what, edit) in edits {
        let body = body_of(4, edit);
        let (direct, serde) = paths(&body, &node, what);
        let (report, sets) = serde.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(report.warnings.is_empty(), "{what}: {:?}", report.warnings);
        // The node, then each pod with its two containers.
        assert_eq!(sets.len(), 1 + 4 * 3, "{what}");
        assert_eq!(direct.as_ref(), Some(&sets), "{what}: the direct reader gave up");
    }
}

#[test]
fn bodies_that_warn_or_hold_rare_parts_are_left_to_the_byte_reader() {
    let node = NodeTarget::named("n1");
    let edits: Vec<(&str, Edit)> = vec![
        ("no podRef", Box::new(|p| p.replacen("\"podRef\"", "\"ref\"", 1))),
        (
            "podRef null",
            Box::new(|p| {
                p.replacen(
                    "\"podRef\": {\"name\": \"web-0\", \"namespace\": \"ns-0\", \"uid\": \"uid-0\"}",
                    "\"podRef\": null",
                    1,
                )
            }),
        ),
        ("pod without a name", Box::new(|p| p.replacen("\"name\": \"web-", "\"nom\": \"web-", 1))),
        ("empty namespace", Box::new(|p| p.replacen("\"ns-0\"", "\"\"", 1))),
        ("container without a name", Box::new(|p| p.replacen("\"name\": \"sidecar\"", "\"name\": \"\"", 1))),
        ("volume without a name", Box::new(|p| p.replacen("\"name\": \"token\"", "\"nom\": \"token\"", 1))),
        ("container twice", Box::new(|p| p.replacen("\"name\": \"sidecar\"", "\"name\": \"app\"", 1))),
        ("bad time", Box::new(|p| p.replacen("2024-05-01T10:00:01Z", "yesterday", 1))),
        (
            "accelerators",
            Box::new(|p| {
                p.replacen("\"accelerators\": []", "\"accelerators\": [{\"make\": \"nvidia\", \"model\": \"t4\", \"id\": \"gpu-0\", \"memoryTotal\": 16, \"memoryUsed\": 2, \"dutyCycle\": 50}]", 1)
            }),
        ),
        (
            "custom metrics",
            Box::new(|p| {
                p.replacen(
                    "\"userDefinedMetrics\": null",
                    "\"userDefinedMetrics\": [{\"name\": \"qps\", \"type\": \"gauge\", \"value\": 3}]",
                    1,
                )
            }),
        ),
        ("wrong kind", Box::new(|p| p.replacen("\"usageBytes\": 2000", "\"usageBytes\": \"2000\"", 1))),
        (
            "duplicate member",
            Box::new(|p| p.replacen("\"usageBytes\": 2000", "\"usageBytes\": 2000, \"usageBytes\": 1", 1)),
        ),
    ];
    for (what, edit) in edits {
        // Only the first pod of the body is edited.
        let pods: Vec<String> =
            (0..3).map(|i| POD.replace("{i}", &i.to_string()).replace("{n}", &i.to_string())).collect();
        let first = edit(pods[0].clone());
        assert_ne!(first, pods[0], "{what}: the edit changed nothing");
        let body = format!("{{\"pods\": [{first},{}]}}", pods[1..].join(","));
        let (direct, _) = paths(body.as_bytes(), &node, what);
        assert!(direct.is_none(), "{what}: the direct reader took it");
        let mut out = Vec::new();
        let text = std::str::from_utf8(body.as_bytes()).unwrap();
        let taken = fast::decode(text, &node, FALLBACK_NS, &mut Interner::default(), &mut out).is_ok();
        assert_eq!(taken, !matches!(what, "wrong kind" | "duplicate member"), "{what}");
    }
}
