//! `--sink=gcm`: metric windows to Google Cloud Monitoring v3 (`projects.timeSeries.create`),
//! in Heapster's metric types and labels plus the monitored resources today's API requires (see
//! [`encode`]).
//!
//! Metric descriptors are created at start, and again before the next window when the API
//! says one is missing. A window goes out as requests of at most 200 series, each series once
//! per request, at most `concurrency` requests in flight; every window's points are newer than
//! the last one's. Series the API refuses (a 400 with a `CreateTimeSeriesSummary`) are counted
//! and logged with its message, the others are written; 429, 5xx and timeouts are retried.

pub mod encode;

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use url::Url;

use super::google::auth::{Authenticator, Credentials};
use super::google::client::{ApiClient, http_client};
use super::google::endpoints::{GoogleOptions, SHARED_OPTIONS, sink_options};
use super::google::error::GoogleError;
use crate::batch::{MetricBatch, Window};
use crate::config::ConfigError;
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

/// What writing one window did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcmReport {
    pub written: usize,
    /// Refused by the API, or given up on.
    pub dropped: usize,
    /// NaN or infinite values, repeated series.
    pub skipped: usize,
    pub requests: usize,
}

/// The Cloud Monitoring sink.
pub struct GcmSink {
    client: Arc<ApiClient>,
    series_url: Url,
    descriptors_url: Url,
    encoder: SeriesEncoder,
    /// Descriptors to create before the next write.
    pending: Vec<Descriptor>,
    created: Vec<Descriptor>,
    concurrency: usize,
}

impl GcmSink {
    /// Reads the credentials, fetches a first token, finds the project and creates the metric
    /// descriptors: a sink that cannot authenticate fails here, naming what to fix.
    pub async fn start(config: GcmConfig) -> Result<GcmSink, GoogleError> {
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
        let join = |path: String| {
            config.google.endpoint.join(&path).map_err(|e| GoogleError::Client(format!("{path}: {e}")))
        };
        let series_url = join(format!("v3/projects/{project}/timeSeries"))?;
        let descriptors_url = join(format!("v3/projects/{project}/metricDescriptors"))?;
        let client = Arc::new(ApiClient::new(http, auth, API, config.google.attempts, config.google.backoff));
        let mut sink = GcmSink {
            client,
            series_url,
            descriptors_url,
            encoder: SeriesEncoder::new(config.metrics, &project, &location, &config.google.cluster_name),
            pending: encode::catalog_descriptors(config.metrics),
            created: Vec::new(),
            concurrency: config.google.concurrency,
        };
        match sink.create_descriptors().await {
            Err(e @ GoogleError::Api { .. }) => return Err(e),
            Err(e) => {
                warn!(error = %e, "metric descriptors not created yet; trying again before the first window")
            }
            Ok(()) => {}
        }
        info!(%project, %location, endpoint = %config.google.endpoint, metrics = ?config.metrics, "Cloud Monitoring sink ready");
        Ok(sink)
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

    /// Writes one window. `Ok` when every request was answered (series the API refused are in
    /// `dropped`); `Err` when some requests were given up on.
    pub async fn write<'a>(
        &mut self,
        window: impl Into<Window<'a>>,
    ) -> Result<GcmReport, (GcmReport, GoogleError)> {
        let window = window.into();
        let batch: &MetricBatch = window.batch();
        let mut report = GcmReport::default();
        // Custom metrics seen in the last window get their descriptors now.
        for custom in std::mem::take(&mut self.encoder.custom) {
            if !self.created.iter().any(|d| d.name == custom.name) && !self.pending.contains(&custom) {
                self.pending.push(custom);
            }
        }
        if !self.pending.is_empty()
            && let Err(e) = self.create_descriptors().await
        {
            warn!(error = %e, "some metric descriptors could not be created; their series will be refused");
        }
        let mut first_error = None;
        let mut in_flight = JoinSet::new();
        let mut cursor = Cursor::default();
        let mut missing_descriptor = false;
        loop {
            while !cursor.is_done(batch) && in_flight.len() < self.concurrency {
                let mut body = Vec::with_capacity(128 * 1024);
                let encoded = self.encoder.request(batch, &mut cursor, &mut body);
                report.skipped += encoded.skipped;
                if encoded.series > 0 {
                    in_flight.spawn(write(
                        self.client.clone(),
                        self.series_url.clone(),
                        Bytes::from(body),
                        encoded.series,
                    ));
                }
            }
            let Some(joined) = in_flight.join_next().await else { break };
            match joined {
                Ok(outcome) => {
                    report.requests += outcome.requests;
                    report.written += outcome.written;
                    report.dropped += outcome.dropped;
                    missing_descriptor |= outcome.missing_descriptor;
                    if let Some(e) = outcome.error {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(GoogleError::Task(e.to_string()));
                }
            }
        }
        if missing_descriptor {
            // Deleted by someone: create them all again before the next window.
            warn!("Cloud Monitoring says a metric descriptor is missing; creating them again");
            self.pending.append(&mut self.created);
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
    missing_descriptor: bool,
    error: Option<GoogleError>,
}

async fn write(client: Arc<ApiClient>, url: Url, body: Bytes, series: usize) -> Outcome {
    let (result, requests) = client.post("timeSeries.create", &url, body).await;
    let mut outcome = Outcome { written: 0, dropped: 0, requests, missing_descriptor: false, error: None };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            error!(series, error = %e, "Cloud Monitoring write given up; series dropped");
            outcome.dropped = series;
            outcome.error = Some(e);
            return outcome;
        }
    };
    if answer.status.is_success() {
        outcome.written = series;
        return outcome;
    }
    let api_error = answer.error();
    if answer.status == StatusCode::BAD_REQUEST
        && let Some(summary) = api_error.detail("CreateTimeSeriesSummary")
    {
        let total = summary["totalPointCount"].as_u64().unwrap_or(series as u64) as usize;
        let ok = summary["successPointCount"].as_u64().unwrap_or(0) as usize;
        let refused = total.saturating_sub(ok).min(series);
        outcome.missing_descriptor = summary["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["status"]["code"].as_u64() == Some(5)));
        warn!(refused, series, message = %api_error.message, "Cloud Monitoring refused part of a write");
        outcome.written = series - refused;
        outcome.dropped = refused;
        return outcome;
    }
    error!(series, status = api_error.code, message = %api_error.message, "Cloud Monitoring refused a write; series dropped");
    outcome.dropped = series;
    outcome.error = Some(GoogleError::Api { api: API, action: "timeSeries.create".into(), error: api_error });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
