//! The window loop of the live sources, written once: a live source says which nodes a window
//! has ([`Live::window`]) and how to fetch one ([`Fetch::fetch`]); [`run`] does the rest.
//!
//! Windows end on multiples of the resolution (Heapster's batch timestamps); a window's
//! fetches start at its beginning, spread over its first tenth in 32 steps so a thousand nodes
//! are not hit at once. Each worker's nodes are fetched by a task of their own, at most
//! [`CONCURRENCY`] at a time, and go to the workers through [`Feeds`] as they complete; a
//! worker's window closes once its own nodes are in. A node that fails or hangs costs only itself, and its state
//! changes are logged once by [`Health`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use heapster_dataflows::Time;
use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::model::stable_hash;

use crate::bridge::{Feeds, Fetched, WorkerFeed, WorkersGone};
use crate::sources::ScrapeError;
use crate::sources::clock::{now_ms, sleep_until};
use crate::sources::health::Health;

/// Fetches in flight per worker.
pub const CONCURRENCY: usize = 64;

/// What a window holds: the nodes to fetch, and the metadata changes since the last window.
pub struct Window<N> {
    pub nodes: Vec<N>,
    pub changes: Vec<(MetaRecord, isize)>,
}

/// A source scraped on the wall clock.
pub trait Live: Send {
    /// How one node is fetched.
    type Fetch: Fetch;

    /// The window ending at `time`, as things stand now (its start).
    fn window(&mut self, time: Time) -> impl Future<Output = Window<<Self::Fetch as Fetch>::Node>> + Send;

    /// The fetcher, cloned into every worker's task.
    fn fetcher(&self) -> Self::Fetch;
}

/// How to fetch one node of a live source.
pub trait Fetch: Clone + Send + Sync + 'static {
    type Node: Send + 'static;
    /// The answer, parsed by the worker that owns the node.
    type Body: Fetched + 'static;

    /// The node's name: it decides the worker that owns the node.
    fn name(node: &Self::Node) -> &str;

    /// Fetches `node` for the window ending at `time`. A failure is a body too (it counts).
    fn fetch(&self, node: Self::Node, time: Time) -> impl Future<Output = Self::Body> + Send;

    /// Why the fetch gave no body, if it did not.
    fn failure(body: &Self::Body) -> Option<&ScrapeError>;
}

/// Runs windows until `stop` is set. Windows are counted from `started` (ms) when given, so
/// that every process of a cluster starts with the same one.
pub async fn run<S: Live>(
    mut source: S,
    feeds: Feeds,
    resolution: Duration,
    stop: Arc<AtomicBool>,
    started: Option<u64>,
) -> Result<(), WorkersGone> {
    let fetch = source.fetcher();
    let health = Arc::new(Health::default());
    let step = resolution.as_millis().max(1) as u64;
    let mut next = (started.unwrap_or_else(now_ms) / step + 1) * step;
    while sleep_until(next, &stop).await {
        let window = source.window(next).await;
        tracing::debug!(window = next, nodes = window.nodes.len(), changes = window.changes.len(), "window");
        let fed = feed_window(&feeds, next, window, &fetch, &health, resolution);
        if !until_stopped(fed, &stop).await? {
            // A worker whose feed closes with the window open tells the collector, which does
            // not export a window short of nodes.
            tracing::info!(window = next, "stopping: the window's scrapes in flight are cancelled");
            break;
        }
        let now = now_ms();
        next += step;
        if now >= next {
            let skipped = (now - next) / step + 1;
            tracing::warn!(skipped, "scrapes took longer than the resolution; windows skipped");
            next += skipped * step;
        }
    }
    Ok(())
}

/// Sends the window's metadata, then each worker's bodies as they complete, then closes the
/// window at every worker.
async fn feed_window<F: Fetch>(
    feeds: &Feeds,
    time: Time,
    window: Window<F::Node>,
    fetch: &F,
    health: &Arc<Health>,
    resolution: Duration,
) -> Result<(), WorkersGone> {
    feeds.metadata(time, window.changes)?;
    let tasks: Vec<_> = feeds
        .split(window.nodes, F::name)
        .into_iter()
        .map(|(feed, nodes)| {
            let (fetch, health) = (fetch.clone(), Arc::clone(health));
            AbortOnDrop(tokio::spawn(fetch_worker(time, nodes, feed, fetch, health, resolution)))
        })
        .collect();
    let mut result = Ok(());
    for mut task in tasks {
        match (&mut task.0).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => tracing::error!("a scrape task failed: {e}"),
        }
    }
    result
}

/// A scrape task that ends with the window's future: a cancelled window leaves no fetch
/// running and no feed open behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fed` to its end, or until `stop` is set (`Ok(false)`: it was dropped unfinished).
async fn until_stopped(
    fed: impl Future<Output = Result<(), WorkersGone>>,
    stop: &AtomicBool,
) -> Result<bool, WorkersGone> {
    tokio::select! {
        result = fed => result.map(|()| true),
        () = crate::sources::clock::stopped(stop) => Ok(false),
    }
}

/// One worker's fetches for one window.
async fn fetch_worker<F: Fetch>(
    time: Time,
    nodes: Vec<F::Node>,
    feed: WorkerFeed,
    fetch: F,
    health: Arc<Health>,
    resolution: Duration,
) -> Result<(), WorkersGone> {
    // Each fetch waits for its node's start in the window before it takes one of the
    // CONCURRENCY slots: a wait inside a slot would bound a worker to CONCURRENCY nodes per
    // average jitter (about 1,500 nodes a minute), however long the window.
    let begun = tokio::time::Instant::now();
    let mut nodes: Vec<(Duration, F::Node)> =
        nodes.into_iter().map(|node| (jitter(F::name(&node), resolution), node)).collect();
    nodes.sort_by_key(|(start, _)| *start);
    let bodies = futures::stream::iter(nodes)
        .then(|(start, node)| async move {
            // The rest of a slot's nodes start at once, without a timer each.
            let at = begun + start;
            if at > tokio::time::Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            node
        })
        .map(|node| {
            let fetch = &fetch;
            async move { fetch.fetch(node, time).await }
        })
        .buffer_unordered(CONCURRENCY);
    let mut bodies = std::pin::pin!(bodies);
    while let Some(body) = bodies.next().await {
        match F::failure(&body) {
            None => health.record(body.node(), Ok(())),
            Some(e) => health.record(body.node(), Err(&e.to_string())),
        }
        feed.scrape_async(time, Box::new(body)).await?;
    }
    feed.close_async(time).await
}

/// Fetch starts fall on this many instants of the spread. Each instant is one timer wake-up of
/// the I/O thread that starts all its fetches at once; a start per node (a thousand a window)
/// woke the thread once per node, and each wake-up costs more than the fetch it starts.
const JITTER_SLOTS: u64 = 32;

/// Where in the window a node's fetch starts: a stable spread over the first tenth of the
/// window, at most 5 s, in [`JITTER_SLOTS`] steps.
pub fn jitter(node: &str, resolution: Duration) -> Duration {
    let spread = (jitter_max(resolution).as_millis() as u64).max(1);
    let step = spread.div_ceil(JITTER_SLOTS);
    let at = stable_hash(&["jitter", node]) % spread;
    Duration::from_millis(at - at % step)
}

/// The latest a fetch starts into its window.
pub fn jitter_max(resolution: Duration) -> Duration {
    (resolution / 10).min(Duration::from_secs(5))
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

    #[test]
    fn starts_fall_on_few_instants_spread_over_the_tenth() {
        let resolution = Duration::from_secs(15);
        let starts: std::collections::BTreeSet<Duration> =
            (0..1000).map(|i| jitter(&format!("node-{i}"), resolution)).collect();
        assert!(starts.len() as u64 <= JITTER_SLOTS, "{} instants", starts.len());
        assert!(starts.len() > 1, "still spread");
        let last = starts.iter().next_back().copied().unwrap_or_default();
        assert!(last >= jitter_max(resolution) / 2 && last < jitter_max(resolution), "{last:?}");
    }
}
