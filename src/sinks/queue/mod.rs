//! The buffer and threads every network sink runs behind, written once.
//!
//! A sink plugs in two halves: an [`Encode`] that turns windows and event batches into chunks
//! (request bodies), and a [`Deliver`] that sends chunks to the backend. Two threads run them:
//!
//! - `intake.rs`: takes windows and event batches from the sink's queue, encodes each once, and puts
//!   its chunks in the buffer (memory, or files under `--state_dir` with `buffer=disk`);
//! - `sender.rs`: sends the oldest chunks, in order. A chunk the backend could not take for a reason
//!   that may pass (down, 5xx, 429, timeout) stays at the head and is tried again after a capped
//!   exponential backoff with jitter, for as long as it takes; a chunk it refuses for good is
//!   counted and dropped.
//!
//! The buffer is bounded in bytes (`max_buffer_bytes`). Live collection never waits for a sink:
//! while the backend is down, at the bound the oldest complete windows are dropped, counted, and
//! logged once per outage; while it is taking writes, a window larger than the room left is
//! encoded at the pace the backend takes it (the next windows wait in the sink's queue).
//! Replay waits instead: the intake stops taking windows until the backlog shrinks. Event batches
//! are never dropped: a batch is acknowledged (see [`SinkStats::events_written_through`]) once all
//! its chunks are written, so the event checkpoint waits for it and then moves on.
//!
//! With `buffer=disk` each chunk is one file (`disk.rs`), written once (to a temporary name, then renamed),
//! read back when sent and removed once written; the files left by a previous run are sent first.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use heapster_dataflows::{Event, Time};
use tracing::{error, info, warn};

use super::stats::SinkStats;
use crate::backoff::Backoff;
use crate::batch::SinkInput;
use crate::batch::Window;
use crate::config::{ConfigError, UriOptions};
use disk::load;
use intake::{Intake, Store};
use sender::Sender;

mod disk;
mod intake;
mod sender;

/// The sink URI options this module reads.
pub const OPTIONS: &[&str] = &["buffer", "max_buffer_bytes"];
/// Default bound of the in-memory buffer.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Default bound of the on-disk buffer.
pub const DEFAULT_DISK_BYTES: u64 = 4 << 30;
/// How long a stopping collector keeps trying a backend that is down before it gives up, and
/// the bound of its last flush to one that is up.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Name of the folder under `--state_dir` holding the disk buffers, one sub-folder per sink.
pub const BUFFER_DIR: &str = "sink-buffer";

/// Where a sink buffers what the backend has not taken yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufferKind {
    Memory,
    /// Files under `<state_dir>/sink-buffer/<sink>/`: survives a restart.
    Disk,
}

/// The `buffer=` and `max_buffer_bytes=` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    pub kind: BufferKind,
    pub max_bytes: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { kind: BufferKind::Memory, max_bytes: DEFAULT_MEMORY_BYTES }
    }
}

impl BufferConfig {
    /// Reads `buffer=memory|disk` and `max_buffer_bytes=N` (a byte count, optionally with a
    /// `KiB`, `MiB` or `GiB` suffix).
    pub fn from_options(opts: &mut UriOptions, flag: &'static str, uri: &str) -> Result<Self, ConfigError> {
        let error = |reason: String| ConfigError::new(flag, uri, reason);
        let kind = match opts.string_or("buffer", "memory").as_str() {
            "memory" => BufferKind::Memory,
            "disk" => BufferKind::Disk,
            other => return Err(error(format!("option buffer={other:?}: expected memory or disk"))),
        };
        let default = match kind {
            BufferKind::Memory => DEFAULT_MEMORY_BYTES,
            BufferKind::Disk => DEFAULT_DISK_BYTES,
        };
        let max_bytes = match opts.string("max_buffer_bytes") {
            None => default,
            Some(text) => parse_bytes(&text).ok_or_else(|| {
                error(format!(
                    "option max_buffer_bytes={text:?}: expected a positive byte count like 268435456, \
                     256MiB or 4GiB"
                ))
            })?,
        };
        Ok(BufferConfig { kind, max_bytes })
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale).filter(|n| *n > 0)
}

/// One request body and the points it holds.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub body: Bytes,
    pub points: u64,
}

/// What became of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Taken; `refused` of its points were refused by the backend (and logged by the sink).
    Written { refused: u64 },
    /// Not taken for a reason that may pass: try again later.
    Retry(String),
    /// Refused for good (logged by the sink): counted as dropped.
    Refused(String),
}

/// What encoding a window or batch left out or changed, besides the chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Points never sent: the backend cannot store them (logged by the encoder).
    pub skipped: u64,
    /// Entities whose points were sent with a tag shortened (logged by the encoder).
    pub shortened: u64,
}

/// Turns windows and event batches into chunks.
pub trait Encode: Send + 'static {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded;
    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded;
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded {
        (**self).metrics(window, emit)
    }

    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded {
        (**self).events(events, emit)
    }
}

/// Sends chunks to the backend.
pub trait Deliver: Send + 'static {
    /// Sends the chunks (possibly at once); one outcome per chunk, in the same order.
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent>;
    /// How many chunks [`Deliver::send`] may be given at a time.
    fn parallel(&self) -> usize {
        1
    }
    /// Whether a window's chunks must all be written before the next window's are sent: a
    /// backend that refuses a point older than its series' last one needs them in order.
    fn in_order(&self) -> bool {
        false
    }
}

impl<T: Deliver + ?Sized> Deliver for Box<T> {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        (**self).send(chunks)
    }

    fn parallel(&self) -> usize {
        (**self).parallel()
    }

    fn in_order(&self) -> bool {
        (**self).in_order()
    }
}

/// The halves of a sink that runs behind the queue, as [`crate::sinks::Sink::open`] gives them.
pub struct Queued {
    pub encode: Box<dyn Encode>,
    pub deliver: Box<dyn Deliver>,
    pub buffer: BufferConfig,
    /// Its disk buffer's folder under `<state_dir>/sink-buffer/`: one per backend.
    pub buffer_name: String,
}

/// The queue's waits between failed sends: 200 ms doubling to 5 s.
pub const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// What a buffered item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Metrics {
        time: Time,
    },
    /// `tick`: the batch's tick, acknowledged once written (none for batches of an earlier run).
    Events {
        tick: Option<Time>,
        events: u64,
    },
}

/// One chunk in the buffer (or the marker of an item without chunks).
#[derive(Debug)]
struct Entry {
    seq: u64,
    /// The window or batch it belongs to.
    item: u64,
    what: What,
    points: u64,
    bytes: u64,
    /// The item's last entry.
    last: bool,
    /// The chunk, when buffered in memory; `None` for a file or a marker (`bytes == 0`).
    body: Option<Bytes>,
    in_flight: bool,
    /// Events of the item the backend refused so far (carried to the item's remaining entry).
    refused: u64,
}

/// The entries and what the two threads share about them.
struct State {
    entries: VecDeque<Entry>,
    bytes: u64,
    /// No more input: the sender ends once the entries are written (or abandoned).
    closed: bool,
    /// The sender gave up (stopping with the backend down): the intake drops what comes.
    abandoned: bool,
    /// One past the tick of the last events batch fully in the buffer.
    events_enqueued_through: Time,
    /// The last send failed and the sender is backing off: the bound drops windows, not waits.
    failing: bool,
    /// Windows dropped at the bound since the buffer was last empty.
    outage_dropped: (u64, u64),
    /// Refused events of items whose written entries are all gone while the item is still
    /// being encoded (its last entry not yet in the buffer).
    refused_early: Vec<(u64, u64)>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stats: Arc<SinkStats>,
    dir: Option<PathBuf>,
    max_bytes: u64,
    name: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, seq: u64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{seq:020}.chunk")))
    }

    fn remove_file(&self, entry: &Entry) {
        if entry.body.is_none()
            && entry.bytes > 0
            && let Some(path) = self.path(entry.seq)
            && let Err(e) = fs::remove_file(&path)
        {
            warn!(sink = %self.name, "cannot remove {}: {e}", path.display());
        }
    }

    /// Acknowledges event ticks written in full: those before the oldest events entry left.
    fn acknowledge(&self, state: &State) {
        let through = state
            .entries
            .iter()
            .find_map(|e| match e.what {
                What::Events { tick: Some(tick), .. } => Some(tick),
                _ => None,
            })
            .unwrap_or(state.events_enqueued_through);
        self.stats.events_written_through.fetch_max(through, Ordering::Relaxed);
    }

    /// Removes the item's entries that are not in flight; returns the points removed.
    fn remove_item(&self, state: &mut State, item: u64) -> u64 {
        let mut points = 0;
        let mut kept = VecDeque::with_capacity(state.entries.len());
        for entry in state.entries.drain(..) {
            if entry.item == item && !entry.in_flight {
                points += entry.points;
                state.bytes -= entry.bytes;
                self.remove_file(&entry);
            } else {
                kept.push_back(entry);
            }
        }
        state.entries = kept;
        points
    }
}

/// What the sink's handle keeps of its threads.
pub struct Buffered {
    shared: Arc<Shared>,
    intake: std::thread::JoinHandle<()>,
    sender: std::thread::JoinHandle<()>,
}

/// How the intake behaves at the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtBound {
    /// Drop the oldest windows (live collection).
    DropOldest,
    /// Stop taking input until there is room (replay).
    Wait,
}

/// Everything a buffered sink needs to start.
pub struct Plan {
    pub name: String,
    pub config: BufferConfig,
    /// `<state_dir>/sink-buffer/<sink>`, for the disk buffer.
    pub dir: Option<PathBuf>,
    pub at_bound: AtBound,
    pub retry: Backoff,
    /// Set when the collector is told to stop: a backend that is down is then given up on,
    /// after `stop_grace`.
    pub stop: Arc<AtomicBool>,
    pub stop_grace: Duration,
}

impl Buffered {
    /// Opens the buffer (loading what a previous run left on disk) and starts both threads.
    pub fn start(
        plan: Plan,
        rx: Receiver<SinkInput>,
        pending: Arc<AtomicUsize>,
        stats: Arc<SinkStats>,
        encode: impl Encode,
        deliver: impl Deliver,
    ) -> io::Result<Buffered> {
        let mut state = State {
            entries: VecDeque::new(),
            bytes: 0,
            closed: false,
            abandoned: false,
            failing: false,
            events_enqueued_through: 0,
            outage_dropped: (0, 0),
            refused_early: Vec::new(),
        };
        let dir = match plan.config.kind {
            BufferKind::Memory => None,
            BufferKind::Disk => {
                let dir = plan.dir.clone().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "buffer=disk needs --state_dir")
                })?;
                fs::create_dir_all(&dir)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
                state.entries = load(&dir)?;
                state.bytes = state.entries.iter().map(|e| e.bytes).sum();
                if !state.entries.is_empty() {
                    let windows = state
                        .entries
                        .iter()
                        .filter(|e| e.last && matches!(e.what, What::Metrics { .. }))
                        .count();
                    info!(
                        sink = %plan.name,
                        dir = %dir.display(),
                        chunks = state.entries.len(),
                        windows,
                        bytes = state.bytes,
                        "disk buffer holds chunks from an earlier run; sending them first"
                    );
                }
                Some(dir)
            }
        };
        let next_seq = state.entries.back().map_or(1, |e| e.seq + 1);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            stats,
            dir,
            max_bytes: plan.config.max_bytes,
            name: plan.name.clone(),
        });
        let store = Store {
            shared: Arc::clone(&shared),
            next_seq,
            at_bound: plan.at_bound,
            logged_over: false,
            stop: Arc::clone(&plan.stop),
        };
        let mut intake = Intake { store, encode };
        let intake = std::thread::Builder::new()
            .name(format!("sink {} intake", plan.name))
            .spawn(move || intake.run(rx, &pending))?;
        let mut sender = Sender {
            shared: Arc::clone(&shared),
            retry: plan.retry,
            stop: plan.stop,
            stop_grace: plan.stop_grace,
            deliver,
        };
        let sender = std::thread::Builder::new()
            .name(format!("sink {} sender", plan.name))
            .spawn(move || sender.run())?;
        Ok(Buffered { shared, intake, sender })
    }

    /// Waits for both threads: the intake ends with the queue, the sender once the buffer is
    /// written (or given up on when stopping).
    pub fn join(self) {
        if self.intake.join().is_err() {
            error!(sink = %self.shared.name, "sink intake thread panicked");
            self.shared.lock().closed = true;
            self.shared.changed.notify_all();
        }
        if self.sender.join().is_err() {
            error!(sink = %self.shared.name, "sink sender thread panicked");
        }
    }
}

#[cfg(test)]
mod tests;
