//! The graphs of heapster and the records that flow through them.
//!
//! - [`catalog`]: Heapster's metric names, units and kinds.
//! - [`model`]: [`model::MetricSet`] (one per entity per window), [`model::EntityKey`],
//!   [`model::Event`], interned [`model::Name`]s.
//! - [`meta`]: node, pod and namespace metadata, and how labels are rendered.
//! - [`metrics`]: the metrics graph: rate, enrich, aggregate.
//! - [`events`]: the events graph: dedup, so each event state is exported once.
//!
//! Nothing here does I/O: sources feed the inputs and sinks read the outputs from the `heapster`
//! crate.

pub mod catalog;
pub mod events;
pub mod meta;
pub mod metrics;
pub mod model;

pub use catalog::{Kind, LabeledMetricId, MetricId, ValueType};
pub use model::{EntityKey, Event, LabelId, MetricSet, Name, Time, Value};
