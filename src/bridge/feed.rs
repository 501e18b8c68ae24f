//! The feed protocol between the sources and the workers, written once: a window's metadata to
//! worker 0, each node's body to the worker that owns the node, then a close to every worker.
//!
//! A source never picks a worker: it hands [`Feeds`] a body named by its node, and the feed
//! takes it to the node's owner (`node_owner` over every worker of the cluster). That owner
//! is what lets `rate` run without an exchange: a node's previous samples are on the worker
//! that receives its next ones. [`Owned`] carries the owner the feed chose, and the worker
//! checks it on receipt.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::model::Interner;
use heapster_dataflows::{Event, MetricSet, Name, Time};

use crate::cluster::Share;
use crate::sinks::SinkStats;

/// A node's answer as its source fetched it. The worker that owns the node parses it, on its
/// own thread: parsing is spread over the workers, and the bridge never knows a body's format.
pub trait Fetched: Send + fmt::Debug {
    /// The node whose owner parses this body.
    fn node(&self) -> &Name;

    /// Appends the node's sets to `out`. `window_ns` stamps samples that carry no time.
    fn parse(self: Box<Self>, window_ns: i64, interner: &mut Interner, out: &mut Vec<MetricSet>) -> Parsed;
}

/// What parsing a body gave, for the workers' counters and logs.
#[derive(Debug)]
pub enum Parsed {
    /// There was no body: the fetch failed (the source logs a node's failures when they change).
    Unfetched,
    /// `bytes` read into sets; `warnings` name what was skipped.
    Sets { bytes: u64, warnings: Vec<String> },
    /// `bytes` read and refused whole (nothing was appended). `what` names the body for the log.
    Rejected { bytes: u64, what: &'static str, error: Box<dyn std::error::Error + Send + Sync> },
}

/// A body on its way to the worker that owns its node. Only a feed makes one, from the node's
/// name, so a body cannot reach another worker by mistake; the worker checks [`Owned::owner`]
/// against its own index all the same.
#[derive(Debug)]
pub struct Owned {
    owner: usize,
    body: Box<dyn Fetched>,
}

impl Owned {
    /// The global index of the worker that owns the node.
    pub fn owner(&self) -> usize {
        self.owner
    }

    pub fn node(&self) -> &Name {
        self.body.node()
    }

    pub fn into_body(self) -> Box<dyn Fetched> {
        self.body
    }
}

/// What a source sends a worker. A window's bodies arrive one by one, so a worker parses while
/// the source is still fetching, and memory holds a few bodies, not a window of them.
#[derive(Debug)]
pub enum Feed {
    /// Metadata changes that take effect at `time` (sent to each process's worker 0 only, before
    /// the window's bodies).
    Meta { time: Time, changes: Vec<(MetaRecord, isize)> },
    /// One of this worker's nodes for the window ending at `time`.
    Scrape { time: Time, body: Owned },
    /// The window ending at `time` is complete at the source. Every worker gets one per window,
    /// with or without bodies: it is what closes the window.
    Close { time: Time },
    /// Events read at tick `time` (sent to worker 0 only, before the tick's `EventsTick`).
    Events { time: Time, events: Vec<Event> },
    /// Every event of tick `time` was sent; the watch stood at `resource_version` then. Every
    /// worker gets one per tick.
    EventsTick { time: Time, resource_version: Option<String> },
}

/// The workers have stopped: nothing more can be fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the workers stopped")]
pub struct WorkersGone;

/// The source's end of this process's workers' feeds.
#[derive(Clone, Debug)]
pub struct Feeds {
    /// One per local worker, in worker order.
    senders: Vec<Sender<Feed>>,
    share: Share,
    /// Where the windows past the graph stand, for a source that waits for them.
    in_sinks: Option<Arc<InSinks>>,
}

/// The windows past the graph: how far the collector has completed them, and the windows the
/// sinks still hold. A source that can wait (replay) feeds a window's bodies only once the
/// window before has been let go by every sink (written, encoded into its queue, or dropped),
/// so that one window's sets are in memory at a time rather than one being written while the
/// next is parsed.
#[derive(Debug, Default)]
pub struct InSinks {
    state: Mutex<Outflow>,
}

#[derive(Debug, Default)]
struct Outflow {
    /// Every worker has passed the windows before this one (`Time::MAX`: every worker is done).
    frontier: Time,
    /// Windows handed to the sinks.
    handed: u64,
    /// Each sink's count of the windows it is done with.
    sinks: Vec<Arc<SinkStats>>,
}

/// How often [`Feeds::wait_for_sinks`] looks again.
const SINKS_POLL: Duration = Duration::from_millis(1);
/// The longest [`Feeds::wait_for_sinks`] waits: it bounds memory, never correctness, so a
/// window stuck past this (a sink far behind, workers gone) does not hold the source up.
const SINKS_PATIENCE: Duration = Duration::from_secs(10);

impl InSinks {
    /// The sinks the windows go to.
    pub fn watch(&self, sinks: Vec<Arc<SinkStats>>) {
        if let Ok(mut state) = self.state.lock() {
            state.sinks = sinks;
        }
    }

    /// A window handed to every sink; it counts until each is done with it.
    pub fn hand(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.handed += 1;
        }
    }

    /// The collector's frontier: every window before `frontier` is complete (`None`: all are).
    pub fn passed(&self, frontier: Option<Time>) {
        if let Ok(mut state) = self.state.lock() {
            state.frontier = frontier.unwrap_or(Time::MAX);
        }
    }

    /// Whether the window ending at `time` has been completed and no sink holds a window.
    pub fn released(&self, time: Time) -> bool {
        self.state.lock().map_or(true, |state| {
            state.frontier > time
                && state.sinks.iter().all(|s| s.windows_handled.load(Ordering::Relaxed) >= state.handed)
        })
    }
}

impl Feeds {
    /// `senders[i]` feeds this process's worker `i`; `share` places them in the cluster.
    pub fn new(senders: Vec<Sender<Feed>>, share: Share) -> Feeds {
        debug_assert_eq!(senders.len(), share.workers, "one feed per local worker");
        Feeds { senders, share, in_sinks: None }
    }

    /// These feeds, telling [`Feeds::wait_for_sinks`] where the windows past the graph stand.
    pub fn with_sinks(self, in_sinks: Arc<InSinks>) -> Feeds {
        Feeds { in_sinks: Some(in_sinks), ..self }
    }

    /// Waits until the window ending at `time` has left the graph and every sink has let go of
    /// it, or at most [`SINKS_PATIENCE`]; false when `stop` is set. At once without
    /// [`Feeds::with_sinks`].
    pub fn wait_for_sinks(&self, time: Time, stop: &AtomicBool) -> bool {
        let Some(in_sinks) = &self.in_sinks else { return !stop.load(Ordering::Relaxed) };
        let started = Instant::now();
        while !in_sinks.released(time) && !stop.load(Ordering::Relaxed) {
            if started.elapsed() > SINKS_PATIENCE {
                tracing::debug!(window = time, "the sinks still hold the window; feeding the next one");
                break;
            }
            std::thread::sleep(SINKS_POLL);
        }
        !stop.load(Ordering::Relaxed)
    }

    /// This process's workers alone (no cluster).
    pub fn single(senders: Vec<Sender<Feed>>) -> Feeds {
        let share = Share::single(senders.len());
        Feeds::new(senders, share)
    }

    pub fn share(&self) -> Share {
        self.share
    }

    /// Whether one of this process's workers owns `node`: a process fetches only its own nodes.
    pub fn owns(&self, node: &str) -> bool {
        self.share.local_owner(node).is_some()
    }

    /// The window's metadata changes, to this process's worker 0 (the graph's exchange takes each
    /// record to the workers that enrich with it). In a cluster each process feeds the records
    /// its own workers enrich with ([`Share::keeps`]), and the leader the namespaces.
    pub fn metadata(&self, time: Time, changes: Vec<(MetaRecord, isize)>) -> Result<(), WorkersGone> {
        if changes.is_empty() {
            return Ok(());
        }
        send(&self.senders[0], Feed::Meta { time, changes })
    }

    /// A node's body for the window ending at `time`, to the worker that owns the node. A node
    /// of another process is not sent (and logged: its source should not have fetched it).
    pub fn scrape(&self, time: Time, body: Box<dyn Fetched>) -> Result<(), WorkersGone> {
        match self.addressed(time, body) {
            Some((local, message)) => send(&self.senders[local], message),
            None => Ok(()),
        }
    }

    /// The message taking `body` to its owner, with the owner's local index; `None` (logged)
    /// for a node of another process.
    fn addressed(&self, time: Time, body: Box<dyn Fetched>) -> Option<(usize, Feed)> {
        let Some(local) = self.share.local_owner(body.node()) else {
            tracing::error!(node = %body.node(), "a body for a node of another process; dropped");
            return None;
        };
        let owner = self.share.first_worker() + local;
        Some((local, Feed::Scrape { time, body: Owned { owner, body } }))
    }

    /// Closes the window ending at `time` at every worker.
    pub fn close(&self, time: Time) -> Result<(), WorkersGone> {
        self.senders.iter().try_for_each(|sender| send(sender, Feed::Close { time }))
    }

    /// Events read at tick `time`, to worker 0 (the dedup's exchange spreads them).
    pub fn events(&self, time: Time, events: Vec<Event>) -> Result<(), WorkersGone> {
        if events.is_empty() {
            return Ok(());
        }
        send(&self.senders[0], Feed::Events { time, events })
    }

    /// Closes events tick `time` at every worker, with where the watch stood.
    pub fn events_tick(&self, time: Time, resource_version: Option<String>) -> Result<(), WorkersGone> {
        self.senders.iter().try_for_each(|sender| {
            send(sender, Feed::EventsTick { time, resource_version: resource_version.clone() })
        })
    }

    /// The nodes in `nodes` grouped by the local worker that owns them, with that worker's feed:
    /// for sources that fetch each worker's nodes in a task of its own, so that a worker's window
    /// closes as soon as its own nodes are in. Nodes of other processes are left out.
    pub fn split<N>(&self, nodes: Vec<N>, name: impl Fn(&N) -> &str) -> Vec<(WorkerFeed, Vec<N>)> {
        let mut split: Vec<(WorkerFeed, Vec<N>)> = (0..self.senders.len())
            .map(|local| (WorkerFeed { feeds: self.clone(), local }, Vec::new()))
            .collect();
        for node in nodes {
            if let Some(local) = self.share.local_owner(name(&node)) {
                split[local].1.push(node);
            }
        }
        split
    }
}

/// One worker's feed, for the task that fetches that worker's nodes.
#[derive(Clone, Debug)]
pub struct WorkerFeed {
    feeds: Feeds,
    local: usize,
}

impl WorkerFeed {
    /// A body of one of this worker's nodes. A node another worker owns goes to its owner.
    pub fn scrape(&self, time: Time, body: Box<dyn Fetched>) -> Result<(), WorkersGone> {
        if self.feeds.share.local_owner(body.node()) != Some(self.local) {
            tracing::error!(node = %body.node(), worker = self.local, "a body fetched for another worker; rerouted");
        }
        self.feeds.scrape(time, body)
    }

    /// As [`WorkerFeed::scrape`], for a task of the I/O runtime: while the worker's feed is full,
    /// a blocking thread waits for room and the task yields. The runtime's own thread never
    /// blocks, so it is not handed over to another thread mid-window.
    pub async fn scrape_async(&self, time: Time, body: Box<dyn Fetched>) -> Result<(), WorkersGone> {
        if self.feeds.share.local_owner(body.node()) != Some(self.local) {
            tracing::error!(node = %body.node(), worker = self.local, "a body fetched for another worker; rerouted");
        }
        let Some((local, message)) = self.feeds.addressed(time, body) else { return Ok(()) };
        send_async(&self.feeds.senders[local], message).await
    }

    /// Closes the window ending at `time` at this worker.
    pub fn close(&self, time: Time) -> Result<(), WorkersGone> {
        send(&self.feeds.senders[self.local], Feed::Close { time })
    }

    /// As [`WorkerFeed::close`], for a task of the I/O runtime (see [`WorkerFeed::scrape_async`]).
    pub async fn close_async(&self, time: Time) -> Result<(), WorkersGone> {
        send_async(&self.feeds.senders[self.local], Feed::Close { time }).await
    }
}

/// Sends one message from a task, which yields while the worker's feed is full: a blocking
/// thread waits for room, so the runtime's thread neither blocks nor is handed over.
async fn send_async(sender: &Sender<Feed>, message: Feed) -> Result<(), WorkersGone> {
    let Some(message) = try_feed(sender, message)? else { return Ok(()) };
    let sender = sender.clone();
    match tokio::task::spawn_blocking(move || sender.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(WorkersGone),
    }
}

/// Sends one message, blocking while the worker's feed is full: a slow worker slows its source,
/// not memory. From the I/O runtime the wait is announced, so other tasks run meanwhile. A feed
/// with room takes the message at once: announcing a wait hands the runtime's core to another
/// thread, a thread switch per body for nothing.
/// Sends `message` if the feed has room; gives it back when the feed is full.
fn try_feed(sender: &Sender<Feed>, message: Feed) -> Result<Option<Feed>, WorkersGone> {
    match sender.try_send(message) {
        Ok(()) => Ok(None),
        Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(WorkersGone),
        Err(crossbeam_channel::TrySendError::Full(message)) => Ok(Some(message)),
    }
}

fn send(sender: &Sender<Feed>, message: Feed) -> Result<(), WorkersGone> {
    let Some(message) = try_feed(sender, message)? else { return Ok(()) };
    let send = || sender.send(message).map_err(|_| WorkersGone);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(send)
        }
        _ => send(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::meta::NamespaceMeta;
    use heapster_dataflows::model::node_owner;

    #[derive(Debug)]
    struct Body(Name);

    impl Fetched for Body {
        fn node(&self) -> &Name {
            &self.0
        }

        fn parse(self: Box<Self>, _: i64, _: &mut Interner, _: &mut Vec<MetricSet>) -> Parsed {
            Parsed::Unfetched
        }
    }

    fn channels(n: usize) -> (Vec<Sender<Feed>>, Vec<crossbeam_channel::Receiver<Feed>>) {
        (0..n).map(|_| crossbeam_channel::unbounded()).unzip()
    }

    #[test]
    fn every_body_reaches_the_worker_that_owns_its_node() {
        // Process 1 of 2, three workers each: global workers 3, 4 and 5.
        let share = Share { process: 1, processes: 2, workers: 3 };
        let (senders, receivers) = channels(3);
        let feeds = Feeds::new(senders, share);
        let nodes: Vec<String> = (0..60).map(|i| format!("node-{i}")).collect();
        let ours: Vec<&String> = nodes.iter().filter(|n| feeds.owns(n)).collect();
        assert!(!ours.is_empty() && ours.len() < nodes.len(), "{} of {}", ours.len(), nodes.len());
        for node in &nodes {
            feeds.scrape(7, Box::new(Body(Name::new(node)))).unwrap();
        }
        let mut received = 0;
        for (local, receiver) in receivers.iter().enumerate() {
            for message in receiver.try_iter() {
                let Feed::Scrape { time: 7, body } = message else { panic!("a scrape") };
                assert_eq!(body.owner(), 3 + local);
                assert_eq!(node_owner(body.node(), 6), 3 + local, "{}", body.node());
                received += 1;
            }
        }
        assert_eq!(received, ours.len(), "a node of the other process is not sent");
    }

    #[test]
    fn metadata_goes_to_worker_0_and_close_to_every_worker() {
        let (senders, receivers) = channels(2);
        let leader = Feeds::single(senders);
        let record =
            MetaRecord::Namespace { name: Name::new("ns"), meta: NamespaceMeta { uid: Name::new("u") } };
        leader.metadata(5, vec![(record.clone(), 1)]).unwrap();
        leader.metadata(5, Vec::new()).unwrap();
        leader.close(5).unwrap();
        assert!(matches!(receivers[0].try_recv(), Ok(Feed::Meta { time: 5, .. })));
        for receiver in &receivers {
            assert!(matches!(receiver.try_recv(), Ok(Feed::Close { time: 5 })));
            assert!(receiver.try_recv().is_err(), "nothing more");
        }
        let (senders, receivers) = channels(2);
        let other = Feeds::new(senders, Share { process: 1, processes: 2, workers: 2 });
        other.metadata(5, vec![(record, 1)]).unwrap();
        assert!(
            matches!(receivers[0].try_recv(), Ok(Feed::Meta { time: 5, .. })),
            "any process feeds its own"
        );
        assert!(receivers[1].try_recv().is_err());
        drop(receivers);
        assert_eq!(other.close(6), Err(WorkersGone));
    }

    #[test]
    fn a_full_feed_delivers_once_the_worker_takes_a_body_and_a_gone_worker_is_an_error() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let feeds = Feeds::single(vec![sender]);
        let (feed, _) = feeds.split(vec!["n"], |n: &&str| *n).into_iter().next().unwrap();
        runtime.block_on(async {
            feed.scrape_async(1, Box::new(Body(Name::new("n")))).await.unwrap();
            // The feed is full: the second body waits, and other tasks still run meanwhile.
            let second = tokio::spawn({
                let feed = feed.clone();
                async move { feed.scrape_async(1, Box::new(Body(Name::new("n")))).await }
            });
            let other = tokio::spawn(async { 7 });
            assert_eq!(other.await.unwrap(), 7);
            assert!(matches!(receiver.recv(), Ok(Feed::Scrape { time: 1, .. })));
            second.await.unwrap().unwrap();
            assert!(matches!(receiver.recv(), Ok(Feed::Scrape { time: 1, .. })));
            feed.close_async(1).await.unwrap();
            assert!(matches!(receiver.recv(), Ok(Feed::Close { time: 1 })));
            drop(receiver);
            let gone = feed.scrape_async(1, Box::new(Body(Name::new("n")))).await;
            assert_eq!(gone, Err(WorkersGone));
            assert_eq!(feed.close_async(2).await, Err(WorkersGone));
        });
    }

    #[test]
    fn a_window_is_released_once_complete_and_every_sink_is_done_with_it() {
        let in_sinks = Arc::new(InSinks::default());
        let (file, influxdb) = (Arc::new(SinkStats::default()), Arc::new(SinkStats::default()));
        in_sinks.watch(vec![Arc::clone(&file), Arc::clone(&influxdb)]);
        assert!(!in_sinks.released(5), "window 5 is still in the graph");
        in_sinks.hand();
        in_sinks.passed(Some(6));
        file.windows_handled.fetch_add(1, Ordering::Relaxed);
        assert!(!in_sinks.released(5), "one sink still holds it");
        influxdb.windows_handled.fetch_add(1, Ordering::Relaxed);
        assert!(in_sinks.released(5));
        assert!(!in_sinks.released(6), "window 6 is not complete");
        in_sinks.passed(None);
        assert!(in_sinks.released(6), "every worker is done");

        let (senders, _receivers) = channels(1);
        assert!(Feeds::single(senders.clone()).wait_for_sinks(6, &AtomicBool::new(false)), "no gate");
        let feeds = Feeds::single(senders).with_sinks(Arc::clone(&in_sinks));
        in_sinks.hand();
        let sinks = [Arc::clone(&file), Arc::clone(&influxdb)];
        let done = std::thread::spawn(move || {
            for sink in sinks {
                std::thread::sleep(Duration::from_millis(20));
                sink.windows_handled.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(feeds.wait_for_sinks(7, &AtomicBool::new(false)));
        assert_eq!(influxdb.windows_handled.load(Ordering::Relaxed), 2, "returned once both were done");
        done.join().unwrap();
        in_sinks.hand();
        assert!(!feeds.wait_for_sinks(8, &AtomicBool::new(true)), "a stop ends the wait");
    }

    #[test]
    fn a_worker_feed_splits_nodes_by_owner_and_closes_its_own_worker() {
        let (senders, receivers) = channels(3);
        let feeds = Feeds::single(senders);
        let nodes: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let split = feeds.split(nodes, |n| n.as_str());
        assert_eq!(split.iter().map(|(_, n)| n.len()).sum::<usize>(), 30);
        for (feed, nodes) in &split {
            for node in nodes {
                feed.scrape(1, Box::new(Body(Name::new(node)))).unwrap();
            }
            feed.close(1).unwrap();
        }
        for (local, receiver) in receivers.iter().enumerate() {
            let messages: Vec<Feed> = receiver.try_iter().collect();
            assert_eq!(messages.len(), split[local].1.len() + 1);
            assert!(matches!(messages.last(), Some(Feed::Close { time: 1 })));
        }
    }
}
