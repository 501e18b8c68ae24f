//! The enrichment index: node, pod and namespace metadata, each change placed on the workers
//! that enrich with it.
//!
//! The metadata source feeds one worker. Each pod's and node's changes go from there straight
//! to the owner of their node (see [`super::route`]), where their labels are rendered
//! once per change, not once per window; namespaces, a handful, go to every worker, and a pod's
//! `namespace_id` is read from them when it is enriched. Joining pods with their namespace in
//! the graph instead would gather every pod of a namespace on one worker first, and send each
//! pod's metadata across processes twice.

use std::sync::Arc;

use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, Exchange, OkErr};

use super::enrich::IndexChange;
use super::route;
use crate::meta::{LabelPolicy, Meta, MetaKey, MetaRecord, NodeInfo, PodInfo, PodMeta};
use crate::model::Time;

/// `(MetaKey, Meta)` changes for every node, pod and namespace the API server knows, each on the
/// workers that enrich with it.
pub fn meta_index<'s>(
    meta: VecCollection<'s, Time, MetaRecord>,
    policy: &LabelPolicy,
) -> StreamVec<'s, Time, IndexChange> {
    type Change = (MetaRecord, Time, isize);
    // `ok_err` only splits the stream: both sides are changes, moved, never boxed.
    #[allow(clippy::result_large_err)]
    let (namespaces, placed): (StreamVec<'s, Time, Change>, StreamVec<'s, Time, Change>) =
        meta.inner.ok_err(|change| if is_namespace(&change.0) { Ok(change) } else { Err(change) });
    let placed = placed.exchange(|(record, _, _)| route::record(record));
    let policy = policy.clone();
    namespaces
        .broadcast()
        .concat(placed)
        .map(move |(record, time, diff)| (entry(record, &policy), time, diff))
}

fn is_namespace(record: &MetaRecord) -> bool {
    matches!(record, MetaRecord::Namespace { .. })
}

/// A record's index entry.
fn entry(record: MetaRecord, policy: &LabelPolicy) -> (MetaKey, Meta) {
    match record {
        MetaRecord::Pod { ns, name, meta } => (MetaKey::Pod(ns, name), Meta::Pod(pod_info(&meta, policy))),
        MetaRecord::Node { name, meta } => {
            let info = NodeInfo {
                labels: policy.render(&meta.labels),
                stored: policy.stored(&meta.labels),
                capacity: meta.capacity,
                allocatable: meta.allocatable,
            };
            (MetaKey::Node(name), Meta::Node(info))
        }
        MetaRecord::Namespace { name, meta } => (MetaKey::Namespace(name), Meta::Namespace(meta.uid)),
    }
}

fn pod_info(pod: &PodMeta, policy: &LabelPolicy) -> PodInfo {
    PodInfo {
        uid: pod.uid.clone(),
        node: pod.node.clone(),
        labels: policy.render(&pod.labels),
        stored: policy.stored(&pod.labels),
        containers: Arc::clone(&pod.containers),
    }
}
