//! Sinks: where complete windows go.
//!
//! - [`log`]: a `kubectl top`-like table per window (the default).
//! - [`file`]: line protocol into a file.
//! - [`influxdb`]: Heapster's InfluxDB schema over HTTP, for metrics and events.
//! - [`events`]: events as InfluxDB points, shared by the event sinks.
//!
//! Each sink runs on its own thread behind its own bounded queue, so a slow or broken sink never
//! holds up the graph or the other sinks. Past its queue, a sink either makes the collector wait
//! (replay: nothing may be lost) or drops the oldest window and counts it (live collection).

pub mod events;
pub mod file;
pub mod influxdb;
pub mod line_protocol;
pub mod log;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use heapster_dataflows::{MetricSet, Time};

use crate::bridge::EventBatch;
use crate::config::{ConfigError, redact};

/// One complete window: every metric set of every worker, sorted by key.
#[derive(Clone, Debug, Default)]
pub struct MetricBatch {
    /// Window end, ms since the epoch.
    pub time: Time,
    pub sets: Vec<MetricSet>,
}

impl MetricBatch {
    pub fn point_count(&self) -> usize {
        self.sets.iter().map(MetricSet::point_count).sum()
    }
}

/// A window as one sink writes it. A sink that is the window's only reader owns it and frees
/// each set once encoded: the graph is already building the next window, and a window of a
/// 1,000-node cluster is about 100 MB.
pub enum Window<'a> {
    Owned(MetricBatch),
    Borrowed(&'a MetricBatch),
}

impl Window<'_> {
    pub fn batch(&self) -> &MetricBatch {
        match self {
            Window::Owned(batch) => batch,
            Window::Borrowed(batch) => batch,
        }
    }

    /// Frees the sets `cursor` has passed (when owned); the cursor moves with the rest.
    pub fn release(&mut self, cursor: &mut line_protocol::Cursor) {
        if let Window::Owned(batch) = self {
            cursor.release(batch);
        }
    }
}

impl<'a> From<&'a MetricBatch> for Window<'a> {
    fn from(batch: &'a MetricBatch) -> Self {
        Window::Borrowed(batch)
    }
}

impl From<MetricBatch> for Window<'_> {
    fn from(batch: MetricBatch) -> Self {
        Window::Owned(batch)
    }
}

/// A parsed `--sink` value.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    Log,
    File(file::FileConfig),
    Influx(Box<influxdb::InfluxConfig>),
}

const SCHEMES: &[&str] = &["log", "file", "influxdb"];

impl SinkConfig {
    pub fn from_uri(uri: &str) -> Result<SinkConfig, ConfigError> {
        let scheme = uri.split_once(':').map_or(uri, |(scheme, _)| scheme);
        match scheme {
            "log" => Ok(SinkConfig::Log),
            "file" => file::FileConfig::from_uri(uri).map(SinkConfig::File),
            "influxdb" => influxdb::InfluxConfig::from_uri(uri).map(|c| SinkConfig::Influx(Box::new(c))),
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
    /// Set when an events batch was lost: the checkpoint stops advancing, so a restart sends
    /// again what this sink may not have.
    pub events_failed: AtomicBool,
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
    thread: JoinHandle<()>,
}

impl SinkHandle {
    /// Starts the sink's thread. Set-up failures that a retry may fix (InfluxDB not up yet) are
    /// logged by the sink and retried; only a sink that can never work fails here.
    pub fn spawn(config: SinkConfig, queue: usize, overflow: Overflow) -> std::io::Result<SinkHandle> {
        let name = match &config {
            SinkConfig::Log => "log".to_string(),
            SinkConfig::File(c) => format!("file:{}", c.path.display()),
            SinkConfig::Influx(c) => redact(&c.to_string()),
        };
        let stats = Arc::new(SinkStats::default());
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let thread_stats = Arc::clone(&stats);
        let target = match config {
            SinkConfig::Log => Target::Log(log::LogSink::stdout()),
            SinkConfig::File(c) => Target::File(file::FileSink::create(&c)?),
            SinkConfig::Influx(c) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let mut sink = influxdb::InfluxSink::new(*c).map_err(std::io::Error::other)?;
                if let Err(e) = runtime.block_on(sink.start()) {
                    tracing::warn!("InfluxDB not ready yet, will retry on the first window: {e}");
                }
                Target::Influx(Box::new(sink), runtime)
            }
        };
        let thread = std::thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || drain(rx, &thread_stats, target))?;
        Ok(SinkHandle { name, stats, queue: tx, overflow, thread })
    }

    /// Queues a window or an events batch for the sink.
    pub fn send(&self, input: SinkInput) {
        let describe = |input: &SinkInput| match input {
            SinkInput::Metrics(b) => format!("window {}", b.time),
            SinkInput::Events(b) => format!("{} events of tick {}", b.events.len(), b.time),
        };
        let lost = match self.overflow {
            Overflow::Wait => self.queue.send(input).err().map(|e| (e.0, "sink stopped")),
            Overflow::Drop => match self.queue.try_send(input) {
                Ok(()) => None,
                Err(TrySendError::Full(input)) => Some((input, "sink is behind")),
                Err(TrySendError::Disconnected(input)) => Some((input, "sink stopped")),
            },
        };
        let Some((input, why)) = lost else { return };
        tracing::warn!(sink = %self.name, "{why}: {} dropped", describe(&input));
        match input {
            SinkInput::Metrics(batch) => {
                self.stats.dropped_windows.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_points.fetch_add(batch.point_count() as u64, Ordering::Relaxed);
            }
            SinkInput::Events(batch) => {
                self.stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                self.stats.events_failed.store(true, Ordering::Relaxed);
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
        if self.thread.join().is_err() {
            tracing::error!(sink = %self.name, "sink thread panicked");
        }
        self.stats
    }
}

/// The writer behind a sink's thread.
enum Target {
    Log(log::LogSink<std::io::Stdout>),
    File(file::FileSink),
    /// The InfluxDB client is async: the thread has its own small runtime.
    Influx(Box<influxdb::InfluxSink>, tokio::runtime::Runtime),
}

impl Target {
    /// Writes a window; returns the points the backend dropped.
    fn metrics(&mut self, window: Window<'_>) -> Result<u64, String> {
        match self {
            Target::Log(sink) => sink.write(window.batch()).map(|()| 0).map_err(|e| e.to_string()),
            Target::File(sink) => sink.write(window).map(|()| 0).map_err(|e| e.to_string()),
            Target::Influx(sink, runtime) => match runtime.block_on(sink.write(window)) {
                Ok(report) => Ok(report.points_dropped as u64),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Writes events; returns how many the backend dropped.
    fn events(&mut self, batch: &EventBatch) -> Result<u64, String> {
        match self {
            Target::Log(sink) => sink.write_events(&batch.events).map(|()| 0).map_err(|e| e.to_string()),
            // Line protocol of metrics only: events have their own sinks.
            Target::File(_) => Ok(0),
            Target::Influx(sink, runtime) => match runtime.block_on(sink.write_events(&batch.events)) {
                Ok(report) => Ok(report.points_dropped as u64),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// Writes everything queued, in order.
fn drain(rx: Receiver<SinkInput>, stats: &SinkStats, mut target: Target) {
    for input in rx {
        match input {
            SinkInput::Metrics(batch) => {
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
            SinkInput::Events(batch) => match target.events(&batch) {
                Ok(dropped) => {
                    let count = batch.events.len() as u64;
                    stats.events.fetch_add(count - dropped.min(count), Ordering::Relaxed);
                    stats.dropped_events.fetch_add(dropped, Ordering::Relaxed);
                    stats.events_written_through.fetch_max(batch.time + 1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats.dropped_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    if !stats.events_failed.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "{} events not written: {e}; the event checkpoint stops here until a restart",
                            batch.events.len()
                        );
                    }
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
