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
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use heapster_dataflows::{MetricSet, Time};

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
}

/// A running sink.
pub struct SinkHandle {
    pub name: String,
    pub stats: Arc<SinkStats>,
    queue: Sender<Arc<MetricBatch>>,
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
        let runner: Box<dyn FnOnce() + Send> = match config {
            SinkConfig::Log => {
                let mut sink = log::LogSink::stdout();
                Box::new(move || {
                    drain(rx, &thread_stats, |b| sink.write(b).map(|()| 0).map_err(|e| e.to_string()))
                })
            }
            SinkConfig::File(c) => {
                let mut sink = file::FileSink::create(&c)?;
                Box::new(move || {
                    drain(rx, &thread_stats, |b| sink.write(b).map(|()| 0).map_err(|e| e.to_string()))
                })
            }
            SinkConfig::Influx(c) => {
                let sink = influxdb::InfluxSink::new(*c).map_err(std::io::Error::other)?;
                Box::new(move || run_influx(sink, rx, &thread_stats))
            }
        };
        let thread = std::thread::Builder::new().name(format!("sink {name}")).spawn(runner)?;
        Ok(SinkHandle { name, stats, queue: tx, overflow, thread })
    }

    /// Queues a window for the sink.
    pub fn send(&self, batch: &Arc<MetricBatch>) {
        let sent = match self.overflow {
            Overflow::Wait => self.queue.send(Arc::clone(batch)).map_err(|_| ()),
            Overflow::Drop => match self.queue.try_send(Arc::clone(batch)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    self.stats.dropped_windows.fetch_add(1, Ordering::Relaxed);
                    self.stats.dropped_points.fetch_add(batch.point_count() as u64, Ordering::Relaxed);
                    tracing::warn!(sink = %self.name, "sink is behind; window {} dropped", batch.time);
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(()),
            },
        };
        if sent.is_err() {
            self.stats.dropped_windows.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sink = %self.name, "sink stopped; window {} not written", batch.time);
        }
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

/// Writes every queued window with `write`, which returns the points it dropped.
fn drain(
    rx: Receiver<Arc<MetricBatch>>,
    stats: &SinkStats,
    mut write: impl FnMut(&MetricBatch) -> Result<u64, String>,
) {
    for batch in rx {
        let points = batch.point_count() as u64;
        match write(&batch) {
            Ok(dropped) => {
                stats.windows.fetch_add(1, Ordering::Relaxed);
                stats.points.fetch_add(points - dropped.min(points), Ordering::Relaxed);
                stats.dropped_points.fetch_add(dropped, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.dropped_points.fetch_add(points, Ordering::Relaxed);
                tracing::error!("window {} not written: {e}", batch.time);
            }
        }
    }
}

/// The InfluxDB sink's thread: its own small runtime for the async client.
fn run_influx(mut sink: influxdb::InfluxSink, rx: Receiver<Arc<MetricBatch>>, stats: &SinkStats) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("InfluxDB sink cannot start its runtime: {e}");
            return drain(rx, stats, |_| Err("sink not running".to_string()));
        }
    };
    if let Err(e) = runtime.block_on(sink.start()) {
        tracing::warn!("InfluxDB not ready yet, will retry on the first window: {e}");
    }
    drain(rx, stats, |batch| match runtime.block_on(sink.write(batch)) {
        Ok(report) => Ok(report.points_dropped as u64),
        Err(e) => Err(e.to_string()),
    });
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
