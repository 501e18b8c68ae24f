//! Kubelet scraping: `GET /stats/summary` on a node, with a per-node timeout.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, USER_AGENT};

use super::config::{Clients, KubernetesConfig};
use super::kubelet_client::{KubeletClient, Response};
use crate::sources::NodeTarget;
use crate::sources::ScrapeError;

/// How to reach kubelets.
#[derive(Clone)]
pub struct Scraper {
    client: KubeletClient,
    https: bool,
    port: u16,
    token: Option<String>,
    timeout: Duration,
    /// Sent as `User-Agent` when set (cluster mode names the process).
    user_agent: Option<String>,
    /// Every request's headers, built once: the token (marked sensitive) and the agent. A value
    /// that cannot be a header fails every scrape with why.
    headers: Result<Arc<[(HeaderName, HeaderValue)]>, String>,
}

/// The largest summary accepted. A kubelet answers about 3.5 kB per pod, so even 1,000 pods
/// stay under 4 MB; a body past this is a broken or hostile kubelet, and what it sent is all
/// the memory it costs.
const MAX_BODY: usize = 16 << 20;
/// Of an error answer, only this much is read, for the log.
const MAX_ERROR_BODY: usize = 4 << 10;

impl Scraper {
    /// Kubelets as the source URI names them (`kubeletHttps`, `kubeletPort`), through the
    /// clients' kubelet client and token.
    pub fn new(config: &KubernetesConfig, clients: &Clients, timeout: Duration) -> Scraper {
        let mut scraper = Scraper {
            client: clients.kubelet.clone(),
            https: config.kubelet_https,
            port: config.kubelet_port,
            token: clients.kubelet_token.clone(),
            timeout,
            user_agent: None,
            headers: Ok(Arc::new([])),
        };
        scraper.headers = scraper.build_headers();
        scraper
    }

    pub fn user_agent(&mut self, agent: String) {
        self.user_agent = Some(agent);
        self.headers = self.build_headers();
    }

    fn build_headers(&self) -> Result<Arc<[(HeaderName, HeaderValue)]>, String> {
        let value = |v: &str| HeaderValue::from_str(v).map_err(|e| crate::errors::error_chain(&e));
        let mut headers = Vec::new();
        if let (true, Some(token)) = (self.https, &self.token) {
            let mut token = value(&format!("Bearer {token}"))?;
            token.set_sensitive(true);
            headers.push((AUTHORIZATION, token));
        }
        if let Some(agent) = &self.user_agent {
            headers.push((USER_AGENT, value(agent)?));
        }
        Ok(headers.into())
    }

    pub fn url(&self, target: &NodeTarget) -> Option<String> {
        let address = target.address.as_deref()?;
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
        let scheme = if self.https { "https" } else { "http" };
        Some(format!("{scheme}://{host}:{}/stats/summary", self.port))
    }

    /// The node's summary; the whole exchange (connect, answer, body) within the timeout.
    pub async fn scrape(&self, target: &NodeTarget) -> Result<Vec<u8>, ScrapeError> {
        let url = self
            .url(target)
            .ok_or_else(|| ScrapeError::Failed("no InternalIP or ExternalIP address to scrape".into()))?;
        match tokio::time::timeout(self.timeout, self.exchange(&url)).await {
            Ok(result) => result,
            Err(_) => Err(ScrapeError::Failed(format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn exchange(&self, url: &str) -> Result<Vec<u8>, ScrapeError> {
        let headers = self.headers.as_deref().map_err(|e| ScrapeError::Failed(e.clone()))?;
        let mut response = self.client.get(url, headers).await.map_err(ScrapeError::Failed)?;
        let status = response.status;
        let declared = response.content_length;
        if !status.is_success() {
            let body = match read_capped(&mut response, declared, MAX_ERROR_BODY, Vec::new()).await {
                Ok(Capped::Whole(body) | Capped::Cut(body)) => body,
                Err(_) => Vec::new(),
            };
            let body = String::from_utf8_lossy(&body);
            let body: String = body.chars().take(200).collect();
            return Err(ScrapeError::Failed(format!("{url}: HTTP {status}: {}", body.trim())));
        }
        // A declared length over the cap is refused before a byte of the body is read.
        if let Some(declared) = declared.filter(|&n| n > MAX_BODY as u64) {
            return Err(ScrapeError::Failed(format!(
                "{url}: declares a body of {declared} bytes, over the {MAX_BODY}-byte limit; not read"
            )));
        }
        // The buffer of an earlier body, handed back by the worker that parsed it.
        match read_capped(&mut response, declared, MAX_BODY, super::bodies::take()).await {
            Ok(Capped::Whole(body)) => Ok(body),
            Ok(Capped::Cut(_)) => Err(ScrapeError::Failed(format!(
                "{url}: body over the {MAX_BODY}-byte limit; stopped reading there"
            ))),
            Err(e) => Err(ScrapeError::Failed(format!("{url}: body: {e}"))),
        }
    }
}

/// A body read up to a cap.
enum Capped {
    Whole(Vec<u8>),
    /// The body went past the cap: the first `cap` bytes at most, the rest never read.
    Cut(Vec<u8>),
}

/// Reads the body into `out` (empty) straight from the connection, and stops at `cap`: memory
/// never holds more than `cap` bytes of it, whatever the sender declares or streams.
async fn read_capped(
    response: &mut Response,
    declared: Option<u64>,
    cap: usize,
    mut out: Vec<u8>,
) -> Result<Capped, String> {
    // A declared length within the cap sizes the buffer once; pages are only touched as bytes
    // arrive, so a sender that declares much and sends little costs little.
    let declared = declared.map_or(0, |n| n.min(cap as u64) as usize);
    out.reserve_exact(declared);
    if response.read(&mut out, cap).await? { Ok(Capped::Whole(out)) } else { Ok(Capped::Cut(out)) }
}
