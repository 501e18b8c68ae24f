//! Google's error format, and the sinks' errors.

use serde::Deserialize;

use crate::sinks::sink::SinkError;

/// The `error` member of a Google API error answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ApiError {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ApiError,
}

impl ApiError {
    /// Google's error from an answer body; else one made of the HTTP status and the body's
    /// first line (a proxy's page, say).
    pub fn from_body(status: u16, body: &str) -> ApiError {
        if let Ok(envelope) = serde_json::from_str::<Envelope>(body) {
            return envelope.error;
        }
        let text = body.trim();
        let message = if text.is_empty() {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no message")
                .to_string()
        } else {
            text.chars().take(300).collect()
        };
        ApiError { code: status, message, status: String::new(), details: Vec::new() }
    }

    /// The detail whose `@type` ends with `type_name`.
    pub fn detail(&self, type_name: &str) -> Option<&serde_json::Value> {
        self.details.iter().find(|d| d["@type"].as_str().is_some_and(|t| t.ends_with(type_name)))
    }
}

/// Why a Google sink could not start or write.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{base}{path}: {source}")]
    Url { base: String, path: String, source: url::ParseError },
    /// A key file that cannot be used: what is wrong and which file.
    #[error("service-account key {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// The metadata server did not give what was asked.
    #[error(
        "GCE metadata server {host}: {reason} (off Google Cloud, set credentials= or GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)"
    )]
    Metadata { host: String, reason: String },
    /// The token endpoint refused the key's assertion.
    #[error("token endpoint {url} refused the service-account key: {reason}")]
    Token { url: String, reason: String },
    /// The API answered with an error (after retries, for 429 and 5xx).
    #[error("{api} answered {} {} to {action}: {}", .error.code, .error.status, .error.message)]
    Api { api: &'static str, action: String, error: ApiError },
    #[error("{api} did not answer {action} after {attempts} attempts: {message}")]
    Unreachable { api: &'static str, action: String, attempts: u32, message: String },
}

impl From<GoogleError> for SinkError {
    fn from(e: GoogleError) -> SinkError {
        SinkError::Backend(Box::new(e))
    }
}

impl GoogleError {
    /// Whether trying again later may succeed: the API or the metadata server was down or
    /// busy, not a verdict on the request or the credentials.
    pub fn may_pass(&self) -> bool {
        match self {
            GoogleError::Metadata { .. } | GoogleError::Unreachable { .. } => true,
            GoogleError::Api { error, .. } => {
                error.code == 0 || error.code == 401 || error.code == 429 || error.code >= 500
            }
            GoogleError::Client(_)
            | GoogleError::Url { .. }
            | GoogleError::KeyFile { .. }
            | GoogleError::Token { .. } => false,
        }
    }
}
