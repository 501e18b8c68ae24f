//! Sources: what feeds the graphs.
//!
//! A new source goes in its own folder `sources/<name>/`: its `--source` URI config (one arm of [`config::SourceConfig`]),
//! a body type implementing [`crate::bridge::Fetched`] (one node's answer, parsed on the worker that owns the node), and
//! a [`live::Live`] + [`live::Fetch`] pair saying which nodes a window has and how to fetch one: `run.rs` hands it to [`live::run`].
//!
//! - [`kubelet`]: the kubelet Summary API (`/stats/summary`) and its parser.
//! - [`kubernetes`]: API-server objects (nodes, pods, namespaces) turned into scrape targets and
//!   enrichment metadata.
//! - [`cadvisor`]: machines running cAdvisor, from a hosts file or CoreOS fleet.
//! - [`replay`]: a recorded scenario, window by window.
//! - `lenient`: JSON fields that may have the wrong type, read with a warning instead of failing.
//! - [`live`]: the window loop of the live sources, written once.
//! - [`clock`]: now, and a stop-aware wait for a window.
//! - [`config`]: `--source` URIs into the source's config.
//! - [`health`]: per-node scrape outcomes, logged on change.
//! - [`parse`]: lenient fields into metric values, for every body parser.
//! - [`meta_state`]: the metadata in force, as differential changes.

pub mod cadvisor;
pub mod clock;
pub mod config;
pub mod health;
pub mod kubelet;
pub mod kubernetes;
pub(crate) mod lenient;
pub mod live;
pub mod meta_state;
pub mod parse;
pub mod replay;

use heapster_dataflows::Name;
use heapster_dataflows::model::{LabelId, Labels};

/// Why a node gave no body this window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    #[error("no recorded summary ({0})")]
    Missing(String),
    #[error("{0}")]
    Failed(String),
}

/// A node to scrape, and the identity labels its metric sets carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeTarget {
    pub name: Name,
    /// The node's `Hostname` address (Heapster's `hostname` label).
    pub hostname: Name,
    /// The node's provider or external id (Heapster's `host_id` label).
    pub host_id: Name,
    /// Not cordoned (`spec.unschedulable` unset).
    pub schedulable: bool,
    /// Whether the node's set carries `schedulable` as a label. Off unless the source asks for
    /// it: Heapster's summary source never wrote it, and an extra tag starts a new InfluxDB
    /// series for every node.
    pub schedulable_label: bool,
    /// Ready condition is `True`: only ready nodes are scraped.
    pub ready: bool,
    /// The node's `InternalIP`, where its kubelet listens.
    pub address: Option<String>,
}

impl NodeTarget {
    /// A target known only by name (replayed summaries without a node list entry, tests).
    pub fn named(name: &str) -> NodeTarget {
        NodeTarget {
            name: Name::new(name),
            hostname: Name::new(name),
            host_id: Name::default(),
            schedulable: true,
            schedulable_label: false,
            ready: true,
            address: None,
        }
    }

    /// The labels every set of the node carries (`nodename`, `hostname`, `host_id`), the
    /// empty ones left out.
    pub fn labels(&self) -> Labels {
        let mut labels = Labels::default();
        for (id, value) in [
            (LabelId::Nodename, &self.name),
            (LabelId::Hostname, &self.hostname),
            (LabelId::HostId, &self.host_id),
        ] {
            if !value.is_empty() {
                labels.set(id, value.clone());
            }
        }
        labels
    }
}
