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
    /// One pass over the window, no maps: a window is sorted by key, so a pod's containers sit
    /// together, already by name, and the pods come in (namespace, name) order (sorted here
    /// anyway when a caller hands sets in another order).
    pub fn of(batch: &MetricBatch, window: Duration, separator: &str) -> Snapshot {
        let separator: Arc<str> = separator.into();
        let labels_of =
            |set: &MetricSet| Labels::new(set.labels.get(LabelId::Labels).cloned(), separator.clone());
        let mut nodes = Vec::new();
        let mut pod_sets: Vec<(&Name, &Name, &MetricSet)> = Vec::new();
        let mut containers: Vec<(&Name, &Name, &Name, &MetricSet)> = Vec::new();
        for set in &batch.sets {
            match &set.key {
                EntityKey::Node { node } => {
                    if let Some(usage) = usage(set) {
                        nodes.push(NodeUsage { name: node.clone(), labels: labels_of(set), usage });
                    }
                }
                EntityKey::Pod { ns, pod } => pod_sets.push((ns, pod, set)),
                EntityKey::PodContainer { ns, pod, container } => containers.push((ns, pod, container, set)),
                _ => {}
            }
        }
        // Stable sorts: linear on the sorted input a window is.
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
                Ok(i) => labels_of(pod_sets[i].2),
                Err(_) => Labels::default(),
            };
            pods.push(PodUsage { namespace: ns.clone(), name: pod.clone(), labels, containers: list });
        }
        Snapshot { time_ms: batch.time, window, nodes, pods, rendered: Rendered::default() }
    }
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
    fn labels_parse_with_any_separator() {
        let labels = parse_labels("app.kubernetes.io/name:web;team:a:b;flag", ";");
        assert_eq!(labels.get("app.kubernetes.io/name").copied(), Some("web"));
        assert_eq!(labels.get("team").copied(), Some("a:b"));
        assert_eq!(labels.get("flag").copied(), Some(""));
        assert!(parse_labels("", ",").is_empty());
    }
}
