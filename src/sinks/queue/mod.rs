//! Over 600 lines: one buffer and the two threads sharing its state and lock, kept together.
//!
//! The buffer and threads every network sink runs behind, written once.
//!
//! A sink plugs in two halves: an [`Encode`] that turns windows and event batches into chunks
//! (request bodies), and a [`Deliver`] that sends chunks to the backend. Two threads run them:
//!
//! - intake: takes windows and event batches from the sink's queue, encodes each once, and puts
//!   its chunks in the buffer (memory, or files under `--state_dir` with `buffer=disk`);
//! - sender: sends the oldest chunks, in order. A chunk the backend could not take for a reason
//!   that may pass (down, 5xx, 429, timeout) stays at the head and is tried again after a capped
//!   exponential backoff with jitter, for as long as it takes; a chunk it refuses for good is
//!   counted and dropped.
//!
//! The buffer is bounded in bytes (`max_buffer_bytes`). Live collection never waits for a sink:
//! at the bound the oldest complete windows are dropped, counted, and logged once per outage.
//! Replay waits instead: the intake stops taking windows until the backlog shrinks. Event batches
//! are never dropped: a batch is acknowledged (see [`SinkStats::events_written_through`]) once all
//! its chunks are written, so the event checkpoint waits for it and then moves on.
//!
//! With `buffer=disk` each chunk is one file, written once (to a temporary name, then renamed),
//! read back when sent and removed once written; the files left by a previous run are sent first.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use heapster_dataflows::{Event, Time};
use tracing::{error, info, warn};

use super::{SinkInput, SinkStats};
use crate::backoff::Backoff;
use crate::batch::Window;
use crate::config::{ConfigError, UriOptions};

/// The sink URI options this module reads.
pub const OPTIONS: &[&str] = &["buffer", "max_buffer_bytes"];
/// Default bound of the in-memory buffer.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Default bound of the on-disk buffer.
pub const DEFAULT_DISK_BYTES: u64 = 4 << 30;
/// How long a stopping collector keeps trying a backend that is down before it gives up.
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
        let store =
            Store { shared: Arc::clone(&shared), next_seq, at_bound: plan.at_bound, logged_over: false };
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

/// Reads the chunk headers of a disk buffer, oldest first. Damaged files are set aside.
fn load(dir: &Path) -> io::Result<VecDeque<Entry>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".tmp") {
            // Half-written by a run that died: its window was never complete in the buffer.
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some(seq) = name.strip_suffix(".chunk").and_then(|s| s.parse::<u64>().ok()) else { continue };
        match read_header(&path) {
            Ok((what, item, points, bytes)) => found.push(Entry {
                seq,
                item,
                what,
                points,
                bytes,
                last: false,
                body: None,
                in_flight: false,
                refused: 0,
            }),
            Err(e) => {
                warn!("disk buffer: {} is damaged ({e}); set aside as .bad", path.display());
                let _ = fs::rename(&path, path.with_extension("bad"));
            }
        }
    }
    found.sort_by_key(|e| e.seq);
    let mut entries: VecDeque<Entry> = found.into();
    for i in 0..entries.len() {
        let next_item = entries.get(i + 1).map(|e| e.item);
        entries[i].last = next_item != Some(entries[i].item);
    }
    Ok(entries)
}

const MAGIC: &str = "heapster-chunk 1";

fn header(what: What, item: u64, points: u64, body: usize) -> String {
    match what {
        What::Metrics { time } => format!("{MAGIC} metrics {item} {time} {points} {body}\n"),
        What::Events { events, .. } => format!("{MAGIC} events {item} {events} {points} {body}\n"),
    }
}

/// (what, item, points, file bytes) of a chunk file, checking its length.
fn read_header(path: &Path) -> io::Result<(What, u64, u64, u64)> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 128];
    let n = file.read(&mut head)?;
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let end = head[..n].iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header"))?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| bad("header not UTF-8"))?;
    let rest = text.strip_prefix(MAGIC).ok_or_else(|| bad("not a chunk file"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [kind, item, x, points, body] = fields[..] else { return Err(bad("header fields")) };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad("header number"));
    let (item, x, points, body) = (num(item)?, num(x)?, num(points)?, num(body)?);
    if len != end as u64 + 1 + body {
        return Err(bad("truncated"));
    }
    let what = match kind {
        "metrics" => What::Metrics { time: x },
        "events" => What::Events { tick: None, events: x },
        _ => return Err(bad("kind")),
    };
    Ok((what, item, points, len))
}

fn read_body(path: &Path) -> io::Result<Bytes> {
    let data = fs::read(path)?;
    let start = data.iter().position(|b| *b == b'\n').map_or(data.len(), |i| i + 1);
    Ok(Bytes::from(data).slice(start..))
}

struct Intake<E> {
    store: Store,
    encode: E,
}

/// The intake's side of the buffer.
struct Store {
    shared: Arc<Shared>,
    next_seq: u64,
    at_bound: AtBound,
    /// Warned that events went past the bound (they are never dropped).
    logged_over: bool,
}

impl<E: Encode> Intake<E> {
    fn run(&mut self, rx: Receiver<SinkInput>, pending: &AtomicUsize) {
        loop {
            if self.store.at_bound == AtBound::Wait {
                self.store.wait_for_room();
            }
            let Ok(input) = rx.recv() else { break };
            match input {
                SinkInput::Metrics(batch) => {
                    pending.fetch_sub(1, Ordering::Relaxed);
                    let what = What::Metrics { time: batch.time };
                    match Arc::try_unwrap(batch) {
                        Ok(owned) => self.item(what, |enc, emit| enc.metrics(Window::Owned(owned), emit)),
                        Err(shared) => {
                            self.item(what, |enc, emit| enc.metrics(Window::Borrowed(&shared), emit))
                        }
                    }
                }
                SinkInput::Events(batch) => {
                    let what = What::Events { tick: Some(batch.time), events: batch.events.len() as u64 };
                    self.item(what, |enc, emit| enc.events(&batch.events, emit));
                }
            }
        }
        self.store.shared.lock().closed = true;
        self.store.shared.changed.notify_all();
    }

    /// Encodes one window or batch into the buffer.
    fn item(&mut self, what: What, encode: impl FnOnce(&mut E, &mut dyn FnMut(Chunk)) -> Encoded) {
        let store = &mut self.store;
        let item = store.next_seq;
        let mut discarded: Option<u64> = None;
        let mut emit = |chunk: Chunk| {
            if let Some(points) = discarded.as_mut() {
                *points += chunk.points;
                return;
            }
            if let Some(points) = store.push(item, what, chunk) {
                discarded = Some(points);
            }
        };
        let encoded = encode(&mut self.encode, &mut emit);
        let stats = &self.store.shared.stats;
        stats.skipped_points.fetch_add(encoded.skipped, Ordering::Relaxed);
        stats.shortened.fetch_add(encoded.shortened, Ordering::Relaxed);
        self.store.close_item(item, what, discarded);
    }
}

impl Store {
    /// Replay: waits until the buffer is under its bound (or the sender gave up).
    fn wait_for_room(&self) {
        let mut state = self.shared.lock();
        while state.bytes >= self.shared.max_bytes && !state.abandoned {
            state = self.shared.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Ends an item: marks its last chunk (or adds a marker for an item without chunks).
    fn close_item(&mut self, item: u64, what: What, discarded: Option<u64>) {
        let marker_seq = self.take_seq();
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        // After the sender gave up, a disk buffer keeps what comes for the next start.
        if state.abandoned && shared.dir.is_none() {
            drop(state);
            self.count_abandoned(what, item);
            return;
        }
        match discarded {
            Some(points) => {
                // The window alone is over the bound: counted as dropped, as a whole.
                let points = points + self.shared.remove_item(&mut state, item);
                self.count_dropped(&mut state, 1, points);
            }
            None => match state.entries.back_mut().filter(|e| e.item == item) {
                Some(last) => last.last = true,
                None => {
                    state.entries.push_back(Entry {
                        seq: marker_seq,
                        item,
                        what,
                        points: 0,
                        bytes: 0,
                        last: true,
                        body: None,
                        in_flight: false,
                        refused: 0,
                    });
                }
            },
        }
        if let What::Events { tick: Some(tick), .. } = what {
            state.events_enqueued_through = state.events_enqueued_through.max(tick + 1);
            shared.acknowledge(&state);
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Stores one chunk. Returns `Some(points)` when the window it belongs to must be dropped
    /// whole (nothing older is left to drop and it does not fit).
    fn push(&mut self, item: u64, what: What, chunk: Chunk) -> Option<u64> {
        let seq = self.take_seq();
        let (body, bytes) = match self.shared.path(seq) {
            None => (Some(chunk.body.clone()), chunk.body.len() as u64),
            Some(path) => match write_chunk_file(
                &path,
                &header(what, item, chunk.points, chunk.body.len()),
                &chunk.body,
            ) {
                Ok(bytes) => (None, bytes),
                Err(e) => {
                    // The disk is full or gone: keep the chunk in memory rather than lose it.
                    error!(sink = %self.shared.name, "disk buffer: cannot write {}: {e}; kept in memory", path.display());
                    (Some(chunk.body.clone()), chunk.body.len() as u64)
                }
            },
        };
        let mut state = self.shared.lock();
        let entry = Entry {
            seq,
            item,
            what,
            points: chunk.points,
            bytes,
            last: false,
            body,
            in_flight: false,
            refused: 0,
        };
        if state.bytes + bytes > self.shared.max_bytes {
            match (self.at_bound, what) {
                (_, What::Events { .. }) | (AtBound::Wait, _) => {
                    if !self.logged_over && matches!(what, What::Events { .. }) {
                        self.logged_over = true;
                        warn!(sink = %self.shared.name, max_buffer_bytes = self.shared.max_bytes, "buffer over its bound with events; events are never dropped");
                    }
                }
                (AtBound::DropOldest, What::Metrics { .. }) => {
                    if !self.make_room(&mut state, item, bytes) {
                        self.shared.remove_file(&entry);
                        return Some(entry.points);
                    }
                }
            }
        }
        state.bytes += bytes;
        state.entries.push_back(entry);
        drop(state);
        self.shared.changed.notify_all();
        None
    }

    /// Drops the oldest complete windows (never events, never one being sent, never `current`)
    /// until `bytes` more fit. Returns whether they do.
    fn make_room(&self, state: &mut State, current: u64, bytes: u64) -> bool {
        while state.bytes + bytes > self.shared.max_bytes {
            let busy: Vec<u64> = state.entries.iter().filter(|e| e.in_flight).map(|e| e.item).collect();
            let victim = state
                .entries
                .iter()
                .find(|e| {
                    matches!(e.what, What::Metrics { .. }) && e.item != current && !busy.contains(&e.item)
                })
                .map(|e| e.item);
            let Some(victim) = victim else { return false };
            let points = self.shared.remove_item(state, victim);
            self.count_dropped(state, 1, points);
        }
        true
    }

    fn count_dropped(&self, state: &mut State, windows: u64, points: u64) {
        let stats = &self.shared.stats;
        stats.dropped_windows.fetch_add(windows, Ordering::Relaxed);
        stats.dropped_points.fetch_add(points, Ordering::Relaxed);
        if state.outage_dropped == (0, 0) {
            warn!(
                sink = %self.shared.name,
                max_buffer_bytes = self.shared.max_bytes,
                "sink buffer full: dropping the oldest windows until the backend is back"
            );
        }
        state.outage_dropped.0 += windows;
        state.outage_dropped.1 += points;
    }

    /// The sender gave up: what arrives after is not written either.
    fn count_abandoned(&self, what: What, item: u64) {
        let mut state = self.shared.lock();
        let points = self.shared.remove_item(&mut state, item);
        let stats = &self.shared.stats;
        match what {
            What::Metrics { .. } => {
                stats.dropped_windows.fetch_add(1, Ordering::Relaxed);
                stats.dropped_points.fetch_add(points, Ordering::Relaxed);
            }
            What::Events { events, .. } => {
                stats.dropped_events.fetch_add(events, Ordering::Relaxed);
            }
        }
    }
}

/// Writes a chunk file under a temporary name, then renames it; returns its size.
fn write_chunk_file(path: &Path, header: &str, body: &[u8]) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(header.as_bytes())?;
    file.write_all(body)?;
    drop(file);
    fs::rename(&tmp, path)?;
    Ok((header.len() + body.len()) as u64)
}

struct Sender<D> {
    shared: Arc<Shared>,
    retry: Backoff,
    stop: Arc<AtomicBool>,
    stop_grace: Duration,
    deliver: D,
}

/// A chunk taken from the buffer for sending.
struct Taken {
    seq: u64,
    chunk: Option<Chunk>,
}

impl<D: Deliver> Sender<D> {
    fn run(&mut self) {
        let mut failures = 0u32;
        let mut waits = self.retry.waits();
        let mut stopping_since: Option<Instant> = None;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            // What the disk buffer holds waits for the next start: no grace needed.
            let grace = if self.shared.dir.is_some() { Duration::ZERO } else { self.stop_grace };
            let give_up = stopping_since.is_some_and(|t| t.elapsed() >= grace) && failures > 0;
            let taken = {
                let mut state = self.shared.lock();
                loop {
                    if state.entries.iter().any(|e| !e.in_flight)
                        || (state.closed && state.entries.is_empty())
                    {
                        break;
                    }
                    state = self
                        .shared
                        .changed
                        .wait_timeout(state, Duration::from_millis(500))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    if self.stop.load(Ordering::Relaxed) && stopping_since.is_none() {
                        stopping_since = Some(Instant::now());
                    }
                }
                if state.closed && state.entries.is_empty() {
                    break;
                }
                // Not waiting for the intake to close: a replay's intake may be waiting for room.
                if give_up {
                    self.abandon(&mut state);
                    break;
                }
                let mut taken = Vec::new();
                for entry in state.entries.iter_mut() {
                    if taken.len() >= self.deliver.parallel().max(1) {
                        break;
                    }
                    entry.in_flight = true;
                    let chunk =
                        (entry.bytes > 0).then(|| entry.body.clone()).map(|body| (body, entry.points));
                    taken.push((entry.seq, chunk));
                    if entry.bytes == 0 || (entry.last && self.deliver.in_order()) {
                        break;
                    }
                }
                taken
            };
            let mut ready = Vec::with_capacity(taken.len());
            for (seq, chunk) in taken {
                let chunk = match chunk {
                    None => None,
                    Some((Some(body), points)) => Some(Chunk { body, points }),
                    Some((None, points)) => match self.shared.path(seq).map(|p| read_body(&p)) {
                        Some(Ok(body)) => Some(Chunk { body, points }),
                        Some(Err(e)) => {
                            error!(sink = %self.shared.name, "disk buffer: chunk {seq} unreadable: {e}; {points} points dropped");
                            self.finish(seq, Sent::Refused(e.to_string()));
                            continue;
                        }
                        None => None,
                    },
                };
                ready.push(Taken { seq, chunk });
            }
            let chunks: Vec<Chunk> = ready.iter().filter_map(|t| t.chunk.clone()).collect();
            let mut outcomes =
                if chunks.is_empty() { Vec::new() } else { self.deliver.send(&chunks) }.into_iter();
            let mut retry = None;
            for taken in ready {
                let outcome = match taken.chunk {
                    None => Sent::Written { refused: 0 },
                    Some(_) => outcomes.next().unwrap_or_else(|| Sent::Retry("no outcome".into())),
                };
                if let Sent::Retry(why) = &outcome {
                    retry = Some(why.clone());
                }
                self.finish(taken.seq, outcome);
            }
            match retry {
                None => {
                    failures = 0;
                    waits.reset();
                }
                Some(why) => {
                    failures += 1;
                    self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if failures == 1 {
                        warn!(sink = %self.shared.name, "backend not taking writes ({why}); buffering and retrying");
                    }
                    let delay = waits.next_wait();
                    let state = self.shared.lock();
                    // Interruptible only by a stop; new input need not wake a backoff.
                    let _ = self.shared.changed.wait_timeout_while(state, delay, |_| {
                        !self.stop.load(Ordering::Relaxed) || stopping_since.is_some()
                    });
                }
            }
        }
    }

    /// Records what became of a sent chunk and frees it when done.
    fn finish(&self, seq: u64, outcome: Sent) {
        let mut state = self.shared.lock();
        let Some(at) = state.entries.iter().position(|e| e.seq == seq) else { return };
        let stats = &self.shared.stats;
        if let Sent::Retry(_) = outcome {
            state.entries[at].in_flight = false;
            return;
        }
        let Some(entry) = state.entries.remove(at) else { return };
        state.bytes -= entry.bytes;
        self.shared.remove_file(&entry);
        let mut refused_events = entry.refused;
        match (&outcome, entry.what) {
            (Sent::Written { refused }, What::Events { .. }) => {
                let refused = (*refused).min(entry.points);
                stats.dropped_events.fetch_add(refused, Ordering::Relaxed);
                refused_events += refused;
            }
            (Sent::Written { refused }, What::Metrics { .. }) => {
                let refused = (*refused).min(entry.points);
                stats.points.fetch_add(entry.points - refused, Ordering::Relaxed);
                stats.dropped_points.fetch_add(refused, Ordering::Relaxed);
            }
            (Sent::Refused(_), What::Metrics { .. }) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.dropped_points.fetch_add(entry.points, Ordering::Relaxed);
            }
            (Sent::Refused(_), What::Events { .. }) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.dropped_events.fetch_add(entry.points, Ordering::Relaxed);
                refused_events += entry.points;
            }
            _ => {}
        }
        // Chunks sent in parallel may finish out of order: the item is done with its last
        // entry, whichever that is.
        match state.entries.iter_mut().rev().find(|e| e.item == entry.item) {
            Some(other) => {
                other.last |= entry.last;
                other.refused += refused_events;
            }
            None if entry.last => {
                if let Some(at) = state.refused_early.iter().position(|(item, _)| *item == entry.item) {
                    refused_events += state.refused_early.swap_remove(at).1;
                }
                match entry.what {
                    What::Metrics { .. } => stats.windows.fetch_add(1, Ordering::Relaxed),
                    What::Events { events, .. } => {
                        stats.events.fetch_add(events.saturating_sub(refused_events), Ordering::Relaxed)
                    }
                };
            }
            None if refused_events > 0 => state.refused_early.push((entry.item, refused_events)),
            None => {}
        }
        self.shared.acknowledge(&state);
        if state.entries.is_empty() && state.outage_dropped != (0, 0) {
            let (windows, points) = std::mem::take(&mut state.outage_dropped);
            warn!(sink = %self.shared.name, windows, points, "backlog written; the buffer bound dropped {windows} windows ({points} points) during the outage");
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Stopping with the backend still down: reports what is not written and stops.
    fn abandon(&self, state: &mut State) {
        state.abandoned = true;
        let windows =
            state.entries.iter().filter(|e| e.last && matches!(e.what, What::Metrics { .. })).count();
        let points: u64 =
            state.entries.iter().filter(|e| matches!(e.what, What::Metrics { .. })).map(|e| e.points).sum();
        let events: u64 = state
            .entries
            .iter()
            .filter(|e| e.last)
            .map(|e| match e.what {
                What::Events { events, .. } => events,
                What::Metrics { .. } => 0,
            })
            .sum();
        if self.shared.dir.is_some() {
            error!(
                sink = %self.shared.name,
                windows, points, events, bytes = state.bytes,
                "stopping with the backend down: not written so far, kept in the disk buffer for the next start"
            );
            // Chunks kept in memory after a disk error are lost.
            state.entries.retain(|e| e.body.is_none());
        } else {
            error!(sink = %self.shared.name, windows, points, events, "stopping with the backend down: not written");
            let stats = &self.shared.stats;
            stats.dropped_windows.fetch_add(windows as u64, Ordering::Relaxed);
            stats.dropped_points.fetch_add(points, Ordering::Relaxed);
            stats.dropped_events.fetch_add(events, Ordering::Relaxed);
            stats.errors.fetch_add(1, Ordering::Relaxed);
            state.entries.clear();
            state.bytes = 0;
        }
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests;
