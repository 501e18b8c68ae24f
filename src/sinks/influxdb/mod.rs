//! The InfluxDB 1.x sink: Heapster's schema (see [`line_protocol`]) over `POST /write`.
//!
//! A window is encoded and sent one chunk of at most [`MAX_POINTS_PER_WRITE`] points at a time,
//! with at most `concurrency` chunks in flight, so memory stays bounded whatever the window's
//! size. Transient failures (5xx, 429, connection errors, timeouts) are retried with backoff;
//! anything else is logged with InfluxDB's own message and the chunk's points are counted as
//! dropped, never lost silently.
//!
//! # Events
//!
//! [`InfluxSink::write_events`] writes Heapster's eventer schema ([`EventEncoder`]), one point
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
pub mod line_protocol;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use heapster_dataflows::Event;

use crate::batch::Window;
use crate::config::redact;
use crate::sinks::queue::Queued;
use crate::sinks::queue::{Chunk, Deliver, Sent};
use crate::sinks::sink::{Opened, Sink, SinkContext, SinkError};
use client::{Endpoint, LINES, quote_ident, refused_count, server_message, tolerate_forbidden, write_once};
pub use config::{InfluxConfig, Retention};
use encode::{ChunkSource, EventChunks, MetricChunks};
pub use encode::{InfluxEncode, MAX_EVENT_BYTES_PER_WRITE, MAX_POINTS_PER_WRITE};
pub use events::EventEncoder;
use line_protocol::{Cursor, LineEncoder};

/// Why InfluxDB did not take something.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("cannot build the InfluxDB HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{base}{path}: {source}")]
    Url { base: String, path: String, source: url::ParseError },
    #[error("cannot start the sink's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// InfluxDB answered with an error status (given up on after retries for 5xx and 429).
    #[error("InfluxDB answered {status} to {action}: {message}")]
    Server { action: String, status: u16, message: String },
    /// A query statement failed (InfluxDB answers those with 200 and an error per statement).
    #[error("InfluxDB refused {action}: {message}")]
    Statement { action: String, message: String },
    #[error("InfluxDB did not answer {action} after {attempts} attempts: {message}")]
    Unreachable { action: String, attempts: u32, message: String },
    #[error("a write task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// Part or all of a window was not written; `report` says what was.
    #[error("{} of {} points of the window not written: {cause}", report.points_dropped, report.points_written + report.points_dropped)]
    Window { report: WriteReport, cause: Box<InfluxError> },
}

impl From<InfluxError> for SinkError {
    fn from(e: InfluxError) -> SinkError {
        SinkError::Backend(Box::new(e))
    }
}

/// What writing one window did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub points_written: usize,
    /// Refused by InfluxDB (partial writes) or given up on (errors, retries exhausted).
    pub points_dropped: usize,
    /// Never sent because InfluxDB cannot store them: NaN or infinite values, events without a
    /// time in InfluxDB's range.
    pub points_skipped: usize,
    /// Event states not sent because a newer state of the same event in the same batch has the
    /// same point (measurement, tags and time): InfluxDB would have kept only one of them.
    pub points_superseded: usize,
    /// HTTP requests made, retries and database set-up included.
    pub requests: usize,
}

/// What became of one chunk.
#[derive(Default)]
struct ChunkOutcome {
    written: usize,
    dropped: usize,
    requests: usize,
    error: Option<InfluxError>,
    /// The database was missing on a first send: the chunk and its points, to send again.
    db_missing: Option<(Bytes, usize)>,
}

async fn write_chunk(endpoint: Arc<Endpoint>, body: Bytes, points: usize, resent: bool) -> ChunkOutcome {
    let (result, requests) = endpoint.post_retrying("write", &endpoint.write_url, LINES, body.clone()).await;
    let mut outcome = ChunkOutcome { requests, ..ChunkOutcome::default() };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            error!(points, error = %e, "InfluxDB write given up; points dropped");
            outcome.dropped = points;
            outcome.error = Some(e);
            return outcome;
        }
    };
    if answer.status.is_success() {
        outcome.written = points;
        return outcome;
    }
    let message = server_message(&answer);
    if answer.status == StatusCode::BAD_REQUEST && message.contains("partial write") {
        let dropped = refused_count(&answer.body, points);
        warn!(dropped, points, message = %message, "InfluxDB dropped part of a write");
        outcome.written = points - dropped;
        outcome.dropped = dropped;
        return outcome;
    }
    if answer.status == StatusCode::NOT_FOUND && message.contains("database not found") && !resent {
        outcome.db_missing = Some((body, points));
        return outcome;
    }
    error!(points, status = answer.status.as_u16(), message = %message, "InfluxDB refused a write; points dropped");
    outcome.dropped = points;
    outcome.error =
        Some(InfluxError::Server { action: "write".to_string(), status: answer.status.as_u16(), message });
    outcome
}

/// The server side of the sink: where points go and whether the database is set up.
struct Writer {
    config: InfluxConfig,
    endpoint: Arc<Endpoint>,
    /// The database (and retention policy) were set up.
    db_ready: bool,
}

/// The InfluxDB sink for metric windows and events.
pub struct InfluxSink {
    writer: Writer,
    encoder: LineEncoder,
    event_encoder: EventEncoder,
}

impl InfluxSink {
    pub fn new(config: InfluxConfig) -> Result<InfluxSink, InfluxError> {
        let endpoint = Arc::new(Endpoint::new(&config)?);
        let encoder = LineEncoder::new(config.line_options());
        let event_encoder = EventEncoder::new(config.with_fields, config.cluster_name.clone());
        Ok(InfluxSink { writer: Writer { config, endpoint, db_ready: false }, encoder, event_encoder })
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.writer.config
    }

    /// Entities whose `labels` tag was shortened to fit InfluxDB's series key limit so far.
    pub fn shortened(&self) -> u64 {
        self.encoder.shortened()
    }

    /// Creates the database and retention policy. Optional: the first write does it too.
    pub async fn start(&mut self) -> Result<(), InfluxError> {
        let mut requests = 0;
        self.writer.ensure_database(&mut requests).await
    }

    /// Writes one window. `Ok` when InfluxDB took every chunk (points it refused in a partial
    /// write are counted and logged, not an error); otherwise the error holds the report.
    pub async fn write<'a>(&mut self, window: impl Into<Window<'a>>) -> Result<WriteReport, InfluxError> {
        let mut chunks =
            MetricChunks { encoder: &mut self.encoder, window: window.into(), cursor: Cursor::default() };
        self.writer.send(&mut chunks, WriteReport::default(), "window").await
    }

    /// Writes events, one point per distinct state, in Heapster's event schema (see the module
    /// doc). Of states that would share a point, only the one with the highest count is sent
    /// (`points_superseded`); events without a storable time are skipped and logged
    /// (`points_skipped`). Same success and error rules as [`InfluxSink::write`].
    pub async fn write_events(&mut self, events: &[Event]) -> Result<WriteReport, InfluxError> {
        let selection = self.event_encoder.select(events);
        let report = WriteReport {
            points_skipped: selection.unwritable,
            points_superseded: selection.superseded,
            ..WriteReport::default()
        };
        if selection.events.is_empty() {
            return Ok(report);
        }
        let mut chunks = EventChunks { encoder: &self.event_encoder, events: &selection.events, next: 0 };
        self.writer.send(&mut chunks, report, "events").await
    }
}

impl Writer {
    /// Sends every chunk of `chunks`, at most `concurrency` at a time, adding to `report`.
    async fn send(
        &mut self,
        chunks: &mut impl ChunkSource,
        mut report: WriteReport,
        what: &'static str,
    ) -> Result<WriteReport, InfluxError> {
        let started = Instant::now();
        if !self.db_ready
            && let Err(cause) = self.ensure_database(&mut report.requests).await
        {
            let stats = chunks.total();
            report.points_dropped += stats.written;
            report.points_skipped += stats.skipped;
            error!(points = stats.written, error = %cause, "InfluxDB database not ready; {what} dropped");
            return Err(InfluxError::Window { report, cause: Box::new(cause) });
        }

        let mut first_error = None;
        let mut recreated = false;
        let mut done = false;
        let mut in_flight = JoinSet::new();
        let mut points_of = HashMap::new();
        let mut body_capacity = 0;
        loop {
            while !done && in_flight.len() < self.config.concurrency {
                let mut body = Vec::with_capacity(body_capacity);
                let Some(stats) = chunks.next_chunk(&mut body) else {
                    done = true;
                    break;
                };
                report.points_skipped += stats.skipped;
                if stats.written > 0 {
                    body_capacity = body_capacity.max(body.len());
                    let task = write_chunk(self.endpoint.clone(), Bytes::from(body), stats.written, false);
                    points_of.insert(in_flight.spawn(task).id(), stats.written);
                }
            }
            let Some(joined) = in_flight.join_next_with_id().await else { break };
            let outcome = match joined {
                Ok((id, outcome)) => {
                    points_of.remove(&id);
                    outcome
                }
                Err(e) => {
                    let points = points_of.remove(&e.id()).unwrap_or(0);
                    error!(points, error = %e, "an InfluxDB write task failed; points dropped");
                    ChunkOutcome { dropped: points, error: Some(InfluxError::Task(e)), ..Default::default() }
                }
            };
            report.requests += outcome.requests;
            report.points_written += outcome.written;
            report.points_dropped += outcome.dropped;
            if let Some(e) = outcome.error {
                first_error.get_or_insert(e);
            }
            if let Some((body, points)) = outcome.db_missing {
                // Dropped by an operator or lost by InfluxDB: create it again, once a batch.
                if !recreated {
                    recreated = true;
                    warn!(db = %self.config.db, "InfluxDB database not found; creating it again");
                    self.db_ready = false;
                    if let Err(e) = self.ensure_database(&mut report.requests).await {
                        error!(error = %e, "InfluxDB database could not be created again");
                        first_error.get_or_insert(e);
                    }
                }
                if self.db_ready {
                    let task = write_chunk(self.endpoint.clone(), body, points, true);
                    points_of.insert(in_flight.spawn(task).id(), points);
                } else {
                    report.points_dropped += points;
                }
            }
        }
        debug!(
            written = report.points_written,
            dropped = report.points_dropped,
            skipped = report.points_skipped,
            superseded = report.points_superseded,
            requests = report.requests,
            elapsed = ?started.elapsed(),
            "InfluxDB {what} written"
        );
        match first_error {
            None => Ok(report),
            Some(cause) => Err(InfluxError::Window { report, cause: Box::new(cause) }),
        }
    }

    /// `CREATE DATABASE`, then the retention policy if one was asked for (created, or altered if
    /// it exists with other settings). A user without admin rights gets 403 here: warn and go on,
    /// the database may well exist.
    async fn ensure_database(&mut self, requests: &mut usize) -> Result<(), InfluxError> {
        let endpoint = &self.endpoint;
        let db = quote_ident(&self.config.db);
        tolerate_forbidden(endpoint.query(&format!("CREATE DATABASE {db}"), requests).await)?;
        if let Some(duration) = self.config.retention.influxql() {
            let rp = quote_ident(&self.config.retention_policy);
            let create =
                format!("CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1 DEFAULT");
            match endpoint.query(&create, requests).await {
                Err(InfluxError::Statement { message, .. })
                    if message.contains("already exists") || message.contains("conflicts") =>
                {
                    let alter = format!("ALTER RETENTION POLICY {rp} ON {db} DURATION {duration} DEFAULT");
                    tolerate_forbidden(endpoint.query(&alter, requests).await)?;
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
pub fn buffered(mut config: InfluxConfig) -> Result<(InfluxEncode, InfluxDeliver), InfluxError> {
    config.attempts = 1;
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
            if !writer.db_ready {
                let mut requests = 0;
                if let Err(e) = writer.ensure_database(&mut requests).await {
                    return chunks.iter().map(|_| Sent::Retry(e.to_string())).collect();
                }
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

#[cfg(test)]
mod tests;
