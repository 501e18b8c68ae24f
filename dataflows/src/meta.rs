//! Cluster metadata that enriches metric sets: what the API server says about nodes, pods and
//! namespaces. It changes over time, so the graphs hold it as a differential collection.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{EntityKey, Name};

/// Requests or limits of one container, as integers in Heapster's units.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub ephemeral_bytes: Option<i64>,
    /// Accelerators (`nvidia.com/gpu` and the like).
    pub accelerators: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub name: Name,
    pub image: Name,
    pub requests: Resources,
    pub limits: Resources,
    /// From the pod's container statuses; absent before the first status.
    pub restart_count: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodMeta {
    pub uid: Name,
    /// Pod labels, sorted by key.
    pub labels: Vec<(Name, Name)>,
    pub node: Option<Name>,
    /// Spec containers in spec order (shared: the index and every window's stubs read them).
    pub containers: Arc<[ContainerMeta]>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NamespaceMeta {
    pub uid: Name,
}

/// Capacity or allocatable of a node, in Heapster's units.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeResources {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub ephemeral_bytes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Node labels, sorted by key.
    pub labels: Vec<(Name, Name)>,
    pub capacity: NodeResources,
    pub allocatable: NodeResources,
}

/// One metadata object, as fed to the graph.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MetaRecord {
    Node {
        name: Name,
        meta: NodeMeta,
    },
    /// Shared: the source's state, the graph's input and its arrangements hold the same pod.
    Pod {
        ns: Name,
        name: Name,
        meta: Arc<PodMeta>,
    },
    Namespace {
        name: Name,
        meta: NamespaceMeta,
    },
}

/// What a metric set is enriched by: its node's or its pod's metadata.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MetaKey {
    Node(Name),
    Pod(Name, Name),
    Namespace(Name),
}

impl MetaKey {
    /// The metadata that enriches `key`, if any.
    pub fn for_entity(key: &EntityKey) -> Option<MetaKey> {
        match key {
            EntityKey::Node { node } => Some(MetaKey::Node(node.clone())),
            EntityKey::Pod { ns, pod } | EntityKey::PodContainer { ns, pod, .. } => {
                Some(MetaKey::Pod(ns.clone(), pod.clone()))
            }
            _ => None,
        }
    }
}

/// A pod's metadata, with its labels already rendered.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodInfo {
    pub uid: Name,
    /// The node the pod is bound to: its metadata goes to that node's owner, and enriches only
    /// sets scraped on that node.
    pub node: Option<Name>,
    /// Heapster's `labels` label: `k:v` pairs sorted and joined.
    pub labels: Name,
    /// Labels copied out by `--store_label`, sorted by key.
    pub stored: Vec<(Name, Name)>,
    pub containers: Arc<[ContainerMeta]>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    pub labels: Name,
    pub stored: Vec<(Name, Name)>,
    pub capacity: NodeResources,
    pub allocatable: NodeResources,
}

/// The enrichment index's values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Meta {
    Node(NodeInfo),
    Pod(PodInfo),
    /// The namespace's uid (a pod's `namespace_id`).
    Namespace(Name),
}

/// How pod and node labels become Heapster's `labels` label (`--label_separator`,
/// `--ignore_label`, `--store_label`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPolicy {
    pub separator: String,
    pub ignore: Vec<String>,
    /// `(stored as, taken from)`.
    pub store: Vec<(String, String)>,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        LabelPolicy { separator: ",".to_string(), ignore: Vec::new(), store: Vec::new() }
    }
}

impl LabelPolicy {
    /// Renders sorted `k:v` pairs joined by the separator, without ignored keys.
    pub fn render(&self, labels: &[(Name, Name)]) -> Name {
        let mut pairs: Vec<&(Name, Name)> =
            labels.iter().filter(|(k, _)| !self.ignore.iter().any(|i| i == k.as_str())).collect();
        pairs.sort();
        let mut out = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            out.push_str(k);
            out.push(':');
            out.push_str(v);
        }
        Name::from(out)
    }

    /// The labels `--store_label` copies out as labels of their own.
    pub fn stored(&self, labels: &[(Name, Name)]) -> Vec<(Name, Name)> {
        let mut out: Vec<(Name, Name)> = self
            .store
            .iter()
            .filter_map(|(to, from)| {
                labels.iter().find(|(k, _)| k.as_str() == from).map(|(_, v)| (Name::new(to), v.clone()))
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(Name, Name)> {
        pairs.iter().map(|(k, v)| (Name::new(k), Name::new(v))).collect()
    }

    #[test]
    fn renders_sorted_pairs_without_ignored() {
        let mut policy = LabelPolicy::default();
        let l = labels(&[("tier", "web"), ("app", "nginx"), ("pod-template-hash", "abc")]);
        assert_eq!(policy.render(&l).as_str(), "app:nginx,pod-template-hash:abc,tier:web");
        policy.ignore.push("pod-template-hash".into());
        policy.separator = ";".into();
        assert_eq!(policy.render(&l).as_str(), "app:nginx;tier:web");
        assert_eq!(policy.render(&[]).as_str(), "");
    }

    #[test]
    fn stores_renamed_labels() {
        let policy = LabelPolicy {
            store: vec![
                ("application".into(), "app".into()),
                ("tier".into(), "tier".into()),
                ("x".into(), "missing".into()),
            ],
            ..LabelPolicy::default()
        };
        let stored = policy.stored(&labels(&[("tier", "web"), ("app", "nginx")]));
        assert_eq!(stored, labels(&[("application", "nginx"), ("tier", "web")]));
    }
}
