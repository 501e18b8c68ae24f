//! Metric sets as `timeSeries.create` bodies and metric descriptors, written straight into
//! bytes: a 1,000-node window is millions of series.
//!
//! A series is one metric of one set: metric type `custom.googleapis.com/kubernetes.io/<name>`,
//! Heapster's GCM labels (`type`, `pod_name`, `namespace_name`, `hostname`, `host_id`,
//! `container_name`, `container_base_image`, `resource_id`; `accelerator_id` for accelerator
//! metrics; empty ones left out), and a monitored resource that today's API requires:
//! `k8s_container` (pod containers), `k8s_pod` (pods), `k8s_node` (nodes and their system
//! containers), `k8s_cluster` (namespaces and the cluster). One point: `endTime` = the window's
//! end; `CUMULATIVE` metrics start at the set's create time.
//!
//! `metrics=autoscaling` sends only Heapster's node autoscaling metrics, labelled `hostname`
//! and `host_id` (Heapster's `compute.googleapis.com/resource_id`: a v3 label key cannot hold
//! `.` or `/`, and the `k8s_node` resource says the rest).

use heapster_dataflows::catalog::{Kind, LabeledMetricId, MetricId, Unit, ValueType};
use heapster_dataflows::model::{LabeledMetric, Resource};
use heapster_dataflows::{EntityKey, LabelId, MetricSet, Value};
use rustc_hash::FxHashSet;
use serde_json::json;

use crate::batch::MetricBatch;
use crate::sinks::google::json::{push_member, push_str, push_time};

/// Every metric type starts so (Heapster's).
pub const METRIC_PREFIX: &str = "custom.googleapis.com/kubernetes.io/";
/// At most this many series per `timeSeries.create` (the API's limit).
pub const MAX_SERIES_PER_REQUEST: usize = 200;

/// Heapster's node autoscaling metrics.
pub const AUTOSCALING: &[MetricId] = &[
    MetricId::CpuNodeCapacity,
    MetricId::MemoryNodeCapacity,
    MetricId::CpuNodeAllocatable,
    MetricId::MemoryNodeAllocatable,
    MetricId::CpuNodeUtilization,
    MetricId::MemoryNodeUtilization,
    MetricId::CpuNodeReservation,
    MetricId::MemoryNodeReservation,
];

/// Metric labels of every metric (Heapster's `gcmLabels`, bar the custom metric name).
const LABELS: &[&str] = &[
    "type",
    "pod_name",
    "namespace_name",
    "hostname",
    "host_id",
    "container_name",
    "container_base_image",
    "resource_id",
];
const AUTOSCALING_LABELS: &[&str] = &["hostname", "host_id"];

/// Which metrics go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    Autoscaling,
}

/// A metric descriptor's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub kind: Kind,
    pub ty: ValueType,
    pub unit: Unit,
    pub labels: Vec<&'static str>,
}

impl Descriptor {
    pub fn metric_type(&self) -> String {
        format!("{METRIC_PREFIX}{}", self.name)
    }

    /// The `MetricDescriptor` body for `metricDescriptors.create`.
    pub fn body(&self) -> serde_json::Value {
        let labels: Vec<_> = self
            .labels
            .iter()
            .map(|key| json!({"key": key, "valueType": "STRING", "description": format!("Heapster's {key} label")}))
            .collect();
        json!({
            "type": self.metric_type(),
            "metricKind": kind_name(self.kind),
            "valueType": type_name(self.ty),
            "unit": unit_name(self.unit),
            "description": format!("Heapster's {} metric", self.name),
            "displayName": self.name,
            "labels": labels,
        })
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Cumulative => "CUMULATIVE",
        Kind::Gauge => "GAUGE",
    }
}

fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Int => "INT64",
        ValueType::Float => "DOUBLE",
    }
}

/// UCUM units as Cloud Monitoring takes them.
fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::None | Unit::Count | Unit::Ratio => "1",
        Unit::Bytes => "By",
        Unit::Nanoseconds => "ns",
        Unit::Milliseconds => "ms",
        Unit::Millicores => "{millicore}",
        Unit::PerSecond => "1/s",
    }
}

/// The descriptors the sink creates at start.
pub fn catalog_descriptors(selection: Selection) -> Vec<Descriptor> {
    let mut out = Vec::new();
    let base = |extra: &[&'static str]| {
        let mut labels = LABELS.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    for id in MetricId::ALL {
        if selection == Selection::Autoscaling && !AUTOSCALING.contains(id) {
            continue;
        }
        let d = id.desc();
        let labels = match selection {
            Selection::All => base(&[]),
            Selection::Autoscaling => AUTOSCALING_LABELS.to_vec(),
        };
        out.push(Descriptor { name: d.name.to_string(), kind: d.kind, ty: d.ty, unit: d.unit, labels });
    }
    if selection == Selection::All {
        for id in LabeledMetricId::ALL {
            let d = id.desc();
            let extra: &[&'static str] =
                if d.name.starts_with("accelerator/") { &["accelerator_id"] } else { &[] };
            out.push(Descriptor {
                name: d.name.to_string(),
                kind: d.kind,
                ty: d.ty,
                unit: d.unit,
                labels: base(extra),
            });
        }
    }
    out
}

/// The descriptor of a custom metric, made the first time one is seen.
pub fn custom_descriptor(name: &str, kind: Kind, value: Value) -> Descriptor {
    let ty = match value {
        Value::Int(_) => ValueType::Int,
        Value::Float(_) => ValueType::Float,
    };
    Descriptor { name: name.to_string(), kind, ty, unit: Unit::None, labels: LABELS.to_vec() }
}

/// What encoding one request did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub series: usize,
    /// NaN or infinite values, and repeats of a series already in the window.
    pub skipped: usize,
}

/// Where encoding stopped in a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    set: usize,
    value: usize,
    labeled: usize,
}

impl Cursor {
    pub fn is_done(&self, batch: &MetricBatch) -> bool {
        self.set >= batch.sets.len()
    }
}

/// Encodes windows into request bodies; keeps its buffers and per-set parts between calls.
pub struct SeriesEncoder {
    selection: Selection,
    project: String,
    location: String,
    cluster_name: String,
    /// `"resource":{...}` of the current set.
    resource: Vec<u8>,
    /// The current set's metric labels, `"k":"v"` joined by commas.
    labels: Vec<u8>,
    /// Custom metrics seen, by name: their descriptors are created before their first write.
    pub custom: Vec<Descriptor>,
    /// Series of the current request, by hash: no series twice in a request.
    seen: FxHashSet<u64>,
}

impl SeriesEncoder {
    pub fn new(selection: Selection, project: &str, location: &str, cluster_name: &str) -> SeriesEncoder {
        SeriesEncoder {
            selection,
            project: project.to_string(),
            location: location.to_string(),
            cluster_name: cluster_name.to_string(),
            resource: Vec::with_capacity(256),
            labels: Vec::with_capacity(256),
            custom: Vec::new(),
            seen: FxHashSet::default(),
        }
    }

    /// Appends the next request body (at most [`MAX_SERIES_PER_REQUEST`] series after
    /// `cursor`) to `out` and moves the cursor; `series == 0` means the batch is done.
    pub fn request(&mut self, batch: &MetricBatch, cursor: &mut Cursor, out: &mut Vec<u8>) -> Encoded {
        let mut done = Encoded::default();
        self.seen.clear();
        out.extend_from_slice(b"{\"timeSeries\":[");
        let mut end = Vec::with_capacity(32);
        push_time(&mut end, batch.time as i64);
        let mut start = Vec::with_capacity(32);
        while let Some(set) = batch.sets.get(cursor.set) {
            let mut set_ready = false;
            while let Some(&id) = MetricId::ALL.get(cursor.value) {
                let Some(value) = set.values.get(id) else {
                    cursor.value += 1;
                    continue;
                };
                if self.selection == Selection::Autoscaling
                    && (!AUTOSCALING.contains(&id) || !matches!(set.key, EntityKey::Node { .. }))
                {
                    cursor.value += 1;
                    continue;
                }
                if !finite(value) {
                    done.skipped += 1;
                    cursor.value += 1;
                    continue;
                }
                if done.series == MAX_SERIES_PER_REQUEST {
                    return self.close(out, done);
                }
                if !set_ready {
                    self.set_parts(set, &mut start, batch.time as i64);
                    set_ready = true;
                }
                let desc = id.desc();
                if self.series(out, done.series, desc.name, desc.kind, None, value, &start, &end) {
                    done.series += 1;
                } else {
                    done.skipped += 1;
                }
                cursor.value += 1;
            }
            if self.selection == Selection::All {
                while let Some(labeled) = set.labeled.get(cursor.labeled) {
                    if !finite(labeled.value) {
                        done.skipped += 1;
                        cursor.labeled += 1;
                        continue;
                    }
                    if done.series == MAX_SERIES_PER_REQUEST {
                        return self.close(out, done);
                    }
                    if !set_ready {
                        self.set_parts(set, &mut start, batch.time as i64);
                        set_ready = true;
                    }
                    let extra = match &labeled.resource {
                        Resource::None => None,
                        Resource::Id(id) => Some(("resource_id", id.as_str())),
                        Resource::Accelerator(a) => Some(("accelerator_id", a.id.as_str())),
                    };
                    if let LabeledMetric::Custom(custom) = &labeled.metric
                        && !self.custom.iter().any(|d| d.name == custom.name.as_str())
                    {
                        self.custom.push(custom_descriptor(&custom.name, custom.kind, labeled.value));
                    }
                    let name = labeled.metric.name();
                    let kind = labeled.metric.kind();
                    if self.series(out, done.series, name, kind, extra, labeled.value, &start, &end) {
                        done.series += 1;
                    } else {
                        done.skipped += 1;
                    }
                    cursor.labeled += 1;
                }
            }
            *cursor = Cursor { set: cursor.set + 1, value: 0, labeled: 0 };
        }
        self.close(out, done)
    }

    fn close(&self, out: &mut Vec<u8>, done: Encoded) -> Encoded {
        out.extend_from_slice(b"]}");
        done
    }

    /// The resource and labels every series of `set` shares, and its start time.
    fn set_parts(&mut self, set: &MetricSet, start: &mut Vec<u8>, end_ms: i64) {
        let resource = &mut self.resource;
        resource.clear();
        resource.extend_from_slice(b"\"resource\":{\"type\":");
        let (ty, extra): (&str, Vec<(&str, &str)>) = match &set.key {
            EntityKey::PodContainer { ns, pod, container } => (
                "k8s_container",
                vec![("namespace_name", ns), ("pod_name", pod), ("container_name", container)],
            ),
            EntityKey::Pod { ns, pod } => ("k8s_pod", vec![("namespace_name", ns), ("pod_name", pod)]),
            EntityKey::Node { node } | EntityKey::SysContainer { node, .. } => {
                ("k8s_node", vec![("node_name", node)])
            }
            EntityKey::Namespace { .. } | EntityKey::Cluster => ("k8s_cluster", Vec::new()),
        };
        push_str(resource, ty);
        resource.extend_from_slice(b",\"labels\":{");
        push_member(resource, "project_id", &self.project);
        resource.push(b',');
        push_member(resource, "location", &self.location);
        resource.push(b',');
        push_member(resource, "cluster_name", &self.cluster_name);
        for (k, v) in extra {
            resource.push(b',');
            push_member(resource, k, v);
        }
        resource.extend_from_slice(b"}}");

        let labels = &mut self.labels;
        labels.clear();
        let mut add = |key: &str, value: &str| {
            if value.is_empty() {
                return;
            }
            if !labels.is_empty() {
                labels.push(b',');
            }
            push_member(labels, key, value);
        };
        let label = |id: LabelId| set.labels.get(id).map_or("", |n| n.as_str());
        match self.selection {
            Selection::Autoscaling => {
                add("hostname", label(LabelId::Hostname));
                add("host_id", label(LabelId::HostId));
            }
            Selection::All => {
                let (ns, pod, container) = match &set.key {
                    EntityKey::PodContainer { ns, pod, container } => {
                        (ns.as_str(), pod.as_str(), container.as_str())
                    }
                    EntityKey::Pod { ns, pod } => (ns.as_str(), pod.as_str(), ""),
                    EntityKey::Namespace { ns } => (ns.as_str(), "", ""),
                    EntityKey::SysContainer { name, .. } => ("", "", name.as_str()),
                    _ => ("", "", ""),
                };
                add("type", set.key.type_label());
                add("pod_name", if pod.is_empty() { label(LabelId::PodName) } else { pod });
                add("namespace_name", if ns.is_empty() { label(LabelId::NamespaceName) } else { ns });
                add("hostname", label(LabelId::Hostname));
                add("host_id", label(LabelId::HostId));
                add(
                    "container_name",
                    if container.is_empty() { label(LabelId::ContainerName) } else { container },
                );
                add("container_base_image", label(LabelId::ContainerBaseImage));
            }
        }

        start.clear();
        // A cumulative series starts when its set was created, strictly before the point.
        let start_ms =
            if set.create_time > 0 && set.create_time < end_ms { set.create_time } else { end_ms - 1 };
        push_time(start, start_ms);
    }

    /// Appends one series; `false` (nothing written) if the request already has it.
    #[allow(clippy::too_many_arguments)]
    fn series(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        name: &str,
        kind: Kind,
        extra: Option<(&str, &str)>,
        value: Value,
        start: &[u8],
        end: &[u8],
    ) -> bool {
        let mark = out.len();
        if index > 0 {
            out.push(b',');
        }
        let identity = out.len();
        out.extend_from_slice(b"{\"metric\":{\"type\":\"");
        out.extend_from_slice(METRIC_PREFIX.as_bytes());
        // Catalog names need no escaping; custom names might.
        let mut quoted = Vec::with_capacity(name.len() + 2);
        push_str(&mut quoted, name);
        out.extend_from_slice(&quoted[1..]);
        out.extend_from_slice(b",\"labels\":{");
        out.extend_from_slice(&self.labels);
        if let Some((k, v)) = extra
            && !v.is_empty()
        {
            if !self.labels.is_empty() {
                out.push(b',');
            }
            push_member(out, k, v);
        }
        out.extend_from_slice(b"}},");
        out.extend_from_slice(&self.resource);
        if !self.seen.insert(hash(&out[identity..])) {
            out.truncate(mark);
            tracing::warn!(metric = name, "a series appears twice in one window; the repeat is left out");
            return false;
        }
        out.extend_from_slice(b",\"metricKind\":\"");
        out.extend_from_slice(kind_name(kind).as_bytes());
        out.extend_from_slice(b"\",\"valueType\":\"");
        let ty = match value {
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
        };
        out.extend_from_slice(type_name(ty).as_bytes());
        out.extend_from_slice(b"\",\"points\":[{\"interval\":{");
        if kind == Kind::Cumulative {
            out.extend_from_slice(b"\"startTime\":");
            out.extend_from_slice(start);
            out.push(b',');
        }
        out.extend_from_slice(b"\"endTime\":");
        out.extend_from_slice(end);
        out.extend_from_slice(b"},\"value\":{");
        match value {
            Value::Int(i) => {
                out.extend_from_slice(b"\"int64Value\":\"");
                out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                out.push(b'"');
            }
            Value::Float(f) => {
                out.extend_from_slice(b"\"doubleValue\":");
                out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
            }
        }
        out.extend_from_slice(b"}}]}");
        true
    }
}

fn finite(value: Value) -> bool {
    match value {
        Value::Int(_) => true,
        Value::Float(f) => f.is_finite(),
    }
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(bytes)
}

#[cfg(test)]
mod tests {
    use heapster_dataflows::Name;

    use super::*;

    const T: u64 = 1_700_000_000_000;

    fn container(pod: &str, cpu: i64) -> MetricSet {
        let key = EntityKey::PodContainer { ns: "web".into(), pod: Name::new(pod), container: "app".into() };
        let mut set = MetricSet::new(key);
        set.labels.set(LabelId::Hostname, "node-1".into());
        set.create_time = (T - 60_000) as i64;
        set.values.set(MetricId::CpuUsage, Value::Int(cpu));
        set.values.set(MetricId::CpuUsageRate, Value::Int(cpu / 1000));
        set.values.set(MetricId::MemoryPageFaultsRate, Value::Float(f64::NAN));
        set
    }

    fn requests(batch: &MetricBatch) -> (Vec<serde_json::Value>, usize) {
        let mut encoder = SeriesEncoder::new(Selection::All, "p", "l", "c");
        let mut cursor = Cursor::default();
        let (mut bodies, mut skipped) = (Vec::new(), 0);
        while !cursor.is_done(batch) {
            let mut out = Vec::new();
            let encoded = encoder.request(batch, &mut cursor, &mut out);
            skipped += encoded.skipped;
            let body: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(body["timeSeries"].as_array().unwrap().len(), encoded.series);
            bodies.push(body);
        }
        (bodies, skipped)
    }

    #[test]
    fn series_carry_type_labels_resource_kind_and_one_point() {
        let batch = MetricBatch { time: T, sets: vec![container("api-1", 5_000_000)] };
        let (bodies, skipped) = requests(&batch);
        assert_eq!(skipped, 1, "the NaN is left out");
        let series = bodies[0]["timeSeries"].as_array().unwrap();
        assert_eq!(series.len(), 2);
        let usage = &series[0];
        assert_eq!(usage["metric"]["type"], "custom.googleapis.com/kubernetes.io/cpu/usage");
        assert_eq!(usage["metric"]["labels"]["type"], "pod_container");
        assert_eq!(usage["metric"]["labels"]["pod_name"], "api-1");
        assert_eq!(usage["metric"]["labels"]["hostname"], "node-1");
        assert_eq!(usage["resource"]["type"], "k8s_container");
        assert_eq!(usage["resource"]["labels"]["container_name"], "app");
        assert_eq!(usage["metricKind"], "CUMULATIVE");
        assert_eq!(usage["valueType"], "INT64");
        let point = &usage["points"][0];
        assert_eq!(point["value"]["int64Value"], "5000000");
        assert_eq!(point["interval"]["startTime"], "2023-11-14T22:12:20.000Z");
        assert_eq!(point["interval"]["endTime"], "2023-11-14T22:13:20.000Z");
        assert!(series[1]["points"][0]["interval"].get("startTime").is_none(), "a gauge has no start");
    }

    #[test]
    fn requests_hold_at_most_200_series_and_no_repeat() {
        let sets: Vec<MetricSet> = (0..250).map(|i| container(&format!("p{i}"), 1_000 + i)).collect();
        let mut batch = MetricBatch { time: T, sets };
        let (bodies, _) = requests(&batch);
        let counts: Vec<usize> = bodies.iter().map(|b| b["timeSeries"].as_array().unwrap().len()).collect();
        assert_eq!(counts, vec![200, 200, 100]);
        // The same set twice in a window: its repeat is not sent in the same request.
        batch.sets.truncate(1);
        batch.sets.push(container("p0", 7));
        let (bodies, skipped) = requests(&batch);
        assert_eq!(bodies[0]["timeSeries"].as_array().unwrap().len(), 2);
        assert_eq!(skipped, 2 + 2, "two NaNs and two repeats");
    }

    #[test]
    fn descriptors_stay_within_the_label_limit() {
        for d in catalog_descriptors(Selection::All) {
            assert!(d.labels.len() <= 10, "{}", d.name);
            assert!(d.body()["type"].as_str().unwrap().starts_with(METRIC_PREFIX));
        }
        let autoscaling = catalog_descriptors(Selection::Autoscaling);
        assert_eq!(autoscaling.len(), AUTOSCALING.len());
    }
}
