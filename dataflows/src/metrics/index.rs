//! The enrichment index: node and pod metadata as a differential collection.
//!
//! Pods are joined with their namespace (for `namespace_id`) and their labels rendered once per
//! change, not once per window; the enrich operator then reads the index's changes.

use std::sync::Arc;

use differential_dataflow::VecCollection;

use crate::meta::{LabelPolicy, Meta, MetaKey, MetaRecord, NodeInfo, PodInfo, PodMeta};
use crate::model::{Name, Time};

/// `(MetaKey, Meta)` for every node and pod the API server knows, kept current as metadata changes.
pub fn meta_index<'s>(
    meta: VecCollection<'s, Time, MetaRecord>,
    policy: &LabelPolicy,
) -> VecCollection<'s, Time, (MetaKey, Meta)> {
    let pods = meta.clone().flat_map(|record| match record {
        MetaRecord::Pod { ns, name, meta } => Some((ns, (name, meta))),
        _ => None,
    });
    let namespaces = meta.clone().flat_map(|record| match record {
        MetaRecord::Namespace { name, meta } => Some((name, meta.uid)),
        _ => None,
    });
    let nodes = meta.flat_map(|record| match record {
        MetaRecord::Node { name, meta } => Some((name, meta)),
        _ => None,
    });

    // A left outer join: pods whose namespace is unknown keep no namespace_id.
    let known = namespaces.clone().map(|(ns, _)| ns).distinct();
    let in_known = pods.clone().join_map(namespaces, |ns, (name, pod), uid| {
        (ns.clone(), name.clone(), pod.clone(), Some(uid.clone()))
    });
    let in_unknown = pods.antijoin(known).map(|(ns, (name, pod))| (ns, name, pod, None));

    let pod_policy = policy.clone();
    let pods = in_known.concat(in_unknown).map(move |(ns, name, pod, ns_uid)| {
        (MetaKey::Pod(ns, name), Meta::Pod(pod_info(&pod, ns_uid, &pod_policy)))
    });
    let node_policy = policy.clone();
    let nodes = nodes.map(move |(name, node)| {
        let info = NodeInfo {
            labels: node_policy.render(&node.labels),
            stored: node_policy.stored(&node.labels),
            capacity: node.capacity,
            allocatable: node.allocatable,
        };
        (MetaKey::Node(name), Meta::Node(info))
    });
    pods.concat(nodes)
}

fn pod_info(pod: &PodMeta, namespace_id: Option<Name>, policy: &LabelPolicy) -> PodInfo {
    PodInfo {
        uid: pod.uid.clone(),
        node: pod.node.clone(),
        namespace_id,
        labels: policy.render(&pod.labels),
        stored: policy.stored(&pod.labels),
        containers: Arc::clone(&pod.containers),
    }
}
