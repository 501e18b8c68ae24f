//! Kubelet scraping: `GET /stats/summary` on a node, with a per-node timeout.

use std::time::Duration;

use super::config::{Clients, KubernetesConfig};
use crate::bridge::ScrapeError;
use crate::sources::NodeTarget;

/// How to reach kubelets.
#[derive(Clone)]
pub struct Scraper {
    client: reqwest::Client,
    https: bool,
    port: u16,
    token: Option<String>,
    timeout: Duration,
    /// Sent as `User-Agent` when set (cluster mode names the process).
    user_agent: Option<String>,
}

/// The largest summary accepted: a kubelet with hundreds of pods answers a few MB.
const MAX_BODY: usize = 64 << 20;

impl Scraper {
    /// Kubelets as the source URI names them (`kubeletHttps`, `kubeletPort`), through the
    /// clients' kubelet client and token.
    pub fn new(config: &KubernetesConfig, clients: &Clients, timeout: Duration) -> Scraper {
        Scraper {
            client: clients.kubelet.clone(),
            https: config.kubelet_https,
            port: config.kubelet_port,
            token: clients.kubelet_token.clone(),
            timeout,
            user_agent: None,
        }
    }

    pub fn user_agent(&mut self, agent: String) {
        self.user_agent = Some(agent);
    }

    pub fn url(&self, target: &NodeTarget) -> Option<String> {
        let address = target.address.as_deref()?;
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
        let scheme = if self.https { "https" } else { "http" };
        Some(format!("{scheme}://{host}:{}/stats/summary", self.port))
    }

    pub async fn scrape(&self, target: &NodeTarget) -> Result<Vec<u8>, ScrapeError> {
        let url = self
            .url(target)
            .ok_or_else(|| ScrapeError::Failed("no InternalIP or ExternalIP address to scrape".into()))?;
        let mut request = self.client.get(&url).timeout(self.timeout);
        if let (true, Some(token)) = (self.https, &self.token) {
            request = request.bearer_auth(token);
        }
        if let Some(agent) = &self.user_agent {
            request = request.header(reqwest::header::USER_AGENT, agent);
        }
        let response = request.send().await.map_err(|e| ScrapeError::Failed(describe(&e, self.timeout)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(ScrapeError::Failed(format!("{url}: HTTP {status}: {}", body.trim())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ScrapeError::Failed(format!("{url}: body: {}", describe(&e, self.timeout))))?;
        if body.len() > MAX_BODY {
            return Err(ScrapeError::Failed(format!(
                "{url}: body of {} bytes is over {MAX_BODY}",
                body.len()
            )));
        }
        Ok(body.to_vec())
    }
}

/// reqwest's error with its cause chain, which holds the useful part (refused, reset, ...).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    crate::errors::error_chain(e)
}
