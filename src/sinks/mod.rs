//! Sinks: where complete windows and event batches go.
//!
//! Where a new sink goes: a folder `src/sinks/<name>/` (config, client, encoding, tests) whose
//! config implements [`Sink`], opening [`queue::Encode`] and [`queue::Deliver`] halves for a
//! backend across the network, or a [`LocalWrite`]; one line in [`REGISTRY`] names its scheme.
//!
//! - [`log`]: a `kubectl top`-like table per window (the default).
//! - [`file`]: line protocol into a file.
//! - [`influxdb`]: Heapster's InfluxDB schema over HTTP, for metrics and events; its line
//!   protocol and event encoding.
//! - [`event_json`]: an event as Heapster's event sinks sent it (JSON and time), for all three.
//! - [`gcm`]: metrics to Google Cloud Monitoring; [`gcl`]: events to Google Cloud Logging;
//!   [`google`]: what the two share.
//!
//! Written once for every sink: [`handle`] (the sink's thread, its queue of windows, drop
//! counting, [`SinkStats`]) and [`queue`] (the byte-bounded buffer, memory or disk, with retries,
//! that every network sink runs behind).
//!
//! Each sink runs on its own thread behind its own queue, so a slow or broken sink never holds up
//! the graph or the other sinks. Past its queue, a sink either makes the collector wait (replay:
//! nothing may be lost) or drops the window and counts it (live collection). Event batches are
//! never dropped: the event checkpoint waits for every sink to acknowledge each of them.

pub mod event_json;
pub mod file;
pub mod gcl;
pub mod gcm;
pub mod google;
pub mod handle;
pub mod influxdb;
pub mod log;
pub mod queue;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use heapster_dataflows::Event;

use crate::batch::{EventBatch, MetricBatch, Window};
use crate::config::ConfigError;
pub use handle::SinkHandle;
use queue::{BufferConfig, Deliver, Encode};

/// Parses one kind of sink's `--sink` URI.
pub type Parse = fn(&str) -> Result<Arc<dyn Sink>, ConfigError>;

/// Every sink, by its `--sink` scheme.
pub const REGISTRY: &[(&str, Parse)] = &[
    ("log", |_| Ok(Arc::new(log::LogConfig))),
    ("file", |uri| Ok(Arc::new(file::FileConfig::from_uri(uri)?))),
    ("influxdb", |uri| Ok(Arc::new(influxdb::InfluxConfig::from_uri(uri)?))),
    ("gcm", |uri| Ok(Arc::new(gcm::GcmConfig::from_uri(uri)?))),
    ("gcl", |uri| Ok(Arc::new(gcl::GclConfig::from_uri(uri)?))),
];

/// A sink, once its `--sink` URI is parsed.
pub trait Sink: fmt::Debug + Send + Sync + 'static {
    /// How logs and metrics name the sink; never with a secret.
    fn name(&self) -> String;

    /// Opens the sink's writer. Fails only when the sink can never work (a file that cannot be
    /// created, bad credentials): a backend that is not up yet is the queue's to retry.
    fn open(&self, context: &SinkContext) -> Result<Opened, SinkError>;
}

/// An opened sink, in one of the two ways sinks run.
pub enum Opened {
    /// Written on the sink's thread as inputs come (the terminal, a file): its failures do not
    /// pass with time, so nothing is retried.
    Local(Box<dyn LocalWrite>),
    /// Encoded into the byte-bounded buffer and delivered from it, retried until the backend
    /// takes it.
    Queued(Queued),
}

/// The halves of a sink that runs behind [`queue`].
pub struct Queued {
    pub encode: Box<dyn Encode>,
    pub deliver: Box<dyn Deliver>,
    pub buffer: BufferConfig,
    /// Its disk buffer's folder under `<state_dir>/sink-buffer/`: one per backend.
    pub buffer_name: String,
}

/// A local sink's writer.
pub trait LocalWrite: Send {
    fn metrics(&mut self, window: Window<'_>) -> io::Result<()>;

    /// A metrics-only sink leaves events alone.
    fn events(&mut self, _events: &[Event]) -> io::Result<()> {
        Ok(())
    }
}

/// Why a sink could not open.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Influx(#[from] influxdb::InfluxError),
    #[error(transparent)]
    Google(#[from] google::GoogleError),
}

/// A parsed `--sink` value.
#[derive(Clone, Debug)]
pub struct SinkConfig(Arc<dyn Sink>);

impl SinkConfig {
    pub fn from_uri(uri: &str) -> Result<SinkConfig, ConfigError> {
        // `gcl?project=p` has options but no target.
        let scheme = uri.split([':', '?']).next().unwrap_or(uri);
        match REGISTRY.iter().find(|(name, _)| *name == scheme) {
            Some((_, parse)) => parse(uri).map(SinkConfig),
            None => {
                let schemes: Vec<&str> = REGISTRY.iter().map(|(name, _)| *name).collect();
                Err(ConfigError::new(
                    "--sink",
                    uri,
                    format!("unknown sink {scheme:?}; expected one of: {}", schemes.join(", ")),
                ))
            }
        }
    }

    pub fn new(sink: impl Sink) -> SinkConfig {
        SinkConfig(Arc::new(sink))
    }

    /// The default sink.
    pub fn log() -> SinkConfig {
        SinkConfig::new(log::LogConfig)
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn sink(&self) -> &dyn Sink {
        &*self.0
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

/// What a sink needs from the run besides its URI.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    /// `--state_dir`: the disk buffers live under it.
    pub state_dir: Option<PathBuf>,
    /// Set when the collector is told to stop.
    pub stop: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_names_the_choices() {
        let err = SinkConfig::from_uri("kafka:localhost:9092").unwrap_err();
        assert_eq!(err.flag, "--sink");
        assert!(err.reason.contains("unknown sink \"kafka\"; expected one of: log, file, influxdb"), "{err}");
        assert_eq!(SinkConfig::from_uri("log").unwrap().name(), "log");
    }
}
