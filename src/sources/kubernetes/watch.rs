//! Nodes, pods and namespaces kept current by watches (kube-runtime reflectors).
//!
//! Each kind has its own watcher task. In a cluster every process watches the nodes and the
//! pods, but converts and keeps only the pods on the nodes its workers own (the API server can
//! select pods by one node, not by a set of them); the leader alone watches the namespaces.
//! A re-list (at start, after a 410 or a broken stream) is
//! buffered from `Init` to `InitDone` and then swapped in whole, so a window never sees half a
//! list, and nothing is lost or counted twice across the re-list.
//!
//! The state remembers which objects changed since the last window ([`ClusterState::changes`]),
//! so a window costs what changed in it, not a copy and comparison of every pod.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use heapster_dataflows::Name;
use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::model::Interner;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use super::objects::{namespace_meta, node_meta, node_target_interned, pod_meta};
use super::trimmed::{TrimmedNode, TrimmedPod};
use crate::cluster::Share;
use crate::sources::NodeTarget;
use crate::sources::meta_state::Kind;

/// What one object contributes: its metadata, and for nodes the scrape target (boxed: 30 pods
/// a node, and only the node has one).
#[derive(Clone, Debug, PartialEq)]
struct Object {
    record: MetaRecord,
    target: Option<Box<NodeTarget>>,
}

/// An object's key within its kind: `(namespace, name)`, the namespace empty for nodes and
/// namespaces; the record's own names, shared (`Name`s order as their strings do).
type Key = (Name, Name);

/// The current objects of every kind.
#[derive(Default)]
pub struct ClusterState {
    objects: BTreeMap<Kind, BTreeMap<Key, Object>>,
    synced: BTreeMap<Kind, bool>,
    relists: u64,
    /// The objects touched since the last [`ClusterState::changes`], each with its record as
    /// it was then (`None`: absent). `None` until the first call, which hands out everything.
    touched: Option<BTreeMap<(Kind, Key), Option<MetaRecord>>>,
}

impl ClusterState {
    /// Whether every one of `kinds` has completed its first list.
    pub fn synced(&self, kinds: &[Kind]) -> bool {
        kinds.iter().all(|k| self.synced.get(k).copied().unwrap_or(false))
    }

    pub fn records(&self, kind: Kind) -> Vec<MetaRecord> {
        self.objects.get(&kind).map(|o| o.values().map(|o| o.record.clone()).collect()).unwrap_or_default()
    }

    /// The records of `kind` this process feeds ([`Share::keeps`]).
    pub fn records_kept(&self, kind: Kind, share: Share) -> Vec<MetaRecord> {
        self.objects
            .get(&kind)
            .map(|o| o.values().filter(|o| share.keeps(&o.record)).map(|o| o.record.clone()).collect())
            .unwrap_or_default()
    }

    /// Nodes in name order, ready or not.
    pub fn targets(&self) -> Vec<NodeTarget> {
        self.objects
            .get(&Kind::Node)
            .map(|o| o.values().filter_map(|o| o.target.as_deref().cloned()).collect())
            .unwrap_or_default()
    }

    /// Lists taken since start (the first ones included).
    pub fn relists(&self) -> u64 {
        self.relists
    }

    /// The differential changes of the records this process feeds ([`Share::keeps`]) since the
    /// last call, kind by kind (nodes, pods, namespaces), as [`MetaState::replace`] of every
    /// kept record would give them, in the same order; the first call gives every record.
    ///
    /// [`MetaState::replace`]: crate::sources::meta_state::MetaState::replace
    pub fn changes(&mut self, share: Share) -> Vec<(MetaRecord, isize)> {
        let Some(touched) = self.touched.replace(BTreeMap::new()) else {
            let mut changes = Vec::new();
            for kind in [Kind::Node, Kind::Pod, Kind::Namespace] {
                changes.extend(self.records_kept(kind, share).into_iter().map(|r| (r, 1)));
            }
            return changes;
        };
        let mut changes = Vec::new();
        let mut added = Vec::new();
        let mut kind = None;
        for ((k, key), before) in touched {
            if kind != Some(k) {
                // Within a kind, changes and removals first, then additions, each in key order.
                changes.append(&mut added);
                kind = Some(k);
            }
            let before = before.filter(|r| share.keeps(r));
            let after = self
                .objects
                .get(&k)
                .and_then(|objects| objects.get(&key))
                .map(|o| &o.record)
                .filter(|r| share.keeps(r));
            match (before, after) {
                (Some(before), Some(after)) if before == *after => {}
                (Some(before), Some(after)) => {
                    changes.push((before, -1));
                    changes.push((after.clone(), 1));
                }
                (Some(before), None) => changes.push((before, -1)),
                (None, Some(after)) => added.push((after.clone(), 1)),
                (None, None) => {}
            }
        }
        changes.append(&mut added);
        changes
    }

    /// Notes, before `key` of `kind` changes, what it was: once per object between windows.
    fn touch(&mut self, kind: Kind, key: &Key) {
        let Some(touched) = self.touched.as_mut() else { return };
        if touched.contains_key(&(kind, key.clone())) {
            return;
        }
        let before = self.objects.get(&kind).and_then(|o| o.get(key)).map(|o| o.record.clone());
        touched.insert((kind, key.clone()), before);
    }

    /// Adds or replaces an object; one equal to what is there (a re-sent object) changes nothing.
    fn insert(&mut self, kind: Kind, key: Key, object: Object) {
        if self.objects.get(&kind).and_then(|o| o.get(&key)) == Some(&object) {
            return;
        }
        self.touch(kind, &key);
        self.objects.entry(kind).or_default().insert(key, object);
    }

    fn remove(&mut self, kind: Kind, key: &Key) {
        if self.objects.get(&kind).is_some_and(|o| o.contains_key(key)) {
            self.touch(kind, key);
            if let Some(objects) = self.objects.get_mut(&kind) {
                objects.remove(key);
            }
        }
    }

    /// Swaps in a whole list of `kind`, noting every object that differs from before.
    fn replace_all(&mut self, kind: Kind, listed: BTreeMap<Key, Object>) {
        if self.touched.is_some() {
            let empty = BTreeMap::new();
            let before = self.objects.get(&kind).unwrap_or(&empty);
            let differ: Vec<Key> = listed
                .iter()
                .filter(|(key, object)| before.get(*key) != Some(*object))
                .map(|(key, _)| key.clone())
                .chain(before.keys().filter(|key| !listed.contains_key(*key)).cloned())
                .collect();
            for key in &differ {
                self.touch(kind, key);
            }
        }
        self.objects.insert(kind, listed);
    }
}

/// The shared state, written by the watchers and read at each window.
#[derive(Clone, Default)]
pub struct SharedState(Arc<Mutex<ClusterState>>);

impl SharedState {
    pub fn lock(&self) -> MutexGuard<'_, ClusterState> {
        // A watcher that panicked mid-update leaves the previous objects, still usable.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What an object is to this process.
// Made and taken apart at once, never stored: boxing the kept object would only add an
// allocation per object.
#[allow(clippy::large_enum_variant)]
enum Converted {
    /// Its key and what it contributes.
    Kept(Key, Object),
    /// Another process's (a pod on a node this process does not own): absent here, and removed
    /// if it was here before it moved.
    Elsewhere(Key),
    /// Unusable (warned).
    Skipped,
}

/// Converts one object for a process with `share` of the cluster.
trait Convert: Sized {
    const KIND: Kind;
    fn convert(self, interner: &mut Interner, share: Share) -> Converted;
}

impl Convert for TrimmedNode {
    const KIND: Kind = Kind::Node;
    /// Every process keeps every node: the targets say which are Ready, and the records fed are
    /// picked at each window ([`ClusterState::records_kept`]).
    fn convert(self, interner: &mut Interner, _share: Share) -> Converted {
        let node = self.into_node();
        let mut warnings = Vec::new();
        let converted = node_target_interned(&node, interner).and_then(|target| {
            node_meta(&node, interner, &mut warnings).map(|(name, meta)| (target, name, meta))
        });
        warn_all(&warnings);
        match converted {
            Ok((target, name, meta)) => Converted::Kept(
                (Name::default(), name.clone()),
                Object { record: MetaRecord::Node { name, meta }, target: Some(Box::new(target)) },
            ),
            Err(e) => {
                tracing::warn!("node skipped: {e}");
                Converted::Skipped
            }
        }
    }
}

impl Convert for TrimmedPod {
    const KIND: Kind = Kind::Pod;
    /// Only the pods this process's workers enrich with are converted; the others cost their
    /// decoding alone.
    fn convert(self, interner: &mut Interner, share: Share) -> Converted {
        let place = self.place();
        if !share.keeps_pod(place) {
            return match place {
                Some((ns, name, _)) => Converted::Elsewhere((Name::new(ns), Name::new(name))),
                None => Converted::Skipped,
            };
        }
        let mut warnings = Vec::new();
        let converted = pod_meta(&self.into_pod(), interner, &mut warnings);
        warn_all(&warnings);
        match converted {
            Ok(((ns, name), meta)) => Converted::Kept(
                (ns.clone(), name.clone()),
                Object { record: MetaRecord::Pod { ns, name, meta: meta.into() }, target: None },
            ),
            Err(e) => {
                tracing::warn!("pod skipped: {e}");
                Converted::Skipped
            }
        }
    }
}

impl Convert for Namespace {
    const KIND: Kind = Kind::Namespace;
    fn convert(self, interner: &mut Interner, _share: Share) -> Converted {
        match namespace_meta(&self, interner) {
            Ok((name, meta)) => Converted::Kept(
                (Name::default(), name.clone()),
                Object { record: MetaRecord::Namespace { name, meta }, target: None },
            ),
            Err(e) => {
                tracing::warn!("namespace skipped: {e}");
                Converted::Skipped
            }
        }
    }
}

/// The API resource a kind is listed as, for the self-metrics.
fn resource_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Node => "nodes",
        Kind::Pod => "pods",
        Kind::Namespace => "namespaces",
    }
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// The kinds a process with `share` watches: every process the nodes (to know its own) and the
/// pods (keeping its own nodes' pods), the leader alone the namespaces, which every worker gets
/// from it.
pub fn watched_kinds(share: Share) -> Vec<Kind> {
    let mut kinds = vec![Kind::Node, Kind::Pod];
    if share.is_leader() {
        kinds.push(Kind::Namespace);
    }
    kinds
}

/// Starts the watchers of [`watched_kinds`] on the current runtime. They run until the runtime
/// stops.
pub fn spawn(client: &kube::Client, state: &SharedState, share: Share) {
    tokio::spawn(watch::<TrimmedNode>(Api::all(client.clone()), state.clone(), share));
    tokio::spawn(watch::<TrimmedPod>(Api::all(client.clone()), state.clone(), share));
    if share.is_leader() {
        tokio::spawn(watch::<Namespace>(Api::all(client.clone()), state.clone(), share));
    }
}

async fn watch<K>(api: Api<K>, state: SharedState, share: Share)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static + Convert,
{
    let mut interner = Interner::default();
    let mut relist: Option<BTreeMap<Key, Object>> = None;
    let mut failing: Option<String> = None;
    let mut since_sweep = 0usize;
    let config = watcher::Config::default().any_semantic();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let message = crate::errors::error_chain(&e);
                if failing.as_deref() != Some(message.as_str()) {
                    tracing::debug!(kind = ?K::KIND, "watch failed, retrying with backoff: {message}");
                    super::reach::failed(&message);
                    if K::KIND == Kind::Node {
                        crate::telemetry::global().nodes_failing(Some(message.clone()));
                    }
                    failing = Some(message);
                }
                continue;
            }
        };
        if matches!(event, Event::InitDone | Event::Apply(_) | Event::Delete(_)) && failing.take().is_some() {
            tracing::debug!(kind = ?K::KIND, "watch recovered");
            super::reach::answered();
            if K::KIND == Kind::Node {
                crate::telemetry::global().nodes_failing(None);
            }
        }
        match event {
            Event::Init => relist = Some(BTreeMap::new()),
            Event::InitApply(object) => {
                if let (Some(buffer), Converted::Kept(key, object)) =
                    (relist.as_mut(), object.convert(&mut interner, share))
                {
                    buffer.insert(key, object);
                }
            }
            Event::InitDone => {
                let listed = relist.take().unwrap_or_default();
                tracing::debug!(kind = ?K::KIND, objects = listed.len(), "listed");
                let mut state = state.lock();
                state.replace_all(K::KIND, listed);
                if state.synced.insert(K::KIND, true).is_some() {
                    crate::telemetry::global().watch_restart(resource_name(K::KIND));
                }
                state.relists += 1;
            }
            Event::Apply(object) => match object.convert(&mut interner, share) {
                Converted::Kept(key, object) => state.lock().insert(K::KIND, key, object),
                Converted::Elsewhere(key) => state.lock().remove(K::KIND, &key),
                Converted::Skipped => {}
            },
            Event::Delete(object) => {
                if let Converted::Kept(key, _) | Converted::Elsewhere(key) =
                    object.convert(&mut interner, share)
                {
                    state.lock().remove(K::KIND, &key);
                }
            }
        }
        // Deleted objects' names are released from time to time, not on every event.
        since_sweep += 1;
        if since_sweep >= 10_000 && relist.is_none() {
            interner.sweep();
            since_sweep = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use heapster_dataflows::meta::{NamespaceMeta, NodeMeta, NodeResources, PodMeta};

    use super::*;
    use crate::sources::meta_state::MetaState;

    fn object(kind: Kind, i: u64, version: u64) -> (Key, Object) {
        let name = Name::new(&format!("o{i}"));
        let uid = Name::new(&format!("u{version}"));
        let record = match kind {
            Kind::Node => MetaRecord::Node {
                name: name.clone(),
                meta: NodeMeta {
                    labels: vec![(Name::new("v"), uid)],
                    capacity: NodeResources::default(),
                    allocatable: NodeResources::default(),
                },
            },
            Kind::Pod => MetaRecord::Pod {
                ns: Name::new(&format!("ns{}", i % 3)),
                name: name.clone(),
                meta: Arc::new(PodMeta { uid, labels: vec![], node: None, containers: Arc::new([]) }),
            },
            Kind::Namespace => MetaRecord::Namespace { name: name.clone(), meta: NamespaceMeta { uid } },
        };
        let ns = if kind == Kind::Pod { Name::new(&format!("ns{}", i % 3)) } else { Name::default() };
        ((ns, name), Object { record, target: None })
    }

    /// Every kept record, as the window before change tracking read them.
    fn kept(state: &ClusterState, share: Share) -> [Vec<MetaRecord>; 3] {
        [Kind::Node, Kind::Pod, Kind::Namespace].map(|kind| state.records_kept(kind, share))
    }

    #[test]
    fn changes_are_what_replacing_every_record_gives() {
        for share in [Share::single(1), Share { process: 1, processes: 2, workers: 2 }] {
            let mut state = ClusterState::default();
            let mut replaced = MetaState::default();
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut next = |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for window in 0..40 {
                for _ in 0..next(30) {
                    let kind = [Kind::Node, Kind::Pod, Kind::Namespace][next(3) as usize];
                    let (key, object) = object(kind, next(12), next(3));
                    match next(10) {
                        0..=5 => state.insert(kind, key, object),
                        6..=8 => state.remove(kind, &key),
                        _ => {
                            // A re-list: some of what was there, changed or not.
                            let listed = (0..next(12))
                                .map(|i| self::object(kind, i * 2, next(2)))
                                .collect::<BTreeMap<_, _>>();
                            state.replace_all(kind, listed);
                        }
                    }
                }
                let [nodes, pods, namespaces] = kept(&state, share);
                let mut expected = replaced.replace(Kind::Node, nodes);
                expected.extend(replaced.replace(Kind::Pod, pods));
                expected.extend(replaced.replace(Kind::Namespace, namespaces));
                assert_eq!(state.changes(share), expected, "window {window}");
            }
            assert!(state.changes(share).is_empty(), "nothing changed, nothing to feed");
        }
    }
}
