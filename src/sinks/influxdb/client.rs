//! InfluxDB's HTTP API as the sink uses it: `/write` and `/query` with the credentials in a
//! header, one attempt each (the queue retries), and InfluxDB's answers read (error messages,
//! partial writes, statement errors).

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tracing::{error, warn};
use url::Url;

use super::InfluxError;
use super::config::InfluxConfig;
use crate::errors::error_chain;
use crate::sinks::queue::Sent;

pub(super) const FORM: &str = "application/x-www-form-urlencoded";
pub(super) const LINES: &str = "text/plain; charset=utf-8";

/// An InfluxDB server as the sink talks to it; shared with the tasks writing chunks.
pub(super) struct Endpoint {
    pub(super) client: reqwest::Client,
    pub(super) write_url: Url,
    pub(super) query_url: Url,
    pub(super) user: String,
    pub(super) password: SecretString,
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

impl Endpoint {
    pub(super) fn new(config: &InfluxConfig) -> Result<Endpoint, InfluxError> {
        crate::tls::install_crypto_provider();
        if config.insecure_ssl {
            warn!(url = %config.url, "InfluxDB certificate verification is off (insecuressl=true)");
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("heapster/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(config.insecure_ssl)
            .build()
            .map_err(InfluxError::Client)?;
        let join = |path: &str| {
            config.url.join(path).map_err(|source| InfluxError::Url {
                base: config.url.to_string(),
                path: path.to_string(),
                source,
            })
        };
        let mut write_url = join("write")?;
        write_url.query_pairs_mut().append_pair("db", &config.db).append_pair("precision", "ns");
        Ok(Endpoint {
            client,
            write_url,
            query_url: join("query")?,
            user: config.user.clone(),
            password: config.password.clone(),
        })
    }

    /// One request; the credentials travel in the `Authorization` header, never in the URL.
    pub(super) async fn post(
        &self,
        url: &Url,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, reqwest::Error> {
        let response = self
            .client
            .post(url.clone())
            .basic_auth(&self.user, Some(self.password.expose_secret()))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        Ok(Answer { status, body })
    }

    /// Posts once. Returns the answer, or why it is worth another try later (5xx, 429, no
    /// answer) or none (the request cannot be built).
    pub(super) async fn post_once(
        &self,
        action: &str,
        url: &Url,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, InfluxError> {
        match self.post(url, content_type, body).await {
            Ok(answer) if is_transient(answer.status) => Err(InfluxError::Server {
                action: action.to_string(),
                status: answer.status.as_u16(),
                message: server_message(&answer),
            }),
            Ok(answer) => Ok(answer),
            Err(e) if e.is_builder() => Err(InfluxError::Client(e)),
            Err(e) => Err(InfluxError::Unreachable { action: action.to_string(), message: error_chain(&e) }),
        }
    }

    /// Runs one InfluxQL statement.
    pub(super) async fn query(&self, statement: &str) -> Result<(), InfluxError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("q", statement).finish();
        let answer = self.post_once(statement, &self.query_url, FORM, Bytes::from(body)).await?;
        if !answer.status.is_success() {
            return Err(InfluxError::Server {
                action: statement.to_string(),
                status: answer.status.as_u16(),
                message: server_message(&answer),
            });
        }
        match statement_error(&answer.body) {
            Some(message) => Err(InfluxError::Statement { action: statement.to_string(), message }),
            None => Ok(()),
        }
    }
}

pub(super) fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// [`is_transient`] for a status kept as a number.
pub(super) fn is_transient_code(status: u16) -> bool {
    StatusCode::from_u16(status).map_or(true, is_transient)
}

/// InfluxDB's `{"error": "..."}`, else the body as text, else the status' reason.
pub(super) fn server_message(answer: &Answer) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&answer.body)
        && let Some(serde_json::Value::String(message)) = map.get("error")
    {
        return message.clone();
    }
    let text = answer.body.trim();
    if text.is_empty() {
        return answer.status.canonical_reason().unwrap_or("no message").to_string();
    }
    text.chars().take(500).collect()
}

/// The first statement error of a `/query` answer.
pub(super) fn statement_error(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["results"].as_array()?.iter().find_map(|r| r["error"].as_str().map(str::to_string))
}

/// `dropped=N` of a partial-write message.
pub(super) fn dropped_count(message: &str) -> Option<usize> {
    let at = message.rfind("dropped=")?;
    let digits: String = message[at + 8..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Points a partial write did not store: `dropped=N` counts only points InfluxDB parsed and then
/// refused; lines it could not parse are listed, one `unable to parse '...'` each, and not in N.
pub(super) fn refused_count(body: &str, points: usize) -> usize {
    let unparsed = body.matches("unable to parse '").count();
    (dropped_count(body).unwrap_or(points) + unparsed).min(points)
}

pub(super) fn tolerate_forbidden(result: Result<(), InfluxError>) -> Result<(), InfluxError> {
    match result {
        Err(InfluxError::Server { status: 403, action, message }) => {
            warn!(%action, %message, "InfluxDB user may not run this; assuming it was done already");
            Ok(())
        }
        other => other,
    }
}

/// An InfluxQL identifier in double quotes.
pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One attempt at writing a chunk, classified for the queue.
pub(super) async fn write_once(endpoint: &Endpoint, body: Bytes, points: usize) -> Sent {
    let answer = match endpoint.post_once("write", &endpoint.write_url, LINES, body).await {
        Ok(answer) => answer,
        Err(e @ InfluxError::Client(_)) => {
            error!(points, error = %e, "InfluxDB write impossible; points dropped");
            return Sent::Refused(e.to_string());
        }
        Err(e) => return Sent::Retry(e.to_string()),
    };
    if answer.status.is_success() {
        return Sent::Written { refused: 0 };
    }
    let message = server_message(&answer);
    if answer.status == StatusCode::BAD_REQUEST && answer.body.contains("partial write") {
        let refused = refused_count(&answer.body, points);
        warn!(refused, points, message = %message, "InfluxDB refused part of a write");
        return Sent::Written { refused: refused as u64 };
    }
    if answer.status == StatusCode::NOT_FOUND && message.contains("database not found") {
        return Sent::Retry(message);
    }
    error!(points, status = answer.status.as_u16(), message = %message, "InfluxDB refused a write; points dropped");
    Sent::Refused(format!("InfluxDB answered {}: {message}", answer.status.as_u16()))
}
