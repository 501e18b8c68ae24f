//! Kubernetes API objects.
//!
//! - [`objects`]: nodes, pods and namespaces into scrape targets and enrichment metadata.
//! - [`quantity`]: resource quantities (`100m`, `1.5Gi`) as exact integers.

pub mod objects;
pub mod quantity;
