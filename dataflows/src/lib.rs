//! The graphs of heapster and the records that flow through them.
//!
//! - [`catalog`]: Heapster's metric names, units and kinds.
//! - [`model`]: [`model::MetricSet`] (one per entity per window), [`model::EntityKey`],
//!   [`model::Event`] (its own strings in one [`event_text::EventText`]); [`name`]: interned [`Name`]s; [`hash`]: the one stable hash, which routes
//!   records and nodes to workers.
//! - [`meta`]: node, pod and namespace metadata, and how labels are rendered.
//! - [`metrics`]: the metrics graph: rate, enrich, aggregate.
//! - [`events`]: the events graph: dedup, so each event state is exported once.
//!
//! Nothing here does I/O: sources feed the inputs and sinks read the outputs from the `heapster`
//! crate.
//!
//! Where a new operator goes: its own file in `metrics/` (or beside the graph it joins), the logic
//! as plain functions with its timely wrapper at the end, wired in by one line in `metrics::metrics`;
//! it holds windows with `metrics::window::Held` and is tested at 1 and 2 workers (`metrics::testing`).

pub mod catalog;
pub mod event_text;
pub mod events;
pub mod hash;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod name;

pub use catalog::{Kind, LabeledMetricId, MetricId, ValueType};
pub use model::{EntityKey, Event, LabelId, MetricSet, Name, Time, Value};
