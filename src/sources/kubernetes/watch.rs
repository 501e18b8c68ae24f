//! Nodes, pods and namespaces kept current by watches (kube-runtime reflectors).
//!
//! Each kind has its own watcher task. In a cluster every process watches the nodes and the
//! pods, but converts and keeps only the pods on the nodes its workers own (the API server can
//! select pods by one node, not by a set of them); the leader alone watches the namespaces.
//! A re-list (at start, after a 410 or a broken stream) is
//! buffered from `Init` to `InitDone` and then swapped in whole, so a window never sees half a
//! list, and nothing is lost or counted twice across the re-list.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
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

/// What one object contributes: its metadata, and for nodes the scrape target.
#[derive(Clone, Debug)]
struct Object {
    record: MetaRecord,
    target: Option<NodeTarget>,
}

/// The current objects of every kind.
#[derive(Default)]
pub struct ClusterState {
    objects: BTreeMap<Kind, BTreeMap<(String, String), Object>>,
    synced: BTreeMap<Kind, bool>,
    relists: u64,
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
            .map(|o| o.values().filter_map(|o| o.target.clone()).collect())
            .unwrap_or_default()
    }

    /// Lists taken since start (the first ones included).
    pub fn relists(&self) -> u64 {
        self.relists
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
    Kept((String, String), Object),
    /// Another process's (a pod on a node this process does not own): absent here, and removed
    /// if it was here before it moved.
    Elsewhere((String, String)),
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
                (String::new(), name.to_string()),
                Object { record: MetaRecord::Node { name, meta }, target: Some(target) },
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
                Some((ns, name, _)) => Converted::Elsewhere((ns.to_string(), name.to_string())),
                None => Converted::Skipped,
            };
        }
        let mut warnings = Vec::new();
        let converted = pod_meta(&self.into_pod(), interner, &mut warnings);
        warn_all(&warnings);
        match converted {
            Ok(((ns, name), meta)) => Converted::Kept(
                (ns.to_string(), name.to_string()),
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
                (String::new(), name.to_string()),
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
    let mut relist: Option<BTreeMap<(String, String), Object>> = None;
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
                state.objects.insert(K::KIND, listed);
                if state.synced.insert(K::KIND, true).is_some() {
                    crate::telemetry::global().watch_restart(resource_name(K::KIND));
                }
                state.relists += 1;
            }
            Event::Apply(object) => match object.convert(&mut interner, share) {
                Converted::Kept(key, object) => {
                    state.lock().objects.entry(K::KIND).or_default().insert(key, object);
                }
                Converted::Elsewhere(key) => {
                    if let Some(objects) = state.lock().objects.get_mut(&K::KIND) {
                        objects.remove(&key);
                    }
                }
                Converted::Skipped => {}
            },
            Event::Delete(object) => {
                if let Converted::Kept(key, _) | Converted::Elsewhere(key) =
                    object.convert(&mut interner, share)
                    && let Some(objects) = state.lock().objects.get_mut(&K::KIND)
                {
                    objects.remove(&key);
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
