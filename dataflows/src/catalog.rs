//! Heapster's metric catalog: names, units, kinds and value types.
//!
//! The names are Heapster's own (`cpu/usage_rate`, `memory/working_set`, ...), so dashboards built
//! on Heapster keep working. Unlabeled metrics live in a dense array indexed by [`MetricId`];
//! metrics that exist once per resource (filesystems, disks, accelerators) are [`LabeledMetricId`].

use serde::{Deserialize, Serialize};

/// Whether a metric only grows (and so yields a rate) or is a point-in-time reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Cumulative,
    Gauge,
}

/// The stored representation; InfluxDB keeps `i`-suffixed integers and floats apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ValueType {
    Int,
    Float,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    None,
    Count,
    Bytes,
    Nanoseconds,
    Milliseconds,
    Millicores,
    Ratio,
    PerSecond,
}

/// The description of one catalog entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    pub ty: ValueType,
}

macro_rules! catalog {
    ($(#[$meta:meta])* $vis:vis enum $enum:ident, $table:ident { $($variant:ident => ($name:literal, $unit:ident, $kind:ident, $ty:ident)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u8)]
        $vis enum $enum { $($variant),+ }

        const $table: &[MetricDesc] = &[
            $(MetricDesc { name: $name, unit: Unit::$unit, kind: Kind::$kind, ty: ValueType::$ty }),+
        ];

        impl $enum {
            /// Every entry, in declaration order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];
            pub const COUNT: usize = $enum::ALL.len();

            #[inline]
            pub fn desc(self) -> &'static MetricDesc {
                &$table[self as usize]
            }

            #[inline]
            pub fn name(self) -> &'static str {
                self.desc().name
            }

            /// Looks an entry up by its Heapster name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|m| m.name() == name)
            }
        }
    };
}

catalog! {
    /// Metrics with one value per metric set.
    pub enum MetricId, METRICS {
        CpuUsage => ("cpu/usage", Nanoseconds, Cumulative, Int),
        CpuUsageRate => ("cpu/usage_rate", Millicores, Gauge, Int),
        CpuLoad => ("cpu/load", None, Gauge, Int),
        CpuRequest => ("cpu/request", Millicores, Gauge, Int),
        CpuLimit => ("cpu/limit", Millicores, Gauge, Int),
        CpuNodeCapacity => ("cpu/node_capacity", Millicores, Gauge, Float),
        CpuNodeAllocatable => ("cpu/node_allocatable", Millicores, Gauge, Float),
        CpuNodeReservation => ("cpu/node_reservation", Ratio, Gauge, Float),
        CpuNodeUtilization => ("cpu/node_utilization", Ratio, Gauge, Float),
        MemoryUsage => ("memory/usage", Bytes, Gauge, Int),
        MemoryWorkingSet => ("memory/working_set", Bytes, Gauge, Int),
        MemoryRss => ("memory/rss", Bytes, Gauge, Int),
        MemoryCache => ("memory/cache", Bytes, Gauge, Int),
        MemoryRequest => ("memory/request", Bytes, Gauge, Int),
        MemoryLimit => ("memory/limit", Bytes, Gauge, Int),
        MemoryPageFaults => ("memory/page_faults", Count, Cumulative, Int),
        MemoryMajorPageFaults => ("memory/major_page_faults", Count, Cumulative, Int),
        MemoryPageFaultsRate => ("memory/page_faults_rate", PerSecond, Gauge, Float),
        MemoryMajorPageFaultsRate => ("memory/major_page_faults_rate", PerSecond, Gauge, Float),
        MemoryNodeCapacity => ("memory/node_capacity", Bytes, Gauge, Float),
        MemoryNodeAllocatable => ("memory/node_allocatable", Bytes, Gauge, Float),
        MemoryNodeReservation => ("memory/node_reservation", Ratio, Gauge, Float),
        MemoryNodeUtilization => ("memory/node_utilization", Ratio, Gauge, Float),
        NetworkRx => ("network/rx", Bytes, Cumulative, Int),
        NetworkRxErrors => ("network/rx_errors", Count, Cumulative, Int),
        NetworkTx => ("network/tx", Bytes, Cumulative, Int),
        NetworkTxErrors => ("network/tx_errors", Count, Cumulative, Int),
        NetworkRxRate => ("network/rx_rate", PerSecond, Gauge, Float),
        NetworkRxErrorsRate => ("network/rx_errors_rate", PerSecond, Gauge, Float),
        NetworkTxRate => ("network/tx_rate", PerSecond, Gauge, Float),
        NetworkTxErrorsRate => ("network/tx_errors_rate", PerSecond, Gauge, Float),
        EphemeralStorageUsage => ("ephemeral_storage/usage", Bytes, Gauge, Int),
        EphemeralStorageRequest => ("ephemeral_storage/request", Bytes, Gauge, Int),
        EphemeralStorageLimit => ("ephemeral_storage/limit", Bytes, Gauge, Int),
        EphemeralStorageNodeCapacity => ("ephemeral_storage/node_capacity", Bytes, Gauge, Float),
        EphemeralStorageNodeAllocatable => ("ephemeral_storage/node_allocatable", Bytes, Gauge, Float),
        EphemeralStorageNodeReservation => ("ephemeral_storage/node_reservation", Ratio, Gauge, Float),
        EphemeralStorageNodeUtilization => ("ephemeral_storage/node_utilization", Ratio, Gauge, Float),
        Uptime => ("uptime", Milliseconds, Cumulative, Int),
        RestartCount => ("restart_count", Count, Cumulative, Int),
    }
}

catalog! {
    /// Metrics with one value per resource (`resource_id`, or an accelerator's labels).
    pub enum LabeledMetricId, LABELED_METRICS {
        FsUsage => ("filesystem/usage", Bytes, Gauge, Int),
        FsLimit => ("filesystem/limit", Bytes, Gauge, Int),
        FsAvailable => ("filesystem/available", Bytes, Gauge, Int),
        FsInodes => ("filesystem/inodes", Count, Gauge, Int),
        FsInodesFree => ("filesystem/inodes_free", Count, Gauge, Int),
        DiskIoReadBytes => ("disk/io_read_bytes", Bytes, Cumulative, Int),
        DiskIoWriteBytes => ("disk/io_write_bytes", Bytes, Cumulative, Int),
        DiskIoReadBytesRate => ("disk/io_read_bytes_rate", PerSecond, Gauge, Float),
        DiskIoWriteBytesRate => ("disk/io_write_bytes_rate", PerSecond, Gauge, Float),
        AcceleratorMemoryTotal => ("accelerator/memory_total", Bytes, Gauge, Int),
        AcceleratorMemoryUsed => ("accelerator/memory_used", Bytes, Gauge, Int),
        AcceleratorDutyCycle => ("accelerator/duty_cycle", Ratio, Gauge, Int),
        AcceleratorRequest => ("accelerator/request", Count, Gauge, Int),
    }
}

/// Cumulative metrics and the gauge that holds their per-window rate (Heapster's
/// `RateMetricsMapping`).
pub const RATES: &[(MetricId, MetricId)] = &[
    (MetricId::CpuUsage, MetricId::CpuUsageRate),
    (MetricId::MemoryPageFaults, MetricId::MemoryPageFaultsRate),
    (MetricId::MemoryMajorPageFaults, MetricId::MemoryMajorPageFaultsRate),
    (MetricId::NetworkRx, MetricId::NetworkRxRate),
    (MetricId::NetworkRxErrors, MetricId::NetworkRxErrorsRate),
    (MetricId::NetworkTx, MetricId::NetworkTxRate),
    (MetricId::NetworkTxErrors, MetricId::NetworkTxErrorsRate),
];

/// Labeled cumulative metrics and their rates.
pub const LABELED_RATES: &[(LabeledMetricId, LabeledMetricId)] = &[
    (LabeledMetricId::DiskIoReadBytes, LabeledMetricId::DiskIoReadBytesRate),
    (LabeledMetricId::DiskIoWriteBytes, LabeledMetricId::DiskIoWriteBytesRate),
];

/// Cumulative metrics a pod sums from its containers nonetheless: Heapster's pod aggregator
/// skips only the kubelet's own counters, and a pod's restarts are its containers' restarts.
pub const POD_SUMMED_COUNTERS: &[MetricId] = &[MetricId::RestartCount];

/// What namespaces and the cluster sum from their children (Heapster's `metricsToAggregate`).
pub const NAMESPACE_AGGREGATED: &[MetricId] = &[
    MetricId::CpuUsageRate,
    MetricId::MemoryUsage,
    MetricId::CpuRequest,
    MetricId::CpuLimit,
    MetricId::MemoryRequest,
    MetricId::MemoryLimit,
];

/// What a node sums from the pods scheduled on it (Heapster's `metricsToAggregateForNode`).
pub const NODE_AGGREGATED: &[MetricId] = &[
    MetricId::CpuRequest,
    MetricId::CpuLimit,
    MetricId::MemoryRequest,
    MetricId::MemoryLimit,
    MetricId::EphemeralStorageRequest,
    MetricId::EphemeralStorageLimit,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upward_sums_are_integers() {
        // Parts are summed in any grouping and order; only integer sums are exact under that.
        for id in NAMESPACE_AGGREGATED.iter().chain(NODE_AGGREGATED) {
            assert_eq!(id.desc().ty, ValueType::Int, "{}", id.name());
        }
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for m in MetricId::ALL {
            assert_eq!(MetricId::from_name(m.name()), Some(*m));
        }
        for m in LabeledMetricId::ALL {
            assert_eq!(LabeledMetricId::from_name(m.name()), Some(*m));
        }
        assert_eq!(MetricId::from_name("cpu/nope"), None);
    }

    #[test]
    fn rates_map_cumulative_to_gauge() {
        for (from, to) in RATES {
            assert_eq!(from.desc().kind, Kind::Cumulative);
            assert_eq!(to.desc().kind, Kind::Gauge);
        }
        for (from, to) in LABELED_RATES {
            assert_eq!(from.desc().kind, Kind::Cumulative);
            assert_eq!(to.desc().ty, ValueType::Float);
        }
        assert_eq!(MetricId::CpuUsageRate.desc().ty, ValueType::Int);
    }
}
