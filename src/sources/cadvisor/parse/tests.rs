//! The cAdvisor parser against real captures and hand-edited bodies.

use serde_json::{Value as Json, json};

use super::*;

const GKE: &str = "cadvisor-v1.3-subcontainers-gke-2016.json";
const DD: &str = "cadvisor-1.2.json";

fn capture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn target(name: &str) -> NodeTarget {
    let mut t = NodeTarget::named(name);
    t.host_id = Name::new("id-1");
    t
}

fn parse(body: &[u8], machine: Option<&[u8]>) -> (Result<CadvisorReport, CadvisorError>, Vec<MetricSet>) {
    let mut out = Vec::new();
    let labels = Name::new("region:eu,role:web");
    let result = parse_cadvisor(
        Bodies { subcontainers: body, machine },
        &target("h1"),
        Some(&labels),
        &mut Interner::default(),
        &mut out,
    );
    (result, out)
}

fn ns(v: &Json) -> i64 {
    let ts: jiff::Timestamp = v.as_str().expect("time").parse().expect("RFC 3339");
    ts.as_nanosecond() as i64
}

fn int(set: &MetricSet, id: MetricId) -> Option<i64> {
    set.values.get(id).map(Value::as_i64)
}

fn labeled(set: &MetricSet, id: LabeledMetricId, resource: &str) -> Option<i64> {
    set.labeled_value(id, &Resource::Id(Name::new(resource))).map(Value::as_i64)
}

fn key_of(c: &Json) -> String {
    let name = c["name"].as_str().expect("name");
    if name == "/" {
        return "node:h1".into();
    }
    let l = &c["spec"]["labels"];
    match (l["io.kubernetes.pod.namespace"].as_str(), l["io.kubernetes.pod.name"].as_str()) {
        (Some(ns), Some(pod)) => match l["io.kubernetes.container.name"].as_str().expect("container") {
            "POD" => format!("namespace:{ns}/pod:{pod}"),
            c => format!("namespace:{ns}/pod:{pod}/container:{c}"),
        },
        _ => format!("node:h1/container:{}", &name[1..]),
    }
}

/// Every value the parser emitted equals the capture's newest sample, and every number the
/// catalog maps is emitted.
fn check_capture(name: &str) -> Vec<MetricSet> {
    let body = capture(name);
    let json: Json = serde_json::from_slice(&body).expect("json");
    let (result, out) = parse(&body, None);
    let report = result.expect("parses");
    assert_eq!(report.warnings, Vec::<String>::new(), "{name} parses with no warnings");
    let containers = json.as_array().expect("array");
    assert_eq!(out.len(), containers.len(), "one set per container");
    for c in containers {
        let key = key_of(c);
        let set = out.iter().find(|s| s.key.to_string() == key).unwrap_or_else(|| panic!("{key}"));
        let stats = c["stats"].as_array().expect("stats");
        let newest = stats.iter().max_by_key(|s| ns(&s["timestamp"])).expect("a sample");
        assert_eq!(set.scrape_time, ns(&newest["timestamp"]), "{key}");
        let created = ns(&c["spec"]["creation_time"]);
        assert_eq!(set.create_time, created, "{key}");
        assert_eq!(int(set, MetricId::Uptime), Some((set.scrape_time - created) / 1_000_000), "{key}");
        let is_pod = matches!(set.key, EntityKey::Pod { .. });
        let is_node = matches!(set.key, EntityKey::Node { .. });
        let n = |v: &Json| v.as_i64().expect("integer");
        if is_pod {
            assert_eq!(int(set, MetricId::CpuUsage), None, "{key}: the pause container is not summed");
        } else {
            let m = &newest["memory"];
            let expect = [
                (MetricId::CpuUsage, n(&newest["cpu"]["usage"]["total"])),
                (MetricId::CpuLoad, n(&newest["cpu"]["load_average"])),
                (MetricId::MemoryUsage, n(&m["usage"])),
                (MetricId::MemoryWorkingSet, n(&m["working_set"])),
                (MetricId::MemoryRss, n(&m["rss"])),
                (MetricId::MemoryCache, n(&m["cache"])),
                (MetricId::MemoryPageFaults, n(&m["container_data"]["pgfault"])),
                (MetricId::MemoryMajorPageFaults, n(&m["container_data"]["pgmajfault"])),
            ];
            for (id, v) in expect {
                assert_eq!(int(set, id), Some(v), "{key} {}", id.name());
            }
            for fs in newest["filesystem"].as_array().into_iter().flatten() {
                let dev = fs["device"].as_str().expect("device");
                assert_eq!(labeled(set, LabeledMetricId::FsUsage, dev), Some(n(&fs["usage"])), "{key} {dev}");
                assert_eq!(
                    labeled(set, LabeledMetricId::FsLimit, dev),
                    Some(n(&fs["capacity"])),
                    "{key} {dev}"
                );
                let available = labeled(set, LabeledMetricId::FsAvailable, dev);
                assert_eq!(available, is_node.then(|| n(&fs["available"])), "{key} {dev}");
            }
            for disk in newest["diskio"]["io_service_bytes"].as_array().into_iter().flatten() {
                let id = format!("{}:{}", disk["major"], disk["minor"]);
                let read = labeled(set, LabeledMetricId::DiskIoReadBytes, &id);
                assert_eq!(read, Some(n(&disk["stats"]["Read"])), "{key} {id}");
                let write = labeled(set, LabeledMetricId::DiskIoWriteBytes, &id);
                assert_eq!(write, Some(n(&disk["stats"]["Write"])), "{key} {id}");
            }
        }
        let net = &newest["network"];
        let network = [
            (MetricId::NetworkRx, n(&net["rx_bytes"])),
            (MetricId::NetworkRxErrors, n(&net["rx_errors"])),
            (MetricId::NetworkTx, n(&net["tx_bytes"])),
            (MetricId::NetworkTxErrors, n(&net["tx_errors"])),
        ];
        for (id, v) in network {
            let expected = (is_pod || is_node).then_some(v);
            assert_eq!(int(set, id), expected, "{key} {}", id.name());
        }
    }
    out
}

fn find<'s>(out: &'s [MetricSet], key: &str) -> &'s MetricSet {
    out.iter().find(|s| s.key.to_string() == key).unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn gke_capture_matches_its_json() {
    let out = check_capture(GKE);
    let types = |t: &str| out.iter().filter(|s| s.key.type_label() == t).count();
    assert_eq!((types("node"), types("pod"), types("pod_container"), types("sys_container")), (1, 4, 7, 3));
    let node = find(&out, "node:h1");
    // The numbers as the capture has them, by hand, so a mapping mistake cannot hide.
    assert_eq!(int(node, MetricId::CpuUsage), Some(115_396_052_079_869));
    assert_eq!(int(node, MetricId::MemoryWorkingSet), Some(1_408_573_440));
    assert_eq!(int(node, MetricId::NetworkRx), Some(11_128_129_965));
    let dev = "/dev/disk/by-uuid/0f4155c3-2c08-43f0-9949-b25bb21e3561";
    assert_eq!(labeled(node, LabeledMetricId::FsLimit, dev), Some(105_553_100_800));
    assert_eq!(labeled(node, LabeledMetricId::DiskIoWriteBytes, "8:0"), Some(70_899_392_512));
    assert_eq!(node.labels.get(LabelId::Labels).map(Name::as_str), Some("region:eu,role:web"));
    assert_eq!(node.labels.get(LabelId::HostId).map(Name::as_str), Some("id-1"));
    let c = find(&out, "namespace:kube-system/pod:kube-dns-v11-63tae/container:skydns");
    assert_eq!(c.labels.get(LabelId::PodId).map(Name::as_str), Some("5754714c-0054-11e6-9a89-42010af00098"));
    assert_eq!(c.labels.get(LabelId::ContainerName).map(Name::as_str), Some("skydns"));
    assert!(c.labels.get(LabelId::ContainerBaseImage).is_some());
    assert_eq!(c.labels.get(LabelId::Labels), None, "host metadata is the node's");
    let sys = find(&out, "node:h1/container:docker-daemon");
    assert_eq!(sys.labels.get(LabelId::ContainerName).map(Name::as_str), Some("docker-daemon"));
}

#[test]
fn dd_agent_capture_matches_its_json() {
    let out = check_capture(DD);
    let c = find(&out, "namespace:default/pod:dd-agent-1rxlh/container:dd-agent");
    assert_eq!(int(c, MetricId::MemoryUsage), Some(101_560_320));
    assert_eq!(int(c, MetricId::MemoryPageFaults), Some(17_755_275));
    assert_eq!(labeled(c, LabeledMetricId::FsUsage, "/dev/sda1"), Some(57_970_688));
    assert!(out.iter().any(|s| s.key.to_string() == "node:h1/container:system"));
}

#[test]
fn machine_gives_capacity_and_allocatable() {
    let machine = br#"{"num_cores": 2, "memory_capacity": 3892248576, "machine_id": "x", "filesystems": []}"#;
    let (result, out) = parse(&capture(GKE), Some(machine));
    assert!(result.expect("parses").warnings.is_empty());
    let node = find(&out, "node:h1");
    assert_eq!(node.values.get(MetricId::CpuNodeCapacity), Some(Value::Float(2000.0)));
    assert_eq!(node.values.get(MetricId::CpuNodeAllocatable), Some(Value::Float(2000.0)));
    assert_eq!(node.values.get(MetricId::MemoryNodeCapacity), Some(Value::Float(3_892_248_576.0)));
    let (result, _) = parse(&capture(GKE), Some(b"[1]"));
    let err = result.expect_err("not an object").to_string();
    assert!(err.contains("host h1: cAdvisor machine body is not an object"), "{err}");
}

#[test]
fn truncated_body_names_host_and_place() {
    let body = capture(GKE);
    let (result, out) = parse(&body[..1000], None);
    let err = result.expect_err("truncated").to_string();
    assert!(err.starts_with("host h1: malformed cAdvisor subcontainers body at line 1, column"), "{err}");
    assert!(out.is_empty(), "nothing appended on error");
    let (result, _) = parse(br#"{"name": "/"}"#, None);
    let err = result.expect_err("an object").to_string();
    assert!(err.contains("not an array of containers; found an object"), "{err}");
}

fn gke_with(edit: impl FnOnce(&mut Json)) -> (CadvisorReport, Vec<MetricSet>) {
    let mut json: Json = serde_json::from_slice(&capture(GKE)).expect("json");
    edit(&mut json);
    let body = serde_json::to_vec(&json).expect("encode");
    let (result, out) = parse(&body, None);
    (result.expect("parses"), out)
}

fn root(json: &mut Json) -> &mut Json {
    json.as_array_mut().expect("array").iter_mut().find(|c| c["name"] == "/").expect("root")
}

#[test]
fn wrong_type_costs_one_value() {
    let (report, out) = gke_with(|j| {
        let root = root(j);
        for s in root["stats"].as_array_mut().expect("stats") {
            s["memory"]["usage"] = json!("12");
            s["cpu"]["usage"] = json!([1]);
        }
    });
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(
        report.warnings[0]
            .contains("host h1: containers[14] (/).stats[].cpu.usage: expected an object, found an array"),
        "{:?}",
        report.warnings
    );
    assert!(
        report.warnings[1]
            .contains("stats[].memory.usage: expected an unsigned integer, found string \"12\""),
        "{:?}",
        report.warnings
    );
    let node = find(&out, "node:h1");
    assert_eq!(int(node, MetricId::MemoryUsage), None);
    assert_eq!(int(node, MetricId::CpuUsage), None);
    assert_eq!(int(node, MetricId::MemoryWorkingSet), Some(1_408_573_440), "the rest stays");
    assert_eq!(out.len(), 15);
}

#[test]
fn containers_without_samples_or_names_are_skipped() {
    let (report, out) = gke_with(|j| {
        let list = j.as_array_mut().expect("array");
        list[0]["stats"] = json!([]);
        list[1]["name"] = json!(7);
        list[2]["stats"] = json!([{"timestamp": "yesterday"}]);
    });
    assert_eq!(out.len(), 12);
    assert_eq!(report.warnings.len(), 4, "{:?}", report.warnings);
}

#[test]
fn never_panics() {
    let body = capture(DD);
    for cut in (0..body.len()).step_by(997) {
        let _ = parse(&body[..cut], None);
    }
    for garbage in [&b"\xff\xfe"[..], b"null", b"[null, 1, \"x\", {}]", b"[[[[[[[[[[", b""] {
        let _ = parse(garbage, Some(garbage));
    }
    // null is absent, as elsewhere; a number and a nameless object are warned about.
    let (result, out) = parse(b"[null, 1, {}]", None);
    assert_eq!(result.expect("parses").warnings.len(), 2);
    assert!(out.is_empty());
}
