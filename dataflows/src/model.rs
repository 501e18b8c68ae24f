//! The records that flow through the graphs: one [`MetricSet`] per entity per window.
//!
//! A metric set is a boxed compact value array plus shared label strings: moving one between
//! operators moves a pointer, and copying one bumps reference counts, never re-allocates names.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::{Kind, LabeledMetricId, MetricId, ValueType};
pub use crate::event_text::EventText;
pub use crate::hash::{node_owner, stable_hash};
pub use crate::name::{Interner, Name, Recall};

/// Timely time: the end of a window in milliseconds since the Unix epoch, aligned to the
/// resolution (Heapster's batch timestamp).
pub type Time = u64;

/// What a metric set describes. The text form is Heapster's metric-set key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityKey {
    Cluster,
    Namespace { ns: Name },
    Node { node: Name },
    SysContainer { node: Name, name: Name },
    Pod { ns: Name, pod: Name },
    PodContainer { ns: Name, pod: Name, container: Name },
}

impl EntityKey {
    /// Heapster's `type` label.
    pub fn type_label(&self) -> &'static str {
        match self {
            EntityKey::Cluster => "cluster",
            EntityKey::Namespace { .. } => "ns",
            EntityKey::Node { .. } => "node",
            EntityKey::SysContainer { .. } => "sys_container",
            EntityKey::Pod { .. } => "pod",
            EntityKey::PodContainer { .. } => "pod_container",
        }
    }

    /// The pod this entity belongs to, if any.
    pub fn pod(&self) -> Option<(&Name, &Name)> {
        match self {
            EntityKey::Pod { ns, pod } | EntityKey::PodContainer { ns, pod, .. } => Some((ns, pod)),
            _ => None,
        }
    }

    /// A stable hash of the key alone: a pod and its containers to one worker, a node and its
    /// system containers to one. Sets that know their node go by the node instead
    /// ([`crate::metrics::route`]), so that a node's sets stay where they were scraped.
    pub fn route(&self) -> u64 {
        match self {
            EntityKey::Cluster => 0,
            EntityKey::Namespace { ns } => stable_hash(&["ns", ns]),
            EntityKey::Node { node } | EntityKey::SysContainer { node, .. } => stable_hash(&["node", node]),
            EntityKey::Pod { ns, pod } | EntityKey::PodContainer { ns, pod, .. } => {
                stable_hash(&["pod", ns, pod])
            }
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityKey::Cluster => f.write_str("cluster"),
            EntityKey::Namespace { ns } => write!(f, "namespace:{ns}"),
            EntityKey::Node { node } => write!(f, "node:{node}"),
            EntityKey::SysContainer { node, name } => write!(f, "node:{node}/container:{name}"),
            EntityKey::Pod { ns, pod } => write!(f, "namespace:{ns}/pod:{pod}"),
            EntityKey::PodContainer { ns, pod, container } => {
                write!(f, "namespace:{ns}/pod:{pod}/container:{container}")
            }
        }
    }
}

/// One metric value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }

    pub fn as_i64(self) -> i64 {
        match self {
            Value::Int(i) => i,
            Value::Float(f) => f as i64,
        }
    }

    /// Converts to the catalog's representation.
    pub(crate) fn coerce(self, ty: ValueType) -> Value {
        match (self, ty) {
            (Value::Float(f), ValueType::Int) => Value::Int(f as i64),
            (Value::Int(i), ValueType::Float) => Value::Float(i as f64),
            (v, _) => v,
        }
    }

    /// Sum of two values of the same representation (integers saturate rather than wrap).
    pub fn plus(self, other: Value) -> Value {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.saturating_add(b)),
            (a, b) => Value::Float(a.as_f64() + b.as_f64()),
        }
    }
}

// `Values` keeps one presence bit per metric in a u64.
const _: () = assert!(MetricId::COUNT <= 64);

/// The values of a metric set, by [`MetricId`].
///
/// Absent is not zero: a presence bit per metric keeps "the kubelet did not say" apart from 0.
/// Only present values are stored, in catalog order (a value's slot is the number of present
/// metrics before it): a container reports 18 of the 40 metrics, and a window holds 100,000 sets.
#[derive(Clone, Default, PartialEq)]
pub struct Values {
    present: u64,
    raw: Vec<u64>,
}

impl Values {
    /// Room for `n` values, so a set that knows its size is allocated once.
    pub fn with_capacity(n: usize) -> Self {
        Values { present: 0, raw: Vec::with_capacity(n) }
    }

    #[inline]
    fn bit(id: MetricId) -> u64 {
        1 << id as u64
    }

    /// Where `id`'s value is (or would be) in `raw`.
    #[inline]
    fn slot(&self, id: MetricId) -> usize {
        (self.present & (Self::bit(id) - 1)).count_ones() as usize
    }

    #[inline]
    fn decode(id: MetricId, raw: u64) -> Value {
        match id.desc().ty {
            ValueType::Int => Value::Int(raw as i64),
            ValueType::Float => Value::Float(f64::from_bits(raw)),
        }
    }

    #[inline]
    pub fn get(&self, id: MetricId) -> Option<Value> {
        if !self.contains(id) {
            return None;
        }
        Some(Self::decode(id, self.raw[self.slot(id)]))
    }

    #[inline]
    pub fn get_i64(&self, id: MetricId) -> Option<i64> {
        self.get(id).map(Value::as_i64)
    }

    /// Stores `v` in the catalog's representation for `id`.
    #[inline]
    pub fn set(&mut self, id: MetricId, v: Value) {
        let raw = match v.coerce(id.desc().ty) {
            Value::Int(i) => i as u64,
            Value::Float(f) => f.to_bits(),
        };
        let slot = self.slot(id);
        if self.contains(id) {
            self.raw[slot] = raw;
            return;
        }
        if self.raw.len() == self.raw.capacity() {
            // Sets are sized by kind up front; growing a few at a time keeps the rest tight.
            self.raw.reserve_exact(4);
        }
        self.raw.insert(slot, raw);
        self.present |= Self::bit(id);
    }

    pub fn remove(&mut self, id: MetricId) {
        if self.contains(id) {
            self.raw.remove(self.slot(id));
            self.present &= !Self::bit(id);
        }
    }

    /// Adds `v` to the current value, or sets it when absent.
    pub fn add(&mut self, id: MetricId, v: Value) {
        let sum = match self.get(id) {
            Some(old) => old.plus(v.coerce(id.desc().ty)),
            None => v,
        };
        self.set(id, sum);
    }

    /// Where the stored values lie, for a reader that asks the CPU for them ahead of time.
    #[inline]
    pub fn as_ptr(&self) -> *const u64 {
        self.raw.as_ptr()
    }

    #[inline]
    pub fn contains(&self, id: MetricId) -> bool {
        self.present & Self::bit(id) != 0
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// The presence bits: bit `id as u64` says whether `id` has a value.
    #[inline]
    pub fn mask(&self) -> u64 {
        self.present
    }

    /// Adds each of `other`'s values whose bit is in `mask`, in catalog order (as
    /// [`Values::add`] one by one would), without walking the whole catalog.
    pub fn add_masked(&mut self, other: &Values, mask: u64) {
        let mut bits = other.present & mask;
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let id = MetricId::ALL[bit];
            let raw = other.raw[other.slot(id)];
            self.add(id, Self::decode(id, raw));
        }
    }

    /// Present values in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = (MetricId, Value)> + '_ {
        MetricId::ALL
            .iter()
            .filter(move |&&id| self.contains(id))
            .zip(&self.raw)
            .map(|(&id, &raw)| (id, Self::decode(id, raw)))
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(id, v)| (id.name(), v))).finish()
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.present, &self.raw).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (present, mut raw): (u64, Vec<u64>) = Deserialize::deserialize(d)?;
        let present = present & ((1u128 << MetricId::COUNT) - 1) as u64;
        let count = present.count_ones() as usize;
        if raw.len() < count {
            return Err(serde::de::Error::custom("fewer values than presence bits"));
        }
        raw.truncate(count);
        raw.shrink_to_fit();
        Ok(Values { present, raw })
    }
}

/// Heapster's label keys, in the sorted order InfluxDB prefers for tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum LabelId {
    ContainerBaseImage,
    ContainerName,
    HostId,
    Hostname,
    Labels,
    NamespaceId,
    NamespaceName,
    Nodename,
    PodId,
    PodName,
    Schedulable,
}

impl LabelId {
    pub const ALL: [LabelId; 11] = [
        LabelId::ContainerBaseImage,
        LabelId::ContainerName,
        LabelId::HostId,
        LabelId::Hostname,
        LabelId::Labels,
        LabelId::NamespaceId,
        LabelId::NamespaceName,
        LabelId::Nodename,
        LabelId::PodId,
        LabelId::PodName,
        LabelId::Schedulable,
    ];

    pub fn key(self) -> &'static str {
        match self {
            LabelId::ContainerBaseImage => "container_base_image",
            LabelId::ContainerName => "container_name",
            LabelId::HostId => "host_id",
            LabelId::Hostname => "hostname",
            LabelId::Labels => "labels",
            LabelId::NamespaceId => "namespace_id",
            LabelId::NamespaceName => "namespace_name",
            LabelId::Nodename => "nodename",
            LabelId::PodId => "pod_id",
            LabelId::PodName => "pod_name",
            LabelId::Schedulable => "schedulable",
        }
    }
}

/// The labels of a metric set: Heapster's known keys in fixed slots, plus labels copied from
/// pod labels by `--store_label`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    slots: [Option<Name>; 11],
    /// Extra labels, sorted by key.
    pub extra: Vec<(Name, Name)>,
}

impl Labels {
    #[inline]
    pub fn get(&self, id: LabelId) -> Option<&Name> {
        self.slots[id as usize].as_ref()
    }

    #[inline]
    pub fn set(&mut self, id: LabelId, value: Name) {
        self.slots[id as usize] = Some(value);
    }

    /// Sets a label only if it has no value yet.
    pub fn set_default(&mut self, id: LabelId, value: &Name) {
        if self.slots[id as usize].is_none() {
            self.slots[id as usize] = Some(value.clone());
        }
    }

    /// Present labels in key order.
    pub fn iter(&self) -> impl Iterator<Item = (LabelId, &Name)> {
        LabelId::ALL.iter().filter_map(move |id| self.get(*id).map(|v| (*id, v)))
    }

    pub fn set_extra(&mut self, extra: Vec<(Name, Name)>) {
        let mut extra = extra;
        extra.sort();
        self.extra = extra;
    }
}

/// The labels a labeled value adds to its metric set's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// No extra labels (custom metrics).
    None,
    /// `resource_id`: `/`, `logs`, `Volume:<name>`, a device name.
    Id(Name),
    /// `make`, `model`, `accelerator_id` (boxed: rare, and it would triple every value's size).
    Accelerator(Box<Accelerator>),
}

/// The labels of one accelerator.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Accelerator {
    pub make: Name,
    pub model: Name,
    pub id: Name,
}

impl Resource {
    /// `resource_id=/`, the root filesystem of a node or container: a literal, not counted.
    pub const ROOT_FS: Resource = Resource::Id(Name::from_literal(arcstr::literal!("/")));
    /// `resource_id=logs`, a container's log filesystem: a literal, not counted.
    pub const LOGS_FS: Resource = Resource::Id(Name::from_literal(arcstr::literal!("logs")));

    pub fn accelerator(make: Name, model: Name, id: Name) -> Resource {
        Resource::Accelerator(Box::new(Accelerator { make, model, id }))
    }
}

/// Which labeled metric a value is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LabeledMetric {
    Catalog(LabeledMetricId),
    /// A user-defined metric (boxed: rare).
    Custom(Box<CustomMetric>),
}

/// A user-defined metric; `name` is already `custom/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CustomMetric {
    pub name: Name,
    pub kind: Kind,
}

impl LabeledMetric {
    pub fn custom(name: Name, kind: Kind) -> LabeledMetric {
        LabeledMetric::Custom(Box::new(CustomMetric { name, kind }))
    }

    pub fn name(&self) -> &str {
        match self {
            LabeledMetric::Catalog(id) => id.name(),
            LabeledMetric::Custom(custom) => &custom.name,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            LabeledMetric::Catalog(id) => id.desc().kind,
            LabeledMetric::Custom(custom) => custom.kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabeledValue {
    pub metric: LabeledMetric,
    pub resource: Resource,
    pub value: Value,
}

/// Everything known about one entity in one window.
///
/// The body is boxed: a set crosses a dozen operators and is sorted and merged with its window,
/// so a move is a pointer instead of 200 bytes. Fields are reached through `Deref`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetricSet(Box<SetBody>);

/// The fields of a [`MetricSet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetBody {
    pub key: EntityKey,
    pub labels: Labels,
    /// When the entity (container, pod, node) started, in ns since the epoch; a change means a
    /// restart, and no rate is computed across it.
    pub create_time: i64,
    /// When the values were read, in ns since the epoch.
    pub scrape_time: i64,
    pub values: Values,
    pub labeled: Vec<LabeledValue>,
}

impl MetricSet {
    pub fn new(key: EntityKey) -> Self {
        // The most values a set of each kind reports (rates and enrichment included), so the
        // value array is allocated once and tight.
        let values = match key {
            EntityKey::Cluster | EntityKey::Namespace { .. } => 8,
            EntityKey::Node { .. } => MetricId::COUNT,
            EntityKey::SysContainer { .. } => 12,
            EntityKey::Pod { .. } => 28,
            EntityKey::PodContainer { .. } => 18,
        };
        MetricSet(Box::new(SetBody {
            key,
            labels: Labels::default(),
            create_time: 0,
            scrape_time: 0,
            values: Values::with_capacity(values),
            labeled: Vec::new(),
        }))
    }

    /// The number of points this set writes to a sink.
    pub fn point_count(&self) -> usize {
        self.values.len() + self.labeled.len()
    }

    /// Asks the CPU for the set's body and values ahead of time, for a pass over a window's
    /// sets: they were built one node at a time and a window's are far more than the caches
    /// hold, so without it such a pass waits on memory at every set.
    #[inline]
    pub fn prefetch(&self) {
        self.prefetch_body();
        prefetch(self.values.as_ptr().cast());
    }

    /// Asks for the set's body only: a pass further ahead, whose values' address is in the body
    /// and so not known yet.
    #[inline]
    pub fn prefetch_body(&self) {
        let start = (&*self.0 as *const SetBody).cast::<u8>();
        let mut line = 0;
        while line < size_of::<SetBody>() {
            prefetch(start.wrapping_add(line));
            line += 64;
        }
    }

    pub fn labeled_value(&self, metric: LabeledMetricId, resource: &Resource) -> Option<Value> {
        self.labeled
            .iter()
            .find(|l| l.metric == LabeledMetric::Catalog(metric) && &l.resource == resource)
            .map(|l| l.value)
    }
}

impl std::ops::Deref for MetricSet {
    type Target = SetBody;

    #[inline]
    fn deref(&self) -> &SetBody {
        &self.0
    }
}

impl std::ops::DerefMut for MetricSet {
    #[inline]
    fn deref_mut(&mut self) -> &mut SetBody {
        &mut self.0
    }
}

/// Asks the CPU for the cache line at `p`.
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and never faults, whatever
    // the address; SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hashes only the key: two sets for one entity in one window are the same record.
impl Hash for MetricSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

/// The object an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: Name,
    pub namespace: Name,
    pub name: Name,
    pub uid: Name,
}

/// One state of a Kubernetes event (core `v1` or `events.k8s.io/v1`).
///
/// An event's state changes when it repeats (`count` grows, `last_timestamp` moves); each
/// distinct state is exported once. Its own strings (name, version, message, JSON) are in one
/// [`EventText`]; the strings events share are interned [`Name`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    pub uid: Name,
    pub namespace: Name,
    pub involved: ObjectRef,
    pub reason: Name,
    /// `Normal` or `Warning` (other values are kept as given).
    pub kind: Name,
    pub source_component: Name,
    pub source_host: Name,
    /// ms since the epoch; 0 when the event did not say.
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    pub count: i64,
    /// The name, the resource version, the message, and the event as the API server sent it
    /// (for sinks that store it whole).
    pub text: EventText,
}

impl Event {
    /// What makes one state of an event distinct from another.
    pub fn state(&self) -> (Name, i64, i64) {
        (self.uid.clone(), self.count, self.last_timestamp)
    }

    pub fn name(&self) -> &str {
        self.text.name()
    }

    pub fn resource_version(&self) -> &str {
        self.text.resource_version()
    }

    pub fn message(&self) -> &str {
        self.text.message()
    }

    /// The event's JSON as received (compacted), empty when the source had none.
    pub fn raw(&self) -> &str {
        self.text.raw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_heapsters() {
        let ns = Name::new("kube-system");
        let pod = Name::new("dns-1");
        let key = EntityKey::PodContainer { ns: ns.clone(), pod: pod.clone(), container: "dnsmasq".into() };
        assert_eq!(key.to_string(), "namespace:kube-system/pod:dns-1/container:dnsmasq");
        assert_eq!(
            EntityKey::SysContainer { node: "n1".into(), name: "kubelet".into() }.to_string(),
            "node:n1/container:kubelet"
        );
        assert_eq!(EntityKey::Cluster.to_string(), "cluster");
        assert_eq!(EntityKey::Namespace { ns }.type_label(), "ns");
        assert_eq!(key.route(), EntityKey::Pod { ns: "kube-system".into(), pod }.route());
    }

    #[test]
    fn values_keep_absent_apart_from_zero() {
        let mut v = Values::default();
        assert_eq!(v.get(MetricId::MemoryRss), None);
        v.set(MetricId::MemoryRss, Value::Int(0));
        assert_eq!(v.get(MetricId::MemoryRss), Some(Value::Int(0)));
        v.set(MetricId::CpuNodeUtilization, Value::Int(1));
        assert_eq!(v.get(MetricId::CpuNodeUtilization), Some(Value::Float(1.0)));
        v.add(MetricId::MemoryRss, Value::Int(5));
        assert_eq!(v.get_i64(MetricId::MemoryRss), Some(5));
        assert_eq!(v.len(), 2);
        v.remove(MetricId::MemoryRss);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn masked_adds_are_the_adds_one_by_one() {
        let mut other = Values::default();
        other.set(MetricId::MemoryRss, Value::Int(7));
        other.set(MetricId::CpuUsageRate, Value::Int(3));
        other.set(MetricId::NetworkRxRate, Value::Float(0.5));
        let mut base = Values::default();
        base.set(MetricId::CpuUsageRate, Value::Int(10));
        base.set(MetricId::NetworkRxRate, Value::Float(1.0));
        let mask = other.mask() & !Values::bit(MetricId::MemoryRss);
        let mut masked = base.clone();
        masked.add_masked(&other, mask);
        let mut one_by_one = base;
        for (id, value) in other.iter().filter(|(id, _)| *id != MetricId::MemoryRss) {
            one_by_one.add(id, value);
        }
        assert_eq!(masked, one_by_one);
        assert_eq!(masked.get(MetricId::CpuUsageRate), Some(Value::Int(13)));
        assert_eq!(masked.get(MetricId::MemoryRss), None, "left out by the mask");
    }

    #[test]
    fn values_round_trip_through_serde() {
        let mut v = Values::default();
        v.set(MetricId::Uptime, Value::Int(-3));
        v.set(MetricId::NetworkRxRate, Value::Float(2.5));
        let json = serde_json::to_string(&v).unwrap();
        let back: Values = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert!(serde_json::from_str::<Values>("[3,[1]]").is_err());
    }

    #[test]
    fn literal_resources_equal_interned_ones() {
        let mut interner = Interner::default();
        assert_eq!(Resource::ROOT_FS, Resource::Id(interner.intern("/")));
        assert_eq!(Resource::LOGS_FS, Resource::Id(interner.intern("logs")));
        assert_eq!(Resource::ROOT_FS.clone(), Resource::Id(Name::new("/")));
    }

    #[test]
    fn records_stay_small() {
        // Every window moves tens of thousands of these between operators.
        assert_eq!(std::mem::size_of::<Name>(), std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<Option<Name>>(), std::mem::size_of::<usize>());
        assert!(std::mem::size_of::<LabeledValue>() <= 48, "{}", std::mem::size_of::<LabeledValue>());
        assert_eq!(std::mem::size_of::<MetricSet>(), std::mem::size_of::<usize>());
        assert!(std::mem::size_of::<SetBody>() <= 224, "{}", std::mem::size_of::<SetBody>());
    }
}
