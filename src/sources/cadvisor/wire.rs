//! cAdvisor's REST API v1.3 types (`info/v1`), reduced to what the parser reads. Unknown fields
//! are skipped without being decoded; every field is lenient, so a wrong type costs one value.

use serde::Deserialize;

use crate::sources::lenient::{List, Num, Obj, Text};

/// One element of `/api/v1.3/subcontainers/`'s array.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ContainerInfo<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    /// Docker containers repeat their labels here; `spec.labels` is read first.
    #[serde(borrow)]
    pub labels: Obj<KubernetesLabels<'a>>,
    #[serde(borrow)]
    pub spec: Obj<ContainerSpec<'a>>,
    #[serde(borrow)]
    pub stats: List<Obj<ContainerStats<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ContainerSpec<'a> {
    #[serde(borrow)]
    pub creation_time: Text<'a>,
    #[serde(borrow)]
    pub labels: Obj<KubernetesLabels<'a>>,
    #[serde(borrow)]
    pub image: Text<'a>,
}

/// The Docker labels the kubelet puts on the containers it runs.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct KubernetesLabels<'a> {
    #[serde(borrow, rename = "io.kubernetes.pod.name")]
    pub pod_name: Text<'a>,
    #[serde(borrow, rename = "io.kubernetes.pod.namespace")]
    pub pod_namespace: Text<'a>,
    #[serde(borrow, rename = "io.kubernetes.pod.uid")]
    pub pod_uid: Text<'a>,
    #[serde(borrow, rename = "io.kubernetes.container.name")]
    pub container_name: Text<'a>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ContainerStats<'a> {
    #[serde(borrow)]
    pub timestamp: Text<'a>,
    pub cpu: Obj<CpuStats>,
    pub memory: Obj<MemoryStats>,
    pub network: Obj<NetworkStats>,
    #[serde(borrow)]
    pub filesystem: List<Obj<FsStats<'a>>>,
    pub diskio: Obj<DiskIoStats>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub usage: Obj<CpuUsage>,
    pub load_average: Num,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total: Num,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    pub usage: Num,
    pub cache: Num,
    pub rss: Num,
    pub working_set: Num,
    pub container_data: Obj<MemoryData>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct MemoryData {
    pub pgfault: Num,
    pub pgmajfault: Num,
}

/// The default interface's counters (cAdvisor's `InterfaceStats` inlined).
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    pub rx_bytes: Num,
    pub rx_errors: Num,
    pub tx_bytes: Num,
    pub tx_errors: Num,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct FsStats<'a> {
    #[serde(borrow)]
    pub device: Text<'a>,
    pub capacity: Num,
    pub usage: Num,
    pub available: Num,
    pub inodes: Num,
    pub inodes_free: Num,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct DiskIoStats {
    pub io_service_bytes: List<Obj<PerDiskStats>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct PerDiskStats {
    pub major: Num,
    pub minor: Num,
    pub stats: Obj<ReadWrite>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ReadWrite {
    #[serde(rename = "Read")]
    pub read: Num,
    #[serde(rename = "Write")]
    pub write: Num,
}

/// `/api/v1.3/machine`, what capacity needs.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct MachineInfo {
    pub num_cores: Num,
    pub memory_capacity: Num,
}
