//! The last complete window as `metrics.k8s.io` serves it: per node and per pod container, CPU
//! (the usage rate, millicores) and memory (the working set, bytes), with the labels label
//! selectors match. Built once per window on the collector thread; requests only read it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use heapster_dataflows::{EntityKey, LabelId, MetricId, MetricSet, Name};

use crate::batch::MetricBatch;

/// CPU and memory of one node or container. Both are needed to be served (as metrics-server:
/// the first window has no rate yet, so nothing is served before the second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
}

/// A node's or pod's labels as the `labels` label holds them (`k:v` pairs joined by the
/// separator), shared with the window's sets and parsed only when a request reads them: a parsed
/// map per pod cost ~30 MiB a snapshot at 30,000 pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    text: Option<Name>,
    separator: Arc<str>,
}

impl Labels {
    pub fn new(text: Option<Name>, separator: Arc<str>) -> Labels {
        Labels { text, separator }
    }

    pub fn parse(&self) -> BTreeMap<&str, &str> {
        self.text.as_ref().map(|t| parse_labels(t.as_str(), &self.separator)).unwrap_or_default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUsage {
    pub name: Name,
    pub labels: Labels,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: Name,
    pub name: Name,
    pub labels: Labels,
    /// By container name.
    pub containers: Vec<(Name, Usage)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Window end, ms since the epoch.
    pub time_ms: u64,
    /// The window length.
    pub window: Duration,
    /// By name.
    pub nodes: Vec<NodeUsage>,
    /// By namespace, then name.
    pub pods: Vec<PodUsage>,
    /// The unfiltered lists, rendered by the first request that asks.
    pub rendered: Rendered,
}

/// The unfiltered node and pod lists as JSON, rendered once per window: `kubectl top` and the
/// autoscaler ask for the same lists again and again, and rendering 30,000 pods takes a tenth of
/// a second of a core each time, a core the workers need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub nodes: OnceLock<Bytes>,
    pub pods: OnceLock<Bytes>,
}

/// A pod's containers by name.
type Containers = Vec<(Name, Usage)>;

fn usage(set: &MetricSet) -> Option<Usage> {
    Some(Usage {
        cpu_millicores: set.values.get_i64(MetricId::CpuUsageRate)?,
        memory_bytes: set.values.get_i64(MetricId::MemoryWorkingSet)?,
    })
}

/// The `labels` label (`k:v` pairs joined by `separator`) back into a map.
pub fn parse_labels<'a>(text: &'a str, separator: &str) -> BTreeMap<&'a str, &'a str> {
    if text.is_empty() {
        return BTreeMap::new();
    }
    let parts: Vec<&str> = if separator.is_empty() { vec![text] } else { text.split(separator).collect() };
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once(':') {
            Some((k, v)) => (k, v),
            None => (p, ""),
        })
        .collect()
}

impl Snapshot {
    /// One pass over the window, no sorts, no maps: a window is sorted by key, so the nodes come
    /// by name, the pods by (namespace, name) and before every container, and a pod's containers
    /// sit together by name. The pass checks that order as it goes (one comparison per set, most
    /// between handles of one interned name); a window in another order is sorted first.
    pub fn of(batch: &MetricBatch, window: Duration, separator: &str) -> Snapshot {
        let separator: Arc<str> = separator.into();
        let (nodes, pods) = match in_window_order(&batch.sets, &separator) {
            Some(lists) => lists,
            None => in_any_order(&batch.sets, &separator),
        };
        Snapshot { time_ms: batch.time, window, nodes, pods, rendered: Rendered::default() }
    }
}

fn labels_of(set: &MetricSet, separator: &Arc<str>) -> Labels {
    Labels::new(set.labels.get(LabelId::Labels).cloned(), separator.clone())
}

/// How far ahead of the pass the sets' bodies, then their values and names, are asked for: a
/// window's sets were built node by node on the workers and are far more than the caches hold.
const BODY_AHEAD: usize = 16;
const VALUES_AHEAD: usize = 8;

/// Asks for a set's values and the names its key compares by (its body is in by now).
#[inline]
fn prefetch_rest(set: &MetricSet) {
    set.prefetch();
    let name = match &set.key {
        EntityKey::Node { node } => node,
        EntityKey::Pod { pod, .. } | EntityKey::PodContainer { pod, .. } => pod,
        _ => return,
    };
    heapster_dataflows::model::prefetch(name.as_ptr());
}

/// The pod being gathered from its containers' sets.
struct OpenPod<'a> {
    ns: &'a Name,
    pod: &'a Name,
    containers: Containers,
    /// False once a container lacks a value: the pod is left out whole.
    complete: bool,
}

/// The nodes and pods of a window in the window's order, in one pass; `None` as soon as the
/// sets are found out of that order.
fn in_window_order(sets: &[MetricSet], separator: &Arc<str>) -> Option<(Vec<NodeUsage>, Vec<PodUsage>)> {
    let mut nodes: Vec<NodeUsage> = Vec::new();
    let mut last_node: Option<&Name> = None;
    let mut pod_sets: Vec<(&Name, &Name, &MetricSet)> = Vec::new();
    let mut pods: Vec<PodUsage> = Vec::new();
    let mut open: Option<OpenPod<'_>> = None;
    let mut last_container: Option<&Name> = None;
    // Where the pass stands in `pod_sets`: pods and their containers come in the same order.
    let mut cursor = 0;
    let mut close = |open: OpenPod<'_>, cursor: &mut usize, pod_sets: &[(&Name, &Name, &MetricSet)]| {
        while pod_sets.get(*cursor).is_some_and(|p| (p.0, p.1) < (open.ns, open.pod)) {
            *cursor += 1;
        }
        if !open.complete {
            return;
        }
        let labels = match pod_sets.get(*cursor) {
            Some(p) if (p.0, p.1) == (open.ns, open.pod) => labels_of(p.2, separator),
            _ => Labels::default(),
        };
        pods.push(PodUsage {
            namespace: open.ns.clone(),
            name: open.pod.clone(),
            labels,
            containers: open.containers,
        });
    };
    for (i, set) in sets.iter().enumerate() {
        if let Some(ahead) = sets.get(i + BODY_AHEAD) {
            ahead.prefetch_body();
        }
        if let Some(ahead) = sets.get(i + VALUES_AHEAD) {
            prefetch_rest(ahead);
        }
        match &set.key {
            EntityKey::Node { node } => {
                if last_node.is_some_and(|last| last > node) {
                    return None;
                }
                last_node = Some(node);
                if let Some(usage) = usage(set) {
                    nodes.push(NodeUsage { name: node.clone(), labels: labels_of(set, separator), usage });
                }
            }
            EntityKey::Pod { ns, pod } => {
                // Strictly increasing, and before every container.
                if open.is_some() || pod_sets.last().is_some_and(|p| (p.0, p.1) >= (ns, pod)) {
                    return None;
                }
                pod_sets.push((ns, pod, set));
            }
            EntityKey::PodContainer { ns, pod, container } => {
                let same_pod = match &open {
                    Some(o) if o.ns == ns && o.pod == pod => true,
                    Some(o) if (o.ns, o.pod) > (ns, pod) => return None,
                    _ => false,
                };
                if same_pod {
                    if last_container.is_some_and(|last| last > container) {
                        return None;
                    }
                } else {
                    if let Some(done) = open.take() {
                        close(done, &mut cursor, &pod_sets);
                    }
                    open = Some(OpenPod { ns, pod, containers: Vec::new(), complete: true });
                }
                last_container = Some(container);
                if let Some(o) = open.as_mut() {
                    match usage(set) {
                        Some(usage) if o.complete => o.containers.push((container.clone(), usage)),
                        Some(_) => {}
                        None => {
                            o.complete = false;
                            o.containers = Vec::new();
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(done) = open.take() {
        close(done, &mut cursor, &pod_sets);
    }
    Some((nodes, pods))
}

/// The nodes and pods of sets in any order: sorted first (stable sorts, as the window's order).
fn in_any_order(sets: &[MetricSet], separator: &Arc<str>) -> (Vec<NodeUsage>, Vec<PodUsage>) {
    let mut nodes = Vec::new();
    let mut pod_sets: Vec<(&Name, &Name, &MetricSet)> = Vec::new();
    let mut containers: Vec<(&Name, &Name, &Name, &MetricSet)> = Vec::new();
    for set in sets {
        match &set.key {
            EntityKey::Node { node } => {
                if let Some(usage) = usage(set) {
                    nodes.push(NodeUsage { name: node.clone(), labels: labels_of(set, separator), usage });
                }
            }
            EntityKey::Pod { ns, pod } => pod_sets.push((ns, pod, set)),
            EntityKey::PodContainer { ns, pod, container } => containers.push((ns, pod, container, set)),
            _ => {}
        }
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    pod_sets.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    containers.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut pods = Vec::new();
    for group in containers.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        let (ns, pod) = (group[0].0, group[0].1);
        // Pods with a container that lacks either value are left out whole, as metrics-server does.
        let Some(list) = group
            .iter()
            .map(|(_, _, container, set)| usage(set).map(|u| ((*container).clone(), u)))
            .collect::<Option<Containers>>()
        else {
            continue;
        };
        let labels = match pod_sets.binary_search_by(|p| (p.0, p.1).cmp(&(ns, pod))) {
            Ok(i) => labels_of(pod_sets[i].2, separator),
            Err(_) => Labels::default(),
        };
        pods.push(PodUsage { namespace: ns.clone(), name: pod.clone(), labels, containers: list });
    }
    (nodes, pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::{Name, Value};

    fn with(key: EntityKey, cpu: Option<i64>, mem: i64, labels: &str) -> MetricSet {
        let mut set = MetricSet::new(key);
        if let Some(cpu) = cpu {
            set.values.set(MetricId::CpuUsageRate, Value::Int(cpu));
        }
        set.values.set(MetricId::MemoryWorkingSet, Value::Int(mem));
        if !labels.is_empty() {
            set.labels.set(LabelId::Labels, Name::new(labels));
        }
        set
    }

    fn container(ns: &str, pod: &str, c: &str, cpu: Option<i64>) -> MetricSet {
        with(
            EntityKey::PodContainer { ns: ns.into(), pod: pod.into(), container: c.into() },
            cpu,
            1 << 20,
            "",
        )
    }

    #[test]
    fn takes_rates_and_working_sets_and_skips_incomplete_pods() {
        let sets = vec![
            with(EntityKey::Node { node: "b".into() }, Some(250), 4 << 30, "zone:x"),
            with(EntityKey::Node { node: "a".into() }, None, 4 << 30, ""),
            with(
                EntityKey::Pod { ns: "web".into(), pod: "p1".into() },
                Some(30),
                2 << 20,
                "app:web,tier:front",
            ),
            container("web", "p1", "php", Some(10)),
            container("web", "p1", "nginx", Some(20)),
            container("web", "p2", "only", None),
            container("kube-system", "dns", "dns", Some(5)),
        ];
        let snapshot = Snapshot::of(&MetricBatch { time: 60_000, sets }, Duration::from_secs(60), ",");
        assert_eq!(snapshot.time_ms, 60_000);
        assert_eq!(snapshot.nodes.len(), 1, "node a has no rate yet");
        assert_eq!(snapshot.nodes[0].name.as_str(), "b");
        assert_eq!(snapshot.nodes[0].usage, Usage { cpu_millicores: 250, memory_bytes: 4 << 30 });
        assert_eq!(snapshot.nodes[0].labels.parse().get("zone").copied(), Some("x"));
        let names: Vec<(&str, &str)> =
            snapshot.pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect();
        assert_eq!(names, [("kube-system", "dns"), ("web", "p1")]);
        let p1 = &snapshot.pods[1];
        assert_eq!(p1.containers.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["nginx", "php"]);
        assert_eq!(p1.labels.parse().get("tier").copied(), Some("front"));
    }

    #[test]
    fn a_window_in_its_order_gives_what_a_sort_gives() {
        let mut sets = vec![
            with(EntityKey::Cluster, Some(1), 1, ""),
            with(EntityKey::Node { node: "n1".into() }, Some(100), 1 << 30, "zone:a"),
            with(EntityKey::Node { node: "n0".into() }, None, 1 << 30, ""),
            with(EntityKey::Node { node: "n2".into() }, Some(300), 3 << 30, ""),
            with(EntityKey::SysContainer { node: "n1".into(), name: "kubelet".into() }, Some(1), 1, ""),
        ];
        for pod in 0..40 {
            let (ns, name) = (format!("ns-{}", pod % 3), format!("pod-{pod:02}"));
            // Some pods have no pod set, so no labels; some pod sets have no containers.
            if pod % 4 != 1 {
                let key = EntityKey::Pod { ns: ns.as_str().into(), pod: name.as_str().into() };
                sets.push(with(key, Some(pod), 1 << 20, &format!("app:a{pod},tier:t")));
            }
            for c in 0..(pod % 3) {
                // Every seventh pod has a container without a rate: left out whole.
                let cpu = (pod % 7 != 3 || c == 0).then_some(pod * 10 + c);
                sets.push(container(&ns, &name, &format!("c{c}"), cpu));
            }
        }
        let shuffled: Vec<MetricSet> = (0..sets.len()).map(|i| sets[(i * 17) % sets.len()].clone()).collect();
        assert!(!sets.len().is_multiple_of(17), "the stride visits every set");
        let mut sorted = shuffled.clone();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let separator: Arc<str> = ",".into();
        assert!(in_window_order(&shuffled, &separator).is_none(), "found out of order");
        let fast = in_window_order(&sorted, &separator).expect("in the window's order");
        assert_eq!(fast, in_any_order(&sorted, &separator));
        assert_eq!(fast, in_any_order(&shuffled, &separator));
        let (nodes, pods) = fast;
        assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert!(pods.len() > 10 && pods.iter().any(|p| p.labels == Labels::default()), "{}", pods.len());
        assert!(pods.iter().all(|p| !p.containers.is_empty()));
        let window = Duration::from_secs(15);
        let of = |sets: Vec<MetricSet>| Snapshot::of(&MetricBatch { time: 15_000, sets }, window, ",");
        assert_eq!(of(sorted), of(shuffled));
    }

    #[test]
    fn labels_parse_with_any_separator() {
        let labels = parse_labels("app.kubernetes.io/name:web;team:a:b;flag", ";");
        assert_eq!(labels.get("app.kubernetes.io/name").copied(), Some("web"));
        assert_eq!(labels.get("team").copied(), Some("a:b"));
        assert_eq!(labels.get("flag").copied(), Some(""));
        assert!(parse_labels("", ",").is_empty());
    }
}
