//! Kubernetes API objects.
//!
//! - [`events`]: core and `events.k8s.io` events (lists, watch lines) into the event model.
//! - [`objects`]: nodes, pods and namespaces into scrape targets and enrichment metadata.
//! - [`quantity`]: resource quantities (`100m`, `1.5Gi`) as exact integers.

pub mod events;
pub mod objects;
pub mod quantity;
