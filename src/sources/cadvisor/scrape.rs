//! cAdvisor's REST API on one host: `POST /api/v1.3/subcontainers/` (every container, with
//! `num_stats`/`start`/`end` as Heapster's client sent them) and `GET /api/v1.3/machine` for
//! capacity.
//!
//! API v1.3 rather than v2.0: v1.3 is what Heapster read, it is served by every cAdvisor since
//! 2015 (and by the kubelet's embedded cAdvisor of that era), and one request returns every
//! container with its spec (labels, creation time, image) and samples; v2.0's `/stats` returns
//! samples only, so the specs would cost a second request per host.

use std::time::Duration;

use crate::sources::NodeTarget;
use crate::sources::ScrapeError;

/// The largest body accepted: a host with hundreds of containers answers a few MB.
const MAX_BODY: usize = 64 << 20;

#[derive(Clone)]
pub struct CadvisorClient {
    client: reqwest::Client,
    port: u16,
    timeout: Duration,
}

impl CadvisorClient {
    pub fn new(port: u16, timeout: Duration) -> Result<CadvisorClient, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder().connect_timeout(timeout).pool_max_idle_per_host(1).build()?;
        Ok(CadvisorClient { client, port, timeout })
    }

    pub fn url(&self, target: &NodeTarget, path: &str) -> Option<String> {
        let address = target.address.as_deref()?;
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
        Some(format!("http://{host}:{}{path}", self.port))
    }

    /// Every container's newest samples since `start_ms`, up to `end_ms`.
    pub async fn subcontainers(
        &self,
        target: &NodeTarget,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<u8>, ScrapeError> {
        let url = self.require_url(target, "/api/v1.3/subcontainers/")?;
        let request = serde_json::json!({
            "num_stats": 1,
            "start": rfc3339(start_ms),
            "end": rfc3339(end_ms),
        });
        self.fetch(target, &url, self.client.post(&url).json(&request)).await
    }

    pub async fn machine(&self, target: &NodeTarget) -> Result<Vec<u8>, ScrapeError> {
        let url = self.require_url(target, "/api/v1.3/machine")?;
        self.fetch(target, &url, self.client.get(&url)).await
    }

    fn require_url(&self, target: &NodeTarget, path: &str) -> Result<String, ScrapeError> {
        self.url(target, path)
            .ok_or_else(|| ScrapeError::Failed(format!("host {}: no IP address to scrape", target.name)))
    }

    async fn fetch(
        &self,
        target: &NodeTarget,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ScrapeError> {
        let host = &target.name;
        let failed = |what: String| ScrapeError::Failed(format!("host {host}: {url}: {what}"));
        let response =
            request.timeout(self.timeout).send().await.map_err(|e| failed(describe(&e, self.timeout)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            let hint = if status == reqwest::StatusCode::NOT_FOUND {
                " (this cAdvisor does not serve API v1.3: too old, or not cAdvisor)"
            } else {
                ""
            };
            return Err(failed(format!("HTTP {status}: {}{hint}", body.trim())));
        }
        let body =
            response.bytes().await.map_err(|e| failed(format!("body: {}", describe(&e, self.timeout))))?;
        if body.len() > MAX_BODY {
            return Err(failed(format!("body of {} bytes is over {MAX_BODY}", body.len())));
        }
        Ok(body.to_vec())
    }
}

fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map(|t| t.to_string()).unwrap_or_default()
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    crate::errors::error_chain(e)
}
