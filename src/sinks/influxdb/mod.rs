//! The InfluxDB 1.x sink: Heapster's schema (see [`line_protocol`]) over `POST /write`.
//!
//! The sink runs behind [`super::queue`]: [`InfluxEncode`] cuts a window into chunks of at most
//! [`MAX_POINTS_PER_WRITE`] points, and [`InfluxDeliver`] writes them, at most `concurrency` at a
//! time, one attempt each. Transient failures (5xx, 429, connection errors, timeouts, a database
//! gone missing) are left to the queue to retry; anything else is logged with InfluxDB's own
//! message and the chunk's points are counted as dropped, never lost silently.
//!
//! # Events
//!
//! Event batches are written in Heapster's eventer schema ([`EventEncoder`]), one point
//! per distinct state of an event:
//!
//! | | `withfields=false` (default) | `withfields=true` |
//! |---|---|---|
//! | measurement | `log/events` | `events` |
//! | field | `value`: the event as a core `v1` Event in indented JSON | `message`: the event's message |
//! | tags | `cluster_name`, `hostname`, `pod_id`, `pod_name`, `uid` | `cluster_name`, `component`, `hostname`, `kind`, `namespace_name`, `object_name`, `pod_id`, `reason`, `type`, `uid` |
//! | time | `lastTimestamp` (else `firstTimestamp`) | the same |
//!
//! Tag values: `uid` the event's uid; `hostname` and `component` its source's host and
//! component; `pod_id` and `pod_name` the involved object's uid and name, only when it is a
//! `Pod`; `object_name` and `kind` the involved object's name and kind; `namespace_name` the
//! event's namespace; `type` `Normal` or `Warning`; `cluster_name` the option's value. Tags with
//! empty values are left out. The field is a string: `value` is the API server's JSON for a core
//! `v1` Event, re-indented as Heapster's `json.MarshalIndent(event, "", " ")` was (other bodies
//! are rebuilt as core `v1` from the event's fields).
//!
//! A point's identity is (measurement, tags, time), and all of them come from the event's own
//! state, so a state sent again (after a restart) overwrites its point instead of adding one, and
//! a repeat with a new `lastTimestamp` adds a point. `lastTimestamp` has one-second precision:
//! repeats within one second share a point, and the one with the highest count is kept.
//! `withfields=true` stores no count: such repeats, like the states of any event that share a
//! message, differ only in time.

pub mod client;
pub mod config;
pub mod encode;
pub mod events;
pub mod fields;
pub mod line_protocol;

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::redact;
use crate::sinks::queue::Queued;
use crate::sinks::queue::{Chunk, Deliver, Sent};
use crate::sinks::sink::{Opened, Sink, SinkContext, SinkError};
use client::{Endpoint, quote_ident, tolerate_forbidden, write_once};
pub use config::{InfluxConfig, Retention};
pub use encode::{InfluxEncode, MAX_EVENT_BYTES_PER_WRITE, MAX_POINTS_PER_WRITE};
pub use events::EventEncoder;
use line_protocol::LineEncoder;

/// Why InfluxDB did not take something.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("cannot build the InfluxDB HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{base}{path}: {source}")]
    Url { base: String, path: String, source: url::ParseError },
    #[error("cannot start the sink's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// InfluxDB answered with an error status (5xx and 429 are tried again by the queue).
    #[error("InfluxDB answered {status} to {action}: {message}")]
    Server { action: String, status: u16, message: String },
    /// A query statement failed (InfluxDB answers those with 200 and an error per statement).
    #[error("InfluxDB refused {action}: {message}")]
    Statement { action: String, message: String },
    #[error("InfluxDB did not answer {action}: {message}")]
    Unreachable { action: String, message: String },
}

impl From<InfluxError> for SinkError {
    fn from(e: InfluxError) -> SinkError {
        SinkError::Backend(Box::new(e))
    }
}

/// The server side of the sink: where points go and whether the database is set up.
struct Writer {
    config: InfluxConfig,
    endpoint: Arc<Endpoint>,
    /// The database (and retention policy) were set up.
    db_ready: bool,
}

impl Writer {
    /// `CREATE DATABASE`, then the retention policy if one was asked for (created, or altered if
    /// it exists with other settings). A user without admin rights gets 403 here: warn and go on,
    /// the database may well exist.
    async fn ensure_database(&mut self) -> Result<(), InfluxError> {
        let endpoint = &self.endpoint;
        let db = quote_ident(&self.config.db);
        tolerate_forbidden(endpoint.query(&format!("CREATE DATABASE {db}")).await)?;
        if let Some(duration) = self.config.retention.influxql() {
            let rp = quote_ident(&self.config.retention_policy);
            let create =
                format!("CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1 DEFAULT");
            match endpoint.query(&create).await {
                Err(InfluxError::Statement { message, .. })
                    if message.contains("already exists") || message.contains("conflicts") =>
                {
                    let alter = format!("ALTER RETENTION POLICY {rp} ON {db} DURATION {duration} DEFAULT");
                    tolerate_forbidden(endpoint.query(&alter).await)?;
                    info!(db = %self.config.db, policy = %self.config.retention_policy, duration, "InfluxDB retention policy altered");
                }
                other => tolerate_forbidden(other)?,
            }
        }
        self.db_ready = true;
        info!(url = %self.config.url, db = %self.config.db, "InfluxDB database ready");
        Ok(())
    }
}

impl Sink for InfluxConfig {
    fn name(&self) -> String {
        redact(&self.to_string())
    }

    fn open(&self, _context: &SinkContext) -> Result<Opened, SinkError> {
        let (encode, deliver) = buffered(self.clone())?;
        Ok(Opened::Queued(Queued {
            encode: Box::new(encode),
            deliver: Box::new(deliver),
            buffer: self.buffer.clone(),
            buffer_name: self.buffer_name(),
        }))
    }
}

/// The InfluxDB sink's two halves for [`super::queue`]: the encoders, and a writer that makes one
/// attempt per chunk (the queue retries).
pub fn buffered(config: InfluxConfig) -> Result<(InfluxEncode, InfluxDeliver), InfluxError> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(InfluxError::Runtime)?;
    let endpoint = Arc::new(Endpoint::new(&config)?);
    let encode = InfluxEncode {
        encoder: LineEncoder::new(config.line_options()),
        events: EventEncoder::new(config.with_fields, config.cluster_name.clone()),
    };
    Ok((encode, InfluxDeliver { writer: Writer { config, endpoint, db_ready: false }, runtime }))
}

/// Writes chunks to InfluxDB, `concurrency` at a time, creating the database when needed.
pub struct InfluxDeliver {
    writer: Writer,
    runtime: tokio::runtime::Runtime,
}

impl Deliver for InfluxDeliver {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        let writer = &mut self.writer;
        self.runtime.block_on(async {
            if !writer.db_ready
                && let Err(e) = writer.ensure_database().await
            {
                return chunks.iter().map(|_| setup_failed(&e)).collect();
            }
            let mut tasks = JoinSet::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let endpoint = Arc::clone(&writer.endpoint);
                let (body, points) = (chunk.body.clone(), chunk.points as usize);
                tasks.spawn(async move { (i, write_once(&endpoint, body, points).await) });
            }
            let mut outcomes: Vec<Sent> =
                chunks.iter().map(|_| Sent::Retry("write task failed".into())).collect();
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, outcome)) = joined
                    && let Some(slot) = outcomes.get_mut(i)
                {
                    *slot = outcome;
                }
            }
            if outcomes.iter().any(|o| matches!(o, Sent::Retry(m) if m.contains("database not found"))) {
                warn!(db = %writer.config.db, "InfluxDB database not found; creating it again");
                writer.db_ready = false;
            }
            outcomes
        })
    }

    fn parallel(&self) -> usize {
        self.writer.config.concurrency
    }
}

/// A chunk's fate when the database could not be set up: InfluxDB's refusal (a wrong password,
/// a bad request) does not pass by waiting, anything else may.
fn setup_failed(e: &InfluxError) -> Sent {
    match e {
        InfluxError::Server { status, .. } if !client::is_transient_code(*status) && *status != 404 => {
            error!(error = %e, "InfluxDB refused to set up the database; points dropped");
            Sent::Refused(e.to_string())
        }
        _ => Sent::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
