//! `--sink=gcl`: events to Google Cloud Logging v2 (`entries.write`), one `LogEntry` per event
//! state, as Heapster's `gcl` eventer sink wrote them:
//!
//! | LogEntry | from the event |
//! |---|---|
//! | `logName` | `projects/<project>/logs/kubernetes.io%2Fevents` |
//! | `jsonPayload` | the event as a core `v1` Event (what Heapster sent; see [`crate::sinks::event_json`]) |
//! | `timestamp` | `lastTimestamp` (else `firstTimestamp`) |
//! | `insertId` | the event's uid: Logging keeps one entry per (insertId, timestamp), so a state sent again after a retry or a restart is not doubled |
//! | `severity` | `Warning` -> `WARNING`, else `INFO`; `severity=NOTICE` keeps Heapster's constant |
//! | `resource` | `k8s_pod` (involved Pod), `k8s_node` (involved Node), else `k8s_cluster` |
//!
//! Requests carry `partialSuccess: true`: entries the API refuses are counted and logged with
//! its reason; the rest are written. Requests wait in the sink's byte-bounded buffer
//! ([`crate::sinks::queue`]) while the API cannot take them, and a batch is acknowledged to the
//! event checkpoint only once the API answered every request of it. At most [`MAX_ENTRIES_PER_WRITE`] entries and about
//! [`MAX_BYTES_PER_WRITE`] bytes go in one request (the API allows 10 MB).

pub mod encode;

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use url::Url;

use heapster_dataflows::Event;

use super::google::client::ApiClient;
use super::google::connect::{Connection, connect, endpoint_url};
use super::google::endpoints::{GoogleOptions, SHARED_OPTIONS, sink_options};
use super::google::error::GoogleError;
use super::influxdb::events::EventEncoder;
use crate::batch::Window;
use crate::config::ConfigError;
use crate::sinks::queue::Queued;
use crate::sinks::queue::{Chunk, Deliver, Encode, Encoded, Sent};
use crate::sinks::sink::{Opened, Sink, SinkContext, SinkError};
use encode::{EntryEncoder, Severity};

pub const MAX_ENTRIES_PER_WRITE: usize = 1000;
pub const MAX_BYTES_PER_WRITE: usize = 8 << 20;
const SCOPE: &str = "https://www.googleapis.com/auth/logging.write";
const DEFAULT_ENDPOINT: &str = "https://logging.googleapis.com/";
const ENDPOINT_ENV: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING";

/// `--sink=gcl[?severity=NOTICE&project=..&credentials=..&...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GclConfig {
    pub google: GoogleOptions,
    pub severity: Severity,
}

impl GclConfig {
    pub fn from_uri(uri: &str) -> Result<GclConfig, ConfigError> {
        let mut opts = sink_options(uri, "gcl")?;
        let google = GoogleOptions::parse(&mut opts, uri, DEFAULT_ENDPOINT, ENDPOINT_ENV, 1)?;
        let severity = match opts.string("severity").as_deref() {
            None | Some("") => Severity::FromType,
            Some(s) if s.eq_ignore_ascii_case("NOTICE") => Severity::Notice,
            Some(other) => {
                return Err(ConfigError::new(
                    "--sink",
                    uri,
                    format!(
                        "option severity={other:?}: expected NOTICE (or leave it out: from the event type)"
                    ),
                ));
            }
        };
        let mut accepted = SHARED_OPTIONS.to_vec();
        accepted.push("severity");
        opts.finish("the gcl sink", &accepted)?;
        Ok(GclConfig { google, severity })
    }
}

impl std::fmt::Display for GclConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gcl:{}", self.google.endpoint)
    }
}

impl Sink for GclConfig {
    fn name(&self) -> String {
        self.to_string()
    }

    fn open(&self, _context: &SinkContext) -> Result<Opened, SinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Unlike a database still starting, bad credentials never fix themselves.
        let (encode, client, url) = runtime.block_on(start(self.clone()))?;
        let concurrency = self.google.concurrency;
        Ok(Opened::Queued(Queued {
            encode: Box::new(encode),
            deliver: Box::new(GclDeliver { client, url, concurrency, runtime }),
            buffer: self.google.buffer.clone(),
            buffer_name: self.google.buffer_name("gcl"),
        }))
    }
}

/// Connects (a sink that cannot authenticate fails here, at start, naming what to fix).
async fn start(config: GclConfig) -> Result<(GclEncode, Arc<ApiClient>, Url), GoogleError> {
    let Connection { client, project, location } = connect(&config.google, SCOPE, "Cloud Logging").await?;
    let url = endpoint_url(&config.google, "v2/entries:write")?;
    info!(%project, %location, endpoint = %config.google.endpoint, "Cloud Logging sink ready");
    let encode = GclEncode {
        encoder: EntryEncoder::new(&project, &location, &config.google.cluster_name, config.severity),
        selector: EventEncoder::new(false, config.google.cluster_name.clone()),
    };
    Ok((encode, Arc::new(client), url))
}

/// Encodes event batches as `entries.write` bodies; windows are not this sink's.
pub struct GclEncode {
    encoder: EntryEncoder,
    selector: EventEncoder,
}

impl Encode for GclEncode {
    fn metrics(&mut self, _window: Window<'_>, _emit: &mut dyn FnMut(Chunk)) -> Encoded {
        Encoded::default()
    }

    /// Of the states that would share an entry only the newest goes; states without a time are
    /// skipped.
    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let selection = self.selector.select(events);
        let mut skipped = (selection.superseded + selection.unwritable) as u64;
        let mut next = 0;
        while next < selection.events.len() {
            let (body, count, consumed) = self.encoder.request(&selection.events[next..]);
            next += consumed;
            skipped += (consumed - count) as u64;
            if count > 0 {
                emit(Chunk { body: Bytes::from(body), points: count as u64 });
            }
        }
        Encoded { skipped, shortened: 0 }
    }
}

/// Sends `entries.write` requests, `concurrency` at a time.
pub struct GclDeliver {
    client: Arc<ApiClient>,
    url: Url,
    concurrency: usize,
    runtime: tokio::runtime::Runtime,
}

impl Deliver for GclDeliver {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        let (client, url) = (&self.client, &self.url);
        self.runtime.block_on(async {
            let mut tasks = JoinSet::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let client = Arc::clone(client);
                let url = url.clone();
                let (body, entries) = (chunk.body.clone(), chunk.points as usize);
                tasks.spawn(async move { (i, write(client, url, body, entries).await) });
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
            outcomes
        })
    }

    fn parallel(&self) -> usize {
        self.concurrency
    }
}

/// One request of `entries` entries, classified for the queue.
async fn write(client: Arc<ApiClient>, url: Url, body: Bytes, entries: usize) -> Sent {
    let (result, _) = client.post("entries.write", &url, body).await;
    let answer = match result {
        Ok(answer) => answer,
        Err(e) if e.may_pass() => {
            warn!(entries, error = %e, "Cloud Logging write not taken yet; kept to send again");
            return Sent::Retry(e.to_string());
        }
        Err(e) => {
            error!(entries, error = %e, "Cloud Logging write impossible; entries dropped");
            return Sent::Refused(e.to_string());
        }
    };
    if answer.status.is_success() {
        return Sent::Written { refused: 0 };
    }
    let api_error = answer.error();
    if answer.status == StatusCode::BAD_REQUEST
        && let Some(partial) = api_error.detail("WriteLogEntriesPartialErrors")
    {
        let refused = partial["logEntryErrors"].as_object().map_or(entries, |errors| {
            for (index, status) in errors.iter().take(5) {
                warn!(index, reason = %status["message"].as_str().unwrap_or("?"), "Cloud Logging refused an entry");
            }
            errors.len()
        });
        let refused = refused.min(entries);
        warn!(refused, entries, "Cloud Logging refused part of a write: {}", api_error.message);
        return Sent::Written { refused: refused as u64 };
    }
    error!(entries, status = api_error.code, message = %api_error.message, "Cloud Logging refused a write; entries dropped");
    let e = GoogleError::Api { api: "Cloud Logging", action: "entries.write".into(), error: api_error };
    Sent::Refused(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let c =
            GclConfig::from_uri("gcl?severity=notice&project=p&endpoint=http://127.0.0.1:9/&concurrency=2")
                .unwrap();
        assert_eq!(c.severity, Severity::Notice);
        assert_eq!(c.google.project.as_deref(), Some("p"));
        assert_eq!(c.google.endpoint.as_str(), "http://127.0.0.1:9/");
        assert_eq!(c.google.concurrency, 2);
        assert!(GclConfig::from_uri("gcl").is_ok());
        let err = GclConfig::from_uri("gcl?severity=LOUD").unwrap_err();
        assert!(err.reason.contains("severity=\"LOUD\""), "{err}");
        let err = GclConfig::from_uri("gcl?db=x").unwrap_err();
        assert!(err.reason.contains("unknown option \"db\""), "{err}");
    }
}
