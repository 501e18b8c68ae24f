//! `--sink=gcl`: events to Google Cloud Logging v2 (`entries.write`), one `LogEntry` per event
//! state, as Heapster's `gcl` eventer sink wrote them:
//!
//! | LogEntry | from the event |
//! |---|---|
//! | `logName` | `projects/<project>/logs/kubernetes.io%2Fevents` |
//! | `jsonPayload` | the event as a core `v1` Event (what Heapster sent; see [`super::events::event_json`]) |
//! | `timestamp` | `lastTimestamp` (else `firstTimestamp`) |
//! | `insertId` | the event's uid: Logging keeps one entry per (insertId, timestamp), so a state sent again after a retry or a restart is not doubled |
//! | `severity` | `Warning` -> `WARNING`, else `INFO`; `severity=NOTICE` keeps Heapster's constant |
//! | `resource` | `k8s_pod` (involved Pod), `k8s_node` (involved Node), else `k8s_cluster` |
//!
//! Requests carry `partialSuccess: true`: entries the API refuses are counted and logged with
//! its reason; the rest are written. At most [`MAX_ENTRIES_PER_WRITE`] entries and about
//! [`MAX_BYTES_PER_WRITE`] bytes go in one request (the API allows 10 MB).

pub mod encode;

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use url::Url;

use heapster_dataflows::Event;

use super::events::EventEncoder;
use super::google::auth::{Authenticator, Credentials};
use super::google::client::{ApiClient, http_client};
use super::google::endpoints::{GoogleOptions, SHARED_OPTIONS, sink_options};
use super::google::error::GoogleError;
use crate::config::ConfigError;
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

/// What writing one batch of events did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GclReport {
    pub written: usize,
    /// Refused by the API (counted per entry) or given up on.
    pub dropped: usize,
    /// States not sent: a newer state of the same event in the batch has the same entry, or
    /// the event has no time.
    pub skipped: usize,
    pub requests: usize,
}

/// The Cloud Logging sink.
pub struct GclSink {
    client: Arc<ApiClient>,
    url: Url,
    encoder: EntryEncoder,
    selector: EventEncoder,
    concurrency: usize,
}

impl GclSink {
    /// Reads the credentials, fetches a first token and finds the project: a sink that cannot
    /// authenticate fails here, at start, naming what to fix.
    pub async fn start(config: GclConfig) -> Result<GclSink, GoogleError> {
        let http = http_client(&config.google)?;
        let credentials =
            Credentials::from_options(config.google.credentials.as_deref(), &config.google.metadata_host)?;
        let auth = Arc::new(Authenticator::new(http.clone(), credentials, SCOPE));
        auth.token().await?;
        let project = match &config.google.project {
            Some(p) => p.clone(),
            None => auth.project().await?,
        };
        let location = match &config.google.location {
            Some(l) => l.clone(),
            None => auth.zone().await.unwrap_or_else(|| "global".to_string()),
        };
        let url = config
            .google
            .endpoint
            .join("v2/entries:write")
            .map_err(|e| GoogleError::Client(format!("{}: {e}", config.google.endpoint)))?;
        info!(%project, %location, endpoint = %config.google.endpoint, "Cloud Logging sink ready");
        let encoder = EntryEncoder::new(&project, &location, &config.google.cluster_name, config.severity);
        Ok(GclSink {
            client: Arc::new(ApiClient::new(
                http,
                auth,
                "Cloud Logging",
                config.google.attempts,
                config.google.backoff,
            )),
            url,
            encoder,
            selector: EventEncoder::new(false, config.google.cluster_name.clone()),
            concurrency: config.google.concurrency,
        })
    }

    /// Writes one batch of events. `Ok` when every request was answered (entries the API
    /// refused are in `dropped`); `Err` when some were given up on, with the report so far.
    pub async fn write_events(&mut self, events: &[Event]) -> Result<GclReport, (GclReport, GoogleError)> {
        let selection = self.selector.select(events);
        let mut report =
            GclReport { skipped: selection.superseded + selection.unwritable, ..GclReport::default() };
        let mut first_error = None;
        let mut in_flight = JoinSet::new();
        let mut next = 0;
        loop {
            while next < selection.events.len() && in_flight.len() < self.concurrency {
                let (body, count, consumed) = self.encoder.request(&selection.events[next..]);
                next += consumed;
                report.skipped += consumed - count;
                if count > 0 {
                    in_flight.spawn(write(self.client.clone(), self.url.clone(), Bytes::from(body), count));
                }
            }
            let Some(joined) = in_flight.join_next().await else { break };
            match joined {
                Ok(outcome) => {
                    report.requests += outcome.requests;
                    report.written += outcome.written;
                    report.dropped += outcome.dropped;
                    if let Some(e) = outcome.error {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(GoogleError::Task(e.to_string()));
                }
            }
        }
        match first_error {
            None => Ok(report),
            Some(e) => Err((report, e)),
        }
    }
}

struct Outcome {
    written: usize,
    dropped: usize,
    requests: usize,
    error: Option<GoogleError>,
}

async fn write(client: Arc<ApiClient>, url: Url, body: Bytes, entries: usize) -> Outcome {
    let (result, requests) = client.post("entries.write", &url, body).await;
    let mut outcome = Outcome { written: 0, dropped: 0, requests, error: None };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            error!(entries, error = %e, "Cloud Logging write given up; entries dropped");
            outcome.dropped = entries;
            outcome.error = Some(e);
            return outcome;
        }
    };
    if answer.status.is_success() {
        outcome.written = entries;
        return outcome;
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
        outcome.written = entries - refused;
        outcome.dropped = refused;
        return outcome;
    }
    error!(entries, status = api_error.code, message = %api_error.message, "Cloud Logging refused a write; entries dropped");
    outcome.dropped = entries;
    outcome.error =
        Some(GoogleError::Api { api: "Cloud Logging", action: "entries.write".into(), error: api_error });
    outcome
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
