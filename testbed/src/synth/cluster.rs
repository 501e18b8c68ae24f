//! The simulated cluster: which nodes exist, which pods run where, and how the timeline changes
//! them. The counters each kubelet reports live here too; [`super::sample`] moves them on.
//!
//! Over 600 lines: the cluster's types and the timeline methods that change them are one
//! state, read together.

use std::collections::{BTreeMap, HashSet};

use super::catalog::{self, Controller, Template};
use super::rng::{self, K8S_ALPHABET, LOWER_ALNUM, Rng};
use super::{SynthError, SynthSpec, TimelineEvent};

/// An e2-standard-8 node with a 100 GB boot disk, as GKE reports it.
pub const NODE_CPU_CORES: u64 = 8;
pub const NODE_ALLOCATABLE_MILLICORES: u64 = 7_910;
pub const NODE_MEMORY_KI: u64 = 32_880_648;
pub const NODE_ALLOCATABLE_MEMORY_KI: u64 = 29_131_784;
pub const NODE_FS_CAPACITY: u64 = 101_241_290_752;
pub const NODE_FS_INODES: u64 = 6_258_720;
pub const NODE_ALLOCATABLE_EPHEMERAL: u64 = 47_093_746_742;
pub const MIB: u64 = 1 << 20;
const DAY: i64 = 86_400;
const ZONES: [&str; 3] = ["us-central1-a", "us-central1-b", "us-central1-c"];

/// Memory and disk usage come in whole pages and blocks.
pub fn pages(bytes: u64) -> u64 {
    bytes / 4_096 * 4_096
}

/// RFC 3339 at whole seconds, as the API server and the kubelet print times.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request_m: Option<u64>,
    pub memory_request_mi: Option<u64>,
    pub cpu_limit_m: Option<u64>,
    pub memory_limit_mi: Option<u64>,
}

impl Resources {
    /// Cycles through none, cpu request only, both requests, requests with higher limits, and
    /// equal requests and limits, so every cluster has each kind.
    pub(super) fn pattern(kind: usize, rng: &mut Rng) -> Resources {
        let cpu = [10, 25, 50, 100, 200, 250, 500][rng.index(7)];
        let memory = [32, 64, 128, 256, 512][rng.index(5)];
        let requests =
            Resources { cpu_request_m: Some(cpu), memory_request_mi: Some(memory), ..Resources::default() };
        match kind % 5 {
            0 => Resources::default(),
            1 => Resources { cpu_request_m: Some(cpu), ..Resources::default() },
            2 => requests,
            3 => Resources {
                cpu_limit_m: Some(cpu * rng.range(2, 4)),
                memory_limit_mi: Some(memory * 2),
                ..requests
            },
            _ => Resources { cpu_limit_m: Some(cpu), memory_limit_mi: Some(memory), ..requests },
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    fn guaranteed(&self) -> bool {
        self.cpu_limit_m.is_some()
            && self.memory_limit_mi.is_some()
            && self.cpu_request_m.is_none_or(|r| Some(r) == self.cpu_limit_m)
            && self.memory_request_mi.is_none_or(|r| Some(r) == self.memory_limit_mi)
    }
}

pub struct Namespace {
    pub name: String,
    pub uid: String,
    pub rv: u64,
    pub created: String,
}

pub(super) struct Workload {
    pub template: &'static Template,
    pub ns: usize,
    /// The ReplicaSet or StatefulSet that owns the pods.
    pub owner_uid: String,
    /// `pod-template-hash` or `controller-revision-hash`.
    pub hash: String,
    pub resources: Vec<Resources>,
    pub next_ordinal: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// A static pod the kubelet mirrors into the API (kube-proxy).
    Mirror,
}

pub struct Owner {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
}

pub enum VolumeSource {
    Secret(String),
    ConfigMap(String),
    EmptyDir,
    HostPath { path: &'static str, kind: &'static str },
}

pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
    pub mount_path: String,
    pub read_only: bool,
    pub used: u64,
    pub inodes_used: u64,
    pub growth: u64,
    pub off: u64,
}

impl Volume {
    /// The kubelet reports volume stats for everything but host paths.
    pub fn in_summary(&self) -> bool {
        !matches!(self.source, VolumeSource::HostPath { .. })
    }

    /// Secrets sit on a tmpfs, the rest on the node's disk.
    pub fn on_tmpfs(&self) -> bool {
        matches!(self.source, VolumeSource::Secret(_))
    }
}

pub struct Terminated {
    pub exit_code: i32,
    pub reason: &'static str,
    pub started: String,
    pub finished: String,
    pub id: String,
}

/// What a container's cgroup reports; `time == 0` means not sampled since it (re)started.
#[derive(Default)]
pub struct ContainerSim {
    pub cpu_base: u64,
    pub nano: u64,
    pub cum: u64,
    pub ws_base: u64,
    pub ws: u64,
    pub usage: u64,
    pub rss: u64,
    pub pf_rate: u64,
    pub pf: u64,
    pub mpf: u64,
    pub rootfs_used: u64,
    pub rootfs_inodes: u64,
    pub logs_used: u64,
    pub log_rate: u64,
    pub time: i64,
    pub off: u64,
}

pub struct Container {
    pub name: &'static str,
    pub image: &'static str,
    pub resources: Resources,
    pub port: Option<u16>,
    /// Indices into the pod's volumes.
    pub mounts: Vec<usize>,
    pub restart_count: u32,
    pub start_secs: i64,
    pub start: String,
    pub id: String,
    pub last_terminated: Option<Terminated>,
    pub sim: ContainerSim,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net {
    pub rx: u64,
    pub tx: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// The pod cgroup: it outlives container restarts, so its counters never reset.
#[derive(Default)]
pub struct PodSim {
    pub nano: u64,
    pub cum: u64,
    pub ws: u64,
    pub usage: u64,
    pub rss: u64,
    pub pf: u64,
    pub mpf: u64,
    pub net: Net,
    pub rx_rate: u64,
    pub tx_rate: u64,
    pub pause_nano: u64,
    pub pause_ws: u64,
    pub eph_used: u64,
    pub eph_inodes: u64,
    pub time: i64,
    pub off: u64,
    pub net_off: u64,
}

pub struct Pod {
    pub ns: usize,
    pub name: String,
    pub uid: String,
    pub node: usize,
    pub kind: PodKind,
    pub generate_name: Option<String>,
    pub owner: Owner,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<&'static str, String>,
    pub created: String,
    pub start_secs: i64,
    pub start: String,
    pub rv: u64,
    pub deleted: bool,
    pub ready: bool,
    pub ready_since: String,
    pub ip: String,
    pub host_network: bool,
    pub service_account: Option<&'static str>,
    pub critical: bool,
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
    pub sim: PodSim,
}

impl Pod {
    /// The uid the kubelet reports: a static pod keeps its config hash, while the API server
    /// gives its mirror pod a fresh uid (as real kubelets do; join on namespace and name).
    pub fn kubelet_uid(&self) -> &str {
        match self.annotations.get("kubernetes.io/config.hash") {
            Some(hash) if self.kind == PodKind::Mirror => hash,
            _ => &self.uid,
        }
    }

    pub fn qos_class(&self) -> &'static str {
        if self.containers.iter().all(|c| c.resources.is_empty()) {
            "BestEffort"
        } else if self.containers.iter().all(|c| c.resources.guaranteed()) {
            "Guaranteed"
        } else {
            "Burstable"
        }
    }
}

/// A system container (`kubelet`, `runtime`, `pods`) of a node.
#[derive(Default)]
pub struct SysSim {
    pub start: String,
    pub start_secs: i64,
    pub nano_base: u64,
    pub nano: u64,
    pub cum: u64,
    pub ws_base: u64,
    pub ws: u64,
    pub usage: u64,
    pub rss: u64,
    pub pf_rate: u64,
    pub pf: u64,
    pub mpf: u64,
    pub time: i64,
    pub off: u64,
}

#[derive(Default)]
pub struct NodeSim {
    pub kubelet: SysSim,
    pub runtime: SysSim,
    pub pods: SysSim,
    pub system_nano: u64,
    pub system_ws: u64,
    pub cache: u64,
    pub nano: u64,
    pub cum: u64,
    pub ws: u64,
    pub usage: u64,
    pub rss: u64,
    pub pf: u64,
    pub mpf: u64,
    pub eth0: Net,
    pub cbr0: Net,
    pub base_rx_rate: u64,
    pub base_tx_rate: u64,
    pub fs_base_used: u64,
    pub fs_base_inodes: u64,
    pub fs_used: u64,
    pub fs_inodes_used: u64,
    pub image_used: u64,
    pub procs: u64,
    pub time: i64,
    pub off: u64,
    pub net_off: u64,
    pub fs_off: u64,
}

pub struct Node {
    pub name: String,
    pub uid: String,
    pub zone: &'static str,
    pub ip: String,
    pub pod_cidr: String,
    pub created_secs: i64,
    pub created: String,
    pub boot: String,
    pub boot_secs: i64,
    pub rv: u64,
    pub ready: bool,
    /// When the Ready condition last changed, and the last status heartbeat.
    pub ready_since: String,
    pub heartbeat: String,
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub instance_id: String,
    pub max_pods: u64,
    pub pods: Vec<usize>,
    pub sim: NodeSim,
}

/// Which API lists a window's events changed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Changes {
    pub nodes: bool,
    pub pods: bool,
}

/// When the pods of a node came up: long before the first window, or in the current one.
#[derive(Clone, Copy)]
pub(super) enum Clock {
    Settled { start: i64 },
    Fresh,
}

pub struct Cluster {
    pub seed: u64,
    pub res_s: i64,
    pub max_off: u64,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    /// The API server's resourceVersion counter.
    pub rv: u64,
    pub(super) pods_per_node: usize,
    pub(super) workloads: Vec<Workload>,
    /// Workloads take node slots in this (shuffled) order, round after round, so replicas
    /// spread across nodes and every workload gets some.
    pub(super) workload_order: Vec<usize>,
    pub(super) next_workload: usize,
    pub(super) zone_hashes: [String; 3],
    pub(super) fluentd_uid: String,
    pub(super) fluentd_hash: String,
    pub(super) tokens: BTreeMap<(usize, &'static str), String>,
    pub(super) node_names: HashSet<String>,
    pub(super) pod_names: HashSet<(usize, String)>,
}

impl Cluster {
    /// Lays out the cluster as it stands before the first window. Depends only on the spec's
    /// sizes and seed, never on its timeline, so a timeline can name what the plan created.
    pub fn plan(spec: &SynthSpec) -> Cluster {
        let mut rng = Rng::derive(spec.seed, &[rng::PLAN]);
        let start = (spec.start_ms / 1000) as i64;
        let res_s = spec.resolution_seconds as i64;
        let born = start - 90 * DAY + rng.below(DAY as u64) as i64;
        let mut rv = 4_000_000 + rng.below(40_000_000);
        let namespaces = (0..spec.namespaces.max(1))
            .map(|i| {
                rv += rng.range(1, 500);
                let created = if i < 2 { born } else { born + rng.range(DAY as u64, 20 * DAY as u64) as i64 };
                Namespace { name: catalog::namespace_name(i), uid: rng.uuid(), rv, created: rfc3339(created) }
            })
            .collect::<Vec<_>>();
        let workloads = catalog::workloads(namespaces.len())
            .into_iter()
            .enumerate()
            .map(|(i, (template, ns))| Workload {
                template,
                ns,
                owner_uid: rng.uuid(),
                hash: match template.controller {
                    Controller::Deployment => rng.chars(K8S_ALPHABET, 10),
                    Controller::StatefulSet => format!("{}-{}", template.name, rng.chars(K8S_ALPHABET, 10)),
                },
                resources: (0..template.containers.len())
                    .map(|c| Resources::pattern(i + c, &mut rng))
                    .collect(),
                next_ordinal: 0,
            })
            .collect::<Vec<_>>();
        let mut workload_order: Vec<usize> = (0..workloads.len()).collect();
        for i in (1..workload_order.len()).rev() {
            workload_order.swap(i, rng.index(i + 1));
        }
        let mut cluster = Cluster {
            seed: spec.seed,
            res_s,
            max_off: (spec.resolution_seconds / 4).clamp(1, 15),
            namespaces,
            nodes: Vec::with_capacity(spec.nodes),
            pods: Vec::with_capacity(spec.nodes * spec.pods_per_node),
            rv,
            pods_per_node: spec.pods_per_node,
            workloads,
            workload_order,
            next_workload: 0,
            zone_hashes: [rng.hex(8), rng.hex(8), rng.hex(8)],
            fluentd_uid: rng.uuid(),
            fluentd_hash: rng.chars(K8S_ALPHABET, 10),
            tokens: BTreeMap::new(),
            node_names: HashSet::new(),
            pod_names: HashSet::new(),
        };
        for _ in 0..spec.nodes {
            let created = start - rng.range(3 * DAY as u64, 40 * DAY as u64) as i64;
            cluster.add_node(None, created, &mut rng);
        }
        for node in 0..spec.nodes {
            cluster.place_pods(node, Clock::Settled { start }, false, &mut rng);
        }
        cluster
    }

    pub(super) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn add_node(&mut self, name: Option<String>, created_secs: i64, rng: &mut Rng) -> usize {
        let index = self.nodes.len();
        let zone = index % ZONES.len();
        let name = name.unwrap_or_else(|| {
            loop {
                let candidate =
                    format!("gke-prod-pool-1-{}-{}", self.zone_hashes[zone], rng.chars(LOWER_ALNUM, 4));
                if !self.node_names.contains(&candidate) {
                    break candidate;
                }
            }
        });
        self.node_names.insert(name.clone());
        let n = index as u64;
        let boot_secs = created_secs - rng.range(30, 90) as i64;
        let sys = |rng: &mut Rng, delay: i64, nano: (u64, u64), ws: (u64, u64)| SysSim {
            start: rfc3339(boot_secs + delay),
            start_secs: boot_secs + delay,
            nano_base: rng.range(nano.0, nano.1),
            ws_base: pages(rng.range(ws.0, ws.1)),
            pf_rate: rng.range(5, 80),
            ..SysSim::default()
        };
        let sim = NodeSim {
            kubelet: sys(rng, 20, (15_000_000, 60_000_000), (60 * MIB, 120 * MIB)),
            runtime: sys(rng, 21, (8_000_000, 35_000_000), (90 * MIB, 400 * MIB)),
            pods: SysSim { start: rfc3339(boot_secs + 21), start_secs: boot_secs + 21, ..SysSim::default() },
            system_nano: rng.range(40_000_000, 150_000_000),
            system_ws: rng.range(300 * MIB, 700 * MIB),
            cache: rng.range(800 * MIB, 3_000 * MIB),
            base_rx_rate: rng.range(2_000, 40_000),
            base_tx_rate: rng.range(1_000, 20_000),
            fs_base_used: pages(rng.range(3_500 * MIB, 7_000 * MIB)),
            fs_base_inodes: rng.range(90_000, 140_000),
            image_used: pages(rng.range(2_500 * MIB, 6_000 * MIB)),
            ..NodeSim::default()
        };
        let rv = self.next_rv();
        self.nodes.push(Node {
            uid: rng.uuid(),
            zone: ZONES[zone],
            ip: format!("10.{}.{}.{}", 128 + n / 62_500 % 128, n / 250 % 250, 2 + n % 250),
            pod_cidr: format!("10.{}.{}.0/24", (48 + n / 256) % 256, n % 256),
            created_secs,
            created: rfc3339(created_secs),
            boot: rfc3339(boot_secs),
            boot_secs,
            rv,
            ready: true,
            ready_since: rfc3339(created_secs + rng.range(8, 30) as i64),
            heartbeat: String::new(),
            boot_id: rng.uuid(),
            machine_id: rng.hex(32),
            system_uuid: rng.uuid(),
            instance_id: (0..19)
                .map(|i| char::from(b'0' + if i == 0 { rng.range(1, 9) } else { rng.below(10) } as u8))
                .collect(),
            max_pods: self.pods_per_node.max(110) as u64,
            pods: Vec::new(),
            sim,
            name,
        });
        index
    }

    /// Applies the timeline events of `window` (ending at `now`, seconds), before its scrapes.
    pub fn apply(
        &mut self,
        window: usize,
        now: i64,
        timeline: &[TimelineEvent],
    ) -> Result<Changes, SynthError> {
        let mut rng = Rng::derive(self.seed, &[rng::TIMELINE, window as u64]);
        // Leases, events and objects this scenario does not record move the counter on too.
        self.rv += rng.range(40, 400);
        let mut changes = Changes::default();
        for event in timeline.iter().filter(|e| e.window() == window) {
            let fail = |what: String| SynthError::Timeline { window, what };
            match event {
                TimelineEvent::RestartContainer { ns, pod, container, .. } => {
                    let p = self
                        .live_pod(ns, pod)
                        .ok_or_else(|| fail(format!("no pod {ns}/{pod} to restart")))?;
                    let k = (self.res_s - 2 * self.max_off as i64 - 1).max(1) as u64;
                    let started = now - self.max_off as i64 - 1 - rng.below(k) as i64;
                    let c = self.pods[p]
                        .containers
                        .iter_mut()
                        .find(|c| c.name == container.as_str())
                        .ok_or_else(|| fail(format!("pod {ns}/{pod} has no container {container:?}")))?;
                    c.restart(started, &mut rng);
                    self.pods[p].rv = self.next_rv();
                    changes.pods = true;
                }
                TimelineEvent::DeletePod { ns, pod, .. } => {
                    let p =
                        self.live_pod(ns, pod).ok_or_else(|| fail(format!("no pod {ns}/{pod} to delete")))?;
                    self.pods[p].deleted = true;
                    self.next_rv();
                    changes.pods = true;
                }
                TimelineEvent::NodeNotReady { node, .. } => {
                    let n = self.node_index(node).ok_or_else(|| fail(format!("no node {node:?}")))?;
                    if self.nodes[n].ready {
                        let since = rfc3339(now - rng.range(self.max_off + 1, self.max_off + 20) as i64);
                        self.nodes[n].ready = false;
                        self.nodes[n].ready_since = since.clone();
                        self.nodes[n].heartbeat = since.clone();
                        self.nodes[n].rv = self.next_rv();
                        // The node lifecycle controller marks its pods not ready.
                        for i in 0..self.nodes[n].pods.len() {
                            let p = self.nodes[n].pods[i];
                            if !self.pods[p].deleted {
                                self.pods[p].ready = false;
                                self.pods[p].ready_since = since.clone();
                                self.pods[p].rv = self.next_rv();
                            }
                        }
                        changes.nodes = true;
                        changes.pods = true;
                    }
                }
                TimelineEvent::PodRelabel { ns, pod, labels, .. } => {
                    let p = self
                        .live_pod(ns, pod)
                        .ok_or_else(|| fail(format!("no pod {ns}/{pod} to relabel")))?;
                    self.pods[p].labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                    self.pods[p].rv = self.next_rv();
                    changes.pods = true;
                }
                TimelineEvent::NodeAdded { node, .. } => {
                    if self.node_names.contains(node) {
                        return Err(fail(format!("node {node:?} already exists")));
                    }
                    let index = self.nodes.len();
                    let mut rng = Rng::derive(self.seed, &[rng::ADDED_NODE, index as u64]);
                    let created = now - self.res_s + 1;
                    self.add_node(Some(node.clone()), created, &mut rng);
                    self.nodes[index].heartbeat = self.nodes[index].ready_since.clone();
                    self.place_pods(index, Clock::Fresh, true, &mut rng);
                    changes.nodes = true;
                    changes.pods = true;
                }
            }
        }
        Ok(changes)
    }

    pub fn live_pod(&self, ns: &str, pod: &str) -> Option<usize> {
        let ns = self.namespaces.iter().position(|n| n.name == ns)?;
        self.pods.iter().position(|p| !p.deleted && p.ns == ns && p.name == pod)
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Sets the heartbeat every node reported before the first window.
    pub fn settle(&mut self, first_window_end: i64) {
        for node in &mut self.nodes {
            if node.heartbeat.is_empty() {
                node.heartbeat = rfc3339(first_window_end - 40);
            }
        }
    }
}

impl Container {
    /// A new process in the same container: fresh counters, a new id, the old one as last state.
    fn restart(&mut self, started: i64, rng: &mut Rng) {
        let (exit_code, reason) = [(137, "OOMKilled"), (1, "Error"), (137, "Error")][rng.index(3)];
        let old_id = std::mem::replace(&mut self.id, format!("containerd://{}", rng.hex(64)));
        self.last_terminated = Some(Terminated {
            exit_code,
            reason,
            started: std::mem::take(&mut self.start),
            finished: rfc3339(started - 1 - rng.below(3) as i64),
            id: old_id,
        });
        self.restart_count += 1;
        self.start_secs = started;
        self.start = rfc3339(started);
        self.sim.cum = 0;
        self.sim.pf = 0;
        self.sim.mpf = 0;
        self.sim.time = 0;
        self.sim.rootfs_used = rng.range(4, 16) * 4_096;
    }
}
