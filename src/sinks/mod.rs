//! Sinks: where complete windows go.

pub mod influxdb;
pub mod line_protocol;

use heapster_dataflows::{MetricSet, Time};

/// One complete window: every metric set of every worker, sorted by key.
#[derive(Clone, Debug, Default)]
pub struct MetricBatch {
    /// Window end, ms since the epoch.
    pub time: Time,
    pub sets: Vec<MetricSet>,
}

impl MetricBatch {
    pub fn point_count(&self) -> usize {
        self.sets.iter().map(MetricSet::point_count).sum()
    }
}
