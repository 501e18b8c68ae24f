//! A node's kubelet: `/stats/summary` as recorded for the current window, with its faults.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::Shared;
use super::filler;
use super::http::{self, Body};

/// Bytes that no JSON parser accepts: a gzip magic, HTML, invalid UTF-8.
const GARBAGE: &[u8] = b"\x1f\x8b\x08\x00<html><body>502 Bad Gateway</body></html>\xff\xfe\x00";

const NOT_FOUND: &str = "404 page not found\n";

pub async fn handle(
    shared: Arc<Shared>,
    node: Arc<str>,
    secure: bool,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    if path != "/stats/summary" && path != "/stats/summary/" {
        return match path {
            "/healthz" => http::text(StatusCode::OK, "ok"),
            _ => http::text(StatusCode::NOT_FOUND, NOT_FOUND),
        };
    }
    if request.method() != Method::GET {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let agent = request.headers().get(hyper::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let agent = agent.unwrap_or("").to_string();
    shared.count(|s| {
        s.summary_agents.entry(node.to_string()).or_default().insert(agent);
    });
    // The request counts for the clock on arrival, whatever the answer.
    let window = shared.scrape(&node);
    if secure && !http::authorized(&request, shared.token.as_deref()) {
        shared.count(|s| s.kubelet_unauthorized += 1);
        return http::text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if secure {
        shared.aggregation.record_kubelet_stats();
    }
    let fault = shared.faults.kubelet(window, &node).cloned().unwrap_or_default();
    if fault != Default::default() {
        shared.count(|s| s.kubelet_faults += 1);
    }
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let (status, content_type, body) = match fault.status.filter(|&s| s != 200) {
        Some(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text =
                fault.body.clone().unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
            (status, "text/plain; charset=utf-8", Bytes::from(text))
        }
        None => match tokio::fs::read(shared.scenario.summary_path(window, &node)).await {
            Ok(bytes) => (StatusCode::OK, "application/json", Bytes::from(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return http::text(StatusCode::NOT_FOUND, NOT_FOUND);
            }
            Err(e) => {
                tracing::warn!("fixture kubelet {node}: window {window} summary: {e}");
                return http::text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the recorded summary\n");
            }
        },
    };
    if status == StatusCode::OK && (fault.endless || fault.declared_length.is_some()) {
        return filler::oversized(body, fault.declared_length);
    }
    let body = if fault.garbage { Bytes::from_static(GARBAGE) } else { body };
    match fault.truncate {
        Some(keep) if keep < body.len() => http::truncated(status, content_type, body, keep),
        _ => http::response(status, content_type, body),
    }
}
