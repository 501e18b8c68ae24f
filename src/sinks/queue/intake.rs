//! The intake thread: takes windows and event batches from the sink's queue, encodes each once
//! and stores its chunks. At the bound, live waits for the sender while the backend takes writes
//! and drops the oldest windows once it is down or the collector stops; replay always waits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Receiver;
use tracing::{error, warn};

use super::disk::{header, write_chunk_file};
use super::{AtBound, Chunk, Encode, Encoded, Entry, Shared, State, What};
use crate::batch::SinkInput;
use crate::batch::Window;

/// How often a pacing intake looks again without being woken (a stop, a missed wake-up).
const PACE_CHECK: Duration = Duration::from_millis(500);

pub(super) struct Intake<E> {
    pub(super) store: Store,
    pub(super) encode: E,
}

/// The intake's side of the buffer.
pub(super) struct Store {
    pub(super) shared: Arc<Shared>,
    pub(super) next_seq: u64,
    pub(super) at_bound: AtBound,
    /// Warned that events went past the bound (they are never dropped).
    pub(super) logged_over: bool,
    /// The collector is stopping: no more pacing, so the flush stays within the bound.
    pub(super) stop: Arc<AtomicBool>,
}

impl<E: Encode> Intake<E> {
    pub(super) fn run(&mut self, rx: Receiver<SinkInput>, pending: &AtomicUsize) {
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
                    self.store.shared.stats.windows_handled.fetch_add(1, Ordering::Relaxed);
                }
                SinkInput::Events(batch) => {
                    let what = What::Events { tick: Some(batch.time), events: batch.events.len() as u64 };
                    self.item(what, |enc, emit| enc.events(&batch.events, emit));
                }
                // The log table is the log sink's alone.
                SinkInput::Table(_) => {}
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
        if self.at_bound == AtBound::DropOldest && matches!(what, What::Metrics { .. }) {
            state = self.pace(state, bytes);
        }
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

    /// Live: while the backend is taking writes, a window that does not fit waits for the
    /// sender to make room, chunk by chunk, rather than dropping anything. A window's line
    /// protocol may be larger than the whole bound (1,000 nodes x 30 pods is ~750 MiB), and the
    /// backend writes it in time; newer windows wait in the sink's queue meanwhile (past its
    /// slots they are dropped there, counted and logged). Once the backend is down (failed sends
    /// in a row), or the collector is stopping, the bound drops the oldest windows instead.
    fn pace<'a>(&self, mut state: MutexGuard<'a, State>, bytes: u64) -> MutexGuard<'a, State> {
        while state.bytes > 0
            && state.bytes + bytes > self.shared.max_bytes
            && !state.failing
            && !state.abandoned
            && !self.stop.load(Ordering::Relaxed)
        {
            state = self
                .shared
                .changed
                .wait_timeout(state, PACE_CHECK)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state
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
