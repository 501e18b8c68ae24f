//! The live Kubernetes source: every window, the metadata as watched, then every Ready node's
//! summary ([`crate::sources::live`] runs the windows).
//!
//! The metadata a window is enriched with is the state when its scrapes began; changes after
//! that belong to the next window.
//!
//! In cluster mode every process watches the nodes (to know its own) and the pods, scrapes only
//! the nodes its workers own, and feeds only those nodes' and their pods' metadata, so that no
//! process converts or sends every pod; the leader alone watches the namespaces and feeds them
//! to every worker. The API server serves one pod watch per process: it can select pods by one
//! node (`spec.nodeName`), not by the set of nodes a process owns.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use heapster_dataflows::Time;

pub use super::config::clients;
use super::config::{Clients, KubernetesConfig};
use super::scrape::Scraper;
use super::watch::{SharedState, spawn, watched_kinds};
use crate::bridge::{Feeds, WorkersGone};
use crate::cluster::Share;
use crate::sources::kubelet::SummaryScrape;
use crate::sources::live::{self, Fetch, Live, Window, jitter_max};
use crate::sources::{NodeTarget, ScrapeError};

/// One window's plan: its end time, the Ready nodes and the metadata changes.
pub struct WindowPlan {
    pub time: Time,
    pub targets: Vec<NodeTarget>,
    pub changes: Vec<(heapster_dataflows::meta::MetaRecord, isize)>,
}

/// Watches the cluster and hands out windows.
pub struct Cluster {
    state: SharedState,
    share: Share,
}

impl Cluster {
    /// Starts the watchers and waits (up to `patience`) for their first lists.
    pub async fn watch(client: &kube::Client, patience: Duration) -> Cluster {
        Cluster::watch_share(client, patience, Share::single(1)).await
    }

    /// [`Cluster::watch`] for a process with `share` of a cluster: what it watches and keeps is
    /// [`watched_kinds`] and [`Share::keeps`].
    pub async fn watch_share(client: &kube::Client, patience: Duration, share: Share) -> Cluster {
        let state = SharedState::default();
        spawn(client, &state, share);
        let kinds = watched_kinds(share);
        let started = tokio::time::Instant::now();
        while !state.lock().synced(&kinds) {
            if started.elapsed() > patience {
                tracing::warn!("the API server has not listed nodes, pods and namespaces yet; going on");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Cluster { state, share }
    }

    /// The metadata changes since the last window, and the Ready nodes, as of now.
    pub fn plan(&mut self, time: Time) -> WindowPlan {
        // Only what changed since the last window is copied: the state tracks it.
        let (changes, targets) = {
            let mut state = self.state.lock();
            (state.changes(self.share), state.targets())
        };
        let targets = targets.into_iter().filter(|t| t.ready).collect();
        WindowPlan { time, targets, changes }
    }

    pub fn relists(&self) -> u64 {
        self.state.lock().relists()
    }
}

/// Scrapes kubelets' `/stats/summary`.
#[derive(Clone)]
struct Kubelets(Scraper);

impl Fetch for Kubelets {
    type Node = NodeTarget;
    type Body = SummaryScrape;

    fn name(node: &NodeTarget) -> &str {
        &node.name
    }

    async fn fetch(&self, target: NodeTarget, _time: Time) -> SummaryScrape {
        let started = std::time::Instant::now();
        let body = self.0.scrape(&target).await;
        crate::telemetry::global().scrape(&target.name, body.is_ok(), started.elapsed());
        SummaryScrape { target, body }
    }

    fn failure(body: &SummaryScrape) -> Option<&ScrapeError> {
        body.body.as_ref().err()
    }
}

/// The watched cluster as a live source.
struct Watched {
    cluster: Cluster,
    scraper: Kubelets,
    schedulable_label: bool,
}

impl Live for Watched {
    type Fetch = Kubelets;

    async fn window(&mut self, time: Time) -> Window<NodeTarget> {
        let mut plan = self.cluster.plan(time);
        for target in &mut plan.targets {
            target.schedulable_label = self.schedulable_label;
        }
        Window { nodes: plan.targets, changes: plan.changes }
    }

    fn fetcher(&self) -> Kubelets {
        self.scraper.clone()
    }
}

/// Runs windows until `stop` is set, feeding the workers: only the nodes the feeds' share owns,
/// windows counted from the cluster's `started` (ms) so that every process starts with the
/// same one.
pub async fn run(
    config: KubernetesConfig,
    clients: Clients,
    feeds: Feeds,
    resolution: Duration,
    stop: Arc<AtomicBool>,
    started: Option<u64>,
) -> Result<(), WorkersGone> {
    if !config.metrics() {
        return Ok(());
    }
    let share = feeds.share();
    let timeout =
        config.kubelet_timeout.min(resolution.saturating_sub(resolution / 5 + jitter_max(resolution)));
    let mut scraper = Scraper::new(&config, &clients, timeout);
    if share.processes > 1 {
        // Kubelet logs (and the fixture server) tell the processes apart.
        scraper.user_agent(format!(
            "heapster/{} (process {} of {})",
            env!("CARGO_PKG_VERSION"),
            share.process,
            share.processes
        ));
    }
    // Windows are counted from start, not from the first lists: the first window is the first
    // boundary after start, late by what lists still take then, never a whole resolution later.
    let started = started.or_else(|| Some(crate::sources::clock::now_ms()));
    let cluster = Cluster::watch_share(&clients.api, resolution, share).await;
    let source = Watched { cluster, scraper: Kubelets(scraper), schedulable_label: config.schedulable_label };
    tracing::info!(resolution = %humantime::format_duration(resolution), timeout = %humantime::format_duration(timeout), "collecting from the Kubernetes API");
    live::run(source, feeds, resolution, stop, started).await?;
    tracing::info!("Kubernetes source stopped");
    Ok(())
}
