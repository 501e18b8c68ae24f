//! What flows from the graph to the sinks: a complete metrics window ([`MetricBatch`], handed to
//! each sink as a [`Window`]), one tick's new event states ([`EventBatch`]) and a window's log
//! table ([`table::WindowTable`]), each queued to a sink as a [`SinkInput`]. The bridge builds them, the sinks, the API snapshot and
//! telemetry read them.

use std::sync::Arc;

use heapster_dataflows::{Event, MetricSet, Time};

pub mod table;

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

/// A window as one sink writes it. A sink that is the window's only reader owns it and frees
/// each set once encoded: the graph is already building the next window, and a window of a
/// 1,000-node cluster is about 100 MB.
pub enum Window<'a> {
    Owned(MetricBatch),
    Borrowed(&'a MetricBatch),
}

impl Window<'_> {
    pub fn batch(&self) -> &MetricBatch {
        match self {
            Window::Owned(batch) => batch,
            Window::Borrowed(batch) => batch,
        }
    }

    /// The batch, when this window owns it and may free its sets.
    pub fn owned_mut(&mut self) -> Option<&mut MetricBatch> {
        match self {
            Window::Owned(batch) => Some(batch),
            Window::Borrowed(_) => None,
        }
    }
}

impl<'a> From<&'a MetricBatch> for Window<'a> {
    fn from(batch: &'a MetricBatch) -> Self {
        Window::Borrowed(batch)
    }
}

impl From<MetricBatch> for Window<'_> {
    fn from(batch: MetricBatch) -> Self {
        Window::Owned(batch)
    }
}

/// The new event states of one tick, from every worker.
#[derive(Clone, Debug, Default)]
pub struct EventBatch {
    pub time: Time,
    pub events: Vec<Event>,
    /// Every event up to this version is in this batch or an earlier one.
    pub resource_version: Option<String>,
}

/// What a sink's queue carries.
#[derive(Clone, Debug)]
pub enum SinkInput {
    Metrics(Arc<MetricBatch>),
    Events(Arc<EventBatch>),
    /// The log table of a whole window, gathered by the graph (process 0 only).
    Table(Arc<table::WindowTable>),
}
