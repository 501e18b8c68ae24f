//! Node, pod and namespace lists against real captures and hand-edited bodies.

use serde_json::{Value, json};

use super::*;

fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/../shared/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn node(value: Value) -> Node {
    serde_json::from_value(value).unwrap()
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

fn ready_condition(status: &str) -> Value {
    json!({"type": "Ready", "status": status})
}

#[test]
fn minikube_node_capture() {
    let node: Node = serde_json::from_slice(&capture("k8s-node-minikube-2019.json")).unwrap();
    let target = node_target(&node).unwrap();
    assert_eq!(target.name.as_str(), "minikube");
    assert_eq!(target.hostname.as_str(), "minikube");
    assert_eq!(target.address.as_deref(), Some("192.168.64.107"));
    assert!(target.ready);
    assert!(target.schedulable);
    assert_eq!(target.host_id.as_str(), "");

    let mut interner = Interner::default();
    let mut warnings = Vec::new();
    let (name, meta) = node_meta(&node, &mut interner, &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(name.as_str(), "minikube");
    assert_eq!(meta.capacity.cpu_millis, Some(4000));
    assert_eq!(meta.capacity.memory_bytes, Some(8_165_556 * 1024));
    assert_eq!(meta.capacity.ephemeral_bytes, Some(16_954_240 * 1024));
    assert_eq!(meta.allocatable.cpu_millis, Some(4000));
    assert_eq!(meta.allocatable.memory_bytes, Some(8_063_156 * 1024));
    assert_eq!(meta.allocatable.ephemeral_bytes, Some(15_625_027_559));
    let keys: Vec<&str> = meta.labels.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 6);
    assert!(
        meta.labels.iter().any(|(k, v)| k.as_str() == "kubernetes.io/hostname" && v.as_str() == "minikube")
    );
}

#[test]
fn minikube_node_as_a_list() {
    let node: Value = serde_json::from_slice(&capture("k8s-node-minikube-2019.json")).unwrap();
    let body = json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "500600"},
            "items": [node]});
    let parsed = parse_node_list(body.to_string().as_bytes(), &mut Interner::default()).unwrap();
    assert_eq!(parsed.targets.len(), 1);
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(parsed.resource_version.as_deref(), Some("500600"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert!(matches!(&parsed.records[0], MetaRecord::Node { name, .. } if name.as_str() == "minikube"));
}

/// Expected values read from the capture itself, independently of the k8s-openapi types.
fn expected_resources(container: &Value, side: &str) -> Resources {
    let get = |resource: &str, millis: bool| {
        container["resources"][side][resource]
            .as_str()
            .map(|q| if millis { quantity::milli_value(q).unwrap() } else { quantity::value(q).unwrap() })
    };
    Resources {
        cpu_millis: get("cpu", true),
        memory_bytes: get("memory", false),
        ephemeral_bytes: get("ephemeral-storage", false),
        accelerators: None,
    }
}

#[test]
fn kubelet_pods_capture_converts_every_item() {
    let body = capture("kubelet-pods.json");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let items = raw["items"].as_array().unwrap();
    let parsed = parse_pod_list(&body, &mut Interner::default()).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert_eq!(parsed.records.len(), items.len());
    assert_eq!(parsed.resource_version, None);

    for (item, record) in items.iter().zip(&parsed.records) {
        let MetaRecord::Pod { ns, name, meta } = record else { panic!("not a pod: {record:?}") };
        assert_eq!(ns.as_str(), item["metadata"]["namespace"].as_str().unwrap());
        assert_eq!(name.as_str(), item["metadata"]["name"].as_str().unwrap());
        assert_eq!(meta.uid.as_str(), item["metadata"]["uid"].as_str().unwrap());
        assert_eq!(meta.node.as_deref(), item["spec"]["nodeName"].as_str());
        let spec_containers = item["spec"]["containers"].as_array().unwrap();
        assert_eq!(meta.containers.len(), spec_containers.len());
        for (c, expected) in meta.containers.iter().zip(spec_containers) {
            assert_eq!(c.name.as_str(), expected["name"].as_str().unwrap());
            assert_eq!(c.image.as_str(), expected["image"].as_str().unwrap());
            assert_eq!(c.requests, expected_resources(expected, "requests"));
            assert_eq!(c.limits, expected_resources(expected, "limits"));
            let status = item["status"]["containerStatuses"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == expected["name"]));
            assert_eq!(c.restart_count, status.map(|s| s["restartCount"].as_i64().unwrap()));
        }
    }
}

#[test]
fn kubelet_pods_capture_dd_agent() {
    let parsed = parse_pod_list(&capture("kubelet-pods.json"), &mut Interner::default()).unwrap();
    let meta = parsed
        .records
        .iter()
        .find_map(|r| match r {
            MetaRecord::Pod { ns, name, meta }
                if ns.as_str() == "default" && name.as_str() == "dd-agent-q6hpw" =>
            {
                Some(meta)
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(meta.node.as_deref(), Some("gke-haissam-default-pool-be5066f1-wnvn"));
    let [agent] = &meta.containers[..] else { panic!("{:?}", meta.containers) };
    assert_eq!(agent.name.as_str(), "dd-agent");
    assert_eq!(agent.image.as_str(), "datadog/dev-dd-agent:beta");
    assert_eq!(agent.requests.cpu_millis, Some(100));
    assert_eq!(agent.requests.memory_bytes, Some(128 << 20));
    assert_eq!(agent.limits.cpu_millis, Some(250));
    assert_eq!(agent.limits.memory_bytes, Some(512 << 20));
    assert_eq!(agent.requests.ephemeral_bytes, None);
    assert_eq!(agent.restart_count, Some(0));
    // The Pending kube-proxy pod has no container statuses yet.
    let pending = parsed
        .records
        .iter()
        .find_map(|r| match r {
            MetaRecord::Pod { name, meta, .. } if name.starts_with("kube-proxy-") => Some(meta),
            _ => None,
        })
        .unwrap();
    assert_eq!(pending.containers[0].restart_count, None);
}

#[test]
fn not_ready_node_is_not_ready() {
    let n = node(json!({"metadata": {"name": "n1"},
            "status": {"conditions": [ready_condition("False")],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}));
    let target = node_target(&n).unwrap();
    assert!(!target.ready);
    assert_eq!(target.address.as_deref(), Some("10.0.0.1"));
    let unknown =
        node(json!({"metadata": {"name": "n1"}, "status": {"conditions": [ready_condition("Unknown")]}}));
    assert!(!node_target(&unknown).unwrap().ready);
    let silent = node(json!({"metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "True"}]}}));
    assert!(!node_target(&silent).unwrap().ready);
}

#[test]
fn cordoned_node_is_not_schedulable() {
    let n = node(
        json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true, "providerID": "gce://p/z/n1"},
            "status": {"conditions": [ready_condition("True")]}}),
    );
    let target = node_target(&n).unwrap();
    assert!(!target.schedulable);
    assert!(target.ready);
    assert_eq!(target.host_id.as_str(), "gce://p/z/n1");
}

#[test]
fn host_id_falls_back_to_external_id() {
    let n = node(json!({"metadata": {"name": "n1"}, "spec": {"providerID": "", "externalID": "i-123"}}));
    assert_eq!(node_target(&n).unwrap().host_id.as_str(), "i-123");
    let both = node(
        json!({"metadata": {"name": "n1"}, "spec": {"providerID": "aws:///i-9", "externalID": "i-123"}}),
    );
    assert_eq!(node_target(&both).unwrap().host_id.as_str(), "aws:///i-9");
}

#[test]
fn node_with_only_an_external_ip() {
    let n = node(json!({"metadata": {"name": "n1"}, "status": {"addresses": [
            {"type": "ExternalIP", "address": "203.0.113.7"},
            {"type": "Hostname", "address": "n1.example"}]}}));
    let target = node_target(&n).unwrap();
    assert_eq!(target.address.as_deref(), Some("203.0.113.7"));
    assert_eq!(target.hostname.as_str(), "n1.example");
}

#[test]
fn internal_ip_wins_and_must_be_an_ip() {
    let n = node(json!({"metadata": {"name": "n1"}, "status": {"addresses": [
            {"type": "ExternalIP", "address": "203.0.113.7"},
            {"type": "InternalIP", "address": "not-an-ip"},
            {"type": "InternalIP", "address": "fd00::7"}]}}));
    assert_eq!(node_target(&n).unwrap().address.as_deref(), Some("fd00::7"));
    let bad = node(json!({"metadata": {"name": "n1"}, "status": {"addresses": [
            {"type": "InternalIP", "address": "not-an-ip"}]}}));
    assert_eq!(node_target(&bad).unwrap().address, None);
}

#[test]
fn node_without_addresses() {
    let n = node(json!({"metadata": {"name": "bare"}}));
    let target = node_target(&n).unwrap();
    assert_eq!(target.address, None);
    assert_eq!(target.hostname.as_str(), "bare");
    assert!(!target.ready);
    assert!(target.schedulable);
    let (_, meta) = node_meta(&n, &mut Interner::default(), &mut Vec::new()).unwrap();
    assert_eq!(meta.capacity, NodeResources::default());
    assert!(meta.labels.is_empty());
}

#[test]
fn nameless_objects_are_errors() {
    let n = node(json!({"metadata": {}}));
    assert!(matches!(node_target(&n), Err(ObjectError::MissingName { kind: "node" })));
    let p = pod(json!({"metadata": {"name": "p", "namespace": ""}}));
    let err = pod_meta(&p, &mut Interner::default(), &mut Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), "pod p has no namespace");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"uid": "u"}})).unwrap();
    assert!(matches!(namespace_meta(&ns, &mut Interner::default()), Err(ObjectError::MissingName { .. })));
}

#[test]
fn bad_node_quantity_drops_that_resource_only() {
    let n = node(json!({"metadata": {"name": "n1"}, "status": {
            "capacity": {"cpu": "four", "memory": "1Gi"},
            "allocatable": {"cpu": "3500m", "memory": "1Gi", "ephemeral-storage": "10G"}}}));
    let mut warnings = Vec::new();
    let (_, meta) = node_meta(&n, &mut Interner::default(), &mut warnings).unwrap();
    assert_eq!(
        meta.capacity,
        NodeResources { cpu_millis: None, memory_bytes: Some(1 << 30), ephemeral_bytes: None }
    );
    assert_eq!(meta.allocatable.cpu_millis, Some(3500));
    assert_eq!(meta.allocatable.ephemeral_bytes, Some(10_000_000_000));
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(warning.starts_with("node n1: capacity cpu: "), "{warning}");
    assert!(warning.contains("\"four\""), "{warning}");
}

fn pod_with(containers: Value, statuses: Value) -> Pod {
    pod(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"z": "1", "a": "2"}},
            "spec": {"nodeName": "n1", "containers": containers},
            "status": {"phase": "Running", "containerStatuses": statuses}}))
}

fn status(name: &str, restarts: i64) -> Value {
    json!({"name": name, "image": "i", "imageID": "", "ready": true, "restartCount": restarts})
}

#[test]
fn pod_containers_in_spec_order_with_restarts_by_name() {
    let p = pod_with(
        json!([{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "envoy:2"}]),
        json!([status("side", 4), status("web", 1)]),
    );
    let mut interner = Interner::default();
    let ((ns, name), meta) = pod_meta(&p, &mut interner, &mut Vec::new()).unwrap();
    assert_eq!((ns.as_str(), name.as_str()), ("ns", "p"));
    assert_eq!(meta.uid.as_str(), "u-1");
    assert_eq!(meta.node.as_deref(), Some("n1"));
    let labels: Vec<(&str, &str)> = meta.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, [("a", "2"), ("z", "1")]);
    let names: Vec<&str> = meta.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "side"]);
    assert_eq!(meta.containers[0].restart_count, Some(1));
    assert_eq!(meta.containers[1].restart_count, Some(4));
    assert_eq!(meta.containers[1].image.as_str(), "envoy:2");
}

#[test]
fn pod_without_requests() {
    let p = pod_with(json!([{"name": "c"}]), json!([]));
    let mut warnings = Vec::new();
    let (_, meta) = pod_meta(&p, &mut Interner::default(), &mut warnings).unwrap();
    assert_eq!(meta.containers[0].requests, Resources::default());
    assert_eq!(meta.containers[0].limits, Resources::default());
    assert_eq!(meta.containers[0].restart_count, None);
    assert_eq!(meta.containers[0].image.as_str(), "");
    assert!(warnings.is_empty());
}

#[test]
fn pod_accelerators_are_summed() {
    let p = pod_with(
        json!([{"name": "c", "resources": {
                "limits": {"nvidia.com/gpu": "2", "amd.com/gpu": "1", "example.com/gpu": "1", "example.com/fpga": "9"},
                "requests": {"cpu": "1", "ephemeral-storage": "2Gi"}}}]),
        json!([]),
    );
    let (_, meta) = pod_meta(&p, &mut Interner::default(), &mut Vec::new()).unwrap();
    let c = &meta.containers[0];
    assert_eq!(c.limits.accelerators, Some(4));
    assert_eq!(c.requests.accelerators, None);
    assert_eq!(c.requests.cpu_millis, Some(1000));
    assert_eq!(c.requests.ephemeral_bytes, Some(2 << 30));
}

#[test]
fn bad_pod_quantity_is_a_warning() {
    let p = pod_with(
        json!([{"name": "c", "resources": {"requests": {"cpu": "lots", "memory": "64Mi"},
                                               "limits": {"nvidia.com/gpu": "x", "amd.com/gpu": "1"}}}]),
        json!([]),
    );
    let mut warnings = Vec::new();
    let (_, meta) = pod_meta(&p, &mut Interner::default(), &mut warnings).unwrap();
    let c = &meta.containers[0];
    assert_eq!(c.requests.cpu_millis, None);
    assert_eq!(c.requests.memory_bytes, Some(64 << 20));
    assert_eq!(c.limits.accelerators, Some(1));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("pod ns/p container c: requests cpu: "), "{warnings:?}");
    assert!(warnings[0].contains("\"lots\""));
    assert!(warnings[1].starts_with("pod ns/p container c: limits nvidia.com/gpu: "), "{warnings:?}");
}

#[test]
fn finished_pods_are_kept() {
    let body = json!({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [
            {"metadata": {"name": "done", "namespace": "ns"}, "status": {"phase": "Succeeded"}},
            {"metadata": {"name": "failed", "namespace": "ns"}, "status": {"phase": "Failed"}}]});
    let parsed = parse_pod_list(body.to_string().as_bytes(), &mut Interner::default()).unwrap();
    assert_eq!(parsed.records.len(), 2);
    assert_eq!(parsed.resource_version.as_deref(), Some("7"));
}

#[test]
fn one_broken_item_costs_only_itself() {
    let body = json!({"kind": "PodList", "items": [
            {"metadata": {"name": "good", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}},
            {"metadata": {"name": "broken", "namespace": "ns"}, "spec": {"containers": "not a list"}},
            {"metadata": {"namespace": "ns"}},
            {"metadata": {"name": "also-good", "namespace": "ns"}}]});
    let parsed = parse_pod_list(body.to_string().as_bytes(), &mut Interner::default()).unwrap();
    let names: Vec<&str> = parsed
        .records
        .iter()
        .map(|r| match r {
            MetaRecord::Pod { name, .. } => name.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["good", "also-good"]);
    assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
    assert!(parsed.warnings[0].starts_with("PodList item 1 (pod ns/broken): "), "{:?}", parsed.warnings);
    assert_eq!(parsed.warnings[1], "PodList item 2 skipped: pod has no name");
}

#[test]
fn broken_node_item_skips_target_and_record() {
    let body = json!({"items": [
            {"metadata": {"name": "n1"}, "spec": {"unschedulable": "yes"}},
            {"metadata": {"name": "n2"}, "status": {"conditions": [ready_condition("True")]}}]});
    let parsed = parse_node_list(body.to_string().as_bytes(), &mut Interner::default()).unwrap();
    let names: Vec<&str> = parsed.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["n2"]);
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].starts_with("NodeList item 0 (node n1): "), "{:?}", parsed.warnings);
}

#[test]
fn namespaces() {
    let body = br#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"42"},
            "items":[{"metadata":{"name":"default","uid":"u-default"}},{"metadata":{"name":"kube-system","uid":"u-ks"}}]}"#;
    let parsed = parse_namespace_list(body, &mut Interner::default()).unwrap();
    assert_eq!(parsed.resource_version.as_deref(), Some("42"));
    let expected = [("default", "u-default"), ("kube-system", "u-ks")];
    assert_eq!(parsed.records.len(), expected.len());
    for (record, (n, u)) in parsed.records.iter().zip(expected) {
        let MetaRecord::Namespace { name, meta } = record else { panic!("{record:?}") };
        assert_eq!((name.as_str(), meta.uid.as_str()), (n, u));
    }
}

#[test]
fn empty_and_null_items_are_empty_lists() {
    let parsed = parse_pod_list(br#"{"kind":"PodList","items":null}"#, &mut Interner::default()).unwrap();
    assert!(parsed.records.is_empty());
    let parsed = parse_node_list(br#"{"items":[]}"#, &mut Interner::default()).unwrap();
    assert!(parsed.targets.is_empty() && parsed.warnings.is_empty());
}

#[test]
fn bodies_that_are_not_lists_are_errors() {
    let mut interner = Interner::default();
    let err = parse_node_list(b"<html>502 Bad Gateway</html>", &mut interner).unwrap_err();
    assert!(matches!(err, ObjectError::NotAList { expected: "NodeList", .. }), "{err}");
    assert!(err.to_string().starts_with("not a NodeList: "), "{err}");
    let err = parse_pod_list(b"[1, 2]", &mut interner).unwrap_err();
    assert!(matches!(err, ObjectError::NotAList { expected: "PodList", .. }), "{err}");
    let err =
        parse_pod_list(br#"{"kind":"Status","status":"Failure","code":403}"#, &mut interner).unwrap_err();
    assert_eq!(err.to_string(), "not a PodList: its kind is \"Status\"");
    let pods = capture("kubelet-pods.json");
    let err = parse_node_list(&pods, &mut interner).unwrap_err();
    assert!(matches!(err, ObjectError::WrongKind { expected: "NodeList", ref found } if found == "PodList"));
    let err = parse_namespace_list(br#"{"metadata":{}}"#, &mut interner).unwrap_err();
    assert!(matches!(err, ObjectError::NoItems { expected: "NamespaceList" }), "{err}");
}

#[test]
fn names_are_shared_through_the_interner() {
    let body = capture("kubelet-pods.json");
    let mut interner = Interner::default();
    let parsed = parse_pod_list(&body, &mut interner).unwrap();
    let nodes: Vec<&Name> = parsed
        .records
        .iter()
        .filter_map(|r| match r {
            MetaRecord::Pod { meta, .. } => meta.node.as_ref(),
            _ => None,
        })
        .collect();
    assert!(nodes.len() > 1);
    let first = nodes[0].as_str().as_ptr();
    assert!(nodes.iter().all(|n| n.as_str().as_ptr() == first));
}
