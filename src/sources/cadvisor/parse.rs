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
mod tests;
