//! `enrich`: metric sets meet their node's and pod's metadata (Heapster's pod-based,
//! namespace-based and node-autoscaling enrichers).
//!
//! Sets and index changes are routed by node (see [`super::route`]): sets stay on the
//! worker that scraped them, and each worker holds the index entries of exactly its own nodes
//! and the pods bound to them. A pod's metadata enriches only sets scraped on the node it is
//! bound to, so the output does not depend on where a stale entry of a moved pod happens to be.
//! A window is enriched against the index as of that window's time.

use std::cell::Cell;
use std::sync::Arc;

use indexmap::IndexMap;

use rustc_hash::FxBuildHasher;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::route;
use super::window::{Held, Updates, Windows};
use crate::catalog::{LabeledMetricId, MetricId};
use crate::meta::{ContainerMeta, Meta, MetaKey, NodeInfo, PodInfo};
use crate::model::{
    EntityKey, LabelId, LabeledMetric, LabeledValue, Labels, MetricSet, Name, Resource, Time, Value, prefetch,
};

/// A change to the index, as differential emits it.
pub type IndexChange = ((MetaKey, Meta), Time, isize);

/// The index as of the current window: each key's values with their multiplicities.
///
/// Built by hand from the index's changes rather than read from a differential arrangement: a
/// set costs one hash lookup here, while a half join against `arrange_by_key`'s trace (a sort
/// and a cursor seek per key, over every batch of the spine) cost 4-7% more CPU end to end on
/// the 1,000-node throughput scenario, for the same output.
#[derive(Default)]
pub struct MetaIndex {
    entries: IndexMap<MetaKey, Counted, FxBuildHasher>,
    /// Per entry, the entry of the pod looked up after it last time ([`MetaIndex::pod_after`]).
    after: Vec<Cell<u32>>,
    /// Counts the changes applied, so that what was read from the index can be kept until the
    /// index changes.
    generation: u64,
}

/// A key's values with their multiplicities. A key has one value but while an object changes:
/// that one is kept in the entry itself, so a lookup reads the entry and not also an allocation
/// of its own (a cache miss per pod per window); the others, rare and brief, in `rest`.
struct Counted {
    first: (Meta, isize),
    rest: Vec<(Meta, isize)>,
}

impl Counted {
    fn new(meta: Meta, diff: isize) -> Counted {
        Counted { first: (meta, diff), rest: Vec::new() }
    }

    /// Adds `diff` to `meta`'s count and drops the values counted to zero; `false` once no
    /// value is left.
    fn update(&mut self, meta: Meta, diff: isize) -> bool {
        if self.first.0 == meta {
            self.first.1 += diff;
        } else {
            match self.rest.iter_mut().find(|(m, _)| *m == meta) {
                Some((_, count)) => *count += diff,
                None => {
                    // Room for four would hold 30,000 pods' metadata four times over.
                    self.rest.reserve_exact(1);
                    self.rest.push((meta, diff));
                }
            }
            self.rest.retain(|(_, count)| *count != 0);
        }
        if self.first.1 == 0 {
            match self.rest.pop() {
                Some(other) => self.first = other,
                None => return false,
            }
        }
        true
    }

    /// The least value counted positive: if the API ever listed two objects under one key,
    /// every run picks the same one.
    fn least(&self) -> Option<&Meta> {
        let first = Some(&self.first).filter(|(_, count)| *count > 0).map(|(m, _)| m);
        if self.rest.is_empty() {
            return first;
        }
        first.into_iter().chain(self.rest.iter().filter(|(_, count)| *count > 0).map(|(m, _)| m)).min()
    }
}

/// No entry: a pod looked up first, or after one the index does not have.
const NONE: u32 = u32::MAX;

impl MetaIndex {
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (MetaKey, Meta, isize)>) {
        for (key, meta, diff) in changes {
            self.generation += 1;
            let (at, left) = match self.entries.get_full_mut(&key) {
                Some((at, _, values)) => (at, values.update(meta, diff)),
                None => {
                    let (at, _) = self.entries.insert_full(key, Counted::new(meta, diff));
                    self.after.push(Cell::new(NONE));
                    (at, diff != 0)
                }
            };
            if !left {
                // The last entry takes its place: links to either are only guesses, checked.
                self.entries.swap_remove_index(at);
                self.after.swap_remove(at);
            }
        }
    }

    /// The key's metadata; if the API ever listed two objects under one key, the least, so
    /// every run picks the same one.
    pub fn get(&self, key: &MetaKey) -> Option<&Meta> {
        self.entries.get(key)?.least()
    }

    /// Pod `ns/pod`'s entry and metadata, looked up after the entry `last`.
    ///
    /// A kubelet lists its pods in the same order every window: the entry found after `last`
    /// the previous time is checked first, by comparing names, before the key is hashed and
    /// probed for in a table of 30,000 pods.
    pub fn pod_after(&self, last: Option<usize>, ns: &Name, pod: &Name) -> (Option<usize>, Option<&Meta>) {
        let link = last.and_then(|last| self.after.get(last));
        let guess = link.map(Cell::get).filter(|at| *at != NONE).map(|at| at as usize);
        let hit = guess.filter(
            |at| matches!(self.entries.get_index(*at), Some((MetaKey::Pod(n, p), _)) if p == pod && n == ns),
        );
        let at = hit.or_else(|| self.entries.get_index_of(&MetaKey::Pod(ns.clone(), pod.clone())));
        if let (Some(link), false) = (link, hit.is_some()) {
            link.set(at.map_or(NONE, |at| at as u32));
        }
        if let Some(at) = at {
            self.prefetch_after(at);
        }
        (at, at.and_then(|at| self.entries[at].least()))
    }

    /// Asks the CPU ahead of time for what the next pods' lookups will read, if they come as
    /// last time: the entry of the pod after next, and what the next one's metadata points to
    /// (its entry was asked for the last time).
    #[inline]
    fn prefetch_after(&self, at: usize) {
        let link = |at: usize| self.after.get(at).map(Cell::get).filter(|n| *n != NONE).map(|n| n as usize);
        let Some(next) = link(at) else { return };
        if let Some((key, value)) = link(next).and_then(|after| self.entries.get_index(after)) {
            prefetch((key as *const MetaKey).cast());
            let value = (value as *const Counted).cast::<u8>();
            let mut line = 0;
            while line < size_of::<Counted>() {
                prefetch(value.wrapping_add(line));
                line += 64;
            }
        }
        if let Some((_, Counted { first: (Meta::Pod(info), _), .. })) = self.entries.get_index(next) {
            prefetch(info.uid.as_ptr());
            prefetch(info.labels.as_ptr());
            prefetch(info.containers.as_ptr().cast());
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Enriches the sets of one window as they come, and remembers what it needs to add stubs for
/// spec containers the kubelet did not report (Heapster did the same, so requests of
/// not-yet-started containers still count) once the window is complete.
///
/// A kubelet lists a pod's sets together: the pod's metadata is looked up once for all of
/// them, and its reported containers are gathered in one place, not hashed one by one.
#[derive(Default)]
pub struct WindowEnricher {
    /// The containers reported of each pod, by namespace and pod name. An enriched pod's entry
    /// is made with its template, which keeps its position: a kubelet lists a pod's containers
    /// right after the pod, so they are merged there and read back without hashing the names.
    reported: IndexMap<(Name, Name), Reported, FxBuildHasher>,
    /// The pod whose container sets came last, those it reported so far, and its entry in
    /// `reported` if known; merged into `reported` when another pod's begin.
    current: Option<((Name, Name), Reported, Option<usize>)>,
    /// Enriched pods: a stub copies the pod's labels and times.
    pods: Vec<PodTemplate>,
    /// The namespace looked up last, its uid, and the index generation it was read at: sets
    /// come pod by pod, from few namespaces, and this saves a lookup per set.
    last_namespace: Option<(Name, Option<Name>, u64)>,
    /// The index entry of the pod looked up last, kept from one batch of sets to the next: a
    /// window's nodes come in the same order every window, so the next node's first pod is
    /// found after the previous node's last (only ever a guess, checked).
    last_entry: Option<usize>,
}

/// How big the last window was, and where its lookups ended.
#[derive(Default)]
struct WindowSize {
    pods: usize,
    templates: usize,
    entry: Option<usize>,
}

/// What a stub takes from its pod's set (the set itself moves on down the graph).
struct PodTemplate {
    ns: Name,
    pod: Name,
    /// The pod's entry in [`WindowEnricher::reported`].
    slot: usize,
    containers: Arc<[ContainerMeta]>,
    labels: Labels,
    create_time: i64,
    scrape_time: i64,
}

/// The names of the containers one pod reported: positions in the pod's spec list where they
/// are in it, names where not.
#[derive(Default)]
struct Reported {
    /// The spec list `positions` indexes.
    spec: Option<Arc<[ContainerMeta]>>,
    /// Bit `i`: `spec[i]`'s container was reported.
    positions: u64,
    /// Reported containers no bit stands for.
    others: Vec<Name>,
}

impl Reported {
    /// Container `name`, at `position` in `spec` if it is there, was reported.
    fn add(&mut self, spec: &Arc<[ContainerMeta]>, position: Option<usize>, name: &Name) {
        let same = self.spec.as_ref().is_none_or(|s| Arc::ptr_eq(s, spec));
        match position {
            Some(i) if same && i < 64 => {
                self.spec.get_or_insert_with(|| Arc::clone(spec));
                self.positions |= 1 << i;
            }
            _ => self.others.push(name.clone()),
        }
    }

    fn merge(&mut self, mut other: Reported) {
        if let Some(spec) = other.spec.take() {
            if self.spec.as_ref().is_none_or(|s| Arc::ptr_eq(s, &spec)) {
                self.positions |= other.positions;
                self.spec = Some(spec);
            } else {
                self.others.extend(positions(other.positions).map(|i| spec[i].name.clone()));
            }
        }
        self.others.append(&mut other.others);
    }

    /// Whether container `spec[position]` was reported, by name.
    fn contains(&self, spec: &Arc<[ContainerMeta]>, position: usize) -> bool {
        let name = &spec[position].name;
        if let Some(mine) = &self.spec {
            if Arc::ptr_eq(mine, spec) && position < 64 && self.positions & (1 << position) != 0 {
                return true;
            }
            if positions(self.positions).any(|i| mine[i].name == *name) {
                return true;
            }
        }
        self.others.contains(name)
    }
}

/// The positions of the set bits of `bits`.
fn positions(bits: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| bits & (1 << i) != 0)
}

impl WindowEnricher {
    /// An enricher for a window like the last one: room for as many pods, so the map of
    /// reported containers is not grown step by step, and the index entry it ended at.
    fn like(last: &WindowSize) -> WindowEnricher {
        WindowEnricher {
            reported: IndexMap::with_capacity_and_hasher(last.pods, FxBuildHasher),
            pods: Vec::with_capacity(last.templates),
            last_entry: last.entry,
            ..WindowEnricher::default()
        }
    }

    /// What [`WindowEnricher::like`] takes from this window for the next.
    fn size(&self) -> WindowSize {
        WindowSize { pods: self.reported.len() + 1, templates: self.pods.len(), entry: self.last_entry }
    }

    /// Enriches `sets` with their node's or pod's metadata as of their window.
    pub fn enrich(&mut self, index: &MetaIndex, sets: &mut [MetricSet]) {
        // The pod looked up last, and its metadata.
        let mut last_pod: Option<(Name, Name, Option<&PodInfo>)> = None;
        // The index entry of the pod looked up last.
        let mut last_entry = self.last_entry;
        for set in sets.iter_mut() {
            let (ns, pod) = match &set.key {
                EntityKey::Node { node } => {
                    if let Some(Meta::Node(info)) = index.get(&MetaKey::Node(node.clone())) {
                        enrich_node(set, info);
                    }
                    continue;
                }
                EntityKey::Pod { ns, pod } | EntityKey::PodContainer { ns, pod, .. } => (ns, pod),
                _ => continue,
            };
            let info = match &last_pod {
                Some((last_ns, last, info)) if last == pod && last_ns == ns => *info,
                _ => {
                    let (entry, meta) = index.pod_after(last_entry, ns, pod);
                    last_entry = entry;
                    let info = match meta {
                        Some(Meta::Pod(info)) => Some(info),
                        _ => None,
                    };
                    last_pod = Some((ns.clone(), pod.clone(), info));
                    info
                }
            };
            let Some(info) = info.filter(|info| info.node.as_ref() == route::set_node(set)) else { continue };
            match &set.key {
                EntityKey::Pod { ns, pod } => {
                    let (ns, pod) = (ns.clone(), pod.clone());
                    let ns_id = self.namespace_id(index, &ns);
                    enrich_pod(set, info, ns_id.as_ref());
                    if !info.containers.is_empty() {
                        let entry = self.reported.entry((ns.clone(), pod.clone()));
                        let slot = entry.index();
                        entry.or_default();
                        self.pods.push(PodTemplate {
                            ns,
                            pod,
                            slot,
                            containers: Arc::clone(&info.containers),
                            labels: set.labels.clone(),
                            create_time: set.create_time,
                            scrape_time: set.scrape_time,
                        });
                    }
                }
                EntityKey::PodContainer { ns, pod, container } => {
                    let container = container.clone();
                    let ns_id = self.namespace_id(index, ns);
                    let position = info.containers.iter().position(|c| c.name == container);
                    self.reported_of(ns, pod).add(&info.containers, position, &container);
                    enrich_pod(set, info, ns_id.as_ref());
                    if let Some(i) = position {
                        enrich_container(set, &info.containers[i]);
                    }
                }
                _ => {}
            }
        }
        self.last_entry = last_entry;
    }

    /// Where the reported containers of pod `ns/pod` go.
    fn reported_of(&mut self, ns: &Name, pod: &Name) -> &mut Reported {
        let same = matches!(&self.current, Some(((n, p), _, _)) if p == pod && n == ns);
        if !same {
            self.flush_current();
            // The pod enriched last is nearly always the one these containers belong to.
            let slot = self.pods.last().filter(|t| t.pod == *pod && t.ns == *ns).map(|t| t.slot);
            self.current = Some(((ns.clone(), pod.clone()), Reported::default(), slot));
        }
        let (_, reported, _) =
            self.current.get_or_insert_with(|| ((ns.clone(), pod.clone()), Reported::default(), None));
        reported
    }

    fn flush_current(&mut self) {
        if let Some((key, reported, slot)) = self.current.take() {
            match slot {
                Some(slot) => self.reported[slot].merge(reported),
                None => self.reported.entry(key).or_default().merge(reported),
            }
        }
    }

    /// The uid of namespace `ns`, if it is known; the last one read while the index is unchanged.
    fn namespace_id(&mut self, index: &MetaIndex, ns: &Name) -> Option<Name> {
        if let Some((last, id, generation)) = &self.last_namespace
            && *generation == index.generation
            && last == ns
        {
            return id.clone();
        }
        let id = namespace_id(index, ns).cloned();
        self.last_namespace = Some((ns.clone(), id.clone(), index.generation));
        id
    }

    /// The stubs of the window, once every set of it was enriched.
    pub fn stubs(mut self) -> Vec<MetricSet> {
        self.flush_current();
        let mut stubs = Vec::new();
        for pod_set in self.pods {
            let reported = &self.reported[pod_set.slot];
            let (ns, pod) = (pod_set.ns, pod_set.pod);
            for (i, spec) in pod_set.containers.iter().enumerate() {
                if reported.contains(&pod_set.containers, i) {
                    continue;
                }
                let mut stub = MetricSet::new(EntityKey::PodContainer {
                    ns: ns.clone(),
                    pod: pod.clone(),
                    container: spec.name.clone(),
                });
                stub.labels = pod_set.labels.clone();
                stub.labels.set(LabelId::ContainerName, spec.name.clone());
                stub.create_time = pod_set.create_time;
                stub.scrape_time = pod_set.scrape_time;
                enrich_container(&mut stub, spec);
                stubs.push(stub);
            }
        }
        stubs
    }
}

/// Enriches one complete window in place and appends its stubs.
pub fn enrich_window(index: &MetaIndex, sets: &mut Vec<MetricSet>) {
    let mut enricher = WindowEnricher::default();
    enricher.enrich(index, sets);
    sets.append(&mut enricher.stubs());
}

fn enrich_node(set: &mut MetricSet, info: &NodeInfo) {
    set.labels.set(LabelId::Labels, info.labels.clone());
    if !info.stored.is_empty() {
        set.labels.set_extra(info.stored.clone());
    }
    let as_float = |v: Option<i64>| v.map(|v| Value::Float(v as f64));
    let values = [
        (MetricId::CpuNodeCapacity, as_float(info.capacity.cpu_millis)),
        (MetricId::MemoryNodeCapacity, as_float(info.capacity.memory_bytes)),
        (MetricId::CpuNodeAllocatable, as_float(info.allocatable.cpu_millis)),
        (MetricId::MemoryNodeAllocatable, as_float(info.allocatable.memory_bytes)),
    ];
    for (id, value) in values {
        if let Some(v) = value {
            set.values.set(id, v);
        }
    }
    // Heapster writes ephemeral storage only when both capacity and allocatable are known.
    if let (Some(cap), Some(alloc)) = (info.capacity.ephemeral_bytes, info.allocatable.ephemeral_bytes) {
        set.values.set(MetricId::EphemeralStorageNodeCapacity, Value::Float(cap as f64));
        set.values.set(MetricId::EphemeralStorageNodeAllocatable, Value::Float(alloc as f64));
    }
}

/// The uid of namespace `ns`, if it is known.
fn namespace_id<'a>(index: &'a MetaIndex, ns: &Name) -> Option<&'a Name> {
    match index.get(&MetaKey::Namespace(ns.clone())) {
        Some(Meta::Namespace(uid)) => Some(uid),
        _ => None,
    }
}

fn enrich_pod(set: &mut MetricSet, info: &PodInfo, namespace_id: Option<&Name>) {
    set.labels.set(LabelId::PodId, info.uid.clone());
    set.labels.set(LabelId::Labels, info.labels.clone());
    if let Some(id) = namespace_id {
        set.labels.set(LabelId::NamespaceId, id.clone());
    }
    if !info.stored.is_empty() {
        set.labels.set_extra(info.stored.clone());
    }
}

fn enrich_container(set: &mut MetricSet, spec: &ContainerMeta) {
    set.labels.set_default(LabelId::ContainerBaseImage, &spec.image);
    // Heapster writes 0 for an unset cpu, memory or ephemeral-storage request or limit.
    let resources = [
        (MetricId::CpuRequest, spec.requests.cpu_millis),
        (MetricId::MemoryRequest, spec.requests.memory_bytes),
        (MetricId::EphemeralStorageRequest, spec.requests.ephemeral_bytes),
        (MetricId::CpuLimit, spec.limits.cpu_millis),
        (MetricId::MemoryLimit, spec.limits.memory_bytes),
        (MetricId::EphemeralStorageLimit, spec.limits.ephemeral_bytes),
    ];
    for (id, value) in resources {
        set.values.set(id, Value::Int(value.unwrap_or(0)));
    }
    if let Some(restarts) = spec.restart_count {
        set.values.set(MetricId::RestartCount, Value::Int(restarts));
    }
    if let Some(accelerators) = spec.requests.accelerators {
        set.labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(LabeledMetricId::AcceleratorRequest),
            resource: Resource::None,
            value: Value::Int(accelerators),
        });
    }
}

/// The `enrich` operator. Sets stream through as soon as the index is known for their window;
/// stubs follow when the window is complete. `index` comes already placed on the workers that
/// enrich with it ([`meta_index`](super::index::meta_index)).
pub fn enrich<'s>(
    sets: StreamVec<'s, Time, MetricSet>,
    index: StreamVec<'s, Time, IndexChange>,
) -> StreamVec<'s, Time, MetricSet> {
    let by_set = Exchange::new(route::set);
    sets.binary_frontier(index, by_set, Pipeline, "enrich", |_cap, _info| {
        let mut waiting = Windows::default();
        let mut updates = Updates::default();
        let mut index = MetaIndex::default();
        // Windows being enriched, with what their stubs need.
        let mut open: Held<(Capability<Time>, WindowEnricher)> = Held::default();
        let mut last = WindowSize::default();
        move |(sets_in, sets_frontier), (index_in, index_frontier), output| {
            index_in.for_each(|_cap, data| {
                for ((key, meta), time, diff) in data.drain(..) {
                    updates.stash(time, [(key, meta, diff)]);
                }
            });
            sets_in.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    waiting.stash(cap, data);
                }
            });
            // Sets wait only while the index may still change as of their window.
            while let Some((cap, mut sets)) = waiting.next_complete(&[index_frontier]) {
                let time = *cap.time();
                index.apply(updates.drain_through(time));
                let (_, enricher) = open.entry(time, || (cap.clone(), WindowEnricher::like(&last)));
                enricher.enrich(&index, &mut sets);
                output.session(&cap).give_container(&mut sets);
            }
            let complete = |time: Time| !sets_frontier.less_equal(&time) && !waiting.has_before(time + 1);
            while let Some((_, (cap, mut enricher))) = open.next_if(complete) {
                enricher.flush_current();
                last = enricher.size();
                let mut stubs = enricher.stubs();
                output.session(&cap).give_container(&mut stubs);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{NodeResources, Resources};

    fn pod_info(containers: Vec<ContainerMeta>) -> Meta {
        Meta::Pod(PodInfo {
            uid: Name::new("uid-1"),
            node: Some(Name::new("node-1")),
            labels: Name::new("app:web"),
            stored: vec![],
            containers: containers.into(),
        })
    }

    fn spec(name: &str, cpu: Option<i64>) -> ContainerMeta {
        ContainerMeta {
            name: Name::new(name),
            image: Name::new("nginx:1.25"),
            requests: Resources { cpu_millis: cpu, ..Resources::default() },
            limits: Resources::default(),
            restart_count: Some(2),
        }
    }

    fn key(container: Option<&str>) -> EntityKey {
        match container {
            Some(c) => EntityKey::PodContainer { ns: "web".into(), pod: "p".into(), container: c.into() },
            None => EntityKey::Pod { ns: "web".into(), pod: "p".into() },
        }
    }

    #[test]
    fn index_keeps_multiplicities_and_picks_deterministically() {
        let mut index = MetaIndex::default();
        let k = MetaKey::Pod("web".into(), "p".into());
        let a = pod_info(vec![]);
        index.apply([(k.clone(), a.clone(), 1)]);
        assert_eq!(index.get(&k), Some(&a));
        index.apply([(k.clone(), a.clone(), -1)]);
        assert_eq!(index.get(&k), None);
        assert!(index.is_empty());
    }

    #[test]
    fn a_key_listed_twice_gives_the_least_value_until_each_goes() {
        let mut index = MetaIndex::default();
        let k = MetaKey::Pod("web".into(), "p".into());
        let with_uid = |uid: &str| match pod_info(vec![]) {
            Meta::Pod(info) => Meta::Pod(PodInfo { uid: uid.into(), ..info }),
            other => other,
        };
        let (a, b) = (with_uid("uid-a"), with_uid("uid-b"));
        index.apply([(k.clone(), b.clone(), 1), (k.clone(), a.clone(), 1)]);
        assert_eq!(index.get(&k), Some(&a), "the least of two");
        index.apply([(k.clone(), b.clone(), -1)]);
        assert_eq!(index.get(&k), Some(&a));
        index.apply([(k.clone(), a.clone(), -1), (k.clone(), b.clone(), 1)]);
        assert_eq!(index.get(&k), Some(&b), "the one value left");
        // A retraction before its addition counts below zero and gives nothing.
        index.apply([(k.clone(), a.clone(), -1)]);
        assert_eq!(index.get(&k), Some(&b));
        index.apply([(k.clone(), b.clone(), -1)]);
        assert_eq!(index.get(&k), None, "a count below zero is no value");
        assert_eq!(index.len(), 1);
        index.apply([(k.clone(), a.clone(), 1)]);
        assert_eq!(index.get(&k), None, "every count back to zero");
        assert!(index.is_empty());
    }

    #[test]
    fn pods_looked_up_in_order_are_found_and_links_only_guess() {
        let mut index = MetaIndex::default();
        let pods = ["a", "b", "c", "d"];
        for pod in pods {
            index.apply([(MetaKey::Pod("web".into(), pod.into()), pod_info(vec![]), 1)]);
        }
        let names: Vec<Name> = pods.iter().map(|p| Name::new(p)).collect();
        let ns = Name::new("web");
        let walk = |index: &MetaIndex, order: &[usize]| -> Vec<Option<Meta>> {
            let mut last = None;
            order
                .iter()
                .map(|&i| {
                    let (at, meta) = index.pod_after(last, &ns, &names[i]);
                    last = at;
                    meta.cloned()
                })
                .collect()
        };
        assert!(walk(&index, &[0, 1, 2, 3]).iter().all(Option::is_some));
        // `a` goes: `d` takes its entry, and the links that led to either are stale.
        index.apply([(MetaKey::Pod("web".into(), "a".into()), pod_info(vec![]), -1)]);
        let found = walk(&index, &[0, 1, 2, 3]);
        assert_eq!(found.iter().map(Option::is_some).collect::<Vec<_>>(), [false, true, true, true]);
        for (i, pod) in pods.iter().enumerate() {
            let key = MetaKey::Pod("web".into(), (*pod).into());
            assert_eq!(found[i].as_ref(), index.get(&key), "{pod}: as a plain lookup");
        }
        assert_eq!(walk(&index, &[3, 2, 1]), walk(&index, &[3, 2, 1]));
    }

    #[test]
    fn containers_get_spec_values_and_missing_ones_get_stubs() {
        let mut index = MetaIndex::default();
        index.apply([(
            MetaKey::Pod("web".into(), "p".into()),
            pod_info(vec![spec("app", Some(250)), spec("sidecar", None)]),
            1,
        )]);
        index.apply([(MetaKey::Namespace("web".into()), Meta::Namespace("ns-uid".into()), 1)]);
        let mut pod = MetricSet::new(key(None));
        pod.labels.set(LabelId::Nodename, Name::new("node-1"));
        pod.create_time = 7;
        let mut app = MetricSet::new(key(Some("app")));
        app.labels.set(LabelId::Nodename, Name::new("node-1"));
        let mut sets = vec![pod, app];
        enrich_window(&index, &mut sets);

        assert_eq!(sets.len(), 3, "one stub for the unreported sidecar");
        let app = &sets[1];
        assert_eq!(app.values.get(MetricId::CpuRequest), Some(Value::Int(250)));
        assert_eq!(app.values.get(MetricId::MemoryRequest), Some(Value::Int(0)));
        assert_eq!(app.values.get(MetricId::RestartCount), Some(Value::Int(2)));
        assert_eq!(app.labels.get(LabelId::ContainerBaseImage).map(Name::as_str), Some("nginx:1.25"));
        assert_eq!(app.labels.get(LabelId::NamespaceId).map(Name::as_str), Some("ns-uid"));
        let stub = &sets[2];
        assert_eq!(stub.key, key(Some("sidecar")));
        assert_eq!(stub.labels.get(LabelId::Nodename).map(Name::as_str), Some("node-1"));
        assert_eq!(stub.labels.get(LabelId::ContainerName).map(Name::as_str), Some("sidecar"));
        assert_eq!(stub.values.get(MetricId::CpuRequest), Some(Value::Int(0)));
        assert_eq!(stub.create_time, 7);
        assert_eq!(sets[0].labels.get(LabelId::PodId).map(Name::as_str), Some("uid-1"));
    }

    #[test]
    fn containers_reported_apart_from_their_pod_get_no_stub() {
        let mut index = MetaIndex::default();
        let containers = vec![spec("app", Some(250)), spec("sidecar", None), spec("init", None)];
        for pod in ["p", "q"] {
            index.apply([(MetaKey::Pod("web".into(), pod.into()), pod_info(containers.clone()), 1)]);
        }
        let set = |pod: &str, container: Option<&str>| {
            let key = match container {
                Some(c) => EntityKey::PodContainer { ns: "web".into(), pod: pod.into(), container: c.into() },
                None => EntityKey::Pod { ns: "web".into(), pod: pod.into() },
            };
            let mut set = MetricSet::new(key);
            set.labels.set(LabelId::Nodename, Name::new("node-1"));
            set
        };
        // p's sets are interleaved with q's, and come in two batches.
        let mut first = vec![set("p", Some("sidecar")), set("q", None), set("p", None)];
        let mut second = vec![set("q", Some("init")), set("p", Some("app")), set("p", Some("extra"))];
        let mut enricher = WindowEnricher::default();
        enricher.enrich(&index, &mut first);
        enricher.enrich(&index, &mut second);
        let mut stubs: Vec<EntityKey> = enricher.stubs().iter().map(|s| s.key.clone()).collect();
        stubs.sort();
        let mut want = vec![key_of("p", "init"), key_of("q", "app"), key_of("q", "sidecar")];
        want.sort();
        assert_eq!(stubs, want);
    }

    fn key_of(pod: &str, container: &str) -> EntityKey {
        EntityKey::PodContainer { ns: "web".into(), pod: pod.into(), container: container.into() }
    }

    #[test]
    fn reported_names_hold_across_changed_specs() {
        let old: Arc<[ContainerMeta]> = vec![spec("a", None), spec("b", None)].into();
        let new: Arc<[ContainerMeta]> = vec![spec("b", None), spec("c", None), spec("a", None)].into();
        let mut reported = Reported::default();
        reported.add(&old, Some(1), &Name::new("b"));
        let mut other = Reported::default();
        other.add(&new, Some(2), &Name::new("a"));
        other.add(&new, None, &Name::new("z"));
        reported.merge(other);
        assert!(reported.contains(&new, 0), "b, reported against the old spec");
        assert!(!reported.contains(&new, 1), "c was not reported");
        assert!(reported.contains(&new, 2));
        assert!(reported.contains(&old, 0) && reported.contains(&old, 1));
    }

    #[test]
    fn nodes_get_labels_capacity_and_allocatable() {
        let mut index = MetaIndex::default();
        let info = NodeInfo {
            labels: Name::new("zone:a"),
            stored: vec![],
            capacity: NodeResources {
                cpu_millis: Some(4000),
                memory_bytes: Some(8 << 30),
                ephemeral_bytes: None,
            },
            allocatable: NodeResources {
                cpu_millis: Some(3920),
                memory_bytes: Some(7 << 30),
                ephemeral_bytes: Some(100),
            },
        };
        index.apply([(MetaKey::Node("n".into()), Meta::Node(info), 1)]);
        let mut sets = vec![MetricSet::new(EntityKey::Node { node: "n".into() })];
        enrich_window(&index, &mut sets);
        let v = &sets[0].values;
        assert_eq!(v.get(MetricId::CpuNodeAllocatable), Some(Value::Float(3920.0)));
        assert_eq!(v.get(MetricId::MemoryNodeCapacity), Some(Value::Float((8u64 << 30) as f64)));
        assert_eq!(v.get(MetricId::EphemeralStorageNodeAllocatable), None, "capacity unknown");
        assert_eq!(sets[0].labels.get(LabelId::Labels).map(Name::as_str), Some("zone:a"));
    }

    #[test]
    fn sets_without_metadata_pass_unchanged() {
        let index = MetaIndex::default();
        let mut sets = vec![MetricSet::new(key(Some("app")))];
        let before = sets.clone();
        enrich_window(&index, &mut sets);
        assert_eq!(sets, before);
    }

    /// The real operators at 1 and 2 workers: a pod whose metadata comes a window late, and a
    /// node and pods that change worker between windows.
    mod graph {
        use std::sync::Arc;

        use differential_dataflow::VecCollection;
        use timely::dataflow::StreamVec;

        use super::*;
        use crate::meta::{LabelPolicy, MetaRecord, NamespaceMeta, NodeMeta, NodeResources, PodMeta};
        use crate::metrics::index::meta_index;
        use crate::metrics::testing::{Window, find, run};

        const W1: Time = 60_000;
        const W2: Time = 120_000;

        fn graph<'s>(
            sets: StreamVec<'s, Time, MetricSet>,
            meta: VecCollection<'s, Time, MetaRecord>,
        ) -> StreamVec<'s, Time, MetricSet> {
            enrich(sets, meta_index(meta, &LabelPolicy::default()))
        }

        fn pod_record(name: &str, containers: Vec<ContainerMeta>) -> MetaRecord {
            MetaRecord::Pod {
                ns: "web".into(),
                name: name.into(),
                meta: Arc::new(PodMeta {
                    uid: Name::new(&format!("uid-{name}")),
                    labels: vec![("app".into(), name.into())],
                    node: Some("n1".into()),
                    containers: containers.into(),
                }),
            }
        }

        fn node_record() -> MetaRecord {
            let resources = |cpu, memory| NodeResources {
                cpu_millis: Some(cpu),
                memory_bytes: Some(memory),
                ephemeral_bytes: None,
            };
            MetaRecord::Node {
                name: "n1".into(),
                meta: NodeMeta {
                    labels: vec![("zone".into(), "a".into())],
                    capacity: resources(4000, 8000),
                    allocatable: resources(3900, 7000),
                },
            }
        }

        fn pod_key(pod: &str, container: Option<&str>) -> EntityKey {
            match container {
                Some(c) => EntityKey::PodContainer { ns: "web".into(), pod: pod.into(), container: c.into() },
                None => EntityKey::Pod { ns: "web".into(), pod: pod.into() },
            }
        }

        fn node_key() -> EntityKey {
            EntityKey::Node { node: "n1".into() }
        }

        fn scraped(key: EntityKey) -> MetricSet {
            let mut set = MetricSet::new(key);
            set.labels.set(LabelId::Nodename, "n1".into());
            set.create_time = 5;
            set
        }

        /// Pod `a`'s metadata is known from the first window, pod `b`'s only from the second;
        /// the node and both pods are fed by the other worker in the second window.
        fn windows() -> Vec<Window> {
            let window = |time, meta, node_worker: usize, a_worker: usize| Window {
                time,
                meta,
                sets: vec![
                    (node_worker, scraped(node_key())),
                    (a_worker, scraped(pod_key("a", None))),
                    (a_worker, scraped(pod_key("a", Some("app")))),
                    (1 - a_worker, scraped(pod_key("b", None))),
                    (1 - a_worker, scraped(pod_key("b", Some("app")))),
                ],
            };
            let first_meta = vec![
                node_record(),
                MetaRecord::Namespace { name: "web".into(), meta: NamespaceMeta { uid: "ns-uid".into() } },
                pod_record("a", vec![spec("app", Some(100)), spec("sidecar", Some(50))]),
            ];
            vec![
                window(W1, first_meta, 0, 1),
                window(W2, vec![pod_record("b", vec![spec("app", Some(200))])], 1, 0),
            ]
        }

        fn label(set: &MetricSet, id: LabelId) -> Option<&str> {
            set.labels.get(id).map(Name::as_str)
        }

        #[test]
        fn enrich_waits_for_nothing_and_catches_up_with_late_metadata() {
            let one = run(1, &windows(), graph);
            let two = run(2, &windows(), graph);
            assert_eq!(one, two, "the same output at 1 and 2 workers");

            let expected = [
                node_key(),
                pod_key("a", None),
                pod_key("a", Some("app")),
                pod_key("a", Some("sidecar")),
                pod_key("b", None),
                pod_key("b", Some("app")),
            ];
            for time in [W1, W2] {
                let mut keys: Vec<EntityKey> =
                    one.iter().filter(|(t, _)| *t == time).map(|(_, s)| s.key.clone()).collect();
                keys.sort();
                let mut want = expected.to_vec();
                want.sort();
                assert_eq!(keys, want, "window {time}: every set once, and a's stub for its sidecar");
            }

            for time in [W1, W2] {
                let node = find(&one, time, &node_key());
                assert_eq!(label(node, LabelId::Labels), Some("zone:a"));
                assert_eq!(node.values.get(MetricId::CpuNodeCapacity), Some(Value::Float(4000.0)));
                assert_eq!(node.values.get(MetricId::CpuNodeAllocatable), Some(Value::Float(3900.0)));
                assert_eq!(node.values.get(MetricId::MemoryNodeAllocatable), Some(Value::Float(7000.0)));
                assert_eq!(node.values.get(MetricId::EphemeralStorageNodeCapacity), None);

                let pod = find(&one, time, &pod_key("a", None));
                assert_eq!(label(pod, LabelId::PodId), Some("uid-a"));
                assert_eq!(label(pod, LabelId::NamespaceId), Some("ns-uid"));
                assert_eq!(label(pod, LabelId::Labels), Some("app:a"));
                let app = find(&one, time, &pod_key("a", Some("app")));
                assert_eq!(app.values.get(MetricId::CpuRequest), Some(Value::Int(100)));
                assert_eq!(app.values.get(MetricId::MemoryLimit), Some(Value::Int(0)));
                assert_eq!(label(app, LabelId::ContainerBaseImage), Some("nginx:1.25"));
                let stub = find(&one, time, &pod_key("a", Some("sidecar")));
                assert_eq!(stub.values.get(MetricId::CpuRequest), Some(Value::Int(50)));
                assert_eq!(stub.values.get(MetricId::RestartCount), Some(Value::Int(2)));
                assert_eq!(label(stub, LabelId::ContainerName), Some("sidecar"));
                assert_eq!(label(stub, LabelId::PodId), Some("uid-a"));
                assert_eq!(label(stub, LabelId::Nodename), Some("n1"));
                assert_eq!(stub.create_time, 5);
            }

            // Window 1: b's metadata is not known yet, so its sets pass as scraped.
            assert_eq!(find(&one, W1, &pod_key("b", None)), &scraped(pod_key("b", None)));
            assert_eq!(find(&one, W1, &pod_key("b", Some("app"))), &scraped(pod_key("b", Some("app"))));
            // Window 2: it is.
            let b = find(&one, W2, &pod_key("b", None));
            assert_eq!(label(b, LabelId::PodId), Some("uid-b"));
            assert_eq!(label(b, LabelId::NamespaceId), Some("ns-uid"));
            let b_app = find(&one, W2, &pod_key("b", Some("app")));
            assert_eq!(b_app.values.get(MetricId::CpuRequest), Some(Value::Int(200)));
            assert_eq!(label(b_app, LabelId::Labels), Some("app:b"));
        }
    }
}
