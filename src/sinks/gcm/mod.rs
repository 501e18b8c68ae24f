//! `--sink=gcm`: metric windows to Google Cloud Monitoring v3 (`projects.timeSeries.create`),
//! in Heapster's metric types and labels plus the monitored resources today's API requires (see
//! [`encode`]).
//!
//! Metric descriptors are created at start, and again before the next send when the API says
//! one is missing. A window goes out as requests of at most 200 series, each series once per
//! request, at most `concurrency` requests in flight, behind the sink's byte-bounded buffer
//! ([`crate::sinks::queue`]): a window the API cannot take yet (429, 5xx, timeouts, after the
//! client's own retries) is kept and sent again, and a window's requests all go before the
//! next window's, so every point is newer than its series' last one. Series the API refuses (a
//! 400 with a `CreateTimeSeriesSummary`) are counted and logged with its message, the others
//! are written.

pub mod encode;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use heapster_dataflows::Event;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use url::Url;

use super::google::client::ApiClient;
use super::google::connect::{Connection, connect, endpoint_url};
use super::google::endpoints::{GoogleOptions, SHARED_OPTIONS, sink_options};
use super::google::error::GoogleError;
use crate::batch::Window;
use crate::config::ConfigError;
use crate::sinks::queue::Queued;
use crate::sinks::queue::{Chunk, Deliver, Encode, Encoded, Sent};
use crate::sinks::sink::{Opened, Sink, SinkContext, SinkError};
use encode::{Cursor, Descriptor, Selection, SeriesEncoder};

const SCOPE: &str = "https://www.googleapis.com/auth/monitoring";
const DEFAULT_ENDPOINT: &str = "https://monitoring.googleapis.com/";
const ENDPOINT_ENV: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING";
const API: &str = "Cloud Monitoring";

/// `--sink=gcm[?metrics=all|autoscaling&project=..&credentials=..&...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcmConfig {
    pub google: GoogleOptions,
    pub metrics: Selection,
}

impl GcmConfig {
    pub fn from_uri(uri: &str) -> Result<GcmConfig, ConfigError> {
        let mut opts = sink_options(uri, "gcm")?;
        let google = GoogleOptions::parse(&mut opts, uri, DEFAULT_ENDPOINT, ENDPOINT_ENV, 4)?;
        let metrics = match opts.string("metrics").as_deref() {
            None | Some("" | "all") => Selection::All,
            Some("autoscaling") => Selection::Autoscaling,
            Some(other) => {
                return Err(ConfigError::new(
                    "--sink",
                    uri,
                    format!("option metrics={other:?}: expected all or autoscaling"),
                ));
            }
        };
        let mut accepted = SHARED_OPTIONS.to_vec();
        accepted.push("metrics");
        opts.finish("the gcm sink", &accepted)?;
        Ok(GcmConfig { google, metrics })
    }
}

impl std::fmt::Display for GcmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gcm:{} metrics={:?}", self.google.endpoint, self.metrics)
    }
}

impl Sink for GcmConfig {
    fn name(&self) -> String {
        self.to_string()
    }

    fn open(&self, _context: &SinkContext) -> Result<Opened, SinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Unlike a database still starting, bad credentials never fix themselves.
        let (encode, deliver) = runtime.block_on(start(self.clone()))?;
        Ok(Opened::Queued(Queued {
            encode: Box::new(encode),
            deliver: Box::new(GcmDeliver { parts: deliver, runtime }),
            buffer: self.google.buffer.clone(),
            buffer_name: self.google.buffer_name("gcm"),
        }))
    }
}

/// Custom metrics the encoder met, for the deliverer to create descriptors of.
type Discovered = Arc<Mutex<Vec<Descriptor>>>;

/// Reads the credentials, fetches a first token, finds the project and creates the metric
/// descriptors: a sink that cannot authenticate fails here, naming what to fix.
async fn start(config: GcmConfig) -> Result<(GcmEncode, GcmDeliverParts), GoogleError> {
    let Connection { client, project, location } = connect(&config.google, SCOPE, API).await?;
    let series_url = endpoint_url(&config.google, &format!("v3/projects/{project}/timeSeries"))?;
    let descriptors_url = endpoint_url(&config.google, &format!("v3/projects/{project}/metricDescriptors"))?;
    let client = Arc::new(client);
    let discovered = Discovered::default();
    let mut deliver = GcmDeliverParts {
        client,
        series_url,
        descriptors_url,
        pending: encode::catalog_descriptors(config.metrics),
        created: Vec::new(),
        discovered: Arc::clone(&discovered),
        concurrency: config.google.concurrency,
    };
    match deliver.create_descriptors().await {
        Err(e @ GoogleError::Api { .. }) => return Err(e),
        Err(e) => {
            warn!(error = %e, "metric descriptors not created yet; trying again before the first window")
        }
        Ok(()) => {}
    }
    info!(%project, %location, endpoint = %config.google.endpoint, metrics = ?config.metrics, "Cloud Monitoring sink ready");
    let encoder = SeriesEncoder::new(config.metrics, &project, &location, &config.google.cluster_name);
    Ok((GcmEncode { encoder, discovered }, deliver))
}

/// Encodes windows as `timeSeries.create` bodies of at most 200 series; events are not this
/// sink's.
pub struct GcmEncode {
    encoder: SeriesEncoder,
    discovered: Discovered,
}

impl Encode for GcmEncode {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let batch = window.batch();
        let mut cursor = Cursor::default();
        let mut skipped = 0;
        while !cursor.is_done(batch) {
            let mut body = Vec::with_capacity(128 * 1024);
            let encoded = self.encoder.request(batch, &mut cursor, &mut body);
            skipped += encoded.skipped as u64;
            if encoded.series > 0 {
                emit(Chunk { body: Bytes::from(body), points: encoded.series as u64 });
            }
        }
        let custom = std::mem::take(&mut self.encoder.custom);
        if !custom.is_empty() {
            self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(custom);
        }
        Encoded { skipped, shortened: 0 }
    }

    fn events(&mut self, _events: &[Event], _emit: &mut dyn FnMut(Chunk)) -> Encoded {
        Encoded::default()
    }
}

/// What [`GcmDeliver`] holds besides its runtime.
struct GcmDeliverParts {
    client: Arc<ApiClient>,
    series_url: Url,
    descriptors_url: Url,
    /// Descriptors to create before the next send.
    pending: Vec<Descriptor>,
    created: Vec<Descriptor>,
    discovered: Discovered,
    concurrency: usize,
}

/// Sends `timeSeries.create` requests, `concurrency` at a time, creating descriptors first.
pub struct GcmDeliver {
    parts: GcmDeliverParts,
    runtime: tokio::runtime::Runtime,
}

impl Deliver for GcmDeliver {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        let parts = &mut self.parts;
        self.runtime.block_on(async {
            parts.adopt_discovered();
            if !parts.pending.is_empty()
                && let Err(e) = parts.create_descriptors().await
            {
                warn!(error = %e, "some metric descriptors could not be created; their series will be refused");
            }
            let mut tasks = JoinSet::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let client = Arc::clone(&parts.client);
                let url = parts.series_url.clone();
                let (body, series) = (chunk.body.clone(), chunk.points as usize);
                tasks.spawn(async move { (i, write(client, url, body, series).await) });
            }
            let mut outcomes: Vec<Sent> = chunks.iter().map(|_| Sent::Retry("write task failed".into())).collect();
            let mut missing_descriptor = false;
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, (outcome, missing))) = joined
                    && let Some(slot) = outcomes.get_mut(i)
                {
                    missing_descriptor |= missing;
                    *slot = outcome;
                }
            }
            if missing_descriptor {
                // Deleted by someone: create them all again before the next send.
                warn!("Cloud Monitoring says a metric descriptor is missing; creating them again");
                parts.pending.append(&mut parts.created);
            }
            outcomes
        })
    }

    fn parallel(&self) -> usize {
        self.parts.concurrency
    }

    fn in_order(&self) -> bool {
        true
    }
}

impl GcmDeliverParts {
    /// Custom metrics met since the last send get their descriptors now.
    fn adopt_discovered(&mut self) {
        let discovered =
            std::mem::take(&mut *self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for custom in discovered {
            if !self.created.iter().any(|d| d.name == custom.name) && !self.pending.contains(&custom) {
                self.pending.push(custom);
            }
        }
    }

    /// Creates the pending descriptors, `concurrency` at a time; those that fail stay pending.
    async fn create_descriptors(&mut self) -> Result<(), GoogleError> {
        let mut first_error = None;
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(self.concurrency.max(1)) {
            let mut tasks = JoinSet::new();
            for (i, descriptor) in chunk.iter().enumerate() {
                let client = self.client.clone();
                let url = self.descriptors_url.clone();
                let body = Bytes::from(descriptor.body().to_string());
                tasks.spawn(async move { (i, client.post("metricDescriptors.create", &url, body).await.0) });
            }
            while let Some(joined) = tasks.join_next().await {
                let Ok((i, result)) = joined else { continue };
                let failure = match result {
                    Ok(answer) if answer.status.is_success() => {
                        self.created.push(chunk[i].clone());
                        continue;
                    }
                    Ok(answer) => GoogleError::Api {
                        api: API,
                        action: format!("metricDescriptors.create {}", chunk[i].metric_type()),
                        error: answer.error(),
                    },
                    Err(e) => e,
                };
                self.pending.push(chunk[i].clone());
                first_error.get_or_insert(failure);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// One request of `series` series, classified for the queue; and whether the API said a
/// descriptor is missing.
async fn write(client: Arc<ApiClient>, url: Url, body: Bytes, series: usize) -> (Sent, bool) {
    let (result, _) = client.post("timeSeries.create", &url, body).await;
    let answer = match result {
        Ok(answer) => answer,
        Err(e) if e.may_pass() => {
            warn!(series, error = %e, "Cloud Monitoring write not taken yet; kept to send again");
            return (Sent::Retry(e.to_string()), false);
        }
        Err(e) => {
            error!(series, error = %e, "Cloud Monitoring write impossible; series dropped");
            return (Sent::Refused(e.to_string()), false);
        }
    };
    if answer.status.is_success() {
        return (Sent::Written { refused: 0 }, false);
    }
    let api_error = answer.error();
    if answer.status == StatusCode::BAD_REQUEST
        && let Some(summary) = api_error.detail("CreateTimeSeriesSummary")
    {
        let total = summary["totalPointCount"].as_u64().unwrap_or(series as u64) as usize;
        let ok = summary["successPointCount"].as_u64().unwrap_or(0) as usize;
        let refused = total.saturating_sub(ok).min(series);
        let missing = summary["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["status"]["code"].as_u64() == Some(5)));
        warn!(refused, series, message = %api_error.message, "Cloud Monitoring refused part of a write");
        return (Sent::Written { refused: refused as u64 }, missing);
    }
    error!(series, status = api_error.code, message = %api_error.message, "Cloud Monitoring refused a write; series dropped");
    let e = GoogleError::Api { api: API, action: "timeSeries.create".into(), error: api_error };
    (Sent::Refused(e.to_string()), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::google::client::http_client;
    use crate::sinks::google::{Authenticator, Credentials};

    #[test]
    fn parses_options() {
        let c = GcmConfig::from_uri("gcm?metrics=autoscaling&project=p&location=europe-west1-b").unwrap();
        assert_eq!(c.metrics, Selection::Autoscaling);
        assert_eq!(c.google.location.as_deref(), Some("europe-west1-b"));
        assert_eq!(c.google.concurrency, 4);
        assert_eq!(GcmConfig::from_uri("gcm").unwrap().metrics, Selection::All);
        let err = GcmConfig::from_uri("gcm?metrics=some").unwrap_err();
        assert!(err.reason.contains("metrics=\"some\""), "{err}");
        let err = GcmConfig::from_uri("gcm?concurrency=0").unwrap_err();
        assert!(err.reason.contains("concurrency"), "{err}");
    }

    /// A request the API never answered (here: no token, the metadata server is down) is
    /// handed back to the queue to send again, not dropped.
    #[tokio::test]
    async fn a_write_that_may_pass_is_kept_for_the_queue() {
        let options = GcmConfig::from_uri("gcm?project=p&endpoint=http://127.0.0.1:1/").unwrap().google;
        let http = http_client(&options).unwrap();
        let credentials = Credentials::Metadata { host: "127.0.0.1:1".into() };
        let auth = Arc::new(Authenticator::new(http.clone(), credentials, SCOPE));
        let client = Arc::new(ApiClient::new(http, auth, API, 1, options.backoff));
        let url = Url::parse("http://127.0.0.1:1/v3/projects/p/timeSeries").unwrap();
        let (sent, missing) = write(client, url, Bytes::from_static(b"{}"), 3).await;
        assert!(matches!(&sent, Sent::Retry(why) if why.contains("metadata server")), "{sent:?}");
        assert!(!missing);
    }
}
