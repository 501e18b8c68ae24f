// Over 600 lines with its tests: 390 of code, then unit tests and the two-worker graph test.
//! `aggregate`: containers into pods, pods into namespaces and nodes, namespaces into the cluster
//! (Heapster's pod, namespace, node and cluster aggregators, then node utilization and
//! reservation).
//!
//! Pods are summed where their containers already are: on their node's owner, where they were
//! scraped, which is also where the node's sums are made. Upward sums travel as small [`Part`]s
//! exchanged to the worker of their target (only namespaces and the cluster leave the worker),
//! each worker's parts for one target summed first; they only carry integer metrics, so the
//! totals do not depend on how many workers summed them, nor in what order.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Concat, OkErr};

use super::route;
use super::window::{Held, Windows};
use crate::catalog::{Kind, MetricId, NAMESPACE_AGGREGATED, NODE_AGGREGATED, POD_SUMMED_COUNTERS};
use crate::model::{
    CustomMetric, EntityKey, LabelId, LabeledMetric, LabeledValue, MetricSet, Name, Resource, Time, Value,
    Values,
};

/// A contribution to a parent entity's sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub target: EntityKey,
    /// Boxed: parts and sets share a stream out of each step, so a part is a few pointers.
    pub values: Box<Values>,
    pub namespace_id: Option<Name>,
}

/// Sums each pod's containers into the pod, in container-name order so float sums are the same
/// on every run. Creates the pod set if only containers were reported.
///
/// Heapster's rule, metric by metric: what the kubelet reported for the pod itself (its own
/// cgroup: cpu, memory, and the rates derived from them) stands; only what the pod lacks is the
/// sum of its containers (older kubelets, requests and limits, restarts).
pub fn aggregate_pods(sets: &mut Vec<MetricSet>, time: Time) {
    sum_window(sets, time);
}

/// [`aggregate_pods`], which also gives the window's parts (see [`combined_parts`]), each pod
/// added while its set is at hand, and the positions of the node sets.
fn sum_window(sets: &mut Vec<MetricSet>, time: Time) -> (Vec<Part>, Vec<u32>) {
    // Each pod's set (if any) then its containers by name: no maps. A kubelet lists a pod's
    // sets together, so what is grouped is runs of one pod's sets, by a hash of the pod (an
    // integer); names are compared only within a hash, among the few sets of one pod (or of
    // pods whose hashes collide, which the names part). A pod whose sets came in one run, nearly
    // every pod, is summed in the order the runs came, where its sets lie next to the last
    // pod's (and are asked for ahead); only pods in several runs (stubs, added at the end of a
    // window) are gathered by hash.
    let mut runs: Vec<(u32, u32)> = Vec::new();
    let mut hashes: Vec<(u64, u32)> = Vec::new();
    let mut current: Option<(&Name, &Name)> = None;
    let mut nodes: Vec<u32> = Vec::new();
    for (at, set) in sets.iter().enumerate() {
        if let Some(ahead) = sets.get(at + AHEAD) {
            ahead.prefetch();
        }
        if let EntityKey::Node { .. } = set.key {
            nodes.push(at as u32);
        }
        let pod = set.key.pod();
        match (pod, runs.last_mut()) {
            (Some(_), Some(run)) if pod == current && run.1 == at as u32 => run.1 += 1,
            (Some((ns, name)), _) => {
                hashes.push((pod_hash(ns, name), runs.len() as u32));
                runs.push((at as u32, at as u32 + 1));
            }
            (None, _) => {}
        }
        current = pod;
    }
    hashes.sort_unstable();
    let summable = summable_mask();
    let mut parts = PartSums::default();
    let mut order: Vec<u32> = Vec::new();
    // Whether each run is its pod's only one (its hash is unique).
    let mut alone = vec![false; runs.len()];
    let mut first = 0;
    while first < hashes.len() {
        let hash = hashes[first].0;
        let last = first + hashes[first..].iter().take_while(|(h, _)| *h == hash).count();
        if last - first == 1 {
            alone[hashes[first].1 as usize] = true;
        } else {
            order.clear();
            for &(_, run) in &hashes[first..last] {
                let (from, to) = runs[run as usize];
                order.extend(from..to);
            }
            sum_group(sets, &mut order, summable, time, &mut parts);
        }
        first = last;
    }
    let alone: Vec<(u32, u32)> =
        runs.iter().zip(&alone).filter(|(_, alone)| **alone).map(|(r, _)| *r).collect();
    for (i, &(from, to)) in alone.iter().enumerate() {
        if let Some(&(from, to)) = alone.get(i + 2) {
            for set in &sets[from as usize..to as usize] {
                set.prefetch();
            }
        }
        order.clear();
        order.extend(from..to);
        sum_group(sets, &mut order, summable, time, &mut parts);
    }
    (parts.into_parts(), nodes)
}

/// How many sets ahead a pass over a window asks for.
const AHEAD: usize = 8;

/// Sums the pods of `order` (positions of pod and container sets, each pod's all there), and
/// adds each to `parts`.
fn sum_group(sets: &mut Vec<MetricSet>, order: &mut [u32], summable: u64, time: Time, parts: &mut PartSums) {
    if order.len() > 1 {
        order.sort_unstable_by(|a, b| {
            pod_order(&sets[*a as usize].key).cmp(&pod_order(&sets[*b as usize].key))
        });
    }
    let mut start = 0;
    while start < order.len() {
        let first = order[start] as usize;
        let group = sets[first].key.pod();
        let end = start + order[start..].iter().take_while(|i| sets[**i as usize].key.pod() == group).count();
        let (pod_index, members) = match &sets[first].key {
            EntityKey::Pod { .. } => (first, &order[start + 1..end]),
            EntityKey::PodContainer { ns, pod, .. } => {
                let pod = pod_from_container(&sets[first], ns.clone(), pod.clone(), time);
                sets.push(pod);
                (sets.len() - 1, &order[start..end])
            }
            // Only pod keys are in `order`.
            _ => (first, &order[start..start]),
        };
        // The pod's own values, as a mask: a copy of them per pod was an allocation per pod.
        let summed = summable & !sets[pod_index].values.mask();
        for &member in members {
            // Members are containers, never the pod's set.
            let Ok([container, pod_set]) = sets.get_disjoint_mut([member as usize, pod_index]) else {
                continue;
            };
            pod_set.values.add_masked(&container.values, summed);
            for (name, value) in custom_gauges(container) {
                add_custom(pod_set, name.clone(), value);
            }
        }
        parts.add(&sets[pod_index]);
        start = end;
    }
}

/// The metrics a pod sums from its containers: gauges (Heapster skips the kubelet's counters)
/// and restarts, as a mask by metric.
fn summable_mask() -> u64 {
    MetricId::ALL
        .iter()
        .filter(|id| id.desc().kind == Kind::Gauge || POD_SUMMED_COUNTERS.contains(id))
        .fold(0, |mask, id| mask | 1 << *id as u64)
}

fn pod_hash(ns: &Name, pod: &Name) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    ns.hash(&mut hasher);
    pod.hash(&mut hasher);
    hasher.finish()
}

/// A pod's place in `aggregate_pods`' order: by pod, the pod's own set first, then containers
/// by name (the order their floats are summed in, whatever the worker count).
fn pod_order(key: &EntityKey) -> (Option<(&Name, &Name)>, Option<&Name>) {
    match key {
        EntityKey::PodContainer { container, .. } => (key.pod(), Some(container)),
        _ => (key.pod(), None),
    }
}

/// User-defined gauges, which Heapster summed like any other gauge.
fn custom_gauges(set: &MetricSet) -> impl Iterator<Item = (&Name, Value)> {
    set.labeled.iter().filter_map(|l| match (&l.metric, &l.resource) {
        (LabeledMetric::Custom(custom), Resource::None) if custom.kind == Kind::Gauge => {
            Some((&custom.name, l.value))
        }
        _ => None,
    })
}

fn add_custom(pod: &mut MetricSet, name: Name, value: Value) {
    let existing = pod.labeled.iter_mut().find(|l| match &l.metric {
        LabeledMetric::Custom(custom) => custom.name == name && l.resource == Resource::None,
        _ => false,
    });
    match existing {
        Some(l) => l.value = l.value.plus(value),
        None => pod.labeled.push(LabeledValue {
            metric: LabeledMetric::Custom(Box::new(CustomMetric { name, kind: Kind::Gauge })),
            resource: Resource::None,
            value,
        }),
    }
}

fn pod_from_container(container: &MetricSet, ns: Name, pod: Name, time: Time) -> MetricSet {
    let mut set = MetricSet::new(EntityKey::Pod { ns, pod });
    for id in [
        LabelId::NamespaceName,
        LabelId::PodName,
        LabelId::PodId,
        LabelId::Labels,
        LabelId::NamespaceId,
        LabelId::Nodename,
        LabelId::Hostname,
        LabelId::HostId,
    ] {
        if let Some(v) = container.labels.get(id) {
            set.labels.set(id, v.clone());
        }
    }
    set.create_time = container.create_time;
    set.scrape_time = window_ns(time);
    set
}

fn window_ns(time: Time) -> i64 {
    (time as i64).saturating_mul(1_000_000)
}

fn restricted(values: &Values, ids: &[MetricId]) -> Box<Values> {
    let mut out = Box::<Values>::default();
    for id in ids {
        if let Some(v) = values.get(*id) {
            out.set(*id, v);
        }
    }
    out
}

/// The namespace and node contributions of a worker's pods, one part per target: a window has
/// two contributions per pod but only a few namespaces and nodes. Each pod's values are added
/// to its targets' sums in place, pod after pod, as [`Part::absorb`] would add them (integers
/// only, so in any order).
#[cfg(test)]
fn combined_parts(sets: &[MetricSet]) -> Vec<Part> {
    let mut parts = PartSums::default();
    for set in sets {
        parts.add(set);
    }
    parts.into_parts()
}

/// The sums of [`combined_parts`] while pods are added.
#[derive(Default)]
struct PartSums {
    sums: Vec<Sums>,
    namespaces: Targets,
    nodes: Targets,
}

impl PartSums {
    /// Adds a pod's values to its namespace's and node's sums (any other set adds nothing).
    fn add(&mut self, pod: &MetricSet) {
        let EntityKey::Pod { ns, .. } = &pod.key else { return };
        let sums = &mut self.sums;
        let at = self.namespaces.find(ns, sums.len()).unwrap_or_else(|| {
            sums.push(Sums::new(EntityKey::Namespace { ns: ns.clone() }, NAMESPACE_AGGREGATED));
            sums.len() - 1
        });
        sums[at].add(&pod.values, pod.labels.get(LabelId::NamespaceId));
        if let Some(node) = pod.labels.get(LabelId::Nodename) {
            let at = self.nodes.find(node, sums.len()).unwrap_or_else(|| {
                sums.push(Sums::new(EntityKey::Node { node: node.clone() }, NODE_AGGREGATED));
                sums.len() - 1
            });
            sums[at].add(&pod.values, None);
        }
    }

    fn into_parts(self) -> Vec<Part> {
        self.sums.into_iter().map(Sums::into_part).collect()
    }
}

/// The most metrics a part carries.
const SUMMED: usize = 8;
const _: () = assert!(NAMESPACE_AGGREGATED.len() <= SUMMED && NODE_AGGREGATED.len() <= SUMMED);

/// One target's part while a window's pods are added to it: a slot per metric of its list, so a
/// pod's values are added without looking each one up in a value array.
struct Sums {
    target: EntityKey,
    ids: &'static [MetricId],
    values: [Option<Value>; SUMMED],
    namespace_id: Option<Name>,
}

impl Sums {
    fn new(target: EntityKey, ids: &'static [MetricId]) -> Sums {
        Sums { target, ids, values: [None; SUMMED], namespace_id: None }
    }

    /// Adds one pod's values (as [`Values::add`] would); of namespace ids the least is kept.
    fn add(&mut self, values: &Values, namespace_id: Option<&Name>) {
        for (slot, id) in self.values.iter_mut().zip(self.ids) {
            if let Some(value) = values.get(*id) {
                let ty = id.desc().ty;
                let value = value.coerce(ty);
                *slot = Some(match *slot {
                    Some(sum) => sum.plus(value).coerce(ty),
                    None => value,
                });
            }
        }
        if let Some(id) = namespace_id
            && self.namespace_id.as_ref().is_none_or(|least| id < least)
        {
            self.namespace_id = Some(id.clone());
        }
    }

    fn into_part(self) -> Part {
        let mut values = Box::<Values>::default();
        for (id, value) in self.ids.iter().zip(self.values) {
            if let Some(value) = value {
                values.set(*id, value);
            }
        }
        Part { target: self.target, values, namespace_id: self.namespace_id }
    }
}

/// The parts of one kind of target, by name: the last one found is checked first (a node's pods
/// come together), then the few seen so far one by one, then a map once there are many.
#[derive(Default)]
struct Targets {
    last: Option<usize>,
    /// Each target's name and the position of its part.
    seen: Vec<(Name, usize)>,
    /// Positions in `seen` by name, once there are more than [`Targets::FEW`].
    many: FxHashMap<Name, usize>,
}

impl Targets {
    /// Few enough to compare names rather than hash them.
    const FEW: usize = 16;

    /// The position of `name`'s part; `None` for a new target, whose part goes to `next`.
    fn find(&mut self, name: &Name, next: usize) -> Option<usize> {
        if let Some(last) = self.last
            && self.seen[last].0 == *name
        {
            return Some(self.seen[last].1);
        }
        let found = if self.seen.len() <= Self::FEW {
            self.seen.iter().position(|(n, _)| n == name)
        } else {
            self.many.get(name).copied()
        };
        match found {
            Some(at) => {
                self.last = Some(at);
                Some(self.seen[at].1)
            }
            None => {
                let at = self.seen.len();
                self.seen.push((name.clone(), next));
                if at == Self::FEW {
                    self.many.extend(self.seen.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)));
                } else if at > Self::FEW {
                    self.many.insert(name.clone(), at);
                }
                self.last = Some(at);
                None
            }
        }
    }
}

impl Part {
    /// Adds `other`'s values; of two namespace ids the least is kept, so the result does not
    /// depend on the order parts arrive in.
    fn absorb(&mut self, other: Part) {
        for (id, value) in other.values.iter() {
            self.values.add(id, value);
        }
        self.namespace_id = match (self.namespace_id.take(), other.namespace_id) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Node utilization and reservation from the node's own usage, its pods' requests and its
/// allocatable (Heapster's node-autoscaling enricher: memory utilization is `memory/usage`, page
/// cache included, over allocatable). Nothing is written when allocatable is unknown or zero,
/// nor a utilization whose usage is unknown (Heapster wrote 0, e.g. cpu in the first window).
pub fn node_ratios(set: &mut MetricSet) {
    let v = &set.values;
    let ratio = |num: Option<Value>, den: Option<Value>| match (num, den.map(Value::as_f64)) {
        (Some(n), Some(d)) if d != 0.0 => Some(Value::Float(n.as_f64() / d)),
        _ => None,
    };
    let zero = Some(Value::Int(0));
    let cpu_alloc = v.get(MetricId::CpuNodeAllocatable);
    let mem_alloc = v.get(MetricId::MemoryNodeAllocatable);
    let eph_alloc = v.get(MetricId::EphemeralStorageNodeAllocatable);
    let out = [
        (MetricId::CpuNodeUtilization, ratio(v.get(MetricId::CpuUsageRate), cpu_alloc)),
        (MetricId::CpuNodeReservation, ratio(v.get(MetricId::CpuRequest).or(zero), cpu_alloc)),
        (MetricId::MemoryNodeUtilization, ratio(v.get(MetricId::MemoryUsage), mem_alloc)),
        (MetricId::MemoryNodeReservation, ratio(v.get(MetricId::MemoryRequest).or(zero), mem_alloc)),
        (MetricId::EphemeralStorageNodeUtilization, ratio(v.get(MetricId::EphemeralStorageUsage), eph_alloc)),
        (
            MetricId::EphemeralStorageNodeReservation,
            ratio(v.get(MetricId::EphemeralStorageRequest).or(zero), eph_alloc),
        ),
    ];
    for (id, value) in out {
        if let Some(value) = value {
            set.values.set(id, value);
        }
    }
}

/// Sums the parts of one window into their targets (the given sets, or new namespace and
/// cluster sets). Namespaces pass their sums on to the cluster as new parts.
pub fn roll_up(sets: Vec<MetricSet>, parts: Vec<Part>, time: Time) -> (Vec<MetricSet>, Vec<Part>) {
    let mut targets: FxHashMap<EntityKey, (Option<MetricSet>, Vec<Part>)> = FxHashMap::default();
    for set in sets {
        let key = set.key.clone();
        targets.entry(key).or_default().0 = Some(set);
    }
    for part in parts {
        targets.entry(part.target.clone()).or_default().1.push(part);
    }
    let mut out = Vec::with_capacity(targets.len());
    let mut up = Vec::new();
    for (key, (set, parts)) in targets {
        let is_node = matches!(key, EntityKey::Node { .. });
        let mut set = match (set, &key) {
            (Some(set), _) => set,
            // Heapster only sums pods into a node that was scraped this window.
            (None, EntityKey::Node { .. }) => continue,
            (None, _) => aggregate_set(key.clone(), time),
        };
        if let Some(sum) = parts.into_iter().reduce(|mut sum, part| {
            sum.absorb(part);
            sum
        }) {
            for (id, value) in sum.values.iter() {
                set.values.add(id, value);
            }
            if let Some(id) = sum.namespace_id {
                set.labels.set(LabelId::NamespaceId, id);
            }
        }
        if is_node {
            node_ratios(&mut set);
        }
        if let EntityKey::Namespace { .. } = key {
            up.push(Part {
                target: EntityKey::Cluster,
                values: restricted(&set.values, NAMESPACE_AGGREGATED),
                namespace_id: None,
            });
        }
        out.push(set);
    }
    (out, up)
}

fn aggregate_set(key: EntityKey, time: Time) -> MetricSet {
    let namespace = match &key {
        EntityKey::Namespace { ns } => Some(ns.clone()),
        _ => None,
    };
    let mut set = MetricSet::new(key);
    if let Some(ns) = namespace {
        set.labels.set(LabelId::NamespaceName, ns);
    }
    set.scrape_time = window_ns(time);
    set
}

/// An operator's two outputs in one stream, split by `ok_err` right after it.
type SetOrPart = Result<MetricSet, Part>;

/// `sum_pods`' three outputs in one stream: final sets, node sets (which wait for their pods'
/// parts) and parts. Split by their tags alone: reading each set's key to split them was one
/// more pass over a window's sets, far more than the caches hold.
type Summed = Result<Result<MetricSet, MetricSet>, Part>;

/// The `aggregate` operators: pods where they are, then namespaces and nodes, then the cluster.
pub fn aggregate(sets: StreamVec<'_, Time, MetricSet>) -> StreamVec<'_, Time, MetricSet> {
    let (sets, parts) = sum_pods(sets);
    // Node sets wait for their pods' parts; every other set is final here.
    let (done, nodes): (StreamVec<_, _>, StreamVec<_, _>) = sets.ok_err(|set| set);
    let (rolled, to_cluster) = roll_up_namespaces_and_nodes(nodes, parts);
    let cluster = roll_up_cluster(to_cluster);
    done.concat(rolled).concat(cluster)
}

/// Each complete window of a worker: its pods summed (final sets `Ok`, node sets `Err`), and
/// the parts its pods add upward.
#[allow(clippy::type_complexity)]
fn sum_pods(
    sets: StreamVec<'_, Time, MetricSet>,
) -> (StreamVec<'_, Time, Result<MetricSet, MetricSet>>, StreamVec<'_, Time, Part>) {
    let summed: StreamVec<'_, Time, Summed> = sets.unary_frontier(Pipeline, "sum_pods", |_cap, _info| {
        let mut windows = Windows::default();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    windows.stash(cap, data);
                }
            });
            while let Some((cap, mut sets)) = windows.next_complete(&[frontier]) {
                let (parts, nodes) = sum_window(&mut sets, *cap.time());
                let mut session = output.session(&cap);
                session.give_iterator(parts.into_iter().map(Err));
                let mut nodes = nodes.into_iter().peekable();
                session.give_iterator(sets.into_iter().enumerate().map(|(at, set)| {
                    Ok(if nodes.next_if_eq(&(at as u32)).is_some() { Err(set) } else { Ok(set) })
                }));
            }
        }
    });
    summed.ok_err(|out| out)
}

/// Namespace and node sums, on the worker of each target; namespaces send parts on to the
/// cluster.
fn roll_up_namespaces_and_nodes<'s>(
    nodes: StreamVec<'s, Time, MetricSet>,
    parts: StreamVec<'s, Time, Part>,
) -> (StreamVec<'s, Time, MetricSet>, StreamVec<'s, Time, Part>) {
    let by_key = Exchange::new(route::set);
    let by_target = Exchange::new(|part: &Part| route::target(&part.target));
    let rolled: StreamVec<'s, Time, SetOrPart> =
        nodes.binary_frontier(parts, by_key, by_target, "roll_up_namespaces_and_nodes", |_cap, _info| {
            let mut windows: Held<(Capability<Time>, Vec<MetricSet>, Vec<Part>)> = Held::default();
            move |(nodes_in, nodes_frontier), (parts_in, parts_frontier), output| {
                let index = output.output_index();
                nodes_in.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(index) {
                        windows.entry(*cap.time(), || (cap, Vec::new(), Vec::new())).1.append(data);
                    }
                });
                parts_in.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(index) {
                        windows.entry(*cap.time(), || (cap, Vec::new(), Vec::new())).2.append(data);
                    }
                });
                while let Some((time, (cap, nodes, parts))) =
                    windows.next_passed(&[nodes_frontier, parts_frontier])
                {
                    let (sets, up) = roll_up(nodes, parts, time);
                    let mut session = output.session(&cap);
                    session.give_iterator(up.into_iter().map(Err));
                    session.give_iterator(sets.into_iter().map(Ok));
                }
            }
        });
    rolled.ok_err(|out| out)
}

/// The cluster's sums, on the one worker its key routes to.
fn roll_up_cluster<'s>(parts: StreamVec<'s, Time, Part>) -> StreamVec<'s, Time, MetricSet> {
    let by_target = Exchange::new(|part: &Part| route::target(&part.target));
    parts.unary_frontier(by_target, "roll_up_cluster", |_cap, _info| {
        let mut windows = Windows::default();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    windows.stash(cap, data);
                }
            });
            while let Some((cap, parts)) = windows.next_complete(&[frontier]) {
                // The cluster is no namespace: it sends nothing further up.
                let (mut sets, _) = roll_up(Vec::new(), parts, *cap.time());
                output.session(&cap).give_container(&mut sets);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(pod: &str, name: &str, cpu_rate: i64, request: i64) -> MetricSet {
        let mut s = MetricSet::new(EntityKey::PodContainer {
            ns: "web".into(),
            pod: pod.into(),
            container: name.into(),
        });
        s.values.set(MetricId::CpuUsageRate, Value::Int(cpu_rate));
        s.values.set(MetricId::CpuRequest, Value::Int(request));
        s.values.set(MetricId::CpuUsage, Value::Int(1_000_000));
        s.values.set(MetricId::MemoryPageFaultsRate, Value::Float(0.5));
        s.labels.set(LabelId::Nodename, "node-1".into());
        s.labels.set(LabelId::NamespaceName, "web".into());
        s.labels.set(LabelId::PodName, pod.into());
        s
    }

    fn pod(name: &str) -> MetricSet {
        let mut s = MetricSet::new(EntityKey::Pod { ns: "web".into(), pod: name.into() });
        s.labels.set(LabelId::Nodename, "node-1".into());
        s.labels.set(LabelId::NamespaceId, "ns-uid".into());
        s.values.set(MetricId::NetworkRx, Value::Int(42));
        s
    }

    #[test]
    fn parts_sum_each_target_once_however_many_and_interleaved() {
        // More namespaces and nodes than are compared by name, pods of each spread out.
        let mut sets = Vec::new();
        for i in 0..200i64 {
            let mut s = MetricSet::new(EntityKey::Pod {
                ns: format!("ns-{}", i % 23).into(),
                pod: format!("p{i}").into(),
            });
            s.labels.set(LabelId::Nodename, format!("node-{}", i % 19).into());
            s.labels.set(LabelId::NamespaceId, format!("uid-{}", i % 5).into());
            s.values.set(MetricId::MemoryRequest, Value::Int(i));
            s.values.set(MetricId::CpuRequest, Value::Int(1));
            sets.push(s);
        }
        let mut parts = combined_parts(&sets);
        assert_eq!(parts.len(), 23 + 19);
        parts.sort_by(|a, b| a.target.cmp(&b.target));
        for part in &parts {
            let (of, modulo, at) = match &part.target {
                EntityKey::Namespace { ns } => ("ns-", 23, ns),
                EntityKey::Node { node } => ("node-", 19, node),
                other => panic!("unexpected target {other}"),
            };
            let k: i64 = at.as_str().strip_prefix(of).and_then(|k| k.parse().ok()).unwrap();
            let members: Vec<i64> = (0..200).filter(|i| i % modulo == k).collect();
            assert_eq!(
                part.values.get_i64(MetricId::MemoryRequest),
                Some(members.iter().sum::<i64>()),
                "{at}"
            );
            assert_eq!(part.values.get_i64(MetricId::CpuRequest), Some(members.len() as i64), "{at}");
            if of == "ns-" {
                let least = members.iter().map(|i| format!("uid-{}", i % 5)).min();
                assert_eq!(part.namespace_id.as_ref().map(|n| n.to_string()), least, "{at}");
            } else {
                assert_eq!(part.namespace_id, None);
            }
        }
    }

    #[test]
    fn pods_sum_container_gauges_not_counters() {
        let mut sets = vec![pod("a"), container("a", "x", 100, 50), container("a", "y", 30, 0)];
        aggregate_pods(&mut sets, 60_000);
        let a = &sets[0].values;
        assert_eq!(a.get(MetricId::CpuUsageRate), Some(Value::Int(130)));
        assert_eq!(a.get(MetricId::CpuRequest), Some(Value::Int(50)));
        assert_eq!(a.get(MetricId::MemoryPageFaultsRate), Some(Value::Float(1.0)));
        assert_eq!(a.get(MetricId::CpuUsage), None, "cumulative metrics are not summed");
        assert_eq!(a.get(MetricId::NetworkRx), Some(Value::Int(42)), "pod's own values stay");
    }

    #[test]
    fn the_kubelets_pod_values_win_over_sums() {
        let mut own = pod("a");
        own.values.set(MetricId::CpuUsageRate, Value::Int(200));
        own.values.set(MetricId::MemoryUsage, Value::Int(1_000));
        let mut x = container("a", "x", 100, 50);
        x.values.set(MetricId::MemoryUsage, Value::Int(300));
        x.values.set(MetricId::MemoryWorkingSet, Value::Int(250));
        x.values.set(MetricId::RestartCount, Value::Int(1));
        let mut y = container("a", "y", 30, 0);
        y.values.set(MetricId::MemoryUsage, Value::Int(400));
        y.values.set(MetricId::RestartCount, Value::Int(4));
        let mut sets = vec![own, x, y];
        aggregate_pods(&mut sets, 60_000);
        let a = &sets[0].values;
        assert_eq!(a.get(MetricId::CpuUsageRate), Some(Value::Int(200)), "not 130: the pod's own rate");
        assert_eq!(a.get(MetricId::MemoryUsage), Some(Value::Int(1_000)), "not 700: the pod's own usage");
        assert_eq!(a.get(MetricId::MemoryWorkingSet), Some(Value::Int(250)), "absent at pod level: summed");
        assert_eq!(a.get(MetricId::CpuRequest), Some(Value::Int(50)));
        assert_eq!(a.get(MetricId::MemoryPageFaultsRate), Some(Value::Float(1.0)));
        assert_eq!(a.get(MetricId::RestartCount), Some(Value::Int(5)), "restarts of all containers");
        assert_eq!(a.get(MetricId::CpuUsage), None, "other counters are not summed");
    }

    #[test]
    fn node_memory_utilization_is_usage_over_allocatable() {
        let mut node = MetricSet::new(EntityKey::Node { node: "node-1".into() });
        node.values.set(MetricId::MemoryUsage, Value::Int(300));
        node.values.set(MetricId::MemoryWorkingSet, Value::Int(100));
        node.values.set(MetricId::MemoryNodeAllocatable, Value::Float(1_000.0));
        node.values.set(MetricId::CpuNodeAllocatable, Value::Float(2_000.0));
        node_ratios(&mut node);
        assert_eq!(node.values.get(MetricId::MemoryNodeUtilization), Some(Value::Float(0.3)));
        assert_eq!(node.values.get(MetricId::CpuNodeUtilization), None, "no cpu rate yet: absent, not 0");
        assert_eq!(node.values.get(MetricId::CpuNodeReservation), Some(Value::Float(0.0)));
    }

    #[test]
    fn a_pod_is_created_from_its_containers_when_missing() {
        let mut sets = vec![container("b", "x", 10, 1)];
        aggregate_pods(&mut sets, 60_000);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1].key, EntityKey::Pod { ns: "web".into(), pod: "b".into() });
        assert_eq!(sets[1].labels.get(LabelId::Nodename).map(Name::as_str), Some("node-1"));
        assert_eq!(sets[1].values.get(MetricId::CpuUsageRate), Some(Value::Int(10)));
    }

    #[test]
    fn namespaces_nodes_and_cluster_roll_up() {
        let mut sets = vec![pod("a"), pod("b"), container("a", "x", 100, 50), container("b", "x", 20, 200)];
        aggregate_pods(&mut sets, 60_000);
        let mut node = MetricSet::new(EntityKey::Node { node: "node-1".into() });
        node.values.set(MetricId::CpuUsageRate, Value::Int(500));
        node.values.set(MetricId::CpuNodeAllocatable, Value::Float(1000.0));
        let mut parts: Vec<Part> = combined_parts(&sets);
        // A part for a node that was not scraped is dropped.
        parts.push(Part {
            target: EntityKey::Node { node: "gone".into() },
            values: Box::default(),
            namespace_id: None,
        });

        let (out, to_cluster) = roll_up(vec![node], parts, 60_000);
        let find = |k: &EntityKey| out.iter().find(|s| &s.key == k).cloned();
        let ns = find(&EntityKey::Namespace { ns: "web".into() }).unwrap();
        assert_eq!(ns.values.get(MetricId::CpuUsageRate), Some(Value::Int(120)));
        assert_eq!(ns.values.get(MetricId::CpuRequest), Some(Value::Int(250)));
        assert_eq!(ns.labels.get(LabelId::NamespaceId).map(Name::as_str), Some("ns-uid"));
        assert_eq!(ns.labels.get(LabelId::NamespaceName).map(Name::as_str), Some("web"));
        let node = find(&EntityKey::Node { node: "node-1".into() }).unwrap();
        assert_eq!(node.values.get(MetricId::CpuRequest), Some(Value::Int(250)));
        assert_eq!(node.values.get(MetricId::CpuNodeUtilization), Some(Value::Float(0.5)));
        assert_eq!(node.values.get(MetricId::CpuNodeReservation), Some(Value::Float(0.25)));
        assert_eq!(node.values.get(MetricId::MemoryNodeUtilization), None, "allocatable unknown");
        assert!(find(&EntityKey::Node { node: "gone".into() }).is_none());

        assert_eq!(to_cluster.len(), 1);
        let (cluster, further) = roll_up(Vec::new(), to_cluster, 60_000);
        assert!(further.is_empty());
        let c = &cluster[0];
        assert_eq!(c.key, EntityKey::Cluster);
        assert_eq!(c.values.get(MetricId::CpuUsageRate), Some(Value::Int(120)));
    }

    /// The real operators at 1 and 2 workers, with a node and pods that change worker between
    /// windows (a pod's sets stay together, as enrich leaves them).
    mod graph {
        use differential_dataflow::VecCollection;

        use super::*;
        use crate::meta::MetaRecord;
        use crate::metrics::testing::{Window, find, run};

        const W1: Time = 60_000;
        const W2: Time = 120_000;

        fn graph<'s>(
            sets: StreamVec<'s, Time, MetricSet>,
            _meta: VecCollection<'s, Time, MetaRecord>,
        ) -> StreamVec<'s, Time, MetricSet> {
            aggregate(sets)
        }

        fn labeled(key: EntityKey, node: &str, values: &[(MetricId, i64)]) -> MetricSet {
            let mut set = MetricSet::new(key);
            set.labels.set(LabelId::Nodename, node.into());
            for (id, v) in values {
                set.values.set(*id, Value::Int(*v));
            }
            set
        }

        fn pod_key(ns: &str, pod: &str) -> EntityKey {
            EntityKey::Pod { ns: ns.into(), pod: pod.into() }
        }

        fn container_key(ns: &str, pod: &str, container: &str) -> EntityKey {
            EntityKey::PodContainer { ns: ns.into(), pod: pod.into(), container: container.into() }
        }

        /// Node n1 with pods web/a (reported, two containers) and web/b (containers only);
        /// kube/dns runs on n2, which was not scraped. Values scale with `k`.
        fn window(time: Time, k: i64, n1_worker: usize, a_worker: usize) -> Window {
            use MetricId::{CpuRequest, CpuUsageRate, MemoryUsage};
            let mut node = labeled(EntityKey::Node { node: "n1".into() }, "n1", &[(CpuUsageRate, 400 * k)]);
            node.values.set(MetricId::MemoryUsage, Value::Int(500 * k));
            node.values.set(MetricId::CpuNodeAllocatable, Value::Float(1000.0));
            node.values.set(MetricId::MemoryNodeAllocatable, Value::Float(2000.0));
            let mut a =
                labeled(pod_key("web", "a"), "n1", &[(CpuUsageRate, 150 * k), (MemoryUsage, 100 * k)]);
            a.labels.set(LabelId::NamespaceId, "ns-web".into());
            let mut dns = labeled(pod_key("kube", "dns"), "n2", &[]);
            dns.labels.set(LabelId::NamespaceId, "ns-kube".into());
            let b_worker = 1 - a_worker;
            Window {
                time,
                meta: Vec::new(),
                sets: vec![
                    (n1_worker, node),
                    (a_worker, a),
                    (
                        a_worker,
                        labeled(
                            container_key("web", "a", "x"),
                            "n1",
                            &[(CpuUsageRate, 100 * k), (CpuRequest, 50 * k), (MemoryUsage, 60 * k)],
                        ),
                    ),
                    (
                        a_worker,
                        labeled(
                            container_key("web", "a", "y"),
                            "n1",
                            &[(CpuUsageRate, 30 * k), (CpuRequest, 25 * k), (MemoryUsage, 40 * k)],
                        ),
                    ),
                    (
                        b_worker,
                        labeled(
                            container_key("web", "b", "x"),
                            "n1",
                            &[(CpuUsageRate, 20 * k), (CpuRequest, 10 * k), (MemoryUsage, 5 * k)],
                        ),
                    ),
                    (b_worker, dns),
                    (
                        b_worker,
                        labeled(
                            container_key("kube", "dns", "c"),
                            "n2",
                            &[(CpuUsageRate, 7 * k), (CpuRequest, 3 * k), (MemoryUsage, k)],
                        ),
                    ),
                ],
            }
        }

        fn int(set: &MetricSet, id: MetricId) -> Option<i64> {
            set.values.get(id).map(Value::as_i64)
        }

        #[test]
        fn pods_namespaces_nodes_and_cluster_sum_alike_on_one_and_two_workers() {
            use MetricId::{CpuRequest, CpuUsageRate, MemoryUsage};
            let windows = [window(W1, 1, 0, 0), window(W2, 2, 1, 1)];
            let one = run(1, &windows, graph);
            let two = run(2, &windows, graph);
            assert_eq!(one, two, "the same output at 1 and 2 workers");

            for (time, k) in [(W1, 1), (W2, 2)] {
                let keys: Vec<String> =
                    one.iter().filter(|(t, _)| *t == time).map(|(_, s)| s.key.to_string()).collect();
                assert_eq!(
                    keys,
                    [
                        "cluster",
                        "namespace:kube",
                        "namespace:web",
                        "node:n1",
                        "namespace:kube/pod:dns",
                        "namespace:web/pod:a",
                        "namespace:web/pod:b",
                        "namespace:kube/pod:dns/container:c",
                        "namespace:web/pod:a/container:x",
                        "namespace:web/pod:a/container:y",
                        "namespace:web/pod:b/container:x",
                    ],
                    "window {time}: no set for the unscraped n2"
                );

                let a = find(&one, time, &pod_key("web", "a"));
                assert_eq!(int(a, CpuUsageRate), Some(150 * k), "the pod's own rate stands");
                assert_eq!(int(a, MemoryUsage), Some(100 * k));
                assert_eq!(int(a, CpuRequest), Some(75 * k));
                let b = find(&one, time, &pod_key("web", "b"));
                assert_eq!(int(b, CpuUsageRate), Some(20 * k), "made from its one container");
                assert_eq!(b.labels.get(LabelId::Nodename).map(Name::as_str), Some("n1"));
                assert_eq!(b.scrape_time, time as i64 * 1_000_000);

                let web = find(&one, time, &EntityKey::Namespace { ns: "web".into() });
                assert_eq!(int(web, CpuUsageRate), Some(170 * k));
                assert_eq!(int(web, MemoryUsage), Some(105 * k));
                assert_eq!(int(web, CpuRequest), Some(85 * k));
                assert_eq!(web.labels.get(LabelId::NamespaceId).map(Name::as_str), Some("ns-web"));
                assert_eq!(web.labels.get(LabelId::NamespaceName).map(Name::as_str), Some("web"));
                let kube = find(&one, time, &EntityKey::Namespace { ns: "kube".into() });
                assert_eq!(int(kube, CpuUsageRate), Some(7 * k));
                assert_eq!(kube.labels.get(LabelId::NamespaceId).map(Name::as_str), Some("ns-kube"));

                let n1 = find(&one, time, &EntityKey::Node { node: "n1".into() });
                assert_eq!(int(n1, CpuRequest), Some(85 * k), "pods on n1 only");
                assert_eq!(int(n1, CpuUsageRate), Some(400 * k), "the node's own usage");
                let ratio = |n: i64, d: f64| Some(Value::Float(n as f64 / d));
                assert_eq!(n1.values.get(MetricId::CpuNodeUtilization), ratio(400 * k, 1000.0));
                assert_eq!(n1.values.get(MetricId::CpuNodeReservation), ratio(85 * k, 1000.0));
                assert_eq!(n1.values.get(MetricId::MemoryNodeUtilization), ratio(500 * k, 2000.0));

                let cluster = find(&one, time, &EntityKey::Cluster);
                assert_eq!(int(cluster, CpuUsageRate), Some(177 * k));
                assert_eq!(int(cluster, CpuRequest), Some(88 * k));
                assert_eq!(int(cluster, MemoryUsage), Some(106 * k));
            }
        }
    }
}
