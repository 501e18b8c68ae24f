//! cAdvisor `/api/v1.3/subcontainers/` bodies into Heapster's metric sets.
//!
//! The mapping is Heapster's for cAdvisor (`core/metrics.go` and its kubelet source's
//! `decodeMetrics`): the root container `/` is the `node`; a container carrying the kubelet's
//! Docker labels is a `pod_container`, or the pod itself when it is the `POD` infrastructure
//! container (which holds the pod's network); any other container is a `sys_container` named by
//! its cgroup path without the leading `/`. Each container's newest sample is read.
//!
//! Network counters are read for the node and pods only (containers share their pod's
//! interface, and cAdvisor reports zeros for them), filesystems by device (`resource_id` is the
//! device path), disk I/O by `major:minor`. `available`, `inodes` and `inodes_free` are only
//! meaningful for the machine's filesystems, so only the node gets them. `/api/v1.3/machine`
//! gives the node's capacity (cores and memory), which is also its allocatable: without
//! Kubernetes nothing is reserved.

use std::fmt;

use heapster_dataflows::catalog::{LabeledMetricId, MetricId};
use heapster_dataflows::model::{EntityKey, Interner, LabelId, Labels, MetricSet, Name, Resource, Value};
use rustc_hash::FxHashMap;

use super::wire;
use crate::sources::NodeTarget;
use crate::sources::lenient::{List, Obj, Object, Text, excerpt};
use crate::sources::parse::Fields;

/// The infrastructure container of a pod, as the kubelet names it.
const INFRA_CONTAINER: &str = "POD";

/// Past this many, warnings are only counted.
const MAX_WARNINGS: usize = 100;

/// What one body produced besides its metric sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CadvisorReport {
    pub sets: usize,
    /// Values dropped or containers skipped, each naming the host and where.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CadvisorError {
    #[error("host {host}: malformed cAdvisor {what} at line {line}, column {column}: {message}")]
    Malformed { host: Name, what: &'static str, line: usize, column: usize, message: String },
    #[error("host {host}: cAdvisor {what} is not {expected}; found {found}")]
    Shape { host: Name, what: &'static str, expected: &'static str, found: String },
}

/// One host's answer: the subcontainers body and, if it was read, the machine body.
pub struct Bodies<'b> {
    pub subcontainers: &'b [u8],
    pub machine: Option<&'b [u8]>,
}

/// Appends one set per container of `bodies` to `out`. `node_labels` is the host's
/// `labels` label (fleet metadata), if any. On error nothing is appended.
pub fn parse_cadvisor(
    bodies: Bodies<'_>,
    target: &NodeTarget,
    node_labels: Option<&Name>,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
) -> Result<CadvisorReport, CadvisorError> {
    let host = &target.name;
    let containers: List<Obj<wire::ContainerInfo<'_>>> =
        decode(bodies.subcontainers, host, "subcontainers body")?;
    let containers = match containers.get() {
        Ok(Some(list)) => list,
        Ok(None) => return Err(shape(host, "subcontainers body", "an array of containers", "null")),
        Err(found) => return Err(shape(host, "subcontainers body", "an array of containers", found)),
    };
    let mut decoder = Decoder::new(target, node_labels, interner, out);
    if let Some(machine) = bodies.machine {
        let info: Obj<wire::MachineInfo> = decode(machine, host, "machine body")?;
        match info.get() {
            Ok(Some(Object(info))) => decoder.machine(info),
            Ok(None) => return Err(shape(host, "machine body", "an object", "null")),
            Err(found) => return Err(shape(host, "machine body", "an object", found)),
        }
    }
    for (i, container) in containers.iter().enumerate() {
        let at = At { container: i, name: None, field: "" };
        if let Some(container) = decoder.get(container, at) {
            decoder.container(i, &container.0);
        }
    }
    Ok(decoder.finish())
}

fn decode<'b, T: serde::Deserialize<'b>>(
    body: &'b [u8],
    host: &Name,
    what: &'static str,
) -> Result<T, CadvisorError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let column = before.len() - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        CadvisorError::Malformed { host: host.clone(), what, line, column, message: "invalid UTF-8".into() }
    })?;
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        CadvisorError::Malformed { host: host.clone(), what, line, column, message }
    })
}

fn shape(host: &Name, what: &'static str, expected: &'static str, found: impl fmt::Display) -> CadvisorError {
    CadvisorError::Shape { host: host.clone(), what, expected, found: found.to_string() }
}

/// Where a warning is: container index (and name once known), then a field path.
#[derive(Clone, Copy)]
struct At<'p> {
    container: usize,
    name: Option<&'p str>,
    field: &'static str,
}

impl<'p> At<'p> {
    fn field(self, field: &'static str) -> At<'p> {
        At { field, ..self }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.container)?;
        if let Some(name) = self.name {
            write!(f, " ({})", excerpt(name))?;
        }
        if !self.field.is_empty() {
            write!(f, ".{}", self.field)?;
        }
        Ok(())
    }
}

struct Decoder<'t> {
    target: &'t NodeTarget,
    interner: &'t mut Interner,
    out: &'t mut Vec<MetricSet>,
    first: usize,
    seen: FxHashMap<EntityKey, usize>,
    warnings: Vec<String>,
    suppressed: usize,
    /// The node's labels: identity plus the host's metadata as `labels`.
    node_labels: Labels,
    /// Containers carry the host's identity labels only.
    container_labels: Labels,
    capacity: Option<(Option<i64>, Option<i64>)>,
    scratch: String,
}

impl<'p> Fields<At<'p>> for Decoder<'_> {
    fn warn(&mut self, at: At<'p>, message: impl fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(format!("host {}: containers{at}: {message}", self.target.name));
        } else {
            self.suppressed += 1;
        }
    }
}

impl<'t> Decoder<'t> {
    fn new(
        target: &'t NodeTarget,
        labels: Option<&Name>,
        interner: &'t mut Interner,
        out: &'t mut Vec<MetricSet>,
    ) -> Self {
        let node_labels = target.labels();
        let mut node_only = node_labels.clone();
        if let Some(labels) = labels.filter(|l| !l.is_empty()) {
            node_only.set(LabelId::Labels, labels.clone());
        }
        Decoder {
            target,
            interner,
            first: out.len(),
            out,
            seen: FxHashMap::default(),
            warnings: Vec::new(),
            suppressed: 0,
            node_labels: node_only,
            container_labels: node_labels,
            capacity: None,
            scratch: String::new(),
        }
    }

    fn finish(mut self) -> CadvisorReport {
        if self.suppressed > 0 {
            let message = format!("host {}: {} more warnings not shown", self.target.name, self.suppressed);
            self.warnings.push(message);
        }
        CadvisorReport { sets: self.out.len() - self.first, warnings: self.warnings }
    }

    fn text<'v>(&mut self, v: &'v Text<'_>, at: At<'_>) -> Option<&'v str> {
        self.get(v, at).map(|s| &**s).filter(|s| !s.is_empty())
    }

    fn time(&mut self, v: &Text<'_>, at: At<'_>) -> Option<i64> {
        let s = self.text(v, at)?;
        if s == "0001-01-01T00:00:00Z" {
            return None;
        }
        match s.parse::<jiff::Timestamp>() {
            Ok(ts) => i64::try_from(ts.as_nanosecond()).ok(),
            Err(e) => {
                self.warn(at, format_args!("{:?} is not an RFC 3339 time: {e}", excerpt(s)));
                None
            }
        }
    }

    fn machine(&mut self, info: &wire::MachineInfo) {
        let at = At { container: 0, name: Some("machine"), field: "" };
        let cores = self.num(&info.num_cores, at.field("num_cores"));
        let memory = self.num(&info.memory_capacity, at.field("memory_capacity"));
        self.capacity = Some((cores.map(|c| c.saturating_mul(1000)), memory));
    }

    fn container(&mut self, index: usize, info: &wire::ContainerInfo<'_>) {
        let at = At { container: index, name: None, field: "" };
        let Some(name) = self.text(&info.name, at.field("name")) else {
            self.warn(at.field("name"), "missing; container skipped");
            return;
        };
        let at = At { name: Some(name), ..at };
        let spec = self.obj(&info.spec, at.field("spec"));
        let stats = self.get(&info.stats, at.field("stats")).map_or(&[][..], Vec::as_slice);
        // The newest sample; cAdvisor lists them oldest first, but do not count on it.
        let mut newest: Option<(i64, &wire::ContainerStats<'_>)> = None;
        for sample in stats {
            let Some(sample) = self.obj(sample, at.field("stats[]")) else { continue };
            let Some(time) = self.time(&sample.timestamp, at.field("stats[].timestamp")) else { continue };
            if newest.is_none_or(|(t, _)| time >= t) {
                newest = Some((time, sample));
            }
        }
        let Some((scrape_time, sample)) = newest else {
            // Heapster skips containers without samples too; say nothing for an empty list.
            if !stats.is_empty() {
                self.warn(at.field("stats"), "no sample with a usable timestamp; container skipped");
            }
            return;
        };
        let create_time = spec.and_then(|s| self.time(&s.creation_time, at.field("spec.creation_time")));

        let (key, labels, role) = if name == "/" {
            (EntityKey::Node { node: self.target.name.clone() }, self.node_labels.clone(), Role::Node)
        } else {
            match self.kubernetes(info, spec, at) {
                Some((ns, pod, container, uid)) => {
                    let mut labels = self.container_labels();
                    if let Some(uid) = uid {
                        labels.set(LabelId::PodId, uid);
                    }
                    labels.set(LabelId::PodName, pod.clone());
                    labels.set(LabelId::NamespaceName, ns.clone());
                    if &*container == INFRA_CONTAINER {
                        (EntityKey::Pod { ns, pod }, labels, Role::Pod)
                    } else {
                        labels.set(LabelId::ContainerName, container.clone());
                        if let Some(image) = spec.and_then(|s| self.text(&s.image, at.field("spec.image"))) {
                            labels.set(LabelId::ContainerBaseImage, self.interner.intern(image));
                        }
                        (EntityKey::PodContainer { ns, pod, container }, labels, Role::Container)
                    }
                }
                None => {
                    let short = name.strip_prefix('/').unwrap_or(name);
                    let short = self.interner.intern(short);
                    let mut labels = self.container_labels();
                    labels.set(LabelId::ContainerName, short.clone());
                    (
                        EntityKey::SysContainer { node: self.target.name.clone(), name: short },
                        labels,
                        Role::Container,
                    )
                }
            }
        };
        let mut set = MetricSet::new(key);
        set.labels = labels;
        set.scrape_time = scrape_time;
        set.create_time = create_time.unwrap_or(0);
        if let Some(start) = create_time {
            let ms = scrape_time.saturating_sub(start).max(0) / 1_000_000;
            set.values.set(MetricId::Uptime, Value::Int(ms));
        }
        if role != Role::Pod {
            self.cpu(&mut set, sample, at);
            self.memory(&mut set, sample, at);
            self.filesystems(&mut set, sample, at, role == Role::Node);
            self.disk_io(&mut set, sample, at);
        }
        if role != Role::Container {
            self.network(&mut set, sample, at);
        }
        if role == Role::Node
            && let Some((cores, memory)) = self.capacity
        {
            for (id, value) in [
                (MetricId::CpuNodeCapacity, cores),
                (MetricId::CpuNodeAllocatable, cores),
                (MetricId::MemoryNodeCapacity, memory),
                (MetricId::MemoryNodeAllocatable, memory),
            ] {
                if let Some(v) = value {
                    set.values.set(id, Value::Float(v as f64));
                }
            }
        }
        self.emit(set, at);
    }

    fn container_labels(&self) -> Labels {
        self.container_labels.clone()
    }

    /// `(namespace, pod, container, uid)` from the kubelet's Docker labels, if all are there.
    fn kubernetes(
        &mut self,
        info: &wire::ContainerInfo<'_>,
        spec: Option<&wire::ContainerSpec<'_>>,
        at: At<'_>,
    ) -> Option<(Name, Name, Name, Option<Name>)> {
        let labels = match spec.map(|s| &s.labels) {
            Some(labels) if !labels.is_absent() => self.obj(labels, at.field("spec.labels")),
            _ => self.obj(&info.labels, at.field("labels")),
        }?;
        let pod = self.text(&labels.pod_name, at.field("spec.labels.io.kubernetes.pod.name"))?;
        let ns = self.text(&labels.pod_namespace, at.field("spec.labels.io.kubernetes.pod.namespace"))?;
        let container =
            self.text(&labels.container_name, at.field("spec.labels.io.kubernetes.container.name"))?;
        let uid = self.text(&labels.pod_uid, at.field("spec.labels.io.kubernetes.pod.uid"));
        let (ns, pod, container) =
            (self.interner.intern(ns), self.interner.intern(pod), self.interner.intern(container));
        let uid = uid.map(|u| self.interner.intern(u));
        Some((ns, pod, container, uid))
    }

    fn cpu(&mut self, set: &mut MetricSet, sample: &wire::ContainerStats<'_>, at: At<'_>) {
        let Some(cpu) = self.obj(&sample.cpu, at.field("stats[].cpu")) else { return };
        if let Some(usage) = self.obj(&cpu.usage, at.field("stats[].cpu.usage")) {
            self.set(set, MetricId::CpuUsage, &usage.total, at.field("stats[].cpu.usage.total"));
        }
        self.set(set, MetricId::CpuLoad, &cpu.load_average, at.field("stats[].cpu.load_average"));
    }

    fn memory(&mut self, set: &mut MetricSet, sample: &wire::ContainerStats<'_>, at: At<'_>) {
        let Some(memory) = self.obj(&sample.memory, at.field("stats[].memory")) else { return };
        self.set(set, MetricId::MemoryUsage, &memory.usage, at.field("stats[].memory.usage"));
        self.set(
            set,
            MetricId::MemoryWorkingSet,
            &memory.working_set,
            at.field("stats[].memory.working_set"),
        );
        self.set(set, MetricId::MemoryRss, &memory.rss, at.field("stats[].memory.rss"));
        self.set(set, MetricId::MemoryCache, &memory.cache, at.field("stats[].memory.cache"));
        if let Some(data) = self.obj(&memory.container_data, at.field("stats[].memory.container_data")) {
            self.set(
                set,
                MetricId::MemoryPageFaults,
                &data.pgfault,
                at.field("stats[].memory.container_data.pgfault"),
            );
            self.set(
                set,
                MetricId::MemoryMajorPageFaults,
                &data.pgmajfault,
                at.field("stats[].memory.container_data.pgmajfault"),
            );
        }
    }

    fn network(&mut self, set: &mut MetricSet, sample: &wire::ContainerStats<'_>, at: At<'_>) {
        let Some(net) = self.obj(&sample.network, at.field("stats[].network")) else { return };
        self.set(set, MetricId::NetworkRx, &net.rx_bytes, at.field("stats[].network.rx_bytes"));
        self.set(set, MetricId::NetworkRxErrors, &net.rx_errors, at.field("stats[].network.rx_errors"));
        self.set(set, MetricId::NetworkTx, &net.tx_bytes, at.field("stats[].network.tx_bytes"));
        self.set(set, MetricId::NetworkTxErrors, &net.tx_errors, at.field("stats[].network.tx_errors"));
    }

    fn filesystems(
        &mut self,
        set: &mut MetricSet,
        sample: &wire::ContainerStats<'_>,
        at: At<'_>,
        node: bool,
    ) {
        let Some(list) = self.get(&sample.filesystem, at.field("stats[].filesystem")) else { return };
        for fs in list {
            let Some(fs) = self.obj(fs, at.field("stats[].filesystem[]")) else { continue };
            let Some(device) = self.text(&fs.device, at.field("stats[].filesystem[].device")) else {
                self.warn(at.field("stats[].filesystem[].device"), "missing; filesystem skipped");
                continue;
            };
            let resource = Resource::Id(self.interner.intern(device));
            let fat = at.field("stats[].filesystem[]");
            self.labeled(set, LabeledMetricId::FsUsage, &resource, &fs.usage, fat);
            self.labeled(set, LabeledMetricId::FsLimit, &resource, &fs.capacity, fat);
            if node {
                self.labeled(set, LabeledMetricId::FsAvailable, &resource, &fs.available, fat);
                self.labeled(set, LabeledMetricId::FsInodes, &resource, &fs.inodes, fat);
                self.labeled(set, LabeledMetricId::FsInodesFree, &resource, &fs.inodes_free, fat);
            }
        }
    }

    fn disk_io(&mut self, set: &mut MetricSet, sample: &wire::ContainerStats<'_>, at: At<'_>) {
        let Some(diskio) = self.obj(&sample.diskio, at.field("stats[].diskio")) else { return };
        let dat = at.field("stats[].diskio.io_service_bytes[]");
        let Some(list) = self.get(&diskio.io_service_bytes, dat) else { return };
        for disk in list {
            let Some(disk) = self.obj(disk, dat) else { continue };
            let (Some(major), Some(minor)) = (self.num(&disk.major, dat), self.num(&disk.minor, dat)) else {
                continue;
            };
            let Some(stats) = self.obj(&disk.stats, dat) else { continue };
            use std::fmt::Write as _;
            self.scratch.clear();
            let _ = write!(self.scratch, "{major}:{minor}");
            let resource = Resource::Id(self.interner.intern(&self.scratch));
            self.labeled(set, LabeledMetricId::DiskIoReadBytes, &resource, &stats.read, dat);
            self.labeled(set, LabeledMetricId::DiskIoWriteBytes, &resource, &stats.write, dat);
        }
    }

    /// One set per key: a second container with the same key (a restarted one whose old
    /// cgroup lingers) keeps the one created later.
    fn emit(&mut self, set: MetricSet, at: At<'_>) {
        match self.seen.get(&set.key) {
            None => {
                self.seen.insert(set.key.clone(), self.out.len());
                self.out.push(set);
            }
            Some(&index) => {
                let keep_old = set.create_time < self.out[index].create_time;
                let message = format!(
                    "{} appears twice; keeping the one {}",
                    set.key,
                    if keep_old { "seen first, created later" } else { "seen last" }
                );
                self.warn(at, message);
                if !keep_old {
                    self.out[index] = set;
                }
            }
        }
    }
}

/// What a cAdvisor container stands for, which decides the metrics it gives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Node,
    /// A pod's `POD` container: the pod's network, nothing summed from containers.
    Pod,
    Container,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;

    const GKE: &str = "cadvisor-v1.3-subcontainers-gke-2016.json";
    const DD: &str = "cadvisor-1.2.json";

    fn capture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn target(name: &str) -> NodeTarget {
        let mut t = NodeTarget::named(name);
        t.host_id = Name::new("id-1");
        t
    }

    fn parse(body: &[u8], machine: Option<&[u8]>) -> (Result<CadvisorReport, CadvisorError>, Vec<MetricSet>) {
        let mut out = Vec::new();
        let labels = Name::new("region:eu,role:web");
        let result = parse_cadvisor(
            Bodies { subcontainers: body, machine },
            &target("h1"),
            Some(&labels),
            &mut Interner::default(),
            &mut out,
        );
        (result, out)
    }

    fn ns(v: &Json) -> i64 {
        let ts: jiff::Timestamp = v.as_str().expect("time").parse().expect("RFC 3339");
        ts.as_nanosecond() as i64
    }

    fn int(set: &MetricSet, id: MetricId) -> Option<i64> {
        set.values.get(id).map(Value::as_i64)
    }

    fn labeled(set: &MetricSet, id: LabeledMetricId, resource: &str) -> Option<i64> {
        set.labeled_value(id, &Resource::Id(Name::new(resource))).map(Value::as_i64)
    }

    fn key_of(c: &Json) -> String {
        let name = c["name"].as_str().expect("name");
        if name == "/" {
            return "node:h1".into();
        }
        let l = &c["spec"]["labels"];
        match (l["io.kubernetes.pod.namespace"].as_str(), l["io.kubernetes.pod.name"].as_str()) {
            (Some(ns), Some(pod)) => match l["io.kubernetes.container.name"].as_str().expect("container") {
                "POD" => format!("namespace:{ns}/pod:{pod}"),
                c => format!("namespace:{ns}/pod:{pod}/container:{c}"),
            },
            _ => format!("node:h1/container:{}", &name[1..]),
        }
    }

    /// Every value the parser emitted equals the capture's newest sample, and every number the
    /// catalog maps is emitted.
    fn check_capture(name: &str) -> Vec<MetricSet> {
        let body = capture(name);
        let json: Json = serde_json::from_slice(&body).expect("json");
        let (result, out) = parse(&body, None);
        let report = result.expect("parses");
        assert_eq!(report.warnings, Vec::<String>::new(), "{name} parses with no warnings");
        let containers = json.as_array().expect("array");
        assert_eq!(out.len(), containers.len(), "one set per container");
        for c in containers {
            let key = key_of(c);
            let set = out.iter().find(|s| s.key.to_string() == key).unwrap_or_else(|| panic!("{key}"));
            let stats = c["stats"].as_array().expect("stats");
            let newest = stats.iter().max_by_key(|s| ns(&s["timestamp"])).expect("a sample");
            assert_eq!(set.scrape_time, ns(&newest["timestamp"]), "{key}");
            let created = ns(&c["spec"]["creation_time"]);
            assert_eq!(set.create_time, created, "{key}");
            assert_eq!(int(set, MetricId::Uptime), Some((set.scrape_time - created) / 1_000_000), "{key}");
            let is_pod = matches!(set.key, EntityKey::Pod { .. });
            let is_node = matches!(set.key, EntityKey::Node { .. });
            let n = |v: &Json| v.as_i64().expect("integer");
            if is_pod {
                assert_eq!(int(set, MetricId::CpuUsage), None, "{key}: the pause container is not summed");
            } else {
                let m = &newest["memory"];
                let expect = [
                    (MetricId::CpuUsage, n(&newest["cpu"]["usage"]["total"])),
                    (MetricId::CpuLoad, n(&newest["cpu"]["load_average"])),
                    (MetricId::MemoryUsage, n(&m["usage"])),
                    (MetricId::MemoryWorkingSet, n(&m["working_set"])),
                    (MetricId::MemoryRss, n(&m["rss"])),
                    (MetricId::MemoryCache, n(&m["cache"])),
                    (MetricId::MemoryPageFaults, n(&m["container_data"]["pgfault"])),
                    (MetricId::MemoryMajorPageFaults, n(&m["container_data"]["pgmajfault"])),
                ];
                for (id, v) in expect {
                    assert_eq!(int(set, id), Some(v), "{key} {}", id.name());
                }
                for fs in newest["filesystem"].as_array().into_iter().flatten() {
                    let dev = fs["device"].as_str().expect("device");
                    assert_eq!(
                        labeled(set, LabeledMetricId::FsUsage, dev),
                        Some(n(&fs["usage"])),
                        "{key} {dev}"
                    );
                    assert_eq!(
                        labeled(set, LabeledMetricId::FsLimit, dev),
                        Some(n(&fs["capacity"])),
                        "{key} {dev}"
                    );
                    let available = labeled(set, LabeledMetricId::FsAvailable, dev);
                    assert_eq!(available, is_node.then(|| n(&fs["available"])), "{key} {dev}");
                }
                for disk in newest["diskio"]["io_service_bytes"].as_array().into_iter().flatten() {
                    let id = format!("{}:{}", disk["major"], disk["minor"]);
                    let read = labeled(set, LabeledMetricId::DiskIoReadBytes, &id);
                    assert_eq!(read, Some(n(&disk["stats"]["Read"])), "{key} {id}");
                    let write = labeled(set, LabeledMetricId::DiskIoWriteBytes, &id);
                    assert_eq!(write, Some(n(&disk["stats"]["Write"])), "{key} {id}");
                }
            }
            let net = &newest["network"];
            let network = [
                (MetricId::NetworkRx, n(&net["rx_bytes"])),
                (MetricId::NetworkRxErrors, n(&net["rx_errors"])),
                (MetricId::NetworkTx, n(&net["tx_bytes"])),
                (MetricId::NetworkTxErrors, n(&net["tx_errors"])),
            ];
            for (id, v) in network {
                let expected = (is_pod || is_node).then_some(v);
                assert_eq!(int(set, id), expected, "{key} {}", id.name());
            }
        }
        out
    }

    fn find<'s>(out: &'s [MetricSet], key: &str) -> &'s MetricSet {
        out.iter().find(|s| s.key.to_string() == key).unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn gke_capture_matches_its_json() {
        let out = check_capture(GKE);
        let types = |t: &str| out.iter().filter(|s| s.key.type_label() == t).count();
        assert_eq!(
            (types("node"), types("pod"), types("pod_container"), types("sys_container")),
            (1, 4, 7, 3)
        );
        let node = find(&out, "node:h1");
        // The numbers as the capture has them, by hand, so a mapping mistake cannot hide.
        assert_eq!(int(node, MetricId::CpuUsage), Some(115_396_052_079_869));
        assert_eq!(int(node, MetricId::MemoryWorkingSet), Some(1_408_573_440));
        assert_eq!(int(node, MetricId::NetworkRx), Some(11_128_129_965));
        let dev = "/dev/disk/by-uuid/0f4155c3-2c08-43f0-9949-b25bb21e3561";
        assert_eq!(labeled(node, LabeledMetricId::FsLimit, dev), Some(105_553_100_800));
        assert_eq!(labeled(node, LabeledMetricId::DiskIoWriteBytes, "8:0"), Some(70_899_392_512));
        assert_eq!(node.labels.get(LabelId::Labels).map(Name::as_str), Some("region:eu,role:web"));
        assert_eq!(node.labels.get(LabelId::HostId).map(Name::as_str), Some("id-1"));
        let c = find(&out, "namespace:kube-system/pod:kube-dns-v11-63tae/container:skydns");
        assert_eq!(
            c.labels.get(LabelId::PodId).map(Name::as_str),
            Some("5754714c-0054-11e6-9a89-42010af00098")
        );
        assert_eq!(c.labels.get(LabelId::ContainerName).map(Name::as_str), Some("skydns"));
        assert!(c.labels.get(LabelId::ContainerBaseImage).is_some());
        assert_eq!(c.labels.get(LabelId::Labels), None, "host metadata is the node's");
        let sys = find(&out, "node:h1/container:docker-daemon");
        assert_eq!(sys.labels.get(LabelId::ContainerName).map(Name::as_str), Some("docker-daemon"));
    }

    #[test]
    fn dd_agent_capture_matches_its_json() {
        let out = check_capture(DD);
        let c = find(&out, "namespace:default/pod:dd-agent-1rxlh/container:dd-agent");
        assert_eq!(int(c, MetricId::MemoryUsage), Some(101_560_320));
        assert_eq!(int(c, MetricId::MemoryPageFaults), Some(17_755_275));
        assert_eq!(labeled(c, LabeledMetricId::FsUsage, "/dev/sda1"), Some(57_970_688));
        assert!(out.iter().any(|s| s.key.to_string() == "node:h1/container:system"));
    }

    #[test]
    fn machine_gives_capacity_and_allocatable() {
        let machine =
            br#"{"num_cores": 2, "memory_capacity": 3892248576, "machine_id": "x", "filesystems": []}"#;
        let (result, out) = parse(&capture(GKE), Some(machine));
        assert!(result.expect("parses").warnings.is_empty());
        let node = find(&out, "node:h1");
        assert_eq!(node.values.get(MetricId::CpuNodeCapacity), Some(Value::Float(2000.0)));
        assert_eq!(node.values.get(MetricId::CpuNodeAllocatable), Some(Value::Float(2000.0)));
        assert_eq!(node.values.get(MetricId::MemoryNodeCapacity), Some(Value::Float(3_892_248_576.0)));
        let (result, _) = parse(&capture(GKE), Some(b"[1]"));
        let err = result.expect_err("not an object").to_string();
        assert!(err.contains("host h1: cAdvisor machine body is not an object"), "{err}");
    }

    #[test]
    fn truncated_body_names_host_and_place() {
        let body = capture(GKE);
        let (result, out) = parse(&body[..1000], None);
        let err = result.expect_err("truncated").to_string();
        assert!(err.starts_with("host h1: malformed cAdvisor subcontainers body at line 1, column"), "{err}");
        assert!(out.is_empty(), "nothing appended on error");
        let (result, _) = parse(br#"{"name": "/"}"#, None);
        let err = result.expect_err("an object").to_string();
        assert!(err.contains("not an array of containers; found an object"), "{err}");
    }

    fn gke_with(edit: impl FnOnce(&mut Json)) -> (CadvisorReport, Vec<MetricSet>) {
        let mut json: Json = serde_json::from_slice(&capture(GKE)).expect("json");
        edit(&mut json);
        let body = serde_json::to_vec(&json).expect("encode");
        let (result, out) = parse(&body, None);
        (result.expect("parses"), out)
    }

    fn root(json: &mut Json) -> &mut Json {
        json.as_array_mut().expect("array").iter_mut().find(|c| c["name"] == "/").expect("root")
    }

    #[test]
    fn wrong_type_costs_one_value() {
        let (report, out) = gke_with(|j| {
            let root = root(j);
            for s in root["stats"].as_array_mut().expect("stats") {
                s["memory"]["usage"] = json!("12");
                s["cpu"]["usage"] = json!([1]);
            }
        });
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains(
                "host h1: containers[14] (/).stats[].cpu.usage: expected an object, found an array"
            ),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings[1]
                .contains("stats[].memory.usage: expected an unsigned integer, found string \"12\""),
            "{:?}",
            report.warnings
        );
        let node = find(&out, "node:h1");
        assert_eq!(int(node, MetricId::MemoryUsage), None);
        assert_eq!(int(node, MetricId::CpuUsage), None);
        assert_eq!(int(node, MetricId::MemoryWorkingSet), Some(1_408_573_440), "the rest stays");
        assert_eq!(out.len(), 15);
    }

    #[test]
    fn containers_without_samples_or_names_are_skipped() {
        let (report, out) = gke_with(|j| {
            let list = j.as_array_mut().expect("array");
            list[0]["stats"] = json!([]);
            list[1]["name"] = json!(7);
            list[2]["stats"] = json!([{"timestamp": "yesterday"}]);
        });
        assert_eq!(out.len(), 12);
        assert_eq!(report.warnings.len(), 4, "{:?}", report.warnings);
    }

    #[test]
    fn never_panics() {
        let body = capture(DD);
        for cut in (0..body.len()).step_by(997) {
            let _ = parse(&body[..cut], None);
        }
        for garbage in [&b"\xff\xfe"[..], b"null", b"[null, 1, \"x\", {}]", b"[[[[[[[[[[", b""] {
            let _ = parse(garbage, Some(garbage));
        }
        // null is absent, as elsewhere; a number and a nameless object are warned about.
        let (result, out) = parse(b"[null, 1, {}]", None);
        assert_eq!(result.expect("parses").warnings.len(), 2);
        assert!(out.is_empty());
    }
}
