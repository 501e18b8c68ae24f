//! `metrics.k8s.io/v1beta1` from the last complete window: `NodeMetrics` and `PodMetrics`, list
//! and get, per namespace, with label selectors, and the discovery documents clients read first.
//! The numbers are metrics-server's: CPU from the usage rate, memory from the working set.

use std::time::Duration;

use serde_json::{Value, json};

use super::selector::Selector;
use super::snapshot::{Labels, NodeUsage, PodUsage, Snapshot, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// An answer: status code and JSON body.
pub type Answer = (u16, Value);

/// A Kubernetes `Status` for an error.
pub fn status(code: u16, reason: &str, message: &str) -> Answer {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (code, body)
}

pub fn not_found(message: &str) -> Answer {
    status(404, "NotFound", message)
}

fn group() -> Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": "v1beta1"});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// `/apis`.
pub fn group_list() -> Answer {
    (200, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]}))
}

/// `/apis/metrics.k8s.io`.
pub fn api_group() -> Answer {
    let mut g = group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    (200, g)
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Answer {
    let resource = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    (
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
               "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)]}),
    )
}

/// A duration as Go prints it (`metav1.Duration`): `5s`, `1m0s`, `1h0m0s`, `1.5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, frac) = (ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

fn quantities(usage: &Usage) -> Value {
    let memory = if usage.memory_bytes % 1024 == 0 {
        format!("{}Ki", usage.memory_bytes / 1024)
    } else {
        usage.memory_bytes.to_string()
    };
    json!({"cpu": format!("{}m", usage.cpu_millicores), "memory": memory})
}

fn timestamp(snapshot: &Snapshot) -> String {
    jiff::Timestamp::from_millisecond(snapshot.time_ms as i64).map(|t| t.to_string()).unwrap_or_default()
}

fn labels(labels: &Labels) -> Value {
    json!(labels.parse())
}

fn node_item(snapshot: &Snapshot, node: &NodeUsage) -> Value {
    let ts = timestamp(snapshot);
    json!({
        "kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
        "metadata": {"name": node.name, "creationTimestamp": ts, "labels": labels(&node.labels)},
        "timestamp": ts, "window": go_duration(snapshot.window), "usage": quantities(&node.usage),
    })
}

fn pod_item(snapshot: &Snapshot, pod: &PodUsage) -> Value {
    let ts = timestamp(snapshot);
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|(name, usage)| json!({"name": name, "usage": quantities(usage)}))
        .collect();
    json!({
        "kind": "PodMetrics", "apiVersion": GROUP_VERSION,
        "metadata": {"name": pod.name, "namespace": pod.namespace, "creationTimestamp": ts,
                     "labels": labels(&pod.labels)},
        "timestamp": ts, "window": go_duration(snapshot.window), "containers": containers,
    })
}

fn list(kind: &str, items: Vec<Value>) -> Answer {
    (200, json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}))
}

/// What a request asks of the metrics API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query<'a> {
    Nodes,
    Node(&'a str),
    /// Pods of a namespace, or of all.
    Pods(Option<&'a str>),
    Pod(&'a str, &'a str),
}

/// A field selector metrics-server would refuse.
#[derive(Debug, thiserror::Error)]
enum FieldSelectorError {
    #[error("invalid field selector {0:?}: expected FIELD=VALUE")]
    Syntax(String),
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

/// Field selectors metrics-server accepts on the same objects: `metadata.name` and
/// `metadata.namespace`, with `=`, `==` or `!=`.
fn field_filter(text: &str) -> Result<Vec<(String, bool, String)>, FieldSelectorError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, true, v)
        } else {
            return Err(FieldSelectorError::Syntax(text.to_string()));
        };
        let field = field.trim();
        if field != "metadata.name" && field != "metadata.namespace" {
            return Err(FieldSelectorError::Unsupported(field.to_string()));
        }
        out.push((field.to_string(), equal, value.trim().to_string()));
    }
    Ok(out)
}

fn fields_match(filter: &[(String, bool, String)], name: &str, namespace: &str) -> bool {
    filter.iter().all(|(field, equal, value)| {
        let actual = if field == "metadata.name" { name } else { namespace };
        (actual == value) == *equal
    })
}

/// Answers `query` from `snapshot` (none yet: empty lists, and every get is not found).
pub fn answer(
    snapshot: Option<&Snapshot>,
    query: Query<'_>,
    label_selector: Option<&str>,
    field_selector: Option<&str>,
) -> Answer {
    let selector = match Selector::parse(label_selector.unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let fields = match field_filter(field_selector.unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let empty = Snapshot::default();
    let snapshot = snapshot.unwrap_or(&empty);
    match query {
        Query::Nodes => list(
            "NodeMetricsList",
            snapshot
                .nodes
                .iter()
                .filter(|n| selector.matches(&n.labels.parse()) && fields_match(&fields, &n.name, ""))
                .map(|n| node_item(snapshot, n))
                .collect(),
        ),
        Query::Node(name) => match snapshot.nodes.binary_search_by(|n| n.name.as_str().cmp(name)) {
            Ok(i) => (200, node_item(snapshot, &snapshot.nodes[i])),
            Err(_) => not_found(&format!("nodemetrics.metrics.k8s.io \"{name}\" not found")),
        },
        Query::Pods(namespace) => {
            let pods = match namespace {
                Some(ns) => {
                    let start = snapshot.pods.partition_point(|p| p.namespace.as_str() < ns);
                    let end = snapshot.pods.partition_point(|p| p.namespace.as_str() <= ns);
                    &snapshot.pods[start..end]
                }
                None => &snapshot.pods[..],
            };
            list(
                "PodMetricsList",
                pods.iter()
                    .filter(|p| {
                        selector.matches(&p.labels.parse()) && fields_match(&fields, &p.name, &p.namespace)
                    })
                    .map(|p| pod_item(snapshot, p))
                    .collect(),
            )
        }
        Query::Pod(ns, name) => {
            match snapshot.pods.binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(ns, name)))
            {
                Ok(i) => (200, pod_item(snapshot, &snapshot.pods[i])),
                Err(_) => not_found(&format!("podmetrics.metrics.k8s.io \"{name}\" not found")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let usage = Usage { cpu_millicores: 250, memory_bytes: 3 << 20 };
        let labels = |pairs: &[(&str, &str)]| {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            Labels::new(Some(heapster_dataflows::Name::new(&text.join(","))), ",".into())
        };
        Snapshot {
            time_ms: 1_793_527_260_000,
            window: Duration::from_secs(60),
            nodes: vec![
                NodeUsage { name: "a".into(), labels: labels(&[("zone", "x")]), usage },
                NodeUsage { name: "b".into(), labels: labels(&[("zone", "y")]), usage },
            ],
            pods: vec![
                PodUsage {
                    namespace: "kube-system".into(),
                    name: "dns".into(),
                    labels: labels(&[("app", "dns")]),
                    containers: vec![("dns".into(), usage)],
                },
                PodUsage {
                    namespace: "web".into(),
                    name: "p1".into(),
                    labels: labels(&[("app", "web")]),
                    containers: vec![("nginx".into(), usage), ("php".into(), usage)],
                },
            ],
            rendered: Default::default(),
        }
    }

    #[test]
    fn nodes_and_pods_as_metrics_server_serves_them() {
        let s = snapshot();
        let (code, body) = answer(Some(&s), Query::Nodes, Some("zone=y"), None);
        assert_eq!(code, 200);
        assert_eq!(body["kind"], "NodeMetricsList");
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        let node = &body["items"][0];
        assert_eq!(node["metadata"]["name"], "b");
        assert_eq!(node["usage"], json!({"cpu": "250m", "memory": "3072Ki"}));
        assert_eq!(node["timestamp"], "2026-11-01T10:01:00Z");
        assert_eq!(node["window"], "1m0s");

        let (_, web) = answer(Some(&s), Query::Pods(Some("web")), None, None);
        assert_eq!(web["items"].as_array().unwrap().len(), 1);
        assert_eq!(web["items"][0]["containers"][1]["name"], "php");
        let (_, all) = answer(Some(&s), Query::Pods(None), Some("app in (web,dns)"), None);
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        let (_, named) = answer(Some(&s), Query::Pods(None), None, Some("metadata.namespace!=web"));
        assert_eq!(named["items"][0]["metadata"]["name"], "dns");
        let (code, pod) = answer(Some(&s), Query::Pod("web", "p1"), None, None);
        assert_eq!((code, pod["kind"].as_str()), (200, Some("PodMetrics")));
    }

    #[test]
    fn unknown_objects_and_bad_selectors_answer_a_status() {
        let s = snapshot();
        let (code, body) = answer(Some(&s), Query::Node("zz"), None, None);
        assert_eq!(
            (code, body["kind"].as_str(), body["reason"].as_str()),
            (404, Some("Status"), Some("NotFound"))
        );
        let (code, body) = answer(Some(&s), Query::Pods(None), Some("app in web"), None);
        assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
        assert!(body["message"].as_str().unwrap().contains("invalid label selector"));
        let (code, _) = answer(Some(&s), Query::Nodes, None, Some("spec.unschedulable=true"));
        assert_eq!(code, 400);
        let (code, body) = answer(None, Query::Nodes, None, None);
        assert_eq!((code, body["items"].as_array().map(Vec::len)), (200, Some(0)));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
