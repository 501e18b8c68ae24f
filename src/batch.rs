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
    /// Every value of every set. Each set's body lies elsewhere on the heap: the bodies ahead
    /// are asked for early, or the pass waits on memory at every set.
    pub fn point_count(&self) -> usize {
        let mut points = 0;
        for (i, set) in self.sets.iter().enumerate() {
            if let Some(ahead) = self.sets.get(i + 8) {
                prefetch((&ahead.values as *const heapster_dataflows::model::Values).cast());
                prefetch((&ahead.labeled as *const Vec<heapster_dataflows::model::LabeledValue>).cast());
            }
            points += set.point_count();
        }
        points
    }
}

/// Asks the CPU to bring the line at `p` into its caches: a hint that never faults.
#[inline]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and never faults, whatever
    // the address; SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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
