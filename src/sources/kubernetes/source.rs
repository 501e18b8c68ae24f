//! The live Kubernetes source: every window, the metadata as watched, then every Ready node's
//! summary, each worker's nodes scraped by that worker's own task.
//!
//! Windows end on multiples of the resolution (Heapster's batch timestamps); a window's scrapes
//! start at its beginning, spread over its first tenth so a thousand kubelets are not hit at
//! once. The metadata a window is enriched with is the state when its scrapes began; changes
//! after that belong to the next window.
//!
//! In cluster mode every process watches the nodes (to know its own) and scrapes only the nodes
//! its workers own; the leader alone also watches pods and namespaces and feeds the metadata
//! into the graph, whose exchange takes each record to the workers that enrich with it: one
//! watch of each kind for the API server, whatever the number of processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use futures::StreamExt;
use heapster_dataflows::Time;
use heapster_dataflows::model::stable_hash;

pub use super::config::clients;
use super::config::{Clients, KubernetesConfig};
use super::scrape::Scraper;
use super::watch::{SharedState, spawn, spawn_nodes};
use crate::bridge::{Feed, Scrape};
use crate::cluster::Share;
use crate::sources::NodeTarget;
use crate::sources::health::Health;
use crate::sources::meta_state::{Kind, MetaState};

/// Scrapes in flight per worker.
const CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the workers stopped")]
    WorkersGone,
}

/// One window's plan: its end time and the targets, per worker.
pub struct WindowPlan {
    pub time: Time,
    pub targets: Vec<NodeTarget>,
    pub changes: Vec<(heapster_dataflows::meta::MetaRecord, isize)>,
}

/// Watches the cluster and hands out windows.
pub struct Cluster {
    state: SharedState,
    meta: MetaState,
}

impl Cluster {
    /// Starts the watchers and waits (up to `patience`) for their first lists.
    pub async fn watch(client: &kube::Client, patience: Duration) -> Cluster {
        Cluster::watch_what(client, patience, true).await
    }

    /// [`Cluster::watch`], of the nodes alone unless `everything`.
    pub async fn watch_what(client: &kube::Client, patience: Duration, everything: bool) -> Cluster {
        let state = SharedState::default();
        if everything {
            spawn(client, &state);
        } else {
            spawn_nodes(client, &state);
        }
        let started = tokio::time::Instant::now();
        while !(if everything { state.lock().synced() } else { state.lock().nodes_synced() }) {
            if started.elapsed() > patience {
                tracing::warn!("the API server has not listed nodes, pods and namespaces yet; going on");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Cluster { state, meta: MetaState::default() }
    }

    /// The metadata changes since the last window, and the Ready nodes, as of now.
    pub fn plan(&mut self, time: Time) -> WindowPlan {
        let (nodes, pods, namespaces, targets) = {
            let state = self.state.lock();
            (
                state.records(Kind::Node),
                state.records(Kind::Pod),
                state.records(Kind::Namespace),
                state.targets(),
            )
        };
        let mut changes = self.meta.replace(Kind::Node, nodes);
        changes.extend(self.meta.replace(Kind::Pod, pods));
        changes.extend(self.meta.replace(Kind::Namespace, namespaces));
        let targets = targets.into_iter().filter(|t| t.ready).collect();
        WindowPlan { time, targets, changes }
    }

    pub fn relists(&self) -> u64 {
        self.state.lock().relists()
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Sleeps until `deadline_ms`, waking early when `stop` is set. Returns false if stopped.
pub async fn sleep_until(deadline_ms: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = now_ms();
        if now >= deadline_ms {
            return true;
        }
        tokio::time::sleep(Duration::from_millis((deadline_ms - now).min(200))).await;
    }
}

/// Where in the window a node's scrape starts: a stable spread over the first tenth of the
/// window, at most 5 s.
pub fn jitter(node: &str, resolution: Duration) -> Duration {
    let spread = (resolution / 10).min(Duration::from_secs(5)).as_millis() as u64;
    Duration::from_millis(stable_hash(&["jitter", node]) % spread.max(1))
}

/// Runs windows until `stop` is set, feeding the workers.
pub async fn run(
    config: KubernetesConfig,
    clients: Clients,
    feeds: Vec<Sender<Feed>>,
    resolution: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let share = Share::single(feeds.len());
    run_share(config, clients, feeds, resolution, stop, share, None).await
}

/// [`run`] for one process of a cluster: only the nodes `share` owns, windows counted from the
/// cluster's `started` (ms) so that every process starts with the same one.
pub async fn run_share(
    config: KubernetesConfig,
    clients: Clients,
    feeds: Vec<Sender<Feed>>,
    resolution: Duration,
    stop: Arc<AtomicBool>,
    share: Share,
    started: Option<u64>,
) -> Result<(), SourceError> {
    if !config.metrics() {
        return Ok(());
    }
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
    let step = resolution.as_millis().max(1) as u64;
    let aligned = started.map(|ms| (ms / step + 1) * step);
    // Only the leader feeds metadata: the other processes watch the nodes, to know their own.
    let mut cluster = Cluster::watch_what(&clients.api, resolution, share.is_leader()).await;
    let health = Arc::new(Health::default());
    let mut next = aligned.unwrap_or_else(|| (now_ms() / step + 1) * step);
    tracing::info!(resolution = %humantime::format_duration(resolution), timeout = %humantime::format_duration(timeout), "collecting from the Kubernetes API");
    while sleep_until(next, &stop).await {
        let mut plan = cluster.plan(next);
        for target in &mut plan.targets {
            target.schedulable_label = config.schedulable_label;
        }
        if !share.is_leader() {
            plan.changes.clear();
        }
        tracing::debug!(window = next, nodes = plan.targets.len(), changes = plan.changes.len(), "window");
        feed_window(&feeds, plan, &scraper, &health, resolution, share).await?;
        let now = now_ms();
        next += step;
        if now >= next {
            let skipped = (now - next) / step + 1;
            tracing::warn!(skipped, "scrapes took longer than the resolution; windows skipped");
            next += skipped * step;
        }
    }
    tracing::info!("Kubernetes source stopped");
    Ok(())
}

pub fn jitter_max(resolution: Duration) -> Duration {
    (resolution / 10).min(Duration::from_secs(5))
}

/// Sends the window's metadata to worker 0, then each worker's scrapes as they complete, then
/// closes the window at every worker.
async fn feed_window(
    feeds: &[Sender<Feed>],
    plan: WindowPlan,
    scraper: &Scraper,
    health: &Arc<Health>,
    resolution: Duration,
    share: Share,
) -> Result<(), SourceError> {
    let time = plan.time;
    if !plan.changes.is_empty() {
        send(&feeds[0], Feed::Meta { time, changes: plan.changes })?;
    }
    let mut per_worker: Vec<Vec<NodeTarget>> = vec![Vec::new(); feeds.len()];
    for target in plan.targets {
        if let Some(worker) = share.local_owner(&target.name) {
            per_worker[worker].push(target);
        }
    }
    let tasks: Vec<_> = per_worker
        .into_iter()
        .zip(feeds.iter().cloned())
        .map(|(targets, feed)| {
            let scraper = scraper.clone();
            let health = Arc::clone(health);
            tokio::spawn(async move { scrape_worker(time, targets, feed, scraper, health, resolution).await })
        })
        .collect();
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => tracing::error!("a scrape task failed: {e}"),
        }
    }
    result
}

/// One worker's scrapes for one window.
async fn scrape_worker(
    time: Time,
    targets: Vec<NodeTarget>,
    feed: Sender<Feed>,
    scraper: Scraper,
    health: Arc<Health>,
    resolution: Duration,
) -> Result<(), SourceError> {
    let mut scrapes = futures::stream::iter(targets)
        .map(|target| {
            let scraper = &scraper;
            async move {
                tokio::time::sleep(jitter(&target.name, resolution)).await;
                let started = std::time::Instant::now();
                let body = scraper.scrape(&target).await;
                crate::telemetry::global().scrape(&target.name, body.is_ok(), started.elapsed());
                (target, body)
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((target, body)) = scrapes.next().await {
        match &body {
            Ok(_) => health.record(&target.name, Ok(())),
            Err(e) => health.record(&target.name, Err(&e.to_string())),
        }
        send(&feed, Feed::Scrape { time, scrape: Scrape { target, body } })?;
    }
    send(&feed, Feed::Close { time })
}

/// A blocking send from async code: the channel is bounded so that a slow worker slows the
/// source, not memory.
fn send(feed: &Sender<Feed>, message: Feed) -> Result<(), SourceError> {
    tokio::task::block_in_place(|| feed.send(message)).map_err(|_| SourceError::WorkersGone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_first_tenth() {
        let resolution = Duration::from_secs(60);
        for i in 0..100 {
            assert!(jitter(&format!("node-{i}"), resolution) < Duration::from_secs(5));
        }
        assert!(jitter("a", Duration::from_secs(5)) < Duration::from_millis(500));
        assert_eq!(jitter("a", resolution), jitter("a", resolution));
    }
}
