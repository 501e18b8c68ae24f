//! Google Cloud on loopback, as strict as Google: the GCE metadata server, the OAuth token
//! endpoint, Cloud Monitoring v3 and Cloud Logging v2, on one plain-HTTP listener.
//!
//! - Metadata (`/computeMetadata/v1/...`: `project/project-id`, `instance/zone`,
//!   `instance/service-accounts/default/token`): requests need `Metadata-Flavor: Google`
//!   (403 otherwise), answers carry it.
//! - Token endpoint (`POST /token`): takes the JWT-bearer grant; the assertion must be RS256
//!   signed by the key this server issued (written as `key.json`, a service-account key file
//!   whose `token_uri` points here; `wrong-key.json` holds another key with the same identity),
//!   with this `aud`, the key's `iss`, a scope, and `iat`/`exp` around now (at most an hour).
//!   Refusals are OAuth's `{"error": "invalid_grant", "error_description": ...}`.
//! - APIs: a bearer token this server issued and that has not expired, else 401
//!   `UNAUTHENTICATED`. Bodies are checked against the discovery documents
//!   ([`schema`]) and the documented limits ([`monitoring`], [`logging`]); refusals use
//!   Google's `{"error": {"code", "message", "status", "details"}}`.
//! - Control: `GET /fixture/google/dump` (what was stored and the counters),
//!   `POST /fixture/google/faults` ([`GoogleFaults`] as JSON), `POST /fixture/google/expire-tokens`.

mod logging;
mod monitoring;
pub mod schema;
mod token;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use logging::{MAX_ENTRY_BYTES, MAX_REQUEST_BYTES};
pub use monitoring::{MAX_LABELS_PER_DESCRIPTOR, MAX_SERIES_PER_REQUEST};

use super::http::{self, Body};
use super::{FixtureError, Tasks};

/// Where and as whom the emulation runs.
#[derive(Clone, Debug)]
pub struct GoogleConfig {
    /// Port 0 picks one.
    pub listen: SocketAddr,
    pub project: String,
    pub zone: String,
    /// Where `key.json` and `wrong-key.json` are written.
    pub key_dir: PathBuf,
    /// How long an access token lives.
    pub token_lifetime: Duration,
}

impl GoogleConfig {
    pub fn new(key_dir: impl Into<PathBuf>) -> GoogleConfig {
        GoogleConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            project: "heapster-test".into(),
            zone: "us-central1-a".into(),
            key_dir: key_dir.into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// One burst of failures: the next `count` requests to `api` get `status`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Burst {
    /// `monitoring`, `logging`, `token` or `metadata`.
    pub api: String,
    pub status: u16,
    pub count: u32,
    /// Sent as `Retry-After` (seconds).
    #[serde(default)]
    pub retry_after_s: Option<u64>,
}

/// How the emulation misbehaves; all off by default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct GoogleFaults {
    pub bursts: Vec<Burst>,
    /// Every API answer waits this long.
    pub delay_ms: u64,
    /// Series with a metric or resource label of this value are refused for good (a
    /// per-series `INVALID_ARGUMENT`), the others written.
    pub reject_label_value: Option<String>,
    /// Entries whose `insertId` starts with this are refused for good.
    pub reject_insert_id_prefix: Option<String>,
    /// Once this many API requests were served, every token handed out so far stops working
    /// (0: never), as when tokens expire mid-run.
    pub expire_tokens_after: u64,
}

/// What the emulation saw; every request is counted once.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GoogleStats {
    pub metadata_requests: u64,
    pub token_grants: u64,
    pub token_refusals: u64,
    pub unauthenticated: u64,
    pub faults_served: u64,
    pub descriptors_created: u64,
    pub time_series_requests: u64,
    pub write_requests: u64,
    /// Requests refused because of their shape (schema or limits): the sinks must send none.
    pub shape_rejections: u64,
    pub shape_errors: Vec<String>,
    pub max_series_per_request: usize,
    pub series_written: u64,
    /// Series refused for a mistake of the sender (undeclared label, wrong value type, repeated
    /// in a request, older than the stored point, no descriptor...): the sinks must send none.
    pub series_invalid: u64,
    /// Series refused by an injected fault.
    pub series_refused: u64,
    pub entries_written: u64,
    pub entries_refused: u64,
    /// Entries received again with an (insertId, timestamp) already stored: not stored twice.
    pub duplicate_entries: u64,
}

/// A stored time series.
#[derive(Clone, Debug, Serialize)]
pub struct StoredSeries {
    pub metric_type: String,
    pub metric_labels: BTreeMap<String, String>,
    pub resource_type: String,
    pub resource_labels: BTreeMap<String, String>,
    pub metric_kind: String,
    pub value_type: String,
    /// Oldest first: `{"interval": ..., "value": ...}` as sent.
    pub points: Vec<Value>,
    #[serde(skip)]
    pub last_end: Option<jiff::Timestamp>,
}

type SeriesKey = (String, Vec<(String, String)>, String, Vec<(String, String)>);

#[derive(Default)]
struct State {
    tokens: HashMap<String, Instant>,
    faults: GoogleFaults,
    descriptors: BTreeMap<String, Value>,
    series: BTreeMap<SeriesKey, StoredSeries>,
    entries: Vec<Value>,
    entry_keys: HashSet<(String, String, String)>,
    stats: GoogleStats,
    api_requests: u64,
}

struct Shared {
    project: String,
    zone: String,
    base_url: String,
    client_email: String,
    token_lifetime: Duration,
    /// The issued key's public half (PKCS#1 DER).
    public_key: Vec<u8>,
    monitoring: schema::Discovery,
    logging: schema::Discovery,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn token_uri(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

const ISSUED_KEY: &str = include_str!("../../../../fixtures/google/issued-key.pem");
const OTHER_KEY: &str = include_str!("../../../../fixtures/google/other-key.pem");

/// A running emulation; stops when dropped.
pub struct GoogleServer {
    shared: Arc<Shared>,
    _tasks: Tasks,
    addr: SocketAddr,
    key_file: PathBuf,
    wrong_key_file: PathBuf,
}

impl GoogleServer {
    pub async fn start(config: GoogleConfig) -> Result<GoogleServer, FixtureError> {
        let listener = super::listen::bind(config.listen, "the Google APIs").await?;
        let addr = super::listen::reachable(listener.local_addr().map_err(FixtureError::Runtime)?);
        let der = heapster::sinks::google::auth::pem_body(ISSUED_KEY)
            .ok_or_else(|| FixtureError::Config("issued key is not PEM".into()))?;
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| FixtureError::Config(format!("issued key: {e}")))?;
        let public_key = ring::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        let base_url = format!("http://{addr}");
        let client_email = format!("heapster@{}.iam.gserviceaccount.com", config.project);
        std::fs::create_dir_all(&config.key_dir)
            .map_err(|source| FixtureError::Write { path: config.key_dir.clone(), source })?;
        let write_key = |name: &str, pem: &str| -> Result<PathBuf, FixtureError> {
            let path = config.key_dir.join(name);
            let key = json!({
                "type": "service_account",
                "project_id": config.project,
                "private_key_id": "fixture-key-1",
                "private_key": pem,
                "client_email": client_email,
                "client_id": "1",
                "auth_uri": format!("{base_url}/auth"),
                "token_uri": format!("{base_url}/token"),
            });
            std::fs::write(&path, key.to_string())
                .map_err(|source| FixtureError::Write { path: path.clone(), source })?;
            Ok(path)
        };
        let key_file = write_key("key.json", ISSUED_KEY)?;
        let wrong_key_file = write_key("wrong-key.json", OTHER_KEY)?;
        let shared = Arc::new(Shared {
            project: config.project,
            zone: config.zone,
            base_url,
            client_email,
            token_lifetime: config.token_lifetime,
            public_key,
            monitoring: schema::Discovery::monitoring(),
            logging: schema::Discovery::logging(),
            state: Mutex::new(State::default()),
        });
        let handler = {
            let shared = shared.clone();
            Arc::new(move |request| handle(shared.clone(), request))
        };
        let tasks = Tasks(vec![http::serve(listener, None, handler)]);
        Ok(GoogleServer { shared, _tasks: tasks, addr, key_file, wrong_key_file })
    }

    /// `http://127.0.0.1:PORT/`: the `endpoint=` of both sinks.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `127.0.0.1:PORT`: the `metadata_host=` (or `GCE_METADATA_HOST`).
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    pub fn project(&self) -> &str {
        &self.shared.project
    }

    /// A key file this server accepts.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// A well-formed key file whose signatures this server refuses.
    pub fn wrong_key_file(&self) -> &Path {
        &self.wrong_key_file
    }

    pub fn set_faults(&self, faults: GoogleFaults) {
        self.shared.state().faults = faults;
    }

    /// Every token handed out so far stops working, as when they expire.
    pub fn expire_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    pub fn stats(&self) -> GoogleStats {
        self.shared.state().stats.clone()
    }

    pub fn series(&self) -> Vec<StoredSeries> {
        self.shared.state().series.values().cloned().collect()
    }

    pub fn entries(&self) -> Vec<Value> {
        self.shared.state().entries.clone()
    }

    pub fn descriptors(&self) -> Vec<Value> {
        self.shared.state().descriptors.values().cloned().collect()
    }

    pub fn dump(&self) -> Value {
        dump(&self.shared)
    }
}

fn dump(shared: &Shared) -> Value {
    let state = shared.state();
    json!({
        "metricDescriptors": state.descriptors.values().collect::<Vec<_>>(),
        "timeSeries": state.series.values().collect::<Vec<_>>(),
        "entries": state.entries,
        "stats": state.stats,
    })
}

/// Google's error answer.
pub fn google_error(code: StatusCode, status: &str, message: &str, details: Vec<Value>) -> Response<Body> {
    let body =
        json!({"error": {"code": code.as_u16(), "message": message, "status": status, "details": details}});
    http::json(code, body.to_string())
}

/// A 400 for a body that does not fit the API's description or limits.
fn shape_error(shared: &Shared, errors: Vec<String>) -> Response<Body> {
    let mut state = shared.state();
    state.stats.shape_rejections += 1;
    for e in &errors {
        if state.stats.shape_errors.len() < 50 {
            state.stats.shape_errors.push(e.clone());
        }
    }
    drop(state);
    tracing::warn!(errors = ?errors, "Google emulation: request refused for its shape");
    let violations: Vec<Value> = errors.iter().map(|e| json!({"description": e})).collect();
    google_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        errors.first().map_or("Invalid request", String::as_str),
        vec![json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})],
    )
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let headers = request.headers().clone();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return http::text(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };
    let api = if path.starts_with("/computeMetadata/") {
        "metadata"
    } else if path == "/token" {
        "token"
    } else if path.starts_with("/v3/") {
        "monitoring"
    } else if path.starts_with("/v2/") {
        "logging"
    } else {
        "control"
    };
    if api != "control" {
        let (delay, burst) = {
            let mut state = shared.state();
            let delay = state.faults.delay_ms;
            if matches!(api, "monitoring" | "logging") {
                state.api_requests += 1;
                let after = state.faults.expire_tokens_after;
                if after > 0 && state.api_requests == after + 1 {
                    state.tokens.clear();
                }
            }
            let burst = state.faults.bursts.iter_mut().find(|b| b.api == api && b.count > 0).map(|b| {
                b.count -= 1;
                (b.status, b.retry_after_s)
            });
            if burst.is_some() {
                state.stats.faults_served += 1;
            }
            (delay, burst)
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if let Some((status, retry_after)) = burst {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let (name, message) = match status {
                429 => ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Write requests'."),
                503 => ("UNAVAILABLE", "The service is currently unavailable."),
                500 => ("INTERNAL", "Internal error encountered."),
                _ => ("UNKNOWN", "Fault injected."),
            };
            let mut response = google_error(code, name, message, Vec::new());
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(seconds));
            }
            return response;
        }
    }
    match api {
        "metadata" => token::metadata(&shared, &method, &path, &headers),
        "token" => token::grant(&shared, &method, &body),
        "monitoring" | "logging" => {
            if !authorized(&shared, &headers) {
                shared.state().stats.unauthenticated += 1;
                return google_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                    Vec::new(),
                );
            }
            if api == "monitoring" {
                monitoring::handle(&shared, &method, &path, &body)
            } else {
                logging::handle(&shared, &method, &path, &body)
            }
        }
        _ => control(&shared, &method, &path, &query, &body),
    }
}

fn authorized(shared: &Shared, headers: &hyper::HeaderMap) -> bool {
    let Some(token) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    shared.state().tokens.get(token.trim()).is_some_and(|expires| Instant::now() < *expires)
}

fn control(shared: &Shared, method: &Method, path: &str, _query: &str, body: &Bytes) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/fixture/google/dump") => http::json(StatusCode::OK, dump(shared).to_string()),
        (&Method::POST, "/fixture/google/faults") => match serde_json::from_slice::<GoogleFaults>(body) {
            Ok(faults) => {
                shared.state().faults = faults;
                http::json(StatusCode::OK, "{}")
            }
            Err(e) => http::text(StatusCode::BAD_REQUEST, format!("faults: {e}")),
        },
        (&Method::POST, "/fixture/google/expire-tokens") => {
            shared.state().tokens.clear();
            http::json(StatusCode::OK, "{}")
        }
        _ => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("{method} {path} not found"),
            Vec::new(),
        ),
    }
}

/// `"k": "v"` members of an object as sorted pairs; non-strings are refused by the schema first.
fn label_pairs(labels: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// The labels each monitored resource type takes, all required (Cloud Monitoring's and Logging's
/// resource list, for the types the sinks use).
fn resource_labels(resource_type: &str) -> Option<&'static [&'static str]> {
    Some(match resource_type {
        "global" => &["project_id"],
        "k8s_cluster" => &["project_id", "location", "cluster_name"],
        "k8s_node" => &["project_id", "location", "cluster_name", "node_name"],
        "k8s_pod" => &["project_id", "location", "cluster_name", "namespace_name", "pod_name"],
        "k8s_container" => {
            &["project_id", "location", "cluster_name", "namespace_name", "pod_name", "container_name"]
        }
        _ => return None,
    })
}

/// Why a monitored resource is not one of the known types with exactly its labels.
fn check_resource(shared: &Shared, resource: &Value) -> Option<String> {
    let Some(ty) = resource["type"].as_str() else {
        return Some("resource.type is required".into());
    };
    let Some(expected) = resource_labels(ty) else {
        return Some(format!("Unknown monitored resource type \"{ty}\""));
    };
    let labels = label_pairs(&resource["labels"]);
    for (key, value) in &labels {
        if !expected.contains(&key.as_str()) {
            return Some(format!("Unrecognized resource label \"{key}\" for resource type \"{ty}\""));
        }
        if value.is_empty() {
            return Some(format!("Resource label \"{key}\" of \"{ty}\" is empty"));
        }
    }
    for key in expected {
        if !labels.iter().any(|(k, _)| k == key) {
            return Some(format!("Missing resource label \"{key}\" for resource type \"{ty}\""));
        }
    }
    let project = labels.iter().find(|(k, _)| k == "project_id").map(|(_, v)| v.as_str());
    if project != Some(shared.project.as_str()) {
        return Some(format!("resource project_id {project:?} is not the project written to"));
    }
    None
}

/// `projects/<id>/...`: the project of a path, refused if it is not this one.
fn check_project(shared: &Shared, project: &str, permission: &str) -> Option<Response<Body>> {
    if project == shared.project {
        return None;
    }
    Some(google_error(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        &format!("Permission {permission} denied (or the resource may not exist)."),
        Vec::new(),
    ))
}
