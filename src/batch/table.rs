//! The log table of one window, or of one worker's share of it. Each worker builds the table of
//! its share; the graph gathers the shares on one worker and merges them, so in a cluster one
//! process prints the table of the whole cluster ([`crate::sinks::log`] renders it).

use heapster_dataflows::{EntityKey, MetricId, MetricSet, Time};
use serde::{Deserialize, Serialize};

/// How many pods the table lists.
const TOP_PODS: usize = 10;

/// What the log sink prints of one window, or one worker's share of it: counts, a row per
/// node, the busiest pods. Small next to the window's sets, so in a cluster every worker's share
/// goes to one worker through the graph's exchange and one process prints the cluster's table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowTable {
    /// Window end, ms since the epoch.
    pub time: Time,
    /// Nodes, pods, containers, system containers, namespaces, cluster.
    pub(crate) counts: [u64; 6],
    pub(crate) points: u64,
    pub(crate) nodes: Vec<NodeRow>,
    /// The busiest pods, busiest first, at most [`TOP_PODS`].
    pub(crate) pods: Vec<PodRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeRow {
    pub(crate) node: String,
    pub(crate) cpu: Option<i64>,
    pub(crate) cpu_share: Option<f64>,
    pub(crate) memory: Option<i64>,
    pub(crate) memory_share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PodRow {
    pub(crate) ns: String,
    pub(crate) pod: String,
    pub(crate) cpu: Option<i64>,
    pub(crate) memory: Option<i64>,
}

impl PodRow {
    /// Busiest first: CPU, then memory, then name (the order of a window's sorted sets).
    fn order(&self) -> impl Ord + '_ {
        busiest_first(&self.ns, &self.pod, self.cpu, self.memory)
    }
}

/// The busiest pods' order: CPU, then memory, then name (the order of a window's sorted sets).
fn busiest_first<'a>(ns: &'a str, pod: &'a str, cpu: Option<i64>, memory: Option<i64>) -> impl Ord + 'a {
    (std::cmp::Reverse(cpu.unwrap_or(-1)), std::cmp::Reverse(memory.unwrap_or(-1)), ns, pod)
}

impl WindowTable {
    /// A window's table before any share is merged in.
    pub fn empty(time: Time) -> WindowTable {
        WindowTable { time, ..WindowTable::default() }
    }

    /// The table of `sets`, a whole window or one worker's share of it.
    pub fn of(time: Time, sets: &[MetricSet]) -> WindowTable {
        let mut table = WindowTable::empty(time);
        // Only the busiest pods become rows: a window has tens of thousands of pods.
        let mut pods = Vec::new();
        for set in sets {
            table.points += set.point_count() as u64;
            let slot = match &set.key {
                EntityKey::Node { node } => {
                    table.nodes.push(NodeRow {
                        node: node.to_string(),
                        cpu: set.values.get_i64(MetricId::CpuUsageRate),
                        cpu_share: set.values.get(MetricId::CpuNodeUtilization).map(|v| v.as_f64()),
                        memory: set.values.get_i64(MetricId::MemoryWorkingSet),
                        memory_share: set.values.get(MetricId::MemoryNodeUtilization).map(|v| v.as_f64()),
                    });
                    0
                }
                EntityKey::Pod { ns, pod } => {
                    let cpu = set.values.get_i64(MetricId::CpuUsageRate);
                    let memory = set.values.get_i64(MetricId::MemoryWorkingSet);
                    pods.push((ns.as_str(), pod.as_str(), cpu, memory));
                    1
                }
                EntityKey::PodContainer { .. } => 2,
                EntityKey::SysContainer { .. } => 3,
                EntityKey::Namespace { .. } => 4,
                EntityKey::Cluster => 5,
            };
            table.counts[slot] += 1;
        }
        type Candidate<'a> = (&'a str, &'a str, Option<i64>, Option<i64>);
        let order = |a: &Candidate<'_>, b: &Candidate<'_>| {
            busiest_first(a.0, a.1, a.2, a.3).cmp(&busiest_first(b.0, b.1, b.2, b.3))
        };
        if pods.len() > TOP_PODS {
            pods.select_nth_unstable_by(TOP_PODS, order);
            pods.truncate(TOP_PODS);
        }
        pods.sort_unstable_by(order);
        table.pods = pods
            .into_iter()
            .map(|(ns, pod, cpu, memory)| PodRow { ns: ns.to_string(), pod: pod.to_string(), cpu, memory })
            .collect();
        table
    }

    /// Adds another share of the same window.
    pub fn merge(&mut self, other: WindowTable) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.points += other.points;
        self.nodes.extend(other.nodes);
        self.pods.extend(other.pods);
        self.keep_busiest();
    }

    fn keep_busiest(&mut self) {
        self.pods.sort_by(|a, b| a.order().cmp(&b.order()));
        self.pods.truncate(TOP_PODS);
    }
}
