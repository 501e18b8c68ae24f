//! Sinks: where complete windows and event batches go.
//!
//! Where a new sink goes: a folder `src/sinks/<name>/` (config, client, encoding, tests) whose
//! config implements [`Sink`] ([`sink`]), opening [`queue::Encode`] and [`queue::Deliver`] for a
//! network backend or a [`LocalWrite`]; one line in [`REGISTRY`] names its `--sink` scheme.
//!
//! - [`log`]: a `kubectl top`-like table per window (the default).
//! - [`file`](mod@file): line protocol into a file.
//! - [`influxdb`]: Heapster's InfluxDB schema over HTTP, for metrics and events; its line
//!   protocol and event encoding.
//! - [`event_json`]: an event as Heapster's event sinks sent it (JSON and time), for all three.
//! - [`gcm`]: metrics to Google Cloud Monitoring; [`gcl`]: events to Google Cloud Logging;
//!   [`google`]: what the two share.
//!
//! Written once for every sink: [`handle`] (the sink's thread, its queue of windows, drop
//! counting), [`stats`] (its counters) and [`queue`] (the byte-bounded buffer, memory or disk,
//! with retries, that every network sink runs behind).
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
pub mod sink;
pub mod stats;

use std::sync::Arc;

use crate::config::ConfigError;

pub use crate::batch::SinkInput;
pub use handle::{Overflow, SinkHandle};
pub use queue::Queued;
pub use sink::{LocalWrite, Opened, Sink, SinkConfig, SinkContext, SinkError};
pub use stats::SinkStats;

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

/// Parsing, which needs the registry of every sink.
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

    /// The default sink.
    pub fn log() -> SinkConfig {
        SinkConfig::new(log::LogConfig)
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
        assert_eq!(SinkConfig::from_uri("log").unwrap().name(), "log");
    }

    #[test]
    fn only_the_log_sink_wants_the_cluster_table() {
        assert!(SinkConfig::from_uri("log").unwrap().wants_table());
        assert!(!SinkConfig::from_uri("file:/dev/null").unwrap().wants_table());
    }
}
