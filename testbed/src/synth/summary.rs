//! The kubelet `/stats/summary` body of one node, shaped after a real GKE kubelet's answer:
//! same field names, nesting and optional fields.

use serde::Serialize;

use super::cluster::{Cluster, Container, NODE_FS_CAPACITY, NODE_FS_INODES, Net, Node, Pod, SysSim};

/// Bytes the filesystem keeps back from `availableBytes` (root reservation).
const FS_RESERVED: u64 = 16 * 1_048_576;

#[derive(Serialize)]
pub struct Summary<'a> {
    node: NodeStats<'a>,
    pods: Vec<PodStats<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStats<'a> {
    node_name: &'a str,
    system_containers: Vec<ContainerStats<'a>>,
    start_time: &'a str,
    cpu: Cpu<'a>,
    memory: Memory<'a>,
    network: Network<'a>,
    fs: Fs<'a>,
    runtime: Runtime<'a>,
    rlimit: Rlimit<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStats<'a> {
    name: &'a str,
    start_time: &'a str,
    cpu: Cpu<'a>,
    memory: Memory<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rootfs: Option<Fs<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logs: Option<Fs<'a>>,
    /// Always `null` unless a pod declares custom metrics, which none here does.
    user_defined_metrics: (),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cpu<'a> {
    time: &'a str,
    usage_nano_cores: u64,
    usage_core_nano_seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory<'a> {
    time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_bytes: Option<u64>,
    usage_bytes: u64,
    working_set_bytes: u64,
    rss_bytes: u64,
    page_faults: u64,
    major_page_faults: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Network<'a> {
    time: &'a str,
    name: &'static str,
    rx_bytes: u64,
    rx_errors: u64,
    tx_bytes: u64,
    tx_errors: u64,
    interfaces: Vec<Interface>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Interface {
    name: &'static str,
    rx_bytes: u64,
    rx_errors: u64,
    tx_bytes: u64,
    tx_errors: u64,
}

impl Interface {
    fn new(name: &'static str, net: &Net) -> Interface {
        Interface {
            name,
            rx_bytes: net.rx,
            rx_errors: net.rx_errors,
            tx_bytes: net.tx,
            tx_errors: net.tx_errors,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fs<'a> {
    time: &'a str,
    available_bytes: u64,
    capacity_bytes: u64,
    used_bytes: u64,
    inodes_free: u64,
    inodes: u64,
    inodes_used: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeStats<'a> {
    time: &'a str,
    available_bytes: u64,
    capacity_bytes: u64,
    used_bytes: u64,
    inodes_free: u64,
    inodes: u64,
    inodes_used: u64,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Runtime<'a> {
    image_fs: Fs<'a>,
}

#[derive(Serialize)]
struct Rlimit<'a> {
    time: &'a str,
    maxpid: u64,
    curproc: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodStats<'a> {
    pod_ref: PodRef<'a>,
    start_time: &'a str,
    containers: Vec<ContainerStats<'a>>,
    cpu: Cpu<'a>,
    memory: Memory<'a>,
    network: Network<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volume: Vec<VolumeStats<'a>>,
    #[serde(rename = "ephemeral-storage")]
    ephemeral_storage: Fs<'a>,
}

#[derive(Serialize)]
struct PodRef<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

/// The node's disk as every container and volume on it sees it.
struct Disk {
    available: u64,
    inodes_free: u64,
    inodes_used: u64,
}

/// `times[k]` is the window end minus `k` seconds.
pub fn build<'a>(cluster: &'a Cluster, node: usize, times: &'a [String]) -> Summary<'a> {
    let n = &cluster.nodes[node];
    let at = |off: u64| times.get(off as usize).map_or("", String::as_str);
    let s = &n.sim;
    let disk = Disk {
        available: NODE_FS_CAPACITY.saturating_sub(s.fs_used + FS_RESERVED),
        inodes_free: NODE_FS_INODES.saturating_sub(s.fs_inodes_used),
        inodes_used: s.fs_inodes_used,
    };
    let fs = |off: u64, used: u64, inodes_used: u64| Fs {
        time: at(off),
        available_bytes: disk.available,
        capacity_bytes: NODE_FS_CAPACITY,
        used_bytes: used,
        inodes_free: disk.inodes_free,
        inodes: NODE_FS_INODES,
        inodes_used,
    };
    let system = |name: &'static str, c: &'a SysSim, available: Option<u64>| ContainerStats {
        name,
        start_time: &c.start,
        cpu: Cpu { time: at(c.off), usage_nano_cores: c.nano, usage_core_nano_seconds: c.cum },
        memory: Memory {
            time: at(c.off),
            available_bytes: available,
            usage_bytes: c.usage,
            working_set_bytes: c.ws,
            rss_bytes: c.rss,
            page_faults: c.pf,
            major_page_faults: c.mpf,
        },
        rootfs: None,
        logs: None,
        user_defined_metrics: (),
    };
    let node_stats = NodeStats {
        node_name: &n.name,
        system_containers: vec![
            system("kubelet", &s.kubelet, None),
            system("runtime", &s.runtime, None),
            system("pods", &s.pods, Some(n.memory_allocatable().saturating_sub(s.pods.ws))),
        ],
        start_time: &n.boot,
        cpu: Cpu { time: at(s.off), usage_nano_cores: s.nano, usage_core_nano_seconds: s.cum },
        memory: Memory {
            time: at(s.off),
            available_bytes: Some(n.memory_capacity().saturating_sub(s.ws)),
            usage_bytes: s.usage,
            working_set_bytes: s.ws,
            rss_bytes: s.rss,
            page_faults: s.pf,
            major_page_faults: s.mpf,
        },
        network: Network {
            time: at(s.net_off),
            name: "eth0",
            rx_bytes: s.eth0.rx,
            rx_errors: s.eth0.rx_errors,
            tx_bytes: s.eth0.tx,
            tx_errors: s.eth0.tx_errors,
            interfaces: vec![Interface::new("cbr0", &s.cbr0), Interface::new("eth0", &s.eth0)],
        },
        fs: fs(s.fs_off, s.fs_used, s.fs_inodes_used),
        runtime: Runtime { image_fs: fs(s.fs_off, s.image_used, s.fs_inodes_used) },
        rlimit: Rlimit { time: at(s.kubelet.off), maxpid: 4_194_304, curproc: s.procs },
    };
    let pods = n
        .pods
        .iter()
        .map(|&p| &cluster.pods[p])
        .filter(|p| !p.deleted)
        .map(|p| pod_stats(cluster, n, p, &disk, &at, &fs))
        .collect();
    Summary { node: node_stats, pods }
}

fn pod_stats<'a>(
    cluster: &'a Cluster,
    node: &Node,
    pod: &'a Pod,
    disk: &Disk,
    at: &impl Fn(u64) -> &'a str,
    fs: &impl Fn(u64, u64, u64) -> Fs<'a>,
) -> PodStats<'a> {
    let s = &pod.sim;
    let container = |c: &'a Container| ContainerStats {
        name: c.name,
        start_time: &c.start,
        cpu: Cpu { time: at(c.sim.off), usage_nano_cores: c.sim.nano, usage_core_nano_seconds: c.sim.cum },
        memory: Memory {
            time: at(c.sim.off),
            available_bytes: c.resources.memory_limit_mi.map(|m| (m << 20).saturating_sub(c.sim.ws)),
            usage_bytes: c.sim.usage,
            working_set_bytes: c.sim.ws,
            rss_bytes: c.sim.rss,
            page_faults: c.sim.pf,
            major_page_faults: c.sim.mpf,
        },
        rootfs: Some(fs(c.sim.off, c.sim.rootfs_used, c.sim.rootfs_inodes)),
        logs: Some(fs(c.sim.off, c.sim.logs_used, disk.inodes_used)),
        user_defined_metrics: (),
    };
    let tmpfs = node.memory_allocatable();
    let volume = pod
        .volumes
        .iter()
        .filter(|v| v.in_summary())
        .map(|v| {
            let (capacity, available, inodes, inodes_free) = if v.on_tmpfs() {
                let inodes = tmpfs / 4_096;
                (tmpfs, tmpfs.saturating_sub(v.used), inodes, inodes.saturating_sub(v.inodes_used))
            } else {
                (NODE_FS_CAPACITY, disk.available, NODE_FS_INODES, disk.inodes_free)
            };
            VolumeStats {
                time: at(v.off),
                available_bytes: available,
                capacity_bytes: capacity,
                used_bytes: v.used,
                inodes_free,
                inodes,
                inodes_used: v.inodes_used,
                name: &v.name,
            }
        })
        .collect();
    PodStats {
        pod_ref: PodRef {
            name: &pod.name,
            namespace: &cluster.namespaces[pod.ns].name,
            uid: pod.kubelet_uid(),
        },
        start_time: &pod.start,
        containers: pod.containers.iter().map(container).collect(),
        cpu: Cpu { time: at(s.off), usage_nano_cores: s.nano, usage_core_nano_seconds: s.cum },
        memory: Memory {
            time: at(s.off),
            available_bytes: None,
            usage_bytes: s.usage,
            working_set_bytes: s.ws,
            rss_bytes: s.rss,
            page_faults: s.pf,
            major_page_faults: s.mpf,
        },
        network: Network {
            time: at(s.net_off),
            name: "eth0",
            rx_bytes: s.net.rx,
            rx_errors: s.net.rx_errors,
            tx_bytes: s.net.tx,
            tx_errors: s.net.tx_errors,
            interfaces: vec![Interface::new("eth0", &s.net)],
        },
        volume,
        ephemeral_storage: fs(s.off, s.eph_used, s.eph_inodes),
    }
}
