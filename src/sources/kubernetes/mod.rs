//! The Kubernetes source: the API server and the kubelets of a live cluster.
//!
//! - [`bodies`]: summary body buffers, handed back by the workers and reused.
//! - [`config`]: the `kubernetes:` URI and the API and kubelet clients it describes.
//! - [`event_watch`]: the events list/watch loop.
//! - [`events`]: core and `events.k8s.io` events (lists, watch lines) into the event model.
//! - [`kubelet_client`]: the HTTP client for kubelets, light on idle connections.
//! - [`objects`]: nodes, pods and namespaces into scrape targets and enrichment metadata.
//! - [`quantity`]: resource quantities (`100m`, `1.5Gi`) as exact integers.
//! - [`trimmed`]: nodes and pods decoded with only the fields the graph reads.
//! - [`watch`]: reflectors keeping the objects current.
//! - [`reach`]: the API server's reachability, logged once per change.
//! - [`scrape`]: kubelet `/stats/summary` requests.
//! - [`source`]: the window loop feeding the workers.

pub mod bodies;
pub mod config;
pub mod event_watch;
pub mod events;
pub mod kubelet_client;
pub mod objects;
pub mod quantity;
mod raw_list;
pub mod reach;
pub mod scrape;
pub mod source;
pub mod trimmed;
pub mod watch;
