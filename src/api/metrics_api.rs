//! `metrics.k8s.io/v1beta1` from the last complete window: `NodeMetrics` and `PodMetrics`, list
//! and get, per namespace, with label selectors, and the discovery documents clients read first.
//! The numbers are metrics-server's: CPU from the usage rate, memory from the working set.
//!
//! Objects are typed structs serialized straight into the body: a list of 30,000 pods built as a
//! `serde_json::Value` tree first cost a quarter of a CPU-second in map inserts and drops. Fields
//! are declared in the order `Value` printed them (sorted keys), so the bytes are the same.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::selector::Selector;
use super::snapshot::{NodeUsage, PodUsage, Snapshot, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// An answer: status code and JSON body.
pub type Answer = (u16, Vec<u8>);

/// `value` as a body; a value that cannot be serialized (none here can) answers a 500 Status.
fn body<T: Serialize + ?Sized>(code: u16, value: &T, capacity: usize) -> Answer {
    let mut out = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => (code, out),
        Err(e) => status(500, "InternalError", &format!("cannot serialize the answer: {e}")),
    }
}

/// A Kubernetes `Status` for an error.
pub fn status(code: u16, reason: &str, message: &str) -> Answer {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (code, body.to_string().into_bytes())
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
    (200, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]}).to_string().into_bytes())
}

/// `/apis/metrics.k8s.io`.
pub fn api_group() -> Answer {
    let mut g = group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    (200, g.to_string().into_bytes())
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Answer {
    let resource = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    let list = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                      "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)]});
    (200, list.to_string().into_bytes())
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

/// CPU and memory as Kubernetes quantities: `250m`, `3072Ki` (bytes when not whole KiB).
struct Quantities(Usage);

impl Serialize for Quantities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Cpu(i64);
        impl fmt::Display for Cpu {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}m", self.0)
            }
        }
        struct Memory(i64);
        impl fmt::Display for Memory {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0 % 1024 == 0 { write!(f, "{}Ki", self.0 / 1024) } else { write!(f, "{}", self.0) }
            }
        }
        #[derive(Serialize)]
        struct Out {
            #[serde(serialize_with = "display")]
            cpu: Cpu,
            #[serde(serialize_with = "display")]
            memory: Memory,
        }
        Out { cpu: Cpu(self.0.cpu_millicores), memory: Memory(self.0.memory_bytes) }.serialize(serializer)
    }
}

fn display<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What every item of one answer shares: the window's end and length, formatted once.
struct Common {
    timestamp: String,
    window: String,
}

impl Common {
    fn of(snapshot: &Snapshot) -> Common {
        let timestamp = jiff::Timestamp::from_millisecond(snapshot.time_ms as i64)
            .map(|t| t.to_string())
            .unwrap_or_default();
        Common { timestamp, window: go_duration(snapshot.window) }
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "creationTimestamp")]
    creation_timestamp: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
struct NodeMetrics<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    timestamp: &'a str,
    usage: Quantities,
    window: &'a str,
}

#[derive(Serialize)]
struct ContainerMetrics<'a> {
    name: &'a str,
    usage: Quantities,
}

/// A pod's containers, serialized as they are read.
struct Containers<'a>(&'a [(heapster_dataflows::Name, Usage)]);

impl Serialize for Containers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0.iter().map(|(name, usage)| ContainerMetrics { name, usage: Quantities(*usage) }),
        )
    }
}

#[derive(Serialize)]
struct PodMetrics<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    containers: Containers<'a>,
    kind: &'static str,
    metadata: Metadata<'a>,
    timestamp: &'a str,
    window: &'a str,
}

fn node_item<'a>(common: &'a Common, node: &'a NodeUsage) -> NodeMetrics<'a> {
    NodeMetrics {
        api_version: GROUP_VERSION,
        kind: "NodeMetrics",
        metadata: Metadata {
            creation_timestamp: &common.timestamp,
            labels: node.labels.parse(),
            name: &node.name,
            namespace: None,
        },
        timestamp: &common.timestamp,
        usage: Quantities(node.usage),
        window: &common.window,
    }
}

fn pod_item<'a>(common: &'a Common, pod: &'a PodUsage) -> PodMetrics<'a> {
    PodMetrics {
        api_version: GROUP_VERSION,
        containers: Containers(&pod.containers),
        kind: "PodMetrics",
        metadata: Metadata {
            creation_timestamp: &common.timestamp,
            labels: pod.labels.parse(),
            name: &pod.name,
            namespace: Some(&pod.namespace),
        },
        timestamp: &common.timestamp,
        window: &common.window,
    }
}

/// Always `{}` in a list.
#[derive(Serialize)]
struct ListMeta {}

/// The selected nodes, each serialized as it is reached.
struct NodeItems<'a> {
    common: &'a Common,
    nodes: Vec<&'a NodeUsage>,
}

impl Serialize for NodeItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.nodes.iter().map(|n| node_item(self.common, n)))
    }
}

/// The selected pods, each serialized as it is reached.
struct PodItems<'a> {
    common: &'a Common,
    pods: Vec<&'a PodUsage>,
}

impl Serialize for PodItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.pods.iter().map(|p| pod_item(self.common, p)))
    }
}

#[derive(Serialize)]
struct List<I> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    items: I,
    kind: &'static str,
    metadata: ListMeta,
}

/// Room for a list of `items` objects, so that the body is not copied as it grows.
fn list_capacity(items: usize) -> usize {
    256 + items * 320
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
    let common = Common::of(snapshot);
    match query {
        Query::Nodes => {
            let nodes: Vec<&NodeUsage> = snapshot
                .nodes
                .iter()
                .filter(|n| {
                    (selector.is_empty() || selector.matches(&n.labels.parse()))
                        && fields_match(&fields, &n.name, "")
                })
                .collect();
            let capacity = list_capacity(nodes.len());
            let items = NodeItems { common: &common, nodes };
            body(
                200,
                &List { api_version: GROUP_VERSION, items, kind: "NodeMetricsList", metadata: ListMeta {} },
                capacity,
            )
        }
        Query::Node(name) => match snapshot.nodes.binary_search_by(|n| n.name.as_str().cmp(name)) {
            Ok(i) => body(200, &node_item(&common, &snapshot.nodes[i]), 1024),
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
            let pods: Vec<&PodUsage> = pods
                .iter()
                .filter(|p| {
                    (selector.is_empty() || selector.matches(&p.labels.parse()))
                        && fields_match(&fields, &p.name, &p.namespace)
                })
                .collect();
            let capacity = list_capacity(pods.len());
            let items = PodItems { common: &common, pods };
            body(
                200,
                &List { api_version: GROUP_VERSION, items, kind: "PodMetricsList", metadata: ListMeta {} },
                capacity,
            )
        }
        Query::Pod(ns, name) => {
            match snapshot.pods.binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(ns, name)))
            {
                Ok(i) => body(200, &pod_item(&common, &snapshot.pods[i]), 1024),
                Err(_) => not_found(&format!("podmetrics.metrics.k8s.io \"{name}\" not found")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::Labels;
    use super::*;

    /// An answer's code and body, parsed.
    fn parsed((code, body): Answer) -> (u16, Value) {
        (code, serde_json::from_slice(&body).expect("a JSON body"))
    }

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
        let (code, body) = parsed(answer(Some(&s), Query::Nodes, Some("zone=y"), None));
        assert_eq!(code, 200);
        assert_eq!(body["kind"], "NodeMetricsList");
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        let node = &body["items"][0];
        assert_eq!(node["metadata"]["name"], "b");
        assert_eq!(node["usage"], json!({"cpu": "250m", "memory": "3072Ki"}));
        assert_eq!(node["timestamp"], "2026-11-01T10:01:00Z");
        assert_eq!(node["window"], "1m0s");

        let (_, web) = parsed(answer(Some(&s), Query::Pods(Some("web")), None, None));
        assert_eq!(web["items"].as_array().unwrap().len(), 1);
        assert_eq!(web["items"][0]["containers"][1]["name"], "php");
        let (_, all) = parsed(answer(Some(&s), Query::Pods(None), Some("app in (web,dns)"), None));
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        let (_, named) = parsed(answer(Some(&s), Query::Pods(None), None, Some("metadata.namespace!=web")));
        assert_eq!(named["items"][0]["metadata"]["name"], "dns");
        let (code, pod) = parsed(answer(Some(&s), Query::Pod("web", "p1"), None, None));
        assert_eq!((code, pod["kind"].as_str()), (200, Some("PodMetrics")));
    }

    #[test]
    fn unknown_objects_and_bad_selectors_answer_a_status() {
        let s = snapshot();
        let (code, body) = parsed(answer(Some(&s), Query::Node("zz"), None, None));
        assert_eq!(
            (code, body["kind"].as_str(), body["reason"].as_str()),
            (404, Some("Status"), Some("NotFound"))
        );
        let (code, body) = parsed(answer(Some(&s), Query::Pods(None), Some("app in web"), None));
        assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
        assert!(body["message"].as_str().unwrap().contains("invalid label selector"));
        let (code, _) = parsed(answer(Some(&s), Query::Nodes, None, Some("spec.unschedulable=true")));
        assert_eq!(code, 400);
        let (code, body) = parsed(answer(None, Query::Nodes, None, None));
        assert_eq!((code, body["items"].as_array().map(Vec::len)), (200, Some(0)));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    /// The renderer the typed structs replaced: a `serde_json::Value` tree per answer.
    mod value_tree {
        use serde_json::{Value, json};

        use super::super::*;

        fn quantities(usage: &Usage) -> Value {
            let memory = if usage.memory_bytes % 1024 == 0 {
                format!("{}Ki", usage.memory_bytes / 1024)
            } else {
                usage.memory_bytes.to_string()
            };
            json!({"cpu": format!("{}m", usage.cpu_millicores), "memory": memory})
        }

        fn timestamp(snapshot: &Snapshot) -> String {
            jiff::Timestamp::from_millisecond(snapshot.time_ms as i64)
                .map(|t| t.to_string())
                .unwrap_or_default()
        }

        fn node_item(snapshot: &Snapshot, node: &NodeUsage) -> Value {
            let ts = timestamp(snapshot);
            json!({
                "kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                "metadata": {"name": node.name, "creationTimestamp": ts, "labels": json!(node.labels.parse())},
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
                             "labels": json!(pod.labels.parse())},
                "timestamp": ts, "window": go_duration(snapshot.window), "containers": containers,
            })
        }

        fn list(kind: &str, items: Vec<Value>) -> Value {
            json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
        }

        /// The old answer's body for a query with no selector (selectors only filter).
        pub fn answer(snapshot: &Snapshot, query: Query<'_>) -> Option<String> {
            let value = match query {
                Query::Nodes => {
                    list("NodeMetricsList", snapshot.nodes.iter().map(|n| node_item(snapshot, n)).collect())
                }
                Query::Node(name) => {
                    node_item(snapshot, snapshot.nodes.iter().find(|n| n.name.as_str() == name)?)
                }
                Query::Pods(ns) => list(
                    "PodMetricsList",
                    snapshot
                        .pods
                        .iter()
                        .filter(|p| ns.is_none_or(|ns| p.namespace.as_str() == ns))
                        .map(|p| pod_item(snapshot, p))
                        .collect(),
                ),
                Query::Pod(ns, name) => pod_item(
                    snapshot,
                    snapshot.pods.iter().find(|p| p.namespace.as_str() == ns && p.name.as_str() == name)?,
                ),
            };
            Some(value.to_string())
        }
    }

    #[test]
    fn bodies_are_byte_for_byte_those_of_the_value_tree() {
        let mut s = snapshot();
        let awkward = "app:web,note:say \"hi\"\\ \u{e9}\u{1}\t,app:dup,bare,empty:,:nokey";
        s.pods[1].labels = Labels::new(Some(heapster_dataflows::Name::new(awkward)), ",".into());
        s.pods[1].containers[0].1 = Usage { cpu_millicores: 0, memory_bytes: 1_000_001 };
        s.pods[1].containers[1].1 = Usage { cpu_millicores: -3, memory_bytes: 0 };
        s.nodes[0].labels = Labels::default();
        s.nodes[1].usage = Usage { cpu_millicores: i64::MAX, memory_bytes: i64::MIN };
        s.pods.push(PodUsage {
            namespace: "w\"eb".into(),
            name: "p\u{2028}2".into(),
            labels: Labels::new(Some(heapster_dataflows::Name::new("")), ";".into()),
            containers: vec![("c\"1".into(), Usage { cpu_millicores: 1, memory_bytes: 1023 })],
        });
        s.pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for (time_ms, window) in
            [(s.time_ms, s.window), (0, Duration::from_millis(1500)), (1_500, Duration::ZERO)]
        {
            s.time_ms = time_ms;
            s.window = window;
            let queries = [
                Query::Nodes,
                Query::Node("a"),
                Query::Node("b"),
                Query::Pods(None),
                Query::Pods(Some("web")),
                Query::Pods(Some("w\"eb")),
                Query::Pods(Some("none")),
                Query::Pod("web", "p1"),
                Query::Pod("w\"eb", "p\u{2028}2"),
                Query::Pod("kube-system", "dns"),
            ];
            for query in queries {
                let (code, new) = answer(Some(&s), query, None, None);
                let old = value_tree::answer(&s, query).expect("the object exists");
                assert_eq!(code, 200, "{query:?}");
                assert_eq!(String::from_utf8(new).expect("UTF-8"), old, "{query:?}");
            }
        }
        let empty = Snapshot::default();
        assert_eq!(
            answer(None, Query::Pods(None), None, None).1,
            value_tree::answer(&empty, Query::Pods(None)).expect("a list").into_bytes()
        );
    }
}
