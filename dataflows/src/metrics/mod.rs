//! The metrics graph: each window's metric sets, through rate, enrich and aggregate.
//!
//! ```text
//! sets (each worker: its own nodes) ──> rate ──> enrich ──> aggregate ──> complete window
//!                                                   ↑
//! metadata (nodes, pods, namespaces) ──> meta_index (placed by node; namespaces everywhere)
//! ```

pub mod aggregate;
pub mod enrich;
pub mod index;
pub mod rate;
pub mod route;
pub mod window;

#[cfg(test)]
mod testing;

use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;

use crate::meta::{LabelPolicy, MetaRecord};
use crate::model::{MetricSet, Time};

/// Builds the metrics graph. The output holds, per window, every final metric set: each on the
/// worker that owns its key, complete once the frontier has passed the window.
pub fn metrics<'s>(
    sets: StreamVec<'s, Time, MetricSet>,
    meta: VecCollection<'s, Time, MetaRecord>,
    policy: &LabelPolicy,
) -> StreamVec<'s, Time, MetricSet> {
    let index = index::meta_index(meta, policy);
    let sets = rate::rate(sets);
    let sets = enrich::enrich(sets, index);
    aggregate::aggregate(sets)
}
