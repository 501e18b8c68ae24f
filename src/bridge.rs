//! The bridge between the I/O side (sources, sinks) and the timely workers.
//!
//! Sources send each worker a [`Feed`] per window: the scrapes of the nodes that worker owns
//! (`node_owner`), already fetched; worker 0 also gets the metadata changes. Workers parse on
//! their own threads, run the graph, and hand every complete window to the [`Collector`], which
//! merges the workers' shares into one sorted [`MetricBatch`] for the sinks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use differential_dataflow::input::Input as _;
use heapster_dataflows::meta::{LabelPolicy, MetaRecord};
use heapster_dataflows::model::Interner;
use heapster_dataflows::{MetricSet, Time};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Input as _, Probe as _};
use timely::dataflow::{ProbeHandle, StreamVec};

use crate::sinks::MetricBatch;
use crate::sources::NodeTarget;
use crate::sources::kubelet::summary::parse_summary;

/// Why a node gave no summary this window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    #[error("no recorded summary ({0})")]
    Missing(String),
    #[error("{0}")]
    Failed(String),
}

/// One node's answer for one window.
#[derive(Debug)]
pub struct Scrape {
    pub target: NodeTarget,
    pub body: Result<Vec<u8>, ScrapeError>,
}

/// What a source sends a worker. A window's scrapes arrive one by one, so a worker parses
/// while the source is still fetching, and memory holds a few bodies, not a window of them.
#[derive(Debug)]
pub enum Feed {
    /// Metadata changes that take effect at `time` (sent to worker 0 only, before the window's
    /// scrapes).
    Meta { time: Time, changes: Vec<(MetaRecord, isize)> },
    /// One of this worker's nodes for the window ending at `time`.
    Scrape { time: Time, scrape: Scrape },
    /// The window ending at `time` is complete at the source. Every worker gets one per window,
    /// with or without scrapes: it is what closes the window.
    Close { time: Time },
}

/// Counters shared by workers and sinks, read by the log sink and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub windows: AtomicU64,
    pub scrapes: AtomicU64,
    pub scrape_errors: AtomicU64,
    pub summary_bytes: AtomicU64,
    pub parse_warnings: AtomicU64,
    pub metric_sets: AtomicU64,
    pub metric_values: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a complete window on its way to the sinks.
    pub fn add_window(&self, batch: &MetricBatch) {
        Stats::add(&self.windows, 1);
        Stats::add(&self.metric_sets, batch.sets.len() as u64);
        Stats::add(&self.metric_values, batch.point_count() as u64);
    }
}

/// What workers tell the collector.
#[derive(Debug)]
pub enum Collected {
    /// A worker's complete share of a window, sorted by key.
    Window { time: Time, sets: Vec<MetricSet> },
    /// A worker will send nothing more before `frontier` (`None`: nothing more at all).
    Frontier { worker: usize, frontier: Option<Time> },
}

/// Settings of the timely side.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub workers: usize,
    pub labels: LabelPolicy,
}

/// Runs the workers until every feed is closed and the last window has left the graph.
pub fn run_workers(
    config: WorkerConfig,
    feeds: Vec<Receiver<Feed>>,
    collected: Sender<Collected>,
    stats: Arc<Stats>,
) -> Result<(), String> {
    if feeds.len() != config.workers {
        return Err(format!("{} feeds for {} workers", feeds.len(), config.workers));
    }
    let labels = config.labels.clone();
    let guards = timely::execute(timely::Config::process(config.workers), move |worker| {
        let index = worker.index();
        let feed = feeds[index].clone();
        let collected = collected.clone();
        let labels = labels.clone();
        let stats = Arc::clone(&stats);
        let probe = ProbeHandle::new();

        let (mut sets_in, mut meta_in) = worker.dataflow::<Time, _, _>(|scope| {
            let (sets_in, sets) = scope.new_input::<Vec<MetricSet>>();
            let (meta_in, meta) = scope.new_collection::<MetaRecord, isize>();
            let windows = heapster_dataflows::metrics::metrics(sets, meta, &labels).probe_with(&probe);
            to_collector(windows, index, collected);
            (sets_in, meta_in)
        });

        let mut interner = Interner::default();
        let mut parsed = Vec::new();
        let mut open: Option<Time> = None;
        let mut last_window: Option<Time> = None;
        loop {
            let (time, scrape) = match feed.try_recv() {
                Ok(Feed::Meta { time, changes }) => {
                    if time < *meta_in.time() {
                        tracing::error!(time, "metadata for a window already closed; dropped");
                        continue;
                    }
                    meta_in.advance_to(time);
                    for (record, diff) in changes {
                        meta_in.update(record, diff);
                    }
                    continue;
                }
                Ok(Feed::Scrape { time, scrape }) => (time, Some(scrape)),
                Ok(Feed::Close { time }) => (time, None),
                Err(TryRecvError::Empty) => {
                    worker.step_or_park(Some(Duration::from_millis(2)));
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if open != Some(time) {
                if time < *sets_in.time() {
                    tracing::error!(time, "scrape for a window already closed; dropped");
                    continue;
                }
                // At most one window in the graph while the next is parsed: bounds memory.
                if let Some(prev) = last_window {
                    worker.step_while(|| probe.less_equal(&prev));
                }
                sets_in.advance_to(time);
                // The window's metadata is all in: let the index settle while scrapes are parsed.
                meta_in.advance_to(time + 1);
                meta_in.flush();
                open = Some(time);
            }
            match scrape {
                Some(scrape) => {
                    parse_scrape(scrape, time, &mut interner, &mut parsed, &stats);
                    sets_in.send_batch(&mut parsed);
                    parsed.clear();
                }
                None => {
                    sets_in.advance_to(time + 1);
                    open = None;
                    last_window = Some(time);
                    interner.sweep();
                }
            }
        }
        drop(sets_in);
        drop(meta_in);
        worker.step_while(|| !probe.done());
    })?;
    for result in guards.join() {
        result?;
    }
    Ok(())
}

fn parse_scrape(
    scrape: Scrape,
    time: Time,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
    stats: &Stats,
) {
    Stats::add(&stats.scrapes, 1);
    let node = scrape.target.name.clone();
    let body = match scrape.body {
        Ok(body) => body,
        // The source logged it when the node's state changed.
        Err(_) => {
            Stats::add(&stats.scrape_errors, 1);
            return;
        }
    };
    Stats::add(&stats.summary_bytes, body.len() as u64);
    let window_ns = (time as i64).saturating_mul(1_000_000);
    match parse_summary(&body, &scrape.target, window_ns, interner, out) {
        Ok(report) => {
            Stats::add(&stats.parse_warnings, report.warnings.len() as u64);
            for warning in report.warnings {
                tracing::warn!(node = %node, "{warning}");
            }
        }
        Err(err) => {
            Stats::add(&stats.scrape_errors, 1);
            tracing::error!(node = %node, "summary rejected: {err}");
        }
    }
}

/// The sink-side end of a worker: sends each complete window, sorted, and the worker's frontier.
fn to_collector(sets: StreamVec<'_, Time, MetricSet>, worker: usize, collected: Sender<Collected>) {
    let mut pending: BTreeMap<Time, Vec<MetricSet>> = BTreeMap::new();
    let mut reported = Some(Some(0));
    sets.sink(Pipeline, "to_sinks", move |(input, frontier)| {
        input.for_each(|cap, data| {
            if let Some(&time) = cap.least() {
                pending.entry(time).or_default().append(data);
            }
        });
        while let Some((&time, _)) = pending.first_key_value() {
            if frontier.less_equal(&time) {
                break;
            }
            let Some((_, sets)) = pending.pop_first() else { break };
            let sets = sorted_by_key(sets);
            // A closed collector means the process is shutting down; nothing left to tell.
            let _ = collected.send(Collected::Window { time, sets });
        }
        let now = frontier.frontier().first().copied();
        if reported != Some(now) {
            reported = Some(now);
            let _ = collected.send(Collected::Frontier { worker, frontier: now });
        }
    });
}

/// Merges the workers' shares of each window once every worker's frontier has passed it.
pub struct Collector {
    frontiers: Vec<Option<Time>>,
    pending: BTreeMap<Time, Vec<Vec<MetricSet>>>,
}

impl Collector {
    pub fn new(workers: usize) -> Collector {
        Collector { frontiers: vec![Some(0); workers], pending: BTreeMap::new() }
    }

    /// Takes one message; returns the windows it completed, oldest first.
    pub fn absorb(&mut self, message: Collected) -> Vec<MetricBatch> {
        match message {
            Collected::Window { time, sets } => {
                self.pending.entry(time).or_default().push(sets);
                Vec::new()
            }
            Collected::Frontier { worker, frontier } => {
                if let Some(slot) = self.frontiers.get_mut(worker) {
                    *slot = frontier;
                }
                self.complete()
            }
        }
    }

    /// Whether every worker has finished.
    pub fn done(&self) -> bool {
        self.frontiers.iter().all(Option::is_none)
    }

    fn complete(&mut self) -> Vec<MetricBatch> {
        let mut out = Vec::new();
        while let Some((&time, _)) = self.pending.first_key_value() {
            let passed = self.frontiers.iter().all(|f| f.is_none_or(|f| f > time));
            if !passed {
                break;
            }
            let Some((_, shares)) = self.pending.pop_first() else { break };
            out.push(merge(time, shares));
        }
        out
    }
}

/// Sorts sets by key, moving each set only twice: sets are large and keys compare cheaply, so
/// an index is sorted instead of the sets.
pub fn sorted_by_key(sets: Vec<MetricSet>) -> Vec<MetricSet> {
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_unstable_by(|a, b| sets[*a].key.cmp(&sets[*b].key));
    let mut slots: Vec<Option<MetricSet>> = sets.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Merges the workers' sorted shares into one sorted window.
fn merge(time: Time, shares: Vec<Vec<MetricSet>>) -> MetricBatch {
    let mut sets = Vec::with_capacity(shares.iter().map(Vec::len).sum());
    let mut rests: Vec<std::vec::IntoIter<MetricSet>> = shares.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<MetricSet>> = rests.iter_mut().map(Iterator::next).collect();
    loop {
        let least = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.as_ref().map(|set| (i, set)))
            .min_by(|a, b| a.1.key.cmp(&b.1.key))
            .map(|(i, _)| i);
        let Some(i) = least else { break };
        if let Some(set) = std::mem::replace(&mut heads[i], rests[i].next()) {
            sets.push(set);
        }
    }
    MetricBatch { time, sets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::EntityKey;

    fn set(node: &str) -> MetricSet {
        MetricSet::new(EntityKey::Node { node: node.into() })
    }

    #[test]
    fn sorts_by_key_without_losing_sets() {
        let sorted = sorted_by_key(vec![set("c"), set("a"), set("b")]);
        let names: Vec<String> = sorted.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(names, ["node:a", "node:b", "node:c"]);
        let merged = merge(1, vec![vec![set("a"), set("d")], vec![], vec![set("b"), set("c"), set("e")]]);
        let names: Vec<String> = merged.sets.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(names, ["node:a", "node:b", "node:c", "node:d", "node:e"]);
    }

    #[test]
    fn collector_waits_for_every_worker() {
        let mut c = Collector::new(2);
        assert!(c.absorb(Collected::Window { time: 60, sets: vec![set("b")] }).is_empty());
        assert!(c.absorb(Collected::Frontier { worker: 0, frontier: Some(61) }).is_empty());
        assert!(c.absorb(Collected::Window { time: 60, sets: vec![set("a"), set("c")] }).is_empty());
        let done = c.absorb(Collected::Frontier { worker: 1, frontier: None });
        assert_eq!(done.len(), 1);
        let names: Vec<String> = done[0].sets.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(names, ["node:a", "node:b", "node:c"]);
        assert!(!c.done());
        assert!(c.absorb(Collected::Frontier { worker: 0, frontier: None }).is_empty());
        assert!(c.done());
    }
}
