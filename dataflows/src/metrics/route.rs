//! Where each record of the metrics graph is processed: everything bound to a node on the
//! node's owner, the worker that scraped it.
//!
//! A node's sets (the node, its system containers, its pods and their containers) never leave
//! the worker that parsed them, so a window's exchanges carry only what must move: the pod and
//! node metadata a worker enriches with (to the node's owner), and the few upward sums of
//! namespaces and the cluster (to their target's worker).

use crate::hash::{node_route, stable_hash};
use crate::meta::MetaRecord;
use crate::model::{EntityKey, LabelId, MetricSet, Name};

/// The node a set was scraped on: in its key, or its `nodename` label (every set of a node
/// carries it).
pub fn set_node(set: &MetricSet) -> Option<&Name> {
    match &set.key {
        EntityKey::Node { node } | EntityKey::SysContainer { node, .. } => Some(node),
        _ => set.labels.get(LabelId::Nodename),
    }
}

/// A set's worker: its node's owner; a pod set without a node goes by its pod (with its
/// containers), namespaces and the cluster by their key.
pub fn set(set: &MetricSet) -> u64 {
    match (&set.key, set_node(set)) {
        (EntityKey::Namespace { .. } | EntityKey::Cluster, _) | (_, None) => set.key.route(),
        (_, Some(node)) => node_route(node),
    }
}

/// An entity's worker, for a sum towards it: a node's owner, or a namespace's or the cluster's
/// worker by key.
pub fn target(key: &EntityKey) -> u64 {
    match key {
        EntityKey::Node { node } | EntityKey::SysContainer { node, .. } => node_route(node),
        _ => key.route(),
    }
}

/// A node's or pod's metadata's worker: the owner of the node it describes, or of the node the
/// pod is bound to. A pod not bound to a node (pending) cannot be scraped; it goes by its key.
/// (Namespaces go to every worker.)
pub fn record(record: &MetaRecord) -> u64 {
    match record {
        MetaRecord::Node { name, .. } => node_route(name),
        MetaRecord::Pod { ns, name, meta } => pod(ns, name, meta.node.as_deref()),
        MetaRecord::Namespace { name, .. } => EntityKey::Namespace { ns: name.clone() }.route(),
    }
}

/// A pod's metadata's worker from its namespace, name and node: what [`record`] picks, for a
/// source that places a pod before decoding the rest of it.
pub fn pod(ns: &str, name: &str, node: Option<&str>) -> u64 {
    match node {
        Some(node) => node_route(node),
        // `EntityKey::Pod { ns, pod }.route()`, without building the key.
        None => stable_hash(&["pod", ns, name]),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::meta::{NodeMeta, NodeResources, PodMeta};

    fn on_node(key: EntityKey, node: &str) -> MetricSet {
        let mut set = MetricSet::new(key);
        set.labels.set(LabelId::Nodename, node.into());
        set
    }

    #[test]
    fn a_nodes_sets_and_metadata_go_to_its_owner() {
        let node = "node-7";
        let owner = node_route(node);
        let container = EntityKey::PodContainer { ns: "a".into(), pod: "b".into(), container: "c".into() };
        for key in [
            EntityKey::Node { node: node.into() },
            EntityKey::SysContainer { node: node.into(), name: "kubelet".into() },
            EntityKey::Pod { ns: "a".into(), pod: "b".into() },
            container.clone(),
        ] {
            assert_eq!(set(&on_node(key.clone(), node)), owner, "{key}");
        }
        assert_eq!(target(&EntityKey::Node { node: node.into() }), owner);
        let pod = |node: Option<&str>| MetaRecord::Pod {
            ns: "a".into(),
            name: "b".into(),
            meta: Arc::new(PodMeta {
                uid: "u".into(),
                labels: vec![],
                node: node.map(Name::new),
                containers: Arc::from(Vec::new()),
            }),
        };
        assert_eq!(record(&pod(Some(node))), owner);
        let node_meta = NodeMeta {
            labels: vec![],
            capacity: NodeResources::default(),
            allocatable: NodeResources::default(),
        };
        assert_eq!(record(&MetaRecord::Node { name: node.into(), meta: node_meta }), owner);
        // Without a node, a pod and its containers still meet (by pod), and so does its metadata.
        let lone = MetricSet::new(container.clone());
        assert_eq!(set(&lone), set(&MetricSet::new(EntityKey::Pod { ns: "a".into(), pod: "b".into() })));
        assert_eq!(record(&pod(None)), container.route());
        assert_eq!(super::pod("a", "b", None), container.route());
        assert_eq!(super::pod("a", "b", Some(node)), owner);
        assert_eq!(set(&on_node(EntityKey::Cluster, node)), EntityKey::Cluster.route());
        let ns = EntityKey::Namespace { ns: "a".into() };
        assert_eq!(set(&on_node(ns.clone(), node)), ns.route());
        assert_eq!(target(&ns), ns.route());
    }
}
