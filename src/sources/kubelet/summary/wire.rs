//! The kubelet's `stats/v1alpha1` types, reduced to what Heapster reads. Unknown fields are
//! skipped without being decoded.

use serde::Deserialize;

use crate::sources::lenient::{Float, List, Num, Obj, Text};

/// The summary's top-level keys. The summary itself is read entry by entry (`Decoder`'s
/// `Entries`), so that each pod is turned into sets as soon as it is read.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
pub enum SummaryField {
    Node,
    Pods,
    #[serde(other)]
    Other,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeStats<'a> {
    #[serde(borrow)]
    pub node_name: Text<'a>,
    #[serde(borrow)]
    pub system_containers: List<Obj<ContainerStats<'a>>>,
    #[serde(borrow)]
    pub start_time: Text<'a>,
    #[serde(borrow)]
    pub cpu: Obj<CpuStats<'a>>,
    #[serde(borrow)]
    pub memory: Obj<MemoryStats<'a>>,
    #[serde(borrow)]
    pub network: Obj<NetworkStats<'a>>,
    #[serde(borrow)]
    pub fs: Obj<FsStats<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStats<'a> {
    #[serde(borrow)]
    pub pod_ref: Obj<PodRef<'a>>,
    #[serde(borrow)]
    pub start_time: Text<'a>,
    #[serde(borrow)]
    pub containers: List<Obj<ContainerStats<'a>>>,
    #[serde(borrow)]
    pub cpu: Obj<CpuStats<'a>>,
    #[serde(borrow)]
    pub memory: Obj<MemoryStats<'a>>,
    #[serde(borrow)]
    pub network: Obj<NetworkStats<'a>>,
    #[serde(borrow)]
    pub volume: List<Obj<FsStats<'a>>>,
    #[serde(borrow, rename = "ephemeral-storage")]
    pub ephemeral_storage: Obj<FsStats<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct PodRef<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub namespace: Text<'a>,
    #[serde(borrow)]
    pub uid: Text<'a>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStats<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub start_time: Text<'a>,
    #[serde(borrow)]
    pub cpu: Obj<CpuStats<'a>>,
    #[serde(borrow)]
    pub memory: Obj<MemoryStats<'a>>,
    #[serde(borrow)]
    pub rootfs: Obj<FsStats<'a>>,
    #[serde(borrow)]
    pub logs: Obj<FsStats<'a>>,
    #[serde(borrow)]
    pub accelerators: List<Obj<AcceleratorStats<'a>>>,
    #[serde(borrow)]
    pub user_defined_metrics: List<Obj<UserDefinedMetric<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CpuStats<'a> {
    #[serde(borrow)]
    pub time: Text<'a>,
    pub usage_core_nano_seconds: Num,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MemoryStats<'a> {
    #[serde(borrow)]
    pub time: Text<'a>,
    pub usage_bytes: Num,
    pub working_set_bytes: Num,
    pub rss_bytes: Num,
    pub page_faults: Num,
    pub major_page_faults: Num,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkStats<'a> {
    #[serde(borrow)]
    pub time: Text<'a>,
    pub rx_bytes: Num,
    pub rx_errors: Num,
    pub tx_bytes: Num,
    pub tx_errors: Num,
    pub interfaces: List<Obj<InterfaceStats>>,
}

impl NetworkStats<'_> {
    pub fn counters(&self) -> [&Num; 4] {
        [&self.rx_bytes, &self.rx_errors, &self.tx_bytes, &self.tx_errors]
    }
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InterfaceStats {
    pub rx_bytes: Num,
    pub rx_errors: Num,
    pub tx_bytes: Num,
    pub tx_errors: Num,
}

impl InterfaceStats {
    pub fn counters(&self) -> [&Num; 4] {
        [&self.rx_bytes, &self.rx_errors, &self.tx_bytes, &self.tx_errors]
    }
}

/// Also a volume's stats, which add `name`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FsStats<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    pub available_bytes: Num,
    pub capacity_bytes: Num,
    pub used_bytes: Num,
    pub inodes: Num,
    pub inodes_free: Num,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AcceleratorStats<'a> {
    #[serde(borrow)]
    pub make: Text<'a>,
    #[serde(borrow)]
    pub model: Text<'a>,
    #[serde(borrow)]
    pub id: Text<'a>,
    pub memory_total: Num,
    pub memory_used: Num,
    pub duty_cycle: Num,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct UserDefinedMetric<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow, rename = "type")]
    pub kind: Text<'a>,
    pub value: Float,
}
