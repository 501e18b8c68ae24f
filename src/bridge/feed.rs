//! The feed protocol between the sources and the workers, written once: a window's metadata to
//! worker 0, each node's body to the worker that owns the node, then a close to every worker.
//!
//! A source never picks a worker: it hands [`Feeds`] a body named by its node, and the feed
//! takes it to the node's owner (`node_owner` over every worker of the cluster). That owner
//! is what lets `rate` run without an exchange: a node's previous samples are on the worker
//! that receives its next ones. [`Owned`] carries the owner the feed chose, and the worker
//! checks it on receipt.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
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

impl Feed {
    /// A worker's feed, holding at most `bound` messages: a slow worker slows its source rather
    /// than grow memory.
    pub fn channel(bound: usize) -> (FeedSender, FeedReceiver) {
        let (sender, receiver) = crossbeam_channel::bounded(bound);
        let lane = Arc::new(Lane::default());
        (FeedSender { sender, wake: Wake(Arc::clone(&lane)) }, FeedReceiver { receiver, lane: Gone(lane) })
    }
}

/// What the two ends of one worker's feed share: the worker's thread, to unpark, and the
/// room its takes make, for senders waiting on a full feed.
///
/// No wake-up is lost. The worker publishes its thread ([`FeedReceiver::listen`]) before it
/// first looks at the feed; a sender looks for the thread after its message is in the channel.
/// A SeqCst fence on each side, between its write and its read, forbids both missing the other:
/// either the worker's look sees the message, or the sender finds the thread and unparks it.
/// From then on every message is followed by an unpark, and std's park keeps that token: an
/// unpark that lands between the worker's empty look and its park makes the park return at
/// once (timely parks in `step_or_park` with `std::thread::park`/`park_timeout`, so the token
/// is the worker's own). A dropped sender unparks too, after its channel end is gone, so a
/// worker whose feed closes wakes and finishes.
#[derive(Debug, Default)]
struct Lane {
    worker: OnceLock<Thread>,
    /// A permit per message taken: senders waiting for room wait on it, not on a thread.
    room: tokio::sync::Notify,
}

impl Lane {
    /// Unparks the worker (if it has listened yet) after a message or a disconnection.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
    }
}

/// Unparks the worker when dropped: declared after the channel's end in [`FeedSender`], so
/// it runs once that end is gone.
#[derive(Clone, Debug)]
struct Wake(Arc<Lane>);

impl Drop for Wake {
    fn drop(&mut self) {
        self.0.wake();
    }
}

/// The source's end of one worker's feed: every message it puts in unparks the worker.
#[derive(Clone, Debug)]
pub struct FeedSender {
    sender: Sender<Feed>,
    /// Must stay after `sender` (fields drop in order): the worker wakes to a closed feed.
    wake: Wake,
}

impl FeedSender {
    /// Sends `message`, blocking while the feed is full: a slow worker slows its source, not
    /// memory. The thread parks until the worker takes a message (no spinning, no yielding in
    /// a loop); from the I/O runtime the wait is announced (`block_in_place`), so other tasks
    /// run meanwhile. A feed with room takes the message at once: announcing a wait hands the
    /// runtime's core to another thread, a thread switch per body for nothing.
    pub fn send(&self, message: Feed) -> Result<(), WorkersGone> {
        let Some(message) = self.try_send(message)? else { return Ok(()) };
        let wait = || futures::executor::block_on(self.send_async(message));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// As [`FeedSender::send`], for a task of the I/O runtime: while the feed is full the task
    /// waits for the worker to take a message, and its thread runs other tasks. No thread
    /// blocks or spins on the feed.
    pub async fn send_async(&self, message: Feed) -> Result<(), WorkersGone> {
        let Some(mut message) = self.try_send(message)? else { return Ok(()) };
        let room = self.wake.0.room.notified();
        tokio::pin!(room);
        loop {
            // Registered before the retry: a take between the retry and the wait is not missed.
            room.as_mut().enable();
            match self.try_send(message)? {
                None => return Ok(()),
                Some(back) => message = back,
            }
            room.as_mut().await;
            room.set(self.wake.0.room.notified());
        }
    }

    /// Sends `message` if the feed has room, waking the worker; gives it back when the feed is
    /// full.
    fn try_send(&self, message: Feed) -> Result<Option<Feed>, WorkersGone> {
        match self.sender.try_send(message) {
            Ok(()) => {
                self.wake.0.wake();
                Ok(None)
            }
            Err(TrySendError::Disconnected(_)) => Err(WorkersGone),
            Err(TrySendError::Full(message)) => Ok(Some(message)),
        }
    }
}

/// A worker's end of its feed.
#[derive(Clone, Debug)]
pub struct FeedReceiver {
    receiver: Receiver<Feed>,
    /// Must stay after `receiver`: senders waiting for room wake to a feed gone.
    lane: Gone,
}

/// Wakes every sender waiting for room when dropped, once the receiver beside it is gone: the
/// last one's drop closes the feed, and a waiting sender then finds the workers gone.
#[derive(Clone, Debug)]
struct Gone(Arc<Lane>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.room.notify_waiters();
    }
}

impl std::ops::Deref for Gone {
    type Target = Lane;
    fn deref(&self) -> &Lane {
        &self.0
    }
}

impl FeedReceiver {
    /// Makes every message sent from now on unpark the calling thread (the worker's): call it
    /// before first looking at the feed. Later calls (another thread) change nothing.
    pub fn listen(&self) {
        let _ = self.lane.worker.set(std::thread::current());
        fence(Ordering::SeqCst);
    }

    /// The next message, if one is waiting; a sender waiting for room may then send.
    pub fn try_recv(&self) -> Result<Feed, TryRecvError> {
        let message = self.receiver.try_recv()?;
        self.lane.room.notify_one();
        Ok(message)
    }

    /// The next message, waiting for one; an error once every sender is gone and the feed empty.
    pub fn recv(&self) -> Result<Feed, crossbeam_channel::RecvError> {
        let message = self.receiver.recv()?;
        self.lane.room.notify_one();
        Ok(message)
    }
}

/// The workers have stopped: nothing more can be fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the workers stopped")]
pub struct WorkersGone;

/// The source's end of this process's workers' feeds.
#[derive(Clone, Debug)]
pub struct Feeds {
    /// One per local worker, in worker order.
    senders: Vec<FeedSender>,
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
    pub fn new(senders: Vec<FeedSender>, share: Share) -> Feeds {
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
    pub fn single(senders: Vec<FeedSender>) -> Feeds {
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
        self.senders[0].send(Feed::Meta { time, changes })
    }

    /// A node's body for the window ending at `time`, to the worker that owns the node. A node
    /// of another process is not sent (and logged: its source should not have fetched it).
    pub fn scrape(&self, time: Time, body: Box<dyn Fetched>) -> Result<(), WorkersGone> {
        match self.addressed(time, body) {
            Some((local, message)) => self.senders[local].send(message),
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
        self.senders.iter().try_for_each(|sender| sender.send(Feed::Close { time }))
    }

    /// Events read at tick `time`, to worker 0 (the dedup's exchange spreads them).
    pub fn events(&self, time: Time, events: Vec<Event>) -> Result<(), WorkersGone> {
        if events.is_empty() {
            return Ok(());
        }
        self.senders[0].send(Feed::Events { time, events })
    }

    /// Closes events tick `time` at every worker, with where the watch stood.
    pub fn events_tick(&self, time: Time, resource_version: Option<String>) -> Result<(), WorkersGone> {
        self.senders.iter().try_for_each(|sender| {
            sender.send(Feed::EventsTick { time, resource_version: resource_version.clone() })
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
    /// the task waits for the worker to take a message. The runtime's own thread never blocks,
    /// so it is not handed over to another thread mid-window.
    pub async fn scrape_async(&self, time: Time, body: Box<dyn Fetched>) -> Result<(), WorkersGone> {
        if self.feeds.share.local_owner(body.node()) != Some(self.local) {
            tracing::error!(node = %body.node(), worker = self.local, "a body fetched for another worker; rerouted");
        }
        let Some((local, message)) = self.feeds.addressed(time, body) else { return Ok(()) };
        self.feeds.senders[local].send_async(message).await
    }

    /// Closes the window ending at `time` at this worker.
    pub fn close(&self, time: Time) -> Result<(), WorkersGone> {
        self.feeds.senders[self.local].send(Feed::Close { time })
    }

    /// As [`WorkerFeed::close`], for a task of the I/O runtime (see [`WorkerFeed::scrape_async`]).
    pub async fn close_async(&self, time: Time) -> Result<(), WorkersGone> {
        self.feeds.senders[self.local].send_async(Feed::Close { time }).await
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

    fn channels(n: usize) -> (Vec<FeedSender>, Vec<FeedReceiver>) {
        (0..n).map(|_| Feed::channel(1024)).unzip()
    }

    /// Every message waiting in `receiver`.
    fn waiting(receiver: &FeedReceiver) -> Vec<Feed> {
        std::iter::from_fn(|| receiver.try_recv().ok()).collect()
    }

    /// The state letter of this process's thread named `name` (`S`: asleep), if there is one.
    fn thread_state(name: &str) -> Option<char> {
        std::fs::read_dir("/proc/self/task").ok()?.filter_map(|e| e.ok()).find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // `pid (comm) S ...`: the state follows the last parenthesis.
            stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
        })
    }

    /// Waits until the thread named `name` sleeps.
    fn until_asleep(name: &str) {
        let started = Instant::now();
        while thread_state(name) != Some('S') {
            assert!(started.elapsed() < Duration::from_secs(30), "{name} never slept");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_parked_worker_wakes_on_each_message_and_on_a_closed_feed() {
        let (sender, receiver) = Feed::channel(8);
        let (told, seen) = crossbeam_channel::unbounded();
        // A worker as the bridge runs one: listen, look, and park (no timeout) while empty.
        let worker = std::thread::Builder::new()
            .name("parked-worker".into())
            .spawn(move || {
                receiver.listen();
                loop {
                    match receiver.try_recv() {
                        Ok(Feed::Close { time }) => told.send(Some(time)).unwrap(),
                        Ok(_) => panic!("a close"),
                        Err(TryRecvError::Empty) => std::thread::park(),
                        Err(TryRecvError::Disconnected) => return told.send(None).unwrap(),
                    }
                }
            })
            .unwrap();
        let patience = Duration::from_secs(30);
        for time in 1..=3 {
            until_asleep("parked-worker");
            sender.send(Feed::Close { time }).unwrap();
            assert_eq!(seen.recv_timeout(patience), Ok(Some(time)), "woken by message {time}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        until_asleep("parked-worker");
        runtime.block_on(sender.send_async(Feed::Close { time: 4 })).unwrap();
        assert_eq!(seen.recv_timeout(patience), Ok(Some(4)), "woken by an async send");
        until_asleep("parked-worker");
        drop(sender);
        assert_eq!(seen.recv_timeout(patience), Ok(None), "woken by the closed feed");
        worker.join().unwrap();
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
            for message in waiting(receiver) {
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
        let (sender, receiver) = Feed::channel(1);
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
    fn a_blocked_sender_goes_on_once_the_worker_takes_and_fails_once_it_is_gone() {
        let patience = Duration::from_secs(30);
        let (sender, receiver) = Feed::channel(1);
        sender.send(Feed::Close { time: 1 }).unwrap();
        // The feed is full: a thread's send waits until the worker takes the first message.
        let (done, finished) = crossbeam_channel::unbounded();
        let blocked = std::thread::spawn({
            let sender = sender.clone();
            move || done.send(sender.send(Feed::Close { time: 2 })).unwrap()
        });
        assert!(finished.recv_timeout(Duration::from_millis(50)).is_err(), "a full feed holds the sender");
        assert!(matches!(receiver.recv(), Ok(Feed::Close { time: 1 })));
        assert_eq!(finished.recv_timeout(patience), Ok(Ok(())));
        blocked.join().unwrap();
        assert!(matches!(receiver.try_recv(), Ok(Feed::Close { time: 2 })));

        // Full again, and waiting senders (a thread's and a task's) learn when the worker goes.
        sender.send(Feed::Close { time: 3 }).unwrap();
        let (done, finished) = crossbeam_channel::unbounded();
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (sender, done) = (sender.clone(), done.clone());
                std::thread::spawn(move || {
                    let message = Feed::Close { time: 4 };
                    let sent = if i == 0 {
                        sender.send(message)
                    } else {
                        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        runtime.block_on(sender.send_async(message))
                    };
                    done.send(sent).unwrap();
                })
            })
            .collect();
        assert!(finished.recv_timeout(Duration::from_millis(50)).is_err(), "a full feed holds the senders");
        drop(receiver);
        for _ in 0..2 {
            assert_eq!(finished.recv_timeout(patience), Ok(Err(WorkersGone)));
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
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
            let messages: Vec<Feed> = waiting(receiver);
            assert_eq!(messages.len(), split[local].1.len() + 1);
            assert!(matches!(messages.last(), Some(Feed::Close { time: 1 })));
        }
    }
}
