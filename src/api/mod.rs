//! What operators look at, over HTTP(S) on `--listen_ip`:`--heapster-port`:
//!
//! - `/healthz`: 200 unless the source cannot list nodes or no window reached the sinks for
//!   longer than [`STALE_WINDOWS`] resolutions; the body says which.
//! - `/readyz`: 200 once the first window reached the sinks.
//! - `/metrics`: the collector's own metrics ([`crate::telemetry`]).
//! - `/apis/metrics.k8s.io/v1beta1/...`: what `kubectl top` and the HPA read ([`metrics_api`]).
//!
//! Handlers read only the published snapshot and atomics ([`crate::telemetry`]), so serving
//! never holds up the workers or the collector. The server runs on a thread of its own at the
//! lowest scheduling priority ([`priority`]): under a request storm the pipeline keeps its CPU.

pub mod metrics_api;
pub mod priority;
pub mod selector;
pub mod snapshot;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::sources::clock::now_ms;
use crate::telemetry::{self, Telemetry};
use metrics_api::Query;
pub use tls::{TlsError, TlsFiles};

/// `/healthz` fails once no window reached the sinks for this many resolutions.
pub const STALE_WINDOWS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the API's thread or runtime: {0}")]
    Spawn(std::io::Error),
}

/// The API server's settings (Heapster's flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// `--listen_ip` and `--heapster-port` (0 picks a free port, logged at start).
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// `--allowed_users`: client certificate common names let in (empty: any the CA signed).
    pub allowed_users: Vec<String>,
}

/// A running API server; stops when dropped.
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Not joined: a thread at idle priority may wait for CPU, and the process need not.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds, then serves on a thread of its own at the lowest priority the OS grants, with its
/// own single-threaded runtime; windows are published from now on.
pub fn start(config: &ApiConfig) -> Result<ApiServer, ApiError> {
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let client_ca = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    // Bound here, on the API's runtime, so that a busy port is an error of the start (tokio
    // sets SO_REUSEADDR: a restart does not wait out the old connections' TIME_WAIT).
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ApiError::Spawn)?;
    let bind_error = |source| ApiError::Bind { addr: config.listen, source };
    let listener = runtime.block_on(TcpListener::bind(config.listen)).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let gate = Arc::new(Gate { client_ca, allowed_users: config.allowed_users.clone() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            match priority::lower_this_thread() {
                priority::Priority::Unchanged(why) => tracing::warn!(
                    "the API thread runs at normal priority, the OS refused to lower it ({why}): \
                     a request storm competes with the pipeline for CPU"
                ),
                got => tracing::info!(priority = %got, "the API thread yields the CPU to the pipeline"),
            }
            runtime.block_on(async move {
                tokio::select! {
                    _ = accept_loop(listener, tls.map(TlsAcceptor::from), gate) => {}
                    _ = stopped => {}
                }
            });
        })
        .map_err(ApiError::Spawn)?;
    tracing::info!(address = %addr, "serving /healthz, /readyz, /metrics and metrics.k8s.io on {scheme}://{addr}");
    telemetry::global().start_publishing();
    Ok(ApiServer { addr, stop: Some(stop) })
}

/// Who may in, decided per connection from its client certificate.
struct Gate {
    client_ca: bool,
    allowed_users: Vec<String>,
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, gate: Arc<Gate>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (tls, gate) = (tls.clone(), Arc::clone(&gate));
        connections.spawn(async move {
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let cn = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|der| tls::common_name(der));
                        let allowed = tls::allowed(cn.as_deref(), gate.client_ca, &gate.allowed_users);
                        if !allowed {
                            tracing::debug!(user = cn.as_deref().unwrap_or("-"), "API: client not allowed");
                        }
                        serve(TokioIo::new(stream), allowed, cn).await
                    }
                    Err(e) => {
                        tracing::debug!("API: TLS handshake failed: {e}");
                        return;
                    }
                },
                None => serve(TokioIo::new(stream), true, None).await,
            };
            if let Err(e) = result {
                tracing::debug!("API: connection ended: {e}");
            }
        });
    }
}

async fn serve<IO>(io: TokioIo<IO>, allowed: bool, user: Option<String>) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let user = Arc::new(user);
    let service = service_fn(move |request: Request<Incoming>| {
        let user = Arc::clone(&user);
        async move {
            let response = if allowed {
                handle(telemetry::global(), request.method(), request.uri().path(), request.uri().query())
            } else {
                let who = user.as_deref().unwrap_or("anonymous");
                json(metrics_api::status(
                    403,
                    "Forbidden",
                    &format!("user {who:?} is not in --allowed_users"),
                ))
            };
            Ok::<_, Infallible>(response)
        }
    });
    http1::Builder::new().serve_connection(io, service).await
}

type Body = Full<Bytes>;

fn respond(code: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json((code, body): metrics_api::Answer) -> Response<Body> {
    respond(code, "application/json", body)
}

fn text(code: u16, body: String) -> Response<Body> {
    respond(code, "text/plain; charset=utf-8", body)
}

/// Answers one request; every path and query is checked, nothing here can panic on input.
pub fn handle(telemetry: &Telemetry, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return json(metrics_api::status(405, "MethodNotAllowed", &format!("{method} is not supported")));
    }
    let params: HashMap<String, String> =
        query.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let api_query = match segments.as_slice() {
        ["healthz"] => {
            let (ok, why) = health(telemetry, now_ms());
            return text(if ok { 200 } else { 503 }, why);
        }
        ["readyz"] => {
            let (ok, why) = readiness(telemetry);
            return text(if ok { 200 } else { 503 }, why);
        }
        ["metrics"] => return respond(200, telemetry::CONTENT_TYPE, telemetry.encode()),
        ["apis"] => return json(metrics_api::group_list()),
        ["apis", "metrics.k8s.io"] => return json(metrics_api::api_group()),
        ["apis", "metrics.k8s.io", "v1beta1"] => return json(metrics_api::resource_list()),
        ["apis", "metrics.k8s.io", "v1beta1", "nodes"] => Query::Nodes,
        ["apis", "metrics.k8s.io", "v1beta1", "nodes", name] => Query::Node(name),
        ["apis", "metrics.k8s.io", "v1beta1", "pods"] => Query::Pods(None),
        ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods"] => Query::Pods(Some(ns)),
        ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods", name] => Query::Pod(ns, name),
        _ => {
            return json(metrics_api::not_found(&format!(
                "the server could not find the requested resource {path:?}"
            )));
        }
    };
    if params.get("watch").is_some_and(|w| w == "1" || w == "true") {
        return json(metrics_api::status(405, "MethodNotAllowed", "metrics cannot be watched"));
    }
    let snapshot = telemetry.snapshot();
    let labels = params.get("labelSelector").map(String::as_str);
    let fields = params.get("fieldSelector").map(String::as_str);
    if let Some(snapshot) = snapshot.as_deref()
        && labels.is_none_or(str::is_empty)
        && fields.is_none_or(str::is_empty)
    {
        let cell = match api_query {
            Query::Nodes => Some(&snapshot.rendered.nodes),
            Query::Pods(None) => Some(&snapshot.rendered.pods),
            _ => None,
        };
        if let Some(cell) = cell {
            // Shrunk to its length: the body lives as long as the window, and a list rendered
            // into a guessed capacity would keep the unused part too.
            let body = cell.get_or_init(|| {
                Bytes::from(metrics_api::answer(Some(snapshot), api_query, None, None).1.into_boxed_slice())
            });
            return respond(200, "application/json", body.clone());
        }
    }
    json(metrics_api::answer(snapshot.as_deref(), api_query, labels, fields))
}

/// Heapster's health: the node list works and a window reached the sinks recently enough.
pub fn health(telemetry: &Telemetry, now_ms: u64) -> (bool, String) {
    if let Some(why) = telemetry.nodes_failure() {
        return (false, format!("unhealthy: the source cannot list nodes: {why}\n"));
    }
    let resolution = telemetry.run().map_or(Duration::from_secs(60), |r| r.resolution);
    let limit = (resolution * STALE_WINDOWS).as_millis() as u64;
    match telemetry.last_window_at_ms() {
        Some(at) if now_ms.saturating_sub(at) > limit => (
            false,
            format!(
                "unhealthy: no window exported for {}s (more than {STALE_WINDOWS} resolutions)\n",
                now_ms.saturating_sub(at) / 1000
            ),
        ),
        Some(at) => (true, format!("ok: last window exported {}s ago\n", now_ms.saturating_sub(at) / 1000)),
        None if now_ms.saturating_sub(telemetry.started_ms()) > limit => (
            false,
            format!(
                "unhealthy: no window exported in {}s since start\n",
                now_ms.saturating_sub(telemetry.started_ms()) / 1000
            ),
        ),
        None => (true, "ok: starting, no window exported yet\n".to_string()),
    }
}

/// Ready once the first window reached the sinks.
pub fn readiness(telemetry: &Telemetry) -> (bool, String) {
    match telemetry.last_window_at_ms() {
        Some(_) => (true, "ready: a window has been exported\n".to_string()),
        None => (false, "not ready: no window exported yet\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use heapster_dataflows::{EntityKey, MetricId, MetricSet, Value};
    use http_body_util::BodyExt;

    use super::*;
    use crate::batch::MetricBatch;

    fn body(response: Response<Body>) -> Bytes {
        futures::executor::block_on(response.into_body().collect()).map(|b| b.to_bytes()).unwrap_or_default()
    }

    fn with_usage(key: EntityKey) -> MetricSet {
        let mut set = MetricSet::new(key);
        set.values.set(MetricId::CpuUsageRate, Value::Int(250));
        set.values.set(MetricId::MemoryWorkingSet, Value::Int(1 << 20));
        set
    }

    #[test]
    fn unfiltered_lists_are_rendered_once_per_window_and_equal_a_fresh_answer() {
        let telemetry = Telemetry::new();
        telemetry.start_publishing();
        let sets = vec![
            with_usage(EntityKey::Node { node: "n1".into() }),
            with_usage(EntityKey::PodContainer {
                ns: "web".into(),
                pod: "p1".into(),
                container: "php".into(),
            }),
            with_usage(EntityKey::PodContainer { ns: "db".into(), pod: "p2".into(), container: "pg".into() }),
        ];
        telemetry.window_complete(&MetricBatch { time: 60_000, sets });
        let snapshot = telemetry.snapshot().expect("a snapshot");
        let pods = "/apis/metrics.k8s.io/v1beta1/pods";
        assert!(snapshot.rendered.pods.get().is_none());
        let first = body(handle(&telemetry, &Method::GET, pods, None));
        assert_eq!(snapshot.rendered.pods.get(), Some(&first), "kept for the next request");
        assert_eq!(body(handle(&telemetry, &Method::GET, pods, None)), first);
        let fresh = metrics_api::answer(Some(&snapshot), Query::Pods(None), None, None).1;
        assert_eq!(first, fresh);
        let nodes = body(handle(&telemetry, &Method::GET, "/apis/metrics.k8s.io/v1beta1/nodes", None));
        assert_eq!(snapshot.rendered.nodes.get(), Some(&nodes));
        // A selector is answered afresh, not from the unfiltered list.
        let selected =
            body(handle(&telemetry, &Method::GET, pods, Some("fieldSelector=metadata.namespace%3Ddb")));
        assert_ne!(selected, first);
        assert!(String::from_utf8_lossy(&selected).contains("\"p2\""));
        assert!(!String::from_utf8_lossy(&selected).contains("\"p1\""));
    }
}
