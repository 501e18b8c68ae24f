//! The metadata in force, turned into differential changes window by window.
//!
//! Sources know the current objects (a replayed list, a watcher's store); the graph wants
//! `(record, +1/-1)` changes. A changed object is retracted and inserted again.

use std::collections::BTreeMap;

use heapster_dataflows::Name;
use heapster_dataflows::meta::MetaRecord;

/// The kinds of object a source replaces wholesale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Pod,
    Namespace,
}

/// Identity of a metadata object across windows: the record's own names, shared, so that
/// 30,000 pods a window cost no string copies (`Name`s order as their strings do).
type ObjectId = (Kind, Name, Name);

fn object_id(record: &MetaRecord) -> ObjectId {
    match record {
        MetaRecord::Node { name, .. } => (Kind::Node, Name::default(), name.clone()),
        MetaRecord::Pod { ns, name, .. } => (Kind::Pod, ns.clone(), name.clone()),
        MetaRecord::Namespace { name, .. } => (Kind::Namespace, Name::default(), name.clone()),
    }
}

/// The objects last handed to the graph.
#[derive(Default)]
pub struct MetaState {
    objects: BTreeMap<ObjectId, MetaRecord>,
}

impl MetaState {
    /// Replaces every object of `kind` with `records`; returns the differential changes.
    pub fn replace(&mut self, kind: Kind, records: Vec<MetaRecord>) -> Vec<(MetaRecord, isize)> {
        let mut next: BTreeMap<ObjectId, MetaRecord> =
            records.into_iter().map(|r| (object_id(&r), r)).collect();
        let mut changes = Vec::new();
        // In place, in id order: 30,000 pods a window are compared, not moved or copied.
        self.objects.retain(|id, before| {
            if id.0 != kind {
                return true;
            }
            match next.remove(id) {
                Some(after) if after == *before => true,
                Some(after) => {
                    changes.push((std::mem::replace(before, after), -1));
                    changes.push((before.clone(), 1));
                    true
                }
                None => {
                    changes.push((before.clone(), -1));
                    false
                }
            }
        });
        for (id, record) in next {
            changes.push((record.clone(), 1));
            self.objects.insert(id, record);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::Name;
    use heapster_dataflows::meta::NamespaceMeta;

    fn ns(name: &str, uid: &str) -> MetaRecord {
        MetaRecord::Namespace { name: Name::new(name), meta: NamespaceMeta { uid: Name::new(uid) } }
    }

    #[test]
    fn meta_state_emits_only_changes() {
        let mut state = MetaState::default();
        let first = state.replace(Kind::Namespace, vec![ns("a", "1"), ns("b", "2")]);
        assert_eq!(first.len(), 2);
        assert!(state.replace(Kind::Namespace, vec![ns("a", "1"), ns("b", "2")]).is_empty());
        let changed = state.replace(Kind::Namespace, vec![ns("a", "9")]);
        assert_eq!(changed, vec![(ns("a", "1"), -1), (ns("a", "9"), 1), (ns("b", "2"), -1)]);
        // Other kinds are untouched.
        assert!(state.replace(Kind::Pod, vec![]).is_empty());
    }
}
