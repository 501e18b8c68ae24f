//! Sinks: where complete windows go.
//!
//! - [`log`]: a `kubectl top`-like table per window (the default).
//! - [`file`]: line protocol into a file.
//! - [`influxdb`]: Heapster's InfluxDB schema over HTTP, for metrics and events.
//! - [`events`]: events as InfluxDB points, shared by the event sinks.
//! - [`gcm`]: metrics to Google Cloud Monitoring; [`gcl`]: events to Google Cloud Logging;
//!   [`google`]: what the two share.
//!
//! - [`queue`]: the byte-bounded buffer (memory or disk), retries and threads every network sink
//!   runs behind.
//!
//! Each sink runs on its own thread behind its own queue, so a slow or broken sink never holds up
//! the graph or the other sinks. Past its queue, a sink either makes the collector wait (replay:
//! nothing may be lost) or drops the window and counts it (live collection). Event batches are
//! never dropped: the event checkpoint waits for every sink to write each of them.

pub mod events;
pub mod file;
pub mod gcl;
pub mod gcm;
pub mod google;
pub mod influxdb;
pub mod line_protocol;
pub mod log;
pub mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::{EventBatch, MetricBatch, Window};
use crate::config::{ConfigError, redact};

/// A parsed `--sink` value.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    Log,
    File(file::FileConfig),
    Influx(Box<influxdb::InfluxConfig>),
    Gcl(Box<gcl::GclConfig>),
    Gcm(Box<gcm::GcmConfig>),
}

const SCHEMES: &[&str] = &["log", "file", "influxdb", "gcm", "gcl"];

impl SinkConfig {
    pub fn from_uri(uri: &str) -> Result<SinkConfig, ConfigError> {
        // `gcl?project=p` has options but no target.
        let scheme = uri.split([':', '?']).next().unwrap_or(uri);
        match scheme {
            "log" => Ok(SinkConfig::Log),
            "file" => file::FileConfig::from_uri(uri).map(SinkConfig::File),
            "influxdb" => influxdb::InfluxConfig::from_uri(uri).map(|c| SinkConfig::Influx(Box::new(c))),
            "gcl" => gcl::GclConfig::from_uri(uri).map(|c| SinkConfig::Gcl(Box::new(c))),
            "gcm" => gcm::GcmConfig::from_uri(uri).map(|c| SinkConfig::Gcm(Box::new(c))),
            other => Err(ConfigError::new(
                "--sink",
                uri,
                format!("unknown sink {other:?}; expected one of: {}", SCHEMES.join(", ")),
            )),
        }
    }
}

/// What to do when a sink's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for the sink (replay: the output must be complete).
    Wait,
    /// Drop the window for this sink and count it (live: never slow the scrape).
    Drop,
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub windows: AtomicU64,
    pub points: AtomicU64,
    pub dropped_windows: AtomicU64,
    pub dropped_points: AtomicU64,
    pub errors: AtomicU64,
    pub events: AtomicU64,
    pub dropped_events: AtomicU64,
    /// One past the last events tick written in full (0: none yet). Checkpoints never go past
    /// what every sink has written.
    pub events_written_through: AtomicU64,
    /// Sends tried again after a failure that may pass.
    pub retries: AtomicU64,
    /// Points never sent because the backend cannot store them (NaN, a series key too long).
    pub skipped_points: AtomicU64,
    /// Entities whose points were sent with their `labels` tag shortened to fit.
    pub shortened: AtomicU64,
}

/// What a sink's queue carries.
#[derive(Clone, Debug)]
pub enum SinkInput {
    Metrics(Arc<MetricBatch>),
    Events(Arc<EventBatch>),
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
    Direct(JoinHandle<()>),
    Buffered(queue::Buffered),
}

/// What a sink needs from the run besides its URI.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    /// `--state_dir`: the disk buffers live under it.
    pub state_dir: Option<PathBuf>,
    /// Set when the collector is told to stop.
    pub stop: Arc<AtomicBool>,
}

impl SinkHandle {
    /// Starts the sink's thread. Set-up failures that a retry may fix (InfluxDB not up yet) are
    /// logged by the sink and retried; only a sink that can never work fails here.
    pub fn spawn(config: SinkConfig, queue: usize, overflow: Overflow) -> std::io::Result<SinkHandle> {
        Self::spawn_in(config, queue, overflow, &SinkContext::default())
    }

    /// [`SinkHandle::spawn`] with the run's state directory and stop flag.
    pub fn spawn_in(
        config: SinkConfig,
        slots: usize,
        overflow: Overflow,
        context: &SinkContext,
    ) -> std::io::Result<SinkHandle> {
        let name = match &config {
            SinkConfig::Log => "log".to_string(),
            SinkConfig::File(c) => format!("file:{}", c.path.display()),
            SinkConfig::Influx(c) => redact(&c.to_string()),
            SinkConfig::Gcl(c) => c.to_string(),
            SinkConfig::Gcm(c) => c.to_string(),
        };
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
        let thread = match config {
            SinkConfig::Influx(c) => {
                let at_bound = match overflow {
                    Overflow::Wait => queue::AtBound::Wait,
                    Overflow::Drop => queue::AtBound::DropOldest,
                };
                let plan = queue::Plan {
                    name: name.clone(),
                    config: c.buffer.clone(),
                    dir: context.state_dir.as_ref().map(|d| d.join(queue::BUFFER_DIR).join(c.buffer_name())),
                    at_bound,
                    retry: queue::RETRY,
                    stop: Arc::clone(&context.stop),
                    stop_grace: queue::STOP_GRACE,
                };
                let (encode, deliver) = influxdb::buffered(*c).map_err(std::io::Error::other)?;
                Running::Buffered(queue::Buffered::start(
                    plan,
                    rx,
                    Arc::clone(&pending),
                    thread_stats,
                    encode,
                    deliver,
                )?)
            }
            direct => {
                let target = Target::open(direct)?;
                let stop = &context.stop;
                Running::Direct(Self::direct(&name, rx, Arc::clone(&pending), thread_stats, target, stop)?)
            }
        };
        Ok(SinkHandle { name, stats, queue: tx, overflow, pending, slots, thread })
    }

    fn direct(
        name: &str,
        rx: Receiver<SinkInput>,
        pending: Arc<AtomicUsize>,
        stats: Arc<SinkStats>,
        target: Target,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let stop = Arc::clone(stop);
        std::thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || drain(rx, &pending, &stats, target, &stop))
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
            }
            SinkInput::Events(batch) => {
                tracing::error!(sink = %self.name, "{why}: {} events of tick {} not written", batch.events.len(), batch.time);
                self.stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
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
            Running::Direct(thread) => {
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

/// The writer behind a sink's thread.
enum Target {
    Log(log::LogSink<std::io::Stdout>),
    File(Box<file::FileSink>),
    /// The Google clients are async and retry on their own: the thread has its own runtime.
    Gcl(Box<gcl::GclSink>, tokio::runtime::Runtime),
    Gcm(Box<gcm::GcmSink>, tokio::runtime::Runtime),
}

impl Target {
    /// The writer of a sink that runs on its own thread (InfluxDB runs behind the queue).
    fn open(config: SinkConfig) -> std::io::Result<Target> {
        Ok(match config {
            SinkConfig::Log => Target::Log(log::LogSink::stdout()),
            SinkConfig::File(c) => Target::File(Box::new(file::FileSink::create(&c)?)),
            SinkConfig::Gcl(c) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                // Unlike a database still starting, bad credentials never fix themselves.
                let sink = runtime.block_on(gcl::GclSink::start(*c)).map_err(std::io::Error::other)?;
                Target::Gcl(Box::new(sink), runtime)
            }
            SinkConfig::Gcm(c) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let sink = runtime.block_on(gcm::GcmSink::start(*c)).map_err(std::io::Error::other)?;
                Target::Gcm(Box::new(sink), runtime)
            }
            SinkConfig::Influx(_) => {
                return Err(std::io::Error::other("the InfluxDB sink runs behind its queue"));
            }
        })
    }

    /// A backend across the network, whose failures may pass.
    fn remote(&self) -> bool {
        matches!(self, Target::Gcl(..) | Target::Gcm(..))
    }

    /// Writes an events batch; a remote backend's failure is retried (capped backoff) until
    /// it passes or the collector stops, so no event batch is lost to an outage.
    fn events_until_written(
        &mut self,
        batch: &EventBatch,
        stats: &SinkStats,
        stop: &AtomicBool,
    ) -> Result<u64, String> {
        let mut waits = queue::RETRY.waits();
        loop {
            match self.events(batch) {
                Err(e) if self.remote() && !stop.load(Ordering::Relaxed) => {
                    let wait = waits.next_wait();
                    tracing::warn!(
                        "{} events not written yet, retrying in {wait:?}: {e}",
                        batch.events.len()
                    );
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                }
                result => return result,
            }
        }
    }

    /// Writes a window; returns the points the backend dropped.
    fn metrics(&mut self, window: Window<'_>) -> Result<u64, String> {
        match self {
            Target::Log(sink) => sink.write(window.batch()).map(|()| 0).map_err(|e| e.to_string()),
            Target::File(sink) => sink.write(window).map(|()| 0).map_err(|e| e.to_string()),
            // Events only.
            Target::Gcl(..) => Ok(0),
            Target::Gcm(sink, runtime) => match runtime.block_on(sink.write(window)) {
                Ok(report) => Ok(report.dropped as u64),
                Err((_, e)) => Err(e.to_string()),
            },
        }
    }

    /// Writes events; returns how many the backend dropped.
    fn events(&mut self, batch: &EventBatch) -> Result<u64, String> {
        match self {
            Target::Log(sink) => sink.write_events(&batch.events).map(|()| 0).map_err(|e| e.to_string()),
            // Line protocol of metrics only: events have their own sinks.
            Target::File(_) => Ok(0),
            Target::Gcl(sink, runtime) => match runtime.block_on(sink.write_events(&batch.events)) {
                Ok(report) => Ok(report.dropped as u64),
                Err((_, e)) => Err(e.to_string()),
            },
            // Metrics only.
            Target::Gcm(..) => Ok(0),
        }
    }
}

/// Writes everything queued, in order.
fn drain(
    rx: Receiver<SinkInput>,
    pending: &AtomicUsize,
    stats: &SinkStats,
    mut target: Target,
    stop: &AtomicBool,
) {
    for input in rx {
        match input {
            SinkInput::Metrics(batch) => {
                pending.fetch_sub(1, Ordering::Relaxed);
                let points = batch.point_count() as u64;
                let time = batch.time;
                let written = match Arc::try_unwrap(batch) {
                    Ok(owned) => target.metrics(Window::Owned(owned)),
                    Err(shared) => target.metrics(Window::Borrowed(&shared)),
                };
                match written {
                    Ok(dropped) => {
                        stats.windows.fetch_add(1, Ordering::Relaxed);
                        stats.points.fetch_add(points - dropped.min(points), Ordering::Relaxed);
                        stats.dropped_points.fetch_add(dropped, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.dropped_points.fetch_add(points, Ordering::Relaxed);
                        tracing::error!("window {time} not written: {e}");
                    }
                }
            }
            SinkInput::Events(batch) => match target.events_until_written(&batch, stats, stop) {
                Ok(dropped) => {
                    let count = batch.events.len() as u64;
                    stats.events.fetch_add(count - dropped.min(count), Ordering::Relaxed);
                    stats.dropped_events.fetch_add(dropped, Ordering::Relaxed);
                    stats.events_written_through.fetch_max(batch.time + 1, Ordering::Relaxed);
                }
                Err(e) if target.remote() => {
                    // Stopped while the backend was still failing: the checkpoint stays before
                    // these events, so the next start exports them again (Cloud Logging keeps
                    // one entry per insertId, so nothing doubles).
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    tracing::error!("{} events not written before the stop: {e}", batch.events.len());
                }
                Err(e) => {
                    // A local sink's failure does not pass with time: counted, and the
                    // checkpoint moves on rather than freezing.
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    stats.events_written_through.fetch_max(batch.time + 1, Ordering::Relaxed);
                    tracing::error!("{} events not written: {e}", batch.events.len());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_names_the_choices() {
        let err = SinkConfig::from_uri("kafka:localhost:9092").unwrap_err();
        assert_eq!(err.flag, "--sink");
        assert!(err.reason.contains("unknown sink \"kafka\"; expected one of: log, file, influxdb"), "{err}");
        assert!(matches!(SinkConfig::from_uri("log"), Ok(SinkConfig::Log)));
    }
}
