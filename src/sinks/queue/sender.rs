//! The sender thread: sends the oldest chunks, in order, retrying with backoff what the backend
//! could not take yet, and gives up only when the collector stops with the backend down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::disk::read_body;
use super::{Chunk, Deliver, Sent, Shared, State, What};
use crate::backoff::Backoff;

pub(super) struct Sender<D> {
    pub(super) shared: Arc<Shared>,
    pub(super) retry: Backoff,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) stop_grace: Duration,
    pub(super) deliver: D,
}

/// A chunk taken from the buffer for sending.
struct Taken {
    seq: u64,
    chunk: Option<Chunk>,
}

/// Failed sends in a row after which the backend counts as down (the intake then drops the
/// oldest windows at the bound instead of waiting for room).
const FAILING_AFTER: u32 = 3;

impl<D: Deliver> Sender<D> {
    pub(super) fn run(&mut self) {
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
            // One bounded flush: a backlog a slow backend cannot take within the grace stays in
            // the disk buffer for the next start, or is reported as not written.
            let flush_over = stopping_since.is_some_and(|t| t.elapsed() >= self.stop_grace);
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
                    self.abandon(&mut state, "stopping with the backend down");
                    break;
                }
                if flush_over {
                    let why = format!("stopping: not written within {:?}", self.stop_grace);
                    self.abandon(&mut state, &why);
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
            // One failure is not an outage: InfluxDB answers 500 "timeout" to a write that is
            // only slow (creating a large window's series), and takes the retry.
            self.set_failing(retry.is_some() && failures + 1 >= FAILING_AFTER);
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

    /// Tells the intake whether the backend is failing (it drops at the bound then, else waits).
    fn set_failing(&self, failing: bool) {
        let mut state = self.shared.lock();
        if state.failing != failing {
            state.failing = failing;
            drop(state);
            self.shared.changed.notify_all();
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

    /// Stopping with the backend still down (or too slow): reports what is not written and stops.
    fn abandon(&self, state: &mut State, why: &str) {
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
                "{why}: not written so far, kept in the disk buffer for the next start"
            );
            // Chunks kept in memory after a disk error are lost.
            state.entries.retain(|e| e.body.is_none());
        } else {
            error!(sink = %self.shared.name, windows, points, events, "{why}: not written");
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
