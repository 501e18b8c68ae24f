//! The bridge between the I/O side (sources, sinks) and the timely workers.
//!
//! Sources feed the workers through [`Feeds`] (the protocol, in `bridge/feed.rs`): each node's fetched
//! body goes to the worker that owns the node (`node_owner`); worker 0 also gets the metadata
//! changes. Workers parse the bodies on their own threads ([`Fetched::parse`]), run the graph, and hand every complete window to the [`Collector`], which
//! merges the workers' shares into one sorted [`MetricBatch`] for the sinks. In cluster mode
//! (see [`crate::cluster`]) each process runs this for its own workers and writes its own share.

use crossbeam_channel::{Sender, TryRecvError};
use differential_dataflow::input::Input as _;
use heapster_dataflows::events::{DedupConfig, DedupCounters, Seen, dedup};
use heapster_dataflows::meta::{LabelPolicy, MetaRecord};
use heapster_dataflows::metrics::window::{Held, Windows};
use heapster_dataflows::model::{Interner, node_owner};
use heapster_dataflows::{Event, MetricSet, Time};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Input as _, Probe as _};
use timely::dataflow::{ProbeHandle, StreamVec};

use crate::batch::table::WindowTable;
use crate::batch::{EventBatch, MetricBatch};
use crate::cluster::Share;
use crate::cluster::connect::Network;

mod feed;

pub use feed::{
    Feed, FeedReceiver, FeedSender, Feeds, Fetched, InSinks, Owned, Parsed, WorkerFeed, WorkersGone,
};

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
    /// Windows cut short by a stop before all their scrapes were in, so not exported.
    pub cancelled_windows: AtomicU64,
    /// The windows past the graph, for a replay to wait on.
    pub in_sinks: Arc<InSinks>,
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
    /// A worker's share of the new event states of a tick.
    Events { time: Time, events: Vec<Event> },
    /// A worker will send no more events before `frontier`.
    EventsFrontier { worker: usize, frontier: Option<Time> },
    /// Where the event watch stood once tick `time` was fed (from worker 0).
    EventsVersion { time: Time, resource_version: String },
    /// A worker's feed closed before window `time` was: its scrapes were cancelled by a stop.
    Cancelled { time: Time },
    /// The log table of a whole window, every worker's share gathered (on worker 0 of process 0).
    Table { table: WindowTable },
}

/// Settings of the timely side.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Workers in this process.
    pub workers: usize,
    /// This process's place in the cluster.
    pub share: Share,
    pub labels: LabelPolicy,
    /// Event deduplication, when the source has events.
    pub events: Option<EventsConfig>,
    /// Gather the log sink's table of each window (worker 0 of process 0 prints it).
    pub table: bool,
}

#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub dedup: DedupConfig,
    /// States from the checkpoint, exported before the last stop.
    pub seed: Arc<Vec<Seen>>,
    pub counters: Arc<DedupCounters>,
}

/// Why the workers could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("{feeds} feeds for {workers} workers")]
    Feeds { feeds: usize, workers: usize },
    /// Timely reports its failures (thread start, a worker's panic) as text.
    #[error("{0}")]
    Timely(String),
}

/// Runs the workers until every feed is closed and the last window has left the graph.
pub fn run_workers(
    config: WorkerConfig,
    feeds: Vec<FeedReceiver>,
    collected: Sender<Collected>,
    stats: Arc<Stats>,
) -> Result<(), WorkersError> {
    run_workers_on(config, None, feeds, collected, stats)
}

/// [`run_workers`] over a cluster's network (`None`: this process alone).
pub fn run_workers_on(
    config: WorkerConfig,
    network: Option<Network>,
    feeds: Vec<FeedReceiver>,
    collected: Sender<Collected>,
    stats: Arc<Stats>,
) -> Result<(), WorkersError> {
    if feeds.len() != config.workers {
        return Err(WorkersError::Feeds { feeds: feeds.len(), workers: config.workers });
    }
    let share = config.share;
    let peers = share.peers();
    let labels = config.labels.clone();
    let events_config = config.events.clone();
    let table = config.table;
    if table && !share.is_leader() {
        tracing::info!("log sink: process 0 prints the table of the whole cluster; this process prints none");
    }
    let (builders, others) = match network {
        Some(network) => (network.builders, network.guard),
        None => {
            timely::CommunicationConfig::Process(config.workers).try_build().map_err(WorkersError::Timely)?
        }
    };
    let timely_config = timely::WorkerConfig::default();
    let guards = timely::execute::execute_from(builders, others, timely_config, move |worker| {
        let index = worker.index();
        // This process's workers are numbered from its first global index.
        let local = index - share.first_worker();
        // Every message into the feed unparks this thread, so an idle worker parks in timely
        // until a message or timely work (another worker's data, an activation) arrives.
        let feed = feeds[local].clone();
        feed.listen();
        let collected = collected.clone();
        let labels = labels.clone();
        let stats = Arc::clone(&stats);
        let probe = ProbeHandle::new();
        let events_probe = ProbeHandle::new();
        let dedup_config = events_config.as_ref().map(|e| e.dedup.clone()).unwrap_or_default();
        let counters = events_config.as_ref().map(|e| Arc::clone(&e.counters)).unwrap_or_default();

        let (mut sets_in, mut meta_in, events_in, mut seed_in) = worker.dataflow::<Time, _, _>(|scope| {
            let (sets_in, sets) = scope.new_input::<Vec<MetricSet>>();
            let (meta_in, meta) = scope.new_collection::<MetaRecord, isize>();
            let windows = heapster_dataflows::metrics::metrics(sets, meta, &labels).probe_with(&probe);
            let tables = windows_to_collector(windows, local, collected.clone(), table);
            gather_tables(tables, collected.clone());
            let (events_in, events) = scope.new_input::<Vec<Event>>();
            let (seed_in, seed) = scope.new_input::<Vec<Seen>>();
            let exported = dedup(events, seed, dedup_config, counters).probe_with(&events_probe);
            to_collector(
                exported,
                local,
                collected.clone(),
                |time, events| Collected::Events { time, events },
                |worker, frontier| Collected::EventsFrontier { worker, frontier },
            );
            (sets_in, meta_in, events_in, seed_in)
        });
        // This process's checkpointed states go in first, then the seed input closes everywhere.
        if let (0, Some(config)) = (local, events_config.as_ref()) {
            for seen in config.seed.iter() {
                seed_in.send(seen.clone());
            }
        }
        drop(seed_in);
        // Without an events source the input closes now, or the worker would wait on it forever.
        // Only the leader process reads events.
        let mut events_in = if events_config.is_some() && share.is_leader() {
            Some(events_in)
        } else {
            drop(events_in);
            None
        };

        let mut interner = Interner::default();
        let mut parsed = Vec::new();
        let mut open: Option<Time> = None;
        let mut last_window: Option<Time> = None;
        loop {
            let message = match feed.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Empty) => {
                    // Runs what is scheduled; with nothing to do, sleeps until woken.
                    worker.step_or_park(None);
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    if let Some(time) = open {
                        // Its remaining scrapes never come: the window would be short of nodes.
                        let _ = collected.send(Collected::Cancelled { time });
                    }
                    break;
                }
            };
            let (time, scrape) = match message {
                Feed::Meta { time, changes } => {
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
                Feed::Scrape { time, body } => {
                    // The contract `rate` relies on: a node's sets arrive at the worker
                    // `node_owner` names, window after window.
                    if body.owner() != index || node_owner(body.node(), peers) != index {
                        Stats::add(&stats.scrape_errors, 1);
                        tracing::error!(node = %body.node(), worker = index, "a body for another worker; dropped");
                        continue;
                    }
                    (time, Some(body.into_body()))
                }
                Feed::Close { time } => (time, None),
                Feed::Events { time, mut events } => {
                    match events_in.as_mut() {
                        Some(input) if time >= *input.time() => {
                            input.advance_to(time);
                            input.send_batch(&mut events);
                        }
                        Some(_) => tracing::error!(time, "events for a tick already closed; dropped"),
                        None => tracing::error!("events without an events pipeline; dropped"),
                    }
                    continue;
                }
                Feed::EventsTick { time, resource_version } => {
                    if let Some(input) = events_in.as_mut()
                        && time >= *input.time()
                    {
                        input.advance_to(time + 1);
                    }
                    if let (0, Some(resource_version)) = (index, resource_version) {
                        let _ = collected.send(Collected::EventsVersion { time, resource_version });
                    }
                    continue;
                }
            };
            if open != Some(time) {
                if time < *sets_in.time() {
                    tracing::error!(time, "scrape for a window already closed; dropped");
                    continue;
                }
                // At most one window in the graph while the next is parsed: bounds memory.
                if let Some(prev) = last_window {
                    worker.step_or_park_while(None, || probe.less_equal(&prev));
                }
                sets_in.advance_to(time);
                // The window's metadata is all in: let the index settle while scrapes are parsed.
                meta_in.advance_to(time + 1);
                meta_in.flush();
                open = Some(time);
            }
            match scrape {
                Some(body) => {
                    parse_body(body, time, &mut interner, &mut parsed, &stats);
                    sets_in.send_batch(&mut parsed);
                    parsed.clear();
                    // Let the sets flow on (rate and enrich stream) rather than pile up.
                    worker.step();
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
        drop(events_in);
        worker.step_or_park_while(None, || !probe.done() || !events_probe.done());
    })
    .map_err(WorkersError::Timely)?;
    for result in guards.join() {
        result.map_err(WorkersError::Timely)?;
    }
    Ok(())
}

/// Parses one body on the worker that owns its node, counting and logging what it gave.
fn parse_body(
    body: Box<dyn Fetched>,
    time: Time,
    interner: &mut Interner,
    out: &mut Vec<MetricSet>,
    stats: &Stats,
) {
    Stats::add(&stats.scrapes, 1);
    let node = body.node().clone();
    let window_ns = (time as i64).saturating_mul(1_000_000);
    match body.parse(window_ns, interner, out) {
        Parsed::Unfetched => Stats::add(&stats.scrape_errors, 1),
        Parsed::Sets { bytes, warnings } => {
            Stats::add(&stats.summary_bytes, bytes);
            Stats::add(&stats.parse_warnings, warnings.len() as u64);
            for warning in warnings {
                tracing::warn!(node = %node, "{warning}");
            }
        }
        Parsed::Rejected { bytes, what, error } => {
            Stats::add(&stats.summary_bytes, bytes);
            Stats::add(&stats.scrape_errors, 1);
            tracing::error!(node = %node, "{what} rejected: {error}");
        }
    }
}

/// The sink-side end of a worker: sends each complete window, sorted, and the worker's frontier.
fn to_collector<D: 'static>(
    stream: StreamVec<'_, Time, D>,
    worker: usize,
    collected: Sender<Collected>,
    share: fn(Time, Vec<D>) -> Collected,
    progress: fn(usize, Option<Time>) -> Collected,
) where
    Vec<D>: timely::Container,
{
    let mut pending: Held<Vec<D>> = Held::default();
    let mut reported = Some(Some(0));
    stream.sink(Pipeline, "to_sinks", move |(input, frontier)| {
        input.for_each(|cap, data| {
            if let Some(&time) = cap.least() {
                pending.entry(time, Vec::new).append(data);
            }
        });
        while let Some((time, data)) = pending.next_passed(&[frontier]) {
            // A closed collector means the process is shutting down; nothing left to tell.
            let _ = collected.send(share(time, data));
        }
        let now = frontier.frontier().first().copied();
        if reported != Some(now) {
            reported = Some(now);
            let _ = collected.send(progress(worker, now));
        }
    });
}

/// The sink-side end of a worker's windows: sends each complete window, sorted, and the
/// worker's frontier to the collector; with `table`, gives the log table of its share of each
/// window to the graph.
fn windows_to_collector<'s>(
    stream: StreamVec<'s, Time, MetricSet>,
    worker: usize,
    collected: Sender<Collected>,
    table: bool,
) -> StreamVec<'s, Time, WindowTable> {
    stream.unary_frontier(Pipeline, "to_sinks", move |_cap, _info| {
        let mut pending: Windows<MetricSet> = Held::default();
        let mut reported = Some(Some(0));
        let mut sorter = KeySorter::default();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    pending.stash(cap, data);
                }
            });
            while let Some((cap, sets)) = pending.next_complete(&[frontier]) {
                let time = *cap.time();
                let sets = sorter.sort(sets);
                if table {
                    output.session(&cap).give(WindowTable::of(time, &sets));
                }
                // A closed collector means the process is shutting down; nothing left to tell.
                let _ = collected.send(Collected::Window { time, sets });
            }
            let now = frontier.frontier().first().copied();
            if reported != Some(now) {
                reported = Some(now);
                let _ = collected.send(Collected::Frontier { worker, frontier: now });
            }
        }
    })
}

/// Every worker's share of each window's log table, merged on worker 0 of process 0 (one
/// constant key), which hands the whole table to its collector once every share is in.
fn gather_tables(tables: StreamVec<'_, Time, WindowTable>, collected: Sender<Collected>) {
    let mut pending: Held<WindowTable> = Held::default();
    tables.sink(Exchange::new(|_: &WindowTable| 0), "gather_tables", move |(input, frontier)| {
        input.for_each(|cap, data| {
            if let Some(&time) = cap.least() {
                let whole = pending.entry(time, || WindowTable::empty(time));
                for share in data.drain(..) {
                    whole.merge(share);
                }
            }
        });
        while let Some((_, table)) = pending.next_passed(&[frontier]) {
            let _ = collected.send(Collected::Table { table });
        }
    });
}

/// What the collector hands to the sinks.
#[derive(Debug)]
pub enum Completed {
    Metrics(MetricBatch),
    Events(EventBatch),
    /// A window a stop cut short: not exported, only counted.
    Cancelled {
        time: Time,
    },
    /// The log table of a whole window.
    Table(WindowTable),
}

/// Merges the workers' shares of each window (and of each events tick) once every worker's
/// frontier has passed it.
pub struct Collector {
    frontiers: Vec<Option<Time>>,
    pending: Held<Vec<Vec<MetricSet>>>,
    event_frontiers: Vec<Option<Time>>,
    /// Each tick's events and the watch's version as of it (a tick may have either alone).
    pending_events: Held<(Vec<Event>, Option<String>)>,
    /// Windows some worker's feed closed in the middle of: dropped when they complete.
    cancelled: Vec<Time>,
}

impl Collector {
    pub fn new(workers: usize) -> Collector {
        Collector {
            frontiers: vec![Some(0); workers],
            pending: Held::default(),
            event_frontiers: vec![Some(0); workers],
            pending_events: Held::default(),
            cancelled: Vec::new(),
        }
    }

    /// Takes one message; returns what it completed, oldest first.
    pub fn absorb(&mut self, message: Collected) -> Vec<Completed> {
        match message {
            Collected::Window { time, sets } => {
                self.pending.entry(time, Vec::new).push(sets);
                Vec::new()
            }
            Collected::Frontier { worker, frontier } => {
                if let Some(slot) = self.frontiers.get_mut(worker) {
                    *slot = frontier;
                }
                self.complete_windows()
            }
            Collected::Events { time, mut events } => {
                let pending = &mut self.pending_events.entry(time, Default::default).0;
                if pending.is_empty() {
                    // The usual case, one share per tick: taken as it came, not copied (a burst
                    // would otherwise be held twice while it moves).
                    *pending = events;
                } else {
                    pending.append(&mut events);
                }
                Vec::new()
            }
            Collected::EventsFrontier { worker, frontier } => {
                if let Some(slot) = self.event_frontiers.get_mut(worker) {
                    *slot = frontier;
                }
                self.complete_events()
            }
            Collected::EventsVersion { time, resource_version } => {
                self.pending_events.entry(time, Default::default).1 = Some(resource_version);
                self.complete_events()
            }
            Collected::Cancelled { time } => {
                if !self.cancelled.contains(&time) {
                    self.cancelled.push(time);
                }
                Vec::new()
            }
            // Complete already: the graph gathered it once every worker had passed the window.
            // A window a stop cancelled is not exported, so neither is its table.
            Collected::Table { table } if self.cancelled.contains(&table.time) => Vec::new(),
            Collected::Table { table } => vec![Completed::Table(table)],
        }
    }

    /// Every window before this one is complete (`None`: every worker has finished).
    pub fn frontier(&self) -> Option<Time> {
        self.frontiers.iter().flatten().min().copied()
    }

    /// Whether every worker has finished.
    pub fn done(&self) -> bool {
        self.frontiers.iter().all(Option::is_none) && self.event_frontiers.iter().all(Option::is_none)
    }

    fn complete_windows(&mut self) -> Vec<Completed> {
        let frontiers = &self.frontiers;
        let cancelled = &self.cancelled;
        std::iter::from_fn(|| self.pending.next_if(|t| passed(frontiers, t)))
            .map(|(time, shares)| {
                if cancelled.contains(&time) {
                    let sets: usize = shares.iter().map(Vec::len).sum();
                    tracing::warn!(
                        window = time,
                        sets,
                        "window {time} not exported: the stop cancelled its scrapes before every node was in"
                    );
                    return Completed::Cancelled { time };
                }
                Completed::Metrics(merge(time, shares))
            })
            .collect()
    }

    /// Ticks that every worker has passed, with the watch's version as of each.
    fn complete_events(&mut self) -> Vec<Completed> {
        let frontiers = &self.event_frontiers;
        std::iter::from_fn(|| self.pending_events.next_if(|t| passed(frontiers, t)))
            .map(|(time, (mut events, resource_version))| {
                sort_events_by_state(&mut events);
                Completed::Events(EventBatch { time, events, resource_version })
            })
            .collect()
    }
}

/// Sorts events by state: uid, count, last timestamp. Dedup exports a state once, so states are
/// unique and an unstable sort is exact.
///
/// What is sorted is each uid's first 16 bytes as a number beside the event's index, so most
/// comparisons read neither the events nor their uids; equal prefixes compare the states. The
/// events are then moved into place by swaps, with no second copy of the batch.
pub fn sort_events_by_state(events: &mut [Event]) {
    fn prefix(uid: &str) -> u128 {
        let mut bytes = [0u8; 16];
        let len = uid.len().min(16);
        bytes[..len].copy_from_slice(&uid.as_bytes()[..len]);
        u128::from_be_bytes(bytes)
    }
    fn state(e: &Event) -> (&heapster_dataflows::Name, i64, i64) {
        (&e.uid, e.count, e.last_timestamp)
    }
    let mut order: Vec<(u128, usize)> =
        events.iter().enumerate().map(|(i, event)| (prefix(&event.uid), i)).collect();
    // A prefix padded with zeros orders as the uid does; equal ones say nothing, and the states
    // decide.
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| state(&events[a.1]).cmp(&state(&events[b.1]))));
    // `order[i]` names the event that belongs at `i`: follow each cycle, swapping along it.
    let mut order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..order.len() {
        let mut at = start;
        while order[at] != start {
            let from = order[at];
            events.swap(at, from);
            order[at] = at;
            at = from;
        }
        order[at] = at;
    }
}

fn passed(frontiers: &[Option<Time>], time: Time) -> bool {
    frontiers.iter().all(|f| f.is_none_or(|f| f > time))
}

/// Sorts sets by key (keys are unique within a window, so an unstable sort is exact).
pub fn sorted_by_key(sets: Vec<MetricSet>) -> Vec<MetricSet> {
    KeySorter::default().sort(sets)
}

/// Sorts a worker's windows by key, one after the other, trying first the order the last window
/// took.
///
/// What is sorted is a compact copy of each key (its variant and its names as string slices),
/// not the sets: a comparison then reads two entries side by side and the names themselves,
/// rather than first two sets' boxes scattered over the heap. The sets are then put in that
/// order in place, cycle by cycle: two more vectors of 100,000 sets were 30 MB to fill a window.
///
/// A worker's sets reach it in the same order every window while the cluster does not change,
/// so the last window's permutation nearly always sorts the next: checking that it does takes
/// one comparison per set, where a sort takes about log2(100,000) = 17, most of them between
/// pod names with a long common prefix. Only a window it does not sort is sorted anew.
#[derive(Default)]
pub struct KeySorter {
    /// The last window's order: `last[j]` is where the set that went to `j` came in.
    last: Vec<u32>,
}

impl KeySorter {
    pub fn sort(&mut self, mut sets: Vec<MetricSet>) -> Vec<MetricSet> {
        /// Each set's key in `order`, and whether they come in increasing order, strictly (the
        /// keys are unique: then that is their order). Sets and names are asked for ahead.
        fn keyed<'a>(sets: &'a [MetricSet], order: &[u32]) -> (Vec<(SortKey<'a>, u32)>, bool) {
            let mut keys: Vec<(SortKey<'a>, u32)> = Vec::with_capacity(order.len());
            let mut sorted = true;
            for (j, &i) in order.iter().enumerate() {
                if let Some(&ahead) = order.get(j + 8) {
                    sets[ahead as usize].prefetch();
                }
                if let Some(&ahead) = order.get(j + 4) {
                    SortKey::of(&sets[ahead as usize].key).prefetch();
                }
                let key = SortKey::of(&sets[i as usize].key);
                if let Some((last, _)) = keys.last() {
                    sorted &= last.cmp(&key).is_lt();
                }
                keys.push((key, i));
            }
            (keys, sorted)
        }
        let (mut order, sorted) = if self.last.len() == sets.len() {
            keyed(&sets, &self.last)
        } else {
            keyed(&sets, &(0..sets.len() as u32).collect::<Vec<_>>())
        };
        if !sorted {
            order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        self.last.clear();
        self.last.extend(order.iter().map(|(_, i)| *i));
        drop(order);
        // `order[j]`: where the set that goes to `j` is now.
        let mut order: Vec<usize> = self.last.iter().map(|i| *i as usize).collect();
        for start in 0..order.len() {
            // Each position is set once; `order[j] == j` marks it placed.
            let mut j = start;
            while order[j] != start && order[j] != j {
                let from = order[j];
                sets.swap(j, from);
                order[j] = j;
                j = from;
            }
            order[j] = j;
        }
        sets
    }
}

/// An [`EntityKey`](heapster_dataflows::EntityKey) as its order sees it: the variant, then its
/// names in order (absent ones empty).
struct SortKey<'a> {
    variant: u8,
    names: [&'a str; 3],
}

impl<'a> SortKey<'a> {
    fn of(key: &'a heapster_dataflows::EntityKey) -> SortKey<'a> {
        use heapster_dataflows::EntityKey::*;
        let (variant, names) = match key {
            Cluster => (0, ["", "", ""]),
            Namespace { ns } => (1, [ns.as_str(), "", ""]),
            Node { node } => (2, [node.as_str(), "", ""]),
            SysContainer { node, name } => (3, [node.as_str(), name.as_str(), ""]),
            Pod { ns, pod } => (4, [ns.as_str(), pod.as_str(), ""]),
            PodContainer { ns, pod, container } => (5, [ns.as_str(), pod.as_str(), container.as_str()]),
        };
        SortKey { variant, names }
    }

    /// Asks the CPU for the names' bytes.
    #[inline]
    fn prefetch(&self) {
        for name in &self.names[..self.len()] {
            heapster_dataflows::model::prefetch(name.as_ptr());
        }
    }

    /// How many names the variant has.
    #[inline]
    fn len(&self) -> usize {
        match self.variant {
            0 => 0,
            1 | 2 => 1,
            3 | 4 => 2,
            _ => 3,
        }
    }

    fn cmp(&self, other: &SortKey<'_>) -> std::cmp::Ordering {
        self.variant.cmp(&other.variant).then_with(|| {
            for (a, b) in self.names.iter().zip(&other.names) {
                // Interned names are often the very same string: no need to read it.
                if !std::ptr::eq(*a, *b) {
                    let order = a.cmp(b);
                    if order.is_ne() {
                        return order;
                    }
                }
            }
            std::cmp::Ordering::Equal
        })
    }
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
    fn events_sort_by_state_as_a_plain_sort_does() {
        // Uids alike in their first 16 bytes, shorter than 16, with a NUL, and repeated with
        // other counts and times; shuffled by a fixed stride.
        let uids =
            ["0123456789abcdef-b", "0123456789abcdef-a", "0123456789abcdef", "ab", "ab\0", "", "zz", "a"];
        let events: Vec<Event> = (0..97)
            .map(|i| Event {
                uid: heapster_dataflows::Name::new(uids[(i * 5) % uids.len()]),
                count: (i % 3) as i64,
                last_timestamp: (i % 4) as i64,
                ..Event::default()
            })
            .collect();
        let mut expected: Vec<_> = events.iter().map(Event::state).collect();
        expected.sort();
        expected.dedup();
        let mut unique = Vec::new();
        for event in events {
            if !unique.iter().any(|u: &Event| u.state() == event.state()) {
                unique.push(event);
            }
        }
        sort_events_by_state(&mut unique);
        assert_eq!(unique.iter().map(Event::state).collect::<Vec<_>>(), expected);
        assert!(unique.len() >= 20, "{} states", unique.len());
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
    fn each_window_is_sorted_whatever_the_last_one_was() {
        let mut sorter = KeySorter::default();
        let names = |sets: &[MetricSet]| sets.iter().map(|s| s.key.to_string()).collect::<Vec<_>>();
        let window = |keys: &[&str]| keys.iter().map(|k| set(k)).collect::<Vec<_>>();
        assert_eq!(names(&sorter.sort(window(&["c", "a", "b"]))), ["node:a", "node:b", "node:c"]);
        // The same arrival order again: the last order sorts it.
        assert_eq!(names(&sorter.sort(window(&["c", "a", "b"]))), ["node:a", "node:b", "node:c"]);
        // As many sets, other keys: the last order does not sort them, a sort does.
        assert_eq!(names(&sorter.sort(window(&["b", "d", "a"]))), ["node:a", "node:b", "node:d"]);
        assert_eq!(names(&sorter.sort(window(&["a", "c", "b"]))), ["node:a", "node:b", "node:c"]);
        assert_eq!(names(&sorter.sort(window(&["e", "a"]))), ["node:a", "node:e"]);
        assert!(sorter.sort(Vec::new()).is_empty());
    }

    #[test]
    fn sorts_as_keys_order() {
        let keys = vec![
            EntityKey::PodContainer { ns: "a".into(), pod: "p".into(), container: "c".into() },
            EntityKey::PodContainer { ns: "a".into(), pod: "p".into(), container: "b".into() },
            EntityKey::PodContainer { ns: "a".into(), pod: "pp".into(), container: "a".into() },
            EntityKey::Pod { ns: "b".into(), pod: "p".into() },
            EntityKey::Pod { ns: "a".into(), pod: "q".into() },
            EntityKey::Pod { ns: "a".into(), pod: "".into() },
            EntityKey::SysContainer { node: "n".into(), name: "kubelet".into() },
            EntityKey::SysContainer { node: "m".into(), name: "runtime".into() },
            EntityKey::Node { node: "n2".into() },
            EntityKey::Node { node: "n".into() },
            EntityKey::Namespace { ns: "z".into() },
            EntityKey::Namespace { ns: "kube-system".into() },
            EntityKey::Cluster,
        ];
        let mut expected = keys.clone();
        expected.sort();
        let sorted = sorted_by_key(keys.into_iter().map(MetricSet::new).collect());
        let got: Vec<EntityKey> = sorted.iter().map(|s| s.key.clone()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn collector_waits_for_every_worker() {
        let mut c = Collector::new(2);
        assert!(c.absorb(Collected::Window { time: 60, sets: vec![set("b")] }).is_empty());
        assert!(c.absorb(Collected::Frontier { worker: 0, frontier: Some(61) }).is_empty());
        assert!(c.absorb(Collected::Window { time: 60, sets: vec![set("a"), set("c")] }).is_empty());
        let done = c.absorb(Collected::Frontier { worker: 1, frontier: None });
        assert_eq!(done.len(), 1);
        let Completed::Metrics(batch) = &done[0] else { panic!("a window") };
        let names: Vec<String> = batch.sets.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(names, ["node:a", "node:b", "node:c"]);
        assert!(!c.done());
        assert!(c.absorb(Collected::Frontier { worker: 0, frontier: None }).is_empty());
        assert!(!c.done(), "events still open");
        for worker in 0..2 {
            c.absorb(Collected::EventsFrontier { worker, frontier: None });
        }
        assert!(c.done());
    }

    fn event(uid: &str, count: i64) -> Event {
        Event { uid: uid.into(), count, ..Event::default() }
    }

    #[test]
    fn event_ticks_complete_with_their_version() {
        let mut c = Collector::new(2);
        c.absorb(Collected::Events { time: 5, events: vec![event("b", 1)] });
        c.absorb(Collected::Events { time: 5, events: vec![event("a", 2)] });
        c.absorb(Collected::EventsVersion { time: 5, resource_version: "40".into() });
        c.absorb(Collected::EventsVersion { time: 6, resource_version: "41".into() });
        assert!(c.absorb(Collected::EventsFrontier { worker: 0, frontier: Some(7) }).is_empty());
        let done = c.absorb(Collected::EventsFrontier { worker: 1, frontier: Some(7) });
        assert_eq!(done.len(), 2, "a tick without events still moves the version");
        let Completed::Events(first) = &done[0] else { panic!("events") };
        assert_eq!(first.events.iter().map(|e| e.uid.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(first.resource_version.as_deref(), Some("40"));
        let Completed::Events(second) = &done[1] else { panic!("events") };
        assert!(second.events.is_empty());
        assert_eq!(second.resource_version.as_deref(), Some("41"));
    }
}
