//! One request path for the Google APIs: bearer token, JSON body, retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use tracing::{debug, warn};
use url::Url;

use super::auth::Authenticator;
use super::endpoints::GoogleOptions;
use super::error::{ApiError, GoogleError};
use crate::backoff::Backoff;
use crate::errors::error_chain;

/// A `Retry-After` longer than this is cut to it: a sink must not sleep for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// An answer other than a transient failure.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// Google's error, for an answer that is not a success.
    pub fn error(&self) -> ApiError {
        ApiError::from_body(self.status.as_u16(), &self.body)
    }
}

/// An HTTP client for one Google API, shared by the tasks writing to it.
pub struct ApiClient {
    pub http: reqwest::Client,
    pub auth: Arc<Authenticator>,
    pub api: &'static str,
    /// Tries in all for one request.
    attempts: u32,
    backoff: Backoff,
}

/// The HTTP client the Google sinks use.
pub fn http_client(options: &GoogleOptions) -> Result<reqwest::Client, GoogleError> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("heapster/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(GoogleError::Client)
}

impl ApiClient {
    pub fn new(
        http: reqwest::Client,
        auth: Arc<Authenticator>,
        api: &'static str,
        attempts: u32,
        backoff: Backoff,
    ) -> ApiClient {
        ApiClient { http, auth, api, attempts, backoff }
    }

    /// POSTs `body` as JSON to `url`, retrying 429, 5xx and transport failures with backoff
    /// (at least `Retry-After` when given), and a 401 once with a fresh token. Returns the
    /// answer (success or a client error) or why it gave up, and the requests made.
    pub async fn post(&self, action: &str, url: &Url, body: Bytes) -> (Result<Answer, GoogleError>, usize) {
        let attempts = self.attempts.max(1);
        let mut waits = self.backoff.waits();
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = match self.auth.token().await {
                Ok(token) => token,
                Err(e) => return (Err(e), attempt as usize - 1),
            };
            let sent = self
                .http
                .post(url.clone())
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let mut wait_at_least = Duration::ZERO;
            let failure = match sent {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    let answer = Answer { status, body: text };
                    if status == StatusCode::UNAUTHORIZED && !refreshed {
                        // Expired or revoked early: one more try with a new token.
                        refreshed = true;
                        warn!(api = self.api, "{action}: token refused; fetching a new one");
                        self.auth.invalidate(&token).await;
                        attempt -= 1;
                        continue;
                    }
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return (Ok(answer), attempt as usize + usize::from(refreshed));
                    }
                    wait_at_least = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
                    GoogleError::Api { api: self.api, action: action.to_string(), error: answer.error() }
                }
                Err(e) if e.is_builder() => {
                    return (Err(GoogleError::Client(e)), attempt as usize);
                }
                Err(e) => GoogleError::Unreachable {
                    api: self.api,
                    action: action.to_string(),
                    attempts: attempt,
                    message: error_chain(&e),
                },
            };
            if attempt >= attempts {
                return (Err(failure), attempt as usize + usize::from(refreshed));
            }
            let delay = waits.next_wait().max(wait_at_least);
            debug!(api = self.api, %failure, attempt, ?delay, "request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}
