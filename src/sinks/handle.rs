//! A running sink: its thread, the queue in front of it, drop counting and the counters, the
//! same for every sink.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::queue;
use super::sink::{LocalWrite, Opened, SinkConfig, SinkContext};
use super::stats::SinkStats;
use crate::batch::SinkInput;
use crate::batch::Window;

/// What to do when a sink's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for the sink (replay: the output must be complete).
    Wait,
    /// Drop the window for this sink and count it (live: never slow the scrape).
    Drop,
}

/// A running sink.
pub struct SinkHandle {
    pub name: String,
    pub stats: Arc<SinkStats>,
    queue: Sender<SinkInput>,
    overflow: Overflow,
    /// Windows in the queue (live collection drops a window past `slots` of them).
    pending: Arc<AtomicUsize>,
    slots: usize,
    thread: Running,
}

/// The threads behind a sink.
enum Running {
    Local(JoinHandle<()>),
    Buffered(queue::Buffered),
}

impl SinkHandle {
    /// Starts the sink's thread. Set-up failures that a retry may fix (InfluxDB not up yet) are
    /// logged by the sink and retried; only a sink that can never work fails here.
    pub fn spawn(config: SinkConfig, queue: usize, overflow: Overflow) -> io::Result<SinkHandle> {
        Self::spawn_in(config, queue, overflow, &SinkContext::default())
    }

    /// [`SinkHandle::spawn`] with the run's state directory and stop flag.
    pub fn spawn_in(
        config: SinkConfig,
        slots: usize,
        overflow: Overflow,
        context: &SinkContext,
    ) -> io::Result<SinkHandle> {
        let name = config.name();
        let stats = Arc::new(SinkStats::default());
        let slots = slots.max(1);
        // Live collection never blocks on the queue: windows past `slots` are dropped at `send`,
        // and event batches are never dropped. Replay waits at a short queue.
        let (tx, rx) = match overflow {
            Overflow::Wait => crossbeam_channel::bounded(slots),
            Overflow::Drop => crossbeam_channel::unbounded(),
        };
        let pending = Arc::new(AtomicUsize::new(0));
        let thread_stats = Arc::clone(&stats);
        let thread = match config.sink().open(context).map_err(io::Error::other)? {
            Opened::Queued(queued) => {
                let at_bound = match overflow {
                    Overflow::Wait => queue::AtBound::Wait,
                    Overflow::Drop => queue::AtBound::DropOldest,
                };
                let plan = queue::Plan {
                    name: name.clone(),
                    config: queued.buffer,
                    dir: context
                        .state_dir
                        .as_ref()
                        .map(|d| d.join(queue::BUFFER_DIR).join(&queued.buffer_name)),
                    at_bound,
                    retry: queue::RETRY,
                    stop: Arc::clone(&context.stop),
                    stop_grace: queue::STOP_GRACE,
                };
                Running::Buffered(queue::Buffered::start(
                    plan,
                    rx,
                    Arc::clone(&pending),
                    thread_stats,
                    queued.encode,
                    queued.deliver,
                )?)
            }
            Opened::Local(writer) => {
                let pending = Arc::clone(&pending);
                Running::Local(
                    std::thread::Builder::new()
                        .name(format!("sink {name}"))
                        .spawn(move || drain(rx, &pending, &thread_stats, writer))?,
                )
            }
        };
        Ok(SinkHandle { name, stats, queue: tx, overflow, pending, slots, thread })
    }

    /// Queues a window or an events batch for the sink.
    pub fn send(&self, input: SinkInput) {
        let lost = match (&input, self.overflow) {
            (SinkInput::Metrics(_), Overflow::Drop) if self.pending.load(Ordering::Relaxed) >= self.slots => {
                Some((input, "sink is behind"))
            }
            _ => {
                let metrics = matches!(input, SinkInput::Metrics(_));
                if metrics {
                    self.pending.fetch_add(1, Ordering::Relaxed);
                }
                match self.queue.send(input) {
                    Ok(()) => None,
                    Err(e) => {
                        if metrics {
                            self.pending.fetch_sub(1, Ordering::Relaxed);
                        }
                        Some((e.0, "sink stopped"))
                    }
                }
            }
        };
        let Some((input, why)) = lost else { return };
        match input {
            SinkInput::Metrics(batch) => {
                tracing::warn!(sink = %self.name, "{why}: window {} dropped", batch.time);
                self.stats.dropped_windows.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_points.fetch_add(batch.point_count() as u64, Ordering::Relaxed);
                self.stats.windows_handled.fetch_add(1, Ordering::Relaxed);
            }
            SinkInput::Events(batch) => {
                tracing::error!(sink = %self.name, "{why}: {} events of tick {} not written", batch.events.len(), batch.time);
                self.stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
            }
            SinkInput::Table(table) => {
                tracing::warn!(sink = %self.name, "{why}: the table of window {} not printed", table.time);
            }
        }
    }

    /// Inputs waiting in the sink's queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Closes the queue and waits for the sink to write what it holds.
    pub fn finish(self) -> Arc<SinkStats> {
        drop(self.queue);
        match self.thread {
            Running::Local(thread) => {
                if thread.join().is_err() {
                    tracing::error!(sink = %self.name, "sink thread panicked");
                }
            }
            Running::Buffered(buffered) => buffered.join(),
        }
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::info!(
            sink = %self.name,
            windows = load(&s.windows),
            points = load(&s.points),
            dropped_windows = load(&s.dropped_windows),
            dropped_points = load(&s.dropped_points),
            events = load(&s.events),
            dropped_events = load(&s.dropped_events),
            retries = load(&s.retries),
            skipped_points = load(&s.skipped_points),
            shortened = load(&s.shortened),
            errors = load(&s.errors),
            "sink finished"
        );
        self.stats
    }
}

/// Writes everything queued to a local sink, in order. A local sink's failure does not pass
/// with time: counted, and the event checkpoint moves on rather than freezing.
fn drain(rx: Receiver<SinkInput>, pending: &AtomicUsize, stats: &SinkStats, mut writer: Box<dyn LocalWrite>) {
    for input in rx {
        match input {
            SinkInput::Metrics(batch) => {
                pending.fetch_sub(1, Ordering::Relaxed);
                let time = batch.time;
                let (points, written) = match Arc::try_unwrap(batch) {
                    Ok(owned) => writer.metrics_counted(Window::Owned(owned)),
                    Err(shared) => writer.metrics_counted(Window::Borrowed(&shared)),
                };
                match written {
                    Ok(()) => {
                        stats.windows.fetch_add(1, Ordering::Relaxed);
                        stats.points.fetch_add(points, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.dropped_points.fetch_add(points, Ordering::Relaxed);
                        tracing::error!("window {time} not written: {e}");
                    }
                }
                stats.windows_handled.fetch_add(1, Ordering::Relaxed);
            }
            SinkInput::Events(batch) => {
                let count = batch.events.len() as u64;
                match writer.events(&batch.events) {
                    Ok(()) => {
                        stats.events.fetch_add(count, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.dropped_events.fetch_add(count, Ordering::Relaxed);
                        tracing::error!("{count} events not written: {e}");
                    }
                }
                stats.events_written_through.fetch_max(batch.time + 1, Ordering::Relaxed);
            }
            SinkInput::Table(table) => {
                if let Err(e) = writer.table(&table) {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("the table of window {} not written: {e}", table.time);
                }
            }
        }
    }
}
