//! The InfluxDB 1.x sink: Heapster's schema (see [`super::line_protocol`]) over `POST /write`.
//!
//! A window is encoded and sent one chunk of at most [`MAX_POINTS_PER_WRITE`] points at a time,
//! with at most `concurrency` chunks in flight, so memory stays bounded whatever the window's
//! size. Transient failures (5xx, 429, connection errors, timeouts) are retried with backoff;
//! anything else is logged with InfluxDB's own message and the chunk's points are counted as
//! dropped, never lost silently.
//!
//! # Events
//!
//! [`InfluxSink::write_events`] writes Heapster's eventer schema ([`EventEncoder`]), one point
//! per distinct state of an event:
//!
//! | | `withfields=false` (default) | `withfields=true` |
//! |---|---|---|
//! | measurement | `log/events` | `events` |
//! | field | `value`: the event as a core `v1` Event in indented JSON | `message`: the event's message |
//! | tags | `cluster_name`, `hostname`, `pod_id`, `pod_name`, `uid` | `cluster_name`, `component`, `hostname`, `kind`, `namespace_name`, `object_name`, `pod_id`, `reason`, `type`, `uid` |
//! | time | `lastTimestamp` (else `firstTimestamp`) | the same |
//!
//! Tag values: `uid` the event's uid; `hostname` and `component` its source's host and
//! component; `pod_id` and `pod_name` the involved object's uid and name, only when it is a
//! `Pod`; `object_name` and `kind` the involved object's name and kind; `namespace_name` the
//! event's namespace; `type` `Normal` or `Warning`; `cluster_name` the option's value. Tags with
//! empty values are left out. The field is a string: `value` is the API server's JSON for a core
//! `v1` Event, re-indented as Heapster's `json.MarshalIndent(event, "", " ")` was (other bodies
//! are rebuilt as core `v1` from the event's fields).
//!
//! A point's identity is (measurement, tags, time), and all of them come from the event's own
//! state, so a state sent again (after a restart) overwrites its point instead of adding one, and
//! a repeat with a new `lastTimestamp` adds a point. `lastTimestamp` has one-second precision:
//! repeats within one second share a point, and the one with the highest count is kept.
//! `withfields=true` stores no count: such repeats, like the states of any event that share a
//! message, differ only in time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use url::Url;

use heapster_dataflows::Event;

use super::Window;
pub use super::events::EventEncoder;
use super::line_protocol::{Cursor, EncodeStats, LineEncoder, LineOptions};
use super::queue::{BufferConfig, Chunk, Deliver, Encode, Encoded, Sent};
use crate::config::{ConfigError, UriOptions, redact};
use crate::errors::error_chain;

/// At most this many points per `/write` request, as Heapster sent.
pub const MAX_POINTS_PER_WRITE: usize = 10_000;
/// An event chunk is closed once it holds this many bytes: events carry their JSON and may be
/// large, and InfluxDB refuses bodies over its `max-body-size` (25 MB by default).
pub const MAX_EVENT_BYTES_PER_WRITE: usize = 4 << 20;

const FLAG: &str = "--sink";
const KIND: &str = "the influxdb sink";
const ACCEPTED: &[&str] = &[
    "user",
    "pw",
    "db",
    "retention",
    "rpname",
    "withfields",
    "cluster_name",
    "secure",
    "insecuressl",
    "disable_counter_metrics",
    "concurrency",
    "buffer",
    "max_buffer_bytes",
];
const FORM: &str = "application/x-www-form-urlencoded";
const LINES: &str = "text/plain; charset=utf-8";

/// A password: kept out of `Debug` output, and so out of logs and errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The `retention` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retention {
    /// `0` (the default): leave the database's retention policies as they are.
    Keep,
    /// `INF`: keep points forever.
    Infinite,
    /// An InfluxQL duration literal of at least one hour (`48h`, `7d`, `2w`).
    Duration(String),
}

impl Retention {
    pub fn parse(s: &str) -> Result<Retention, String> {
        let bad = |why: &str| {
            format!(
                "option retention={s:?}: {why}; expected an InfluxDB duration of at least 1h \
                 (like 48h, 7d or 2w), INF to keep points forever, or 0 to leave the database's \
                 retention policies alone"
            )
        };
        if s == "0" {
            return Ok(Retention::Keep);
        }
        if s.eq_ignore_ascii_case("inf") {
            return Ok(Retention::Infinite);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad("not a number followed by a unit"))?;
        let unit_secs: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => return Err(bad("no unit")),
            _ => return Err(bad("unknown unit")),
        };
        // InfluxDB keeps durations as i64 nanoseconds.
        let secs = number.checked_mul(unit_secs).filter(|s| *s <= i64::MAX as u64 / 1_000_000_000);
        match secs {
            None => Err(bad("too long")),
            Some(secs) if secs < 3_600 => Err(bad("shorter than InfluxDB's minimum")),
            Some(_) => Ok(Retention::Duration(format!("{number}{unit}"))),
        }
    }

    /// The duration as InfluxQL wants it, or `None` for [`Retention::Keep`].
    fn influxql(&self) -> Option<&str> {
        match self {
            Retention::Keep => None,
            Retention::Infinite => Some("INF"),
            Retention::Duration(d) => Some(d),
        }
    }
}

/// Retry of transient failures: `attempts` tries in all, waiting `base * 2^n` (at most `cap`,
/// minus up to half of it at random so that many writers do not retry in step) between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempts: 5, base: Duration::from_millis(100), cap: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.cap);
        full / 2 + full.mul_f64(random_fraction() / 2.0)
    }
}

/// A number in [0, 1) that differs between calls; enough for jitter.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Where and how to write, from `--sink=influxdb:...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfluxConfig {
    /// `http(s)://host:port/` (with a path prefix if one was given).
    pub url: Url,
    pub user: String,
    pub password: Secret,
    pub db: String,
    pub retention: Retention,
    /// Name of the retention policy created for `retention` (Heapster's `rpname`).
    pub retention_policy: String,
    pub with_fields: bool,
    pub cluster_name: String,
    pub insecure_ssl: bool,
    pub disable_counter_metrics: bool,
    /// Chunks in flight at most.
    pub concurrency: usize,
    pub backoff: Backoff,
    /// For one request, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Where writes wait while InfluxDB is away (`buffer=`, `max_buffer_bytes=`).
    pub buffer: BufferConfig,
}

impl InfluxConfig {
    /// Parses `influxdb:http://host:8086?db=k8s&user=root&pw=root&...` with Heapster's options and
    /// defaults. The target may be `http(s)://host:port`, bare `host:port`, or empty
    /// (`localhost:8086`).
    pub fn from_uri(uri: &str) -> Result<InfluxConfig, ConfigError> {
        let rest = uri.strip_prefix("influxdb:").unwrap_or(uri);
        let (target, query) = match rest.split_once('?') {
            Some((target, query)) => (target, Some(query)),
            None => (rest, None),
        };
        let error = |reason: String| ConfigError::new(FLAG, uri, reason);
        let mut opts = UriOptions::parse(FLAG, uri, query);

        let secure = opts.bool_or("secure", false)?;
        let url = base_url(target, secure).map_err(error)?;
        let user = opts.string_or("user", "root");
        let password = Secret::new(opts.string_or("pw", "root"));
        let db = opts.string_or("db", "k8s");
        if db.is_empty() {
            return Err(error("option db is empty: expected a database name".into()));
        }
        let retention = Retention::parse(&opts.string_or("retention", "0")).map_err(error)?;
        let retention_policy = opts.string_or("rpname", "default");
        if retention_policy.is_empty() {
            return Err(error("option rpname is empty: expected a retention policy name".into()));
        }
        let with_fields = opts.bool_or("withfields", false)?;
        let cluster_name = opts.string_or("cluster_name", "default");
        let insecure_ssl = opts.bool_or("insecuressl", false)?;
        let disable_counter_metrics = opts.bool_or("disable_counter_metrics", false)?;
        let concurrency = opts.u64_or("concurrency", 1)?;
        if concurrency == 0 {
            return Err(error("option concurrency=0: expected at least 1".into()));
        }
        let buffer = BufferConfig::from_options(&mut opts, FLAG, uri)?;
        opts.finish(KIND, ACCEPTED)?;

        Ok(InfluxConfig {
            url,
            user,
            password,
            db,
            retention,
            retention_policy,
            with_fields,
            cluster_name,
            insecure_ssl,
            disable_counter_metrics,
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
            buffer,
        })
    }

    /// The disk buffer's folder name: the server and database, so two sinks never share one.
    pub fn buffer_name(&self) -> String {
        let raw = format!(
            "influxdb-{}-{}-{}",
            self.url.host_str().unwrap_or(""),
            self.url.port_or_known_default().unwrap_or(0),
            self.db
        );
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
    }

    fn line_options(&self) -> LineOptions {
        LineOptions {
            with_fields: self.with_fields,
            cluster_name: self.cluster_name.clone(),
            disable_counter_metrics: self.disable_counter_metrics,
        }
    }
}

/// A one-line summary for start-up logs; no password.
impl fmt::Display for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} db={} user={} retention={} withfields={} cluster_name={} concurrency={}",
            self.url,
            self.db,
            self.user,
            self.retention.influxql().unwrap_or("0"),
            self.with_fields,
            self.cluster_name,
            self.concurrency
        )
    }
}

fn base_url(target: &str, secure: bool) -> Result<Url, String> {
    let target = if target.is_empty() { "localhost:8086" } else { target };
    let shown = redact(target);
    let text = if target.contains("://") { target.to_string() } else { format!("http://{target}") };
    let mut url =
        Url::parse(&text).map_err(|e| format!("{shown:?} is not host:port or an http(s) URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{shown:?}: scheme {:?} not supported; expected http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown:?}: credentials in the URL are not used; give them as options user= and pw="
        ));
    }
    if secure && url.set_scheme("https").is_err() {
        return Err(format!("{shown:?}: cannot switch to https"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_fragment(None);
    Ok(url)
}

/// Why InfluxDB did not take something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InfluxError {
    #[error("cannot build the InfluxDB HTTP client: {0}")]
    Client(String),
    /// InfluxDB answered with an error status (given up on after retries for 5xx and 429).
    #[error("InfluxDB answered {status} to {action}: {message}")]
    Server { action: String, status: u16, message: String },
    /// A query statement failed (InfluxDB answers those with 200 and an error per statement).
    #[error("InfluxDB refused {action}: {message}")]
    Statement { action: String, message: String },
    #[error("InfluxDB did not answer {action} after {attempts} attempts: {message}")]
    Unreachable { action: String, attempts: u32, message: String },
    #[error("a write task failed: {0}")]
    Task(String),
    /// Part or all of a window was not written; `report` says what was.
    #[error("{} of {} points of the window not written: {cause}", report.points_dropped, report.points_written + report.points_dropped)]
    Window { report: WriteReport, cause: Box<InfluxError> },
}

/// What writing one window did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub points_written: usize,
    /// Refused by InfluxDB (partial writes) or given up on (errors, retries exhausted).
    pub points_dropped: usize,
    /// Never sent because InfluxDB cannot store them: NaN or infinite values, events without a
    /// time in InfluxDB's range.
    pub points_skipped: usize,
    /// Event states not sent because a newer state of the same event in the same batch has the
    /// same point (measurement, tags and time): InfluxDB would have kept only one of them.
    pub points_superseded: usize,
    /// HTTP requests made, retries and database set-up included.
    pub requests: usize,
}

/// An InfluxDB server as the sink talks to it; shared with the tasks writing chunks.
struct Endpoint {
    client: reqwest::Client,
    write_url: Url,
    query_url: Url,
    user: String,
    password: Secret,
    backoff: Backoff,
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl Endpoint {
    fn new(config: &InfluxConfig) -> Result<Endpoint, InfluxError> {
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
            .map_err(|e| InfluxError::Client(error_chain(&e)))?;
        let join = |path: &str| {
            config.url.join(path).map_err(|e| InfluxError::Client(format!("{}{path}: {e}", config.url)))
        };
        let mut write_url = join("write")?;
        write_url.query_pairs_mut().append_pair("db", &config.db).append_pair("precision", "ns");
        Ok(Endpoint {
            client,
            write_url,
            query_url: join("query")?,
            user: config.user.clone(),
            password: config.password.clone(),
            backoff: config.backoff.clone(),
        })
    }

    /// One request; the credentials travel in the `Authorization` header, never in the URL.
    async fn post(
        &self,
        url: &Url,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, reqwest::Error> {
        let response = self
            .client
            .post(url.clone())
            .basic_auth(&self.user, Some(self.password.expose()))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        Ok(Answer { status, body })
    }

    /// Posts, retrying 5xx, 429 and transport failures with backoff. Returns the answer (any
    /// other status included) or why it gave up, and the number of requests made.
    async fn post_retrying(
        &self,
        action: &str,
        url: &Url,
        content_type: &'static str,
        body: Bytes,
    ) -> (Result<Answer, InfluxError>, usize) {
        let attempts = self.backoff.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post(url, content_type, body.clone()).await {
                Ok(answer) if is_transient(answer.status) => InfluxError::Server {
                    action: action.to_string(),
                    status: answer.status.as_u16(),
                    message: server_message(&answer),
                },
                Ok(answer) => return (Ok(answer), attempt as usize),
                Err(e) if e.is_builder() => {
                    return (Err(InfluxError::Client(error_chain(&e))), attempt as usize);
                }
                Err(e) => InfluxError::Unreachable {
                    action: action.to_string(),
                    attempts: attempt,
                    message: error_chain(&e),
                },
            };
            if attempt >= attempts {
                return (Err(failure), attempt as usize);
            }
            let delay = self.backoff.delay(attempt);
            debug!(%failure, attempt, ?delay, "InfluxDB request failed; retrying");
            crate::telemetry::global().sink_retry("influxdb");
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs one InfluxQL statement.
    async fn query(&self, statement: &str, requests: &mut usize) -> Result<(), InfluxError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("q", statement).finish();
        let (result, n) = self.post_retrying(statement, &self.query_url, FORM, Bytes::from(body)).await;
        *requests += n;
        let answer = result?;
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

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// InfluxDB's `{"error": "..."}`, else the body as text, else the status' reason.
fn server_message(answer: &Answer) -> String {
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
fn statement_error(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["results"].as_array()?.iter().find_map(|r| r["error"].as_str().map(str::to_string))
}

/// `dropped=N` of a partial-write message.
fn dropped_count(message: &str) -> Option<usize> {
    let at = message.rfind("dropped=")?;
    let digits: String = message[at + 8..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Points a partial write did not store: `dropped=N` counts only points InfluxDB parsed and then
/// refused; lines it could not parse are listed, one `unable to parse '...'` each, and not in N.
fn refused_count(body: &str, points: usize) -> usize {
    let unparsed = body.matches("unable to parse '").count();
    (dropped_count(body).unwrap_or(points) + unparsed).min(points)
}

/// What became of one chunk.
#[derive(Default)]
struct ChunkOutcome {
    written: usize,
    dropped: usize,
    requests: usize,
    error: Option<InfluxError>,
    /// The database was missing on a first send: the chunk and its points, to send again.
    db_missing: Option<(Bytes, usize)>,
}

async fn write_chunk(endpoint: Arc<Endpoint>, body: Bytes, points: usize, resent: bool) -> ChunkOutcome {
    let (result, requests) = endpoint.post_retrying("write", &endpoint.write_url, LINES, body.clone()).await;
    let mut outcome = ChunkOutcome { requests, ..ChunkOutcome::default() };
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            error!(points, error = %e, "InfluxDB write given up; points dropped");
            outcome.dropped = points;
            outcome.error = Some(e);
            return outcome;
        }
    };
    if answer.status.is_success() {
        outcome.written = points;
        return outcome;
    }
    let message = server_message(&answer);
    if answer.status == StatusCode::BAD_REQUEST && message.contains("partial write") {
        let dropped = refused_count(&answer.body, points);
        warn!(dropped, points, message = %message, "InfluxDB dropped part of a write");
        outcome.written = points - dropped;
        outcome.dropped = dropped;
        return outcome;
    }
    if answer.status == StatusCode::NOT_FOUND && message.contains("database not found") && !resent {
        outcome.db_missing = Some((body, points));
        return outcome;
    }
    error!(points, status = answer.status.as_u16(), message = %message, "InfluxDB refused a write; points dropped");
    outcome.dropped = points;
    outcome.error =
        Some(InfluxError::Server { action: "write".to_string(), status: answer.status.as_u16(), message });
    outcome
}

/// Lines to write, produced one chunk at a time so that memory stays bounded.
trait ChunkSource {
    /// Appends the next chunk to `out` and says what it holds; `None` when nothing is left.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats>;
    /// What all the chunks hold, for a batch given up before any was made.
    fn total(&self) -> EncodeStats;
}

/// A metric window's points.
struct MetricChunks<'a> {
    encoder: &'a mut LineEncoder,
    window: Window<'a>,
    cursor: Cursor,
}

impl ChunkSource for MetricChunks<'_> {
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats> {
        if self.cursor.is_done(self.window.batch()) {
            return None;
        }
        let stats =
            self.encoder.encode_chunk(self.window.batch(), &mut self.cursor, MAX_POINTS_PER_WRITE, out);
        self.window.release(&mut self.cursor);
        Some(stats)
    }

    fn total(&self) -> EncodeStats {
        self.encoder.count(self.window.batch())
    }
}

/// Events' points: at most [`MAX_POINTS_PER_WRITE`] and about [`MAX_EVENT_BYTES_PER_WRITE`] a
/// chunk.
struct EventChunks<'a> {
    encoder: &'a EventEncoder,
    events: &'a [&'a Event],
    next: usize,
}

impl ChunkSource for EventChunks<'_> {
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Option<EncodeStats> {
        if self.next >= self.events.len() {
            return None;
        }
        let mut stats = EncodeStats::default();
        while let Some(event) = self.events.get(self.next)
            && stats.written < MAX_POINTS_PER_WRITE
            && (stats.written == 0 || out.len() < MAX_EVENT_BYTES_PER_WRITE)
        {
            self.next += 1;
            match self.encoder.encode(event, out) {
                Ok(()) => stats.written += 1,
                // Selected events all have a time; counted should that ever change.
                Err(_) => stats.skipped += 1,
            }
        }
        Some(stats)
    }

    fn total(&self) -> EncodeStats {
        EncodeStats { written: self.events.len(), skipped: 0 }
    }
}

/// The server side of the sink: where points go and whether the database is set up.
struct Writer {
    config: InfluxConfig,
    endpoint: Arc<Endpoint>,
    /// The database (and retention policy) were set up.
    db_ready: bool,
}

/// The InfluxDB sink for metric windows and events.
pub struct InfluxSink {
    writer: Writer,
    encoder: LineEncoder,
    event_encoder: EventEncoder,
}

impl InfluxSink {
    pub fn new(config: InfluxConfig) -> Result<InfluxSink, InfluxError> {
        let endpoint = Arc::new(Endpoint::new(&config)?);
        let encoder = LineEncoder::new(config.line_options());
        let event_encoder = EventEncoder::new(config.with_fields, config.cluster_name.clone());
        Ok(InfluxSink { writer: Writer { config, endpoint, db_ready: false }, encoder, event_encoder })
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.writer.config
    }

    /// Creates the database and retention policy. Optional: the first write does it too.
    pub async fn start(&mut self) -> Result<(), InfluxError> {
        let mut requests = 0;
        self.writer.ensure_database(&mut requests).await
    }

    /// Writes one window. `Ok` when InfluxDB took every chunk (points it refused in a partial
    /// write are counted and logged, not an error); otherwise the error holds the report.
    pub async fn write<'a>(&mut self, window: impl Into<Window<'a>>) -> Result<WriteReport, InfluxError> {
        let mut chunks =
            MetricChunks { encoder: &mut self.encoder, window: window.into(), cursor: Cursor::default() };
        self.writer.send(&mut chunks, WriteReport::default(), "window").await
    }

    /// Writes events, one point per distinct state, in Heapster's event schema (see the module
    /// doc). Of states that would share a point, only the one with the highest count is sent
    /// (`points_superseded`); events without a storable time are skipped and logged
    /// (`points_skipped`). Same success and error rules as [`InfluxSink::write`].
    pub async fn write_events(&mut self, events: &[Event]) -> Result<WriteReport, InfluxError> {
        let selection = self.event_encoder.select(events);
        let report = WriteReport {
            points_skipped: selection.unwritable,
            points_superseded: selection.superseded,
            ..WriteReport::default()
        };
        if selection.events.is_empty() {
            return Ok(report);
        }
        let mut chunks = EventChunks { encoder: &self.event_encoder, events: &selection.events, next: 0 };
        self.writer.send(&mut chunks, report, "events").await
    }
}

impl Writer {
    /// Sends every chunk of `chunks`, at most `concurrency` at a time, adding to `report`.
    async fn send(
        &mut self,
        chunks: &mut impl ChunkSource,
        mut report: WriteReport,
        what: &'static str,
    ) -> Result<WriteReport, InfluxError> {
        let started = Instant::now();
        if !self.db_ready
            && let Err(cause) = self.ensure_database(&mut report.requests).await
        {
            let stats = chunks.total();
            report.points_dropped += stats.written;
            report.points_skipped += stats.skipped;
            error!(points = stats.written, error = %cause, "InfluxDB database not ready; {what} dropped");
            return Err(InfluxError::Window { report, cause: Box::new(cause) });
        }

        let mut first_error = None;
        let mut recreated = false;
        let mut done = false;
        let mut in_flight = JoinSet::new();
        let mut points_of = HashMap::new();
        let mut body_capacity = 0;
        loop {
            while !done && in_flight.len() < self.config.concurrency {
                let mut body = Vec::with_capacity(body_capacity);
                let Some(stats) = chunks.next_chunk(&mut body) else {
                    done = true;
                    break;
                };
                report.points_skipped += stats.skipped;
                if stats.written > 0 {
                    body_capacity = body_capacity.max(body.len());
                    let task = write_chunk(self.endpoint.clone(), Bytes::from(body), stats.written, false);
                    points_of.insert(in_flight.spawn(task).id(), stats.written);
                }
            }
            let Some(joined) = in_flight.join_next_with_id().await else { break };
            let outcome = match joined {
                Ok((id, outcome)) => {
                    points_of.remove(&id);
                    outcome
                }
                Err(e) => {
                    let points = points_of.remove(&e.id()).unwrap_or(0);
                    error!(points, error = %e, "an InfluxDB write task failed; points dropped");
                    ChunkOutcome {
                        dropped: points,
                        error: Some(InfluxError::Task(e.to_string())),
                        ..Default::default()
                    }
                }
            };
            report.requests += outcome.requests;
            report.points_written += outcome.written;
            report.points_dropped += outcome.dropped;
            if let Some(e) = outcome.error {
                first_error.get_or_insert(e);
            }
            if let Some((body, points)) = outcome.db_missing {
                // Dropped by an operator or lost by InfluxDB: create it again, once a batch.
                if !recreated {
                    recreated = true;
                    warn!(db = %self.config.db, "InfluxDB database not found; creating it again");
                    self.db_ready = false;
                    if let Err(e) = self.ensure_database(&mut report.requests).await {
                        error!(error = %e, "InfluxDB database could not be created again");
                        first_error.get_or_insert(e);
                    }
                }
                if self.db_ready {
                    let task = write_chunk(self.endpoint.clone(), body, points, true);
                    points_of.insert(in_flight.spawn(task).id(), points);
                } else {
                    report.points_dropped += points;
                }
            }
        }
        debug!(
            written = report.points_written,
            dropped = report.points_dropped,
            skipped = report.points_skipped,
            superseded = report.points_superseded,
            requests = report.requests,
            elapsed = ?started.elapsed(),
            "InfluxDB {what} written"
        );
        match first_error {
            None => Ok(report),
            Some(cause) => Err(InfluxError::Window { report, cause: Box::new(cause) }),
        }
    }

    /// `CREATE DATABASE`, then the retention policy if one was asked for (created, or altered if
    /// it exists with other settings). A user without admin rights gets 403 here: warn and go on,
    /// the database may well exist.
    async fn ensure_database(&mut self, requests: &mut usize) -> Result<(), InfluxError> {
        let endpoint = &self.endpoint;
        let db = quote_ident(&self.config.db);
        tolerate_forbidden(endpoint.query(&format!("CREATE DATABASE {db}"), requests).await)?;
        if let Some(duration) = self.config.retention.influxql() {
            let rp = quote_ident(&self.config.retention_policy);
            let create =
                format!("CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1 DEFAULT");
            match endpoint.query(&create, requests).await {
                Err(InfluxError::Statement { message, .. })
                    if message.contains("already exists") || message.contains("conflicts") =>
                {
                    let alter = format!("ALTER RETENTION POLICY {rp} ON {db} DURATION {duration} DEFAULT");
                    tolerate_forbidden(endpoint.query(&alter, requests).await)?;
                    info!(db = %self.config.db, policy = %self.config.retention_policy, duration, "InfluxDB retention policy altered");
                }
                other => tolerate_forbidden(other)?,
            }
        }
        self.db_ready = true;
        info!(url = %self.config.url, db = %self.config.db, "InfluxDB database ready");
        Ok(())
    }
}

fn tolerate_forbidden(result: Result<(), InfluxError>) -> Result<(), InfluxError> {
    match result {
        Err(InfluxError::Server { status: 403, action, message }) => {
            warn!(%action, %message, "InfluxDB user may not run this; assuming it was done already");
            Ok(())
        }
        other => other,
    }
}

/// An InfluxQL identifier in double quotes.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The InfluxDB sink's two halves for [`super::queue`]: the encoders, and a writer that makes one
/// attempt per chunk (the queue retries).
pub fn buffered(mut config: InfluxConfig) -> Result<(InfluxEncode, InfluxDeliver), InfluxError> {
    config.backoff.attempts = 1;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InfluxError::Client(format!("cannot start the sink's runtime: {e}")))?;
    let endpoint = Arc::new(Endpoint::new(&config)?);
    let encode = InfluxEncode {
        encoder: LineEncoder::new(config.line_options()),
        events: EventEncoder::new(config.with_fields, config.cluster_name.clone()),
    };
    Ok((encode, InfluxDeliver { writer: Writer { config, endpoint, db_ready: false }, runtime }))
}

/// Encodes windows and events as line-protocol chunks of at most [`MAX_POINTS_PER_WRITE`] points.
pub struct InfluxEncode {
    encoder: LineEncoder,
    events: EventEncoder,
}

impl Encode for InfluxEncode {
    fn metrics(&mut self, window: Window<'_>, emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let before = self.encoder.shortened();
        let mut chunks = MetricChunks { encoder: &mut self.encoder, window, cursor: Cursor::default() };
        let skipped = emit_all(&mut chunks, emit);
        Encoded { skipped, shortened: self.encoder.shortened() - before }
    }

    fn events(&mut self, events: &[Event], emit: &mut dyn FnMut(Chunk)) -> Encoded {
        let selection = self.events.select(events);
        let mut chunks = EventChunks { encoder: &self.events, events: &selection.events, next: 0 };
        let skipped = emit_all(&mut chunks, emit) + selection.unwritable as u64;
        Encoded { skipped, shortened: 0 }
    }
}

/// Hands every chunk to `emit`; returns the points skipped.
fn emit_all(chunks: &mut impl ChunkSource, emit: &mut dyn FnMut(Chunk)) -> u64 {
    let mut capacity = 0;
    let mut skipped = 0;
    loop {
        let mut body = Vec::with_capacity(capacity);
        let Some(stats) = chunks.next_chunk(&mut body) else { break };
        skipped += stats.skipped as u64;
        if stats.written > 0 {
            capacity = capacity.max(body.len());
            emit(Chunk { body: Bytes::from(body), points: stats.written as u64 });
        }
    }
    skipped
}

/// Writes chunks to InfluxDB, `concurrency` at a time, creating the database when needed.
pub struct InfluxDeliver {
    writer: Writer,
    runtime: tokio::runtime::Runtime,
}

impl Deliver for InfluxDeliver {
    fn send(&mut self, chunks: &[Chunk]) -> Vec<Sent> {
        let writer = &mut self.writer;
        self.runtime.block_on(async {
            if !writer.db_ready {
                let mut requests = 0;
                if let Err(e) = writer.ensure_database(&mut requests).await {
                    return chunks.iter().map(|_| Sent::Retry(e.to_string())).collect();
                }
            }
            let mut tasks = JoinSet::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let endpoint = Arc::clone(&writer.endpoint);
                let (body, points) = (chunk.body.clone(), chunk.points as usize);
                tasks.spawn(async move { (i, write_once(&endpoint, body, points).await) });
            }
            let mut outcomes: Vec<Sent> =
                chunks.iter().map(|_| Sent::Retry("write task failed".into())).collect();
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, outcome)) = joined
                    && let Some(slot) = outcomes.get_mut(i)
                {
                    *slot = outcome;
                }
            }
            if outcomes.iter().any(|o| matches!(o, Sent::Retry(m) if m.contains("database not found"))) {
                warn!(db = %writer.config.db, "InfluxDB database not found; creating it again");
                writer.db_ready = false;
            }
            outcomes
        })
    }

    fn parallel(&self) -> usize {
        self.writer.config.concurrency
    }
}

/// One attempt at writing a chunk, classified for the queue.
async fn write_once(endpoint: &Endpoint, body: Bytes, points: usize) -> Sent {
    let (result, _) = endpoint.post_retrying("write", &endpoint.write_url, LINES, body).await;
    let answer = match result {
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

#[cfg(test)]
mod tests {
    use crate::sinks::MetricBatch;
    use heapster_dataflows::catalog::Kind;
    use heapster_dataflows::model::{LabeledMetric, LabeledValue, Resource};
    use heapster_dataflows::{EntityKey, LabelId, LabeledMetricId, MetricId, MetricSet, Value};
    use serde_json::Value as Json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use heapster_testbed::testkit::influxd::{Influxd, free_port};

    const T: u64 = 1_700_000_000_000;

    fn fast_backoff() -> Backoff {
        Backoff { attempts: 3, base: Duration::from_millis(1), cap: Duration::from_millis(4) }
    }

    fn sink_for(url: &str, options: &str) -> InfluxSink {
        let mut config = InfluxConfig::from_uri(&format!("influxdb:{url}?{options}")).unwrap();
        config.backoff = fast_backoff();
        InfluxSink::new(config).unwrap()
    }

    /// Rows of the first series of a query, as column -> value maps.
    fn rows(influxd: &Influxd, db: &str, q: &str) -> Vec<serde_json::Map<String, Json>> {
        let json = influxd.query(db, q).unwrap();
        let series = &json["results"][0]["series"][0];
        let columns: Vec<String> = series["columns"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        series["values"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|row| columns.iter().cloned().zip(row.as_array().unwrap().iter().cloned()).collect())
            .collect()
    }

    /// The first column of every row of every series, as strings.
    fn names(influxd: &Influxd, db: &str, q: &str) -> Vec<String> {
        let json = influxd.query(db, q).unwrap();
        let mut out = Vec::new();
        for series in json["results"][0]["series"].as_array().unwrap_or(&Vec::new()) {
            for row in series["values"].as_array().unwrap() {
                out.push(row[0].as_str().unwrap().to_string());
            }
        }
        out
    }

    fn field_types(influxd: &Influxd, db: &str, measurement: &str) -> Vec<(String, String)> {
        rows(influxd, db, &format!("SHOW FIELD KEYS FROM {}", quote_ident(measurement)))
            .into_iter()
            .map(|r| {
                (r["fieldKey"].as_str().unwrap().to_string(), r["fieldType"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn small_batch() -> MetricBatch {
        let mut node = MetricSet::new(EntityKey::Node { node: "node-1".into() });
        node.labels.set(LabelId::Nodename, "node-1".into());
        node.labels.set(LabelId::Hostname, "host-1".into());
        node.labels.set(LabelId::Schedulable, "true".into());
        node.values.set(MetricId::CpuUsageRate, Value::Int(250));
        node.values.set(MetricId::MemoryNodeUtilization, Value::Float(0.5));

        let mut pod = MetricSet::new(EntityKey::PodContainer {
            ns: "kube-system".into(),
            pod: "dns-1".into(),
            container: "dnsmasq".into(),
        });
        pod.labels.set(LabelId::NamespaceName, "kube-system".into());
        pod.labels.set(LabelId::PodName, "dns-1".into());
        pod.labels.set(LabelId::ContainerName, "dnsmasq".into());
        pod.labels.set(LabelId::Labels, "app:dns,tier:x y".into());
        pod.values.set(MetricId::MemoryUsage, Value::Int(1024));
        pod.labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(LabeledMetricId::FsUsage),
            resource: Resource::Id("Volume:my vol".into()),
            value: Value::Int(5),
        });
        MetricBatch { time: T, sets: vec![node, pod] }
    }

    fn custom(name: &str, value: Value) -> LabeledValue {
        LabeledValue {
            metric: LabeledMetric::custom(name.into(), Kind::Gauge),
            resource: Resource::None,
            value,
        }
    }

    #[tokio::test]
    async fn writes_heapsters_schema_and_reads_back() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let report = sink.write(&small_batch()).await.unwrap();
        assert_eq!(
            report,
            WriteReport {
                points_written: 4,
                points_dropped: 0,
                points_skipped: 0,
                points_superseded: 0,
                requests: 2
            },
            "one CREATE DATABASE and one write"
        );

        assert_eq!(
            names(&influxd, "k8s", "SHOW MEASUREMENTS"),
            ["cpu/usage_rate", "filesystem/usage", "memory/node_utilization", "memory/usage"]
        );
        let rows = rows(&influxd, "k8s", r#"SELECT * FROM "filesystem/usage""#);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let expected_time = jiff::Timestamp::from_millisecond(T as i64).unwrap().to_string();
        assert_eq!(row["time"], Json::from(expected_time));
        assert_eq!(row["labels"], "app:dns,tier:x y");
        assert_eq!(row["resource_id"], "Volume:my vol");
        assert_eq!(row["namespace_name"], "kube-system");
        assert_eq!(row["type"], "pod_container");
        assert_eq!(row["cluster_name"], "default");
        assert_eq!(row["value"], 5);

        let node_tags = names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "cpu/usage_rate""#);
        assert_eq!(node_tags, ["cluster_name", "nodename", "schedulable", "type"], "hostname is not a tag");
        assert_eq!(field_types(&influxd, "k8s", "memory/usage"), [("value".into(), "integer".into())]);
        assert_eq!(
            field_types(&influxd, "k8s", "memory/node_utilization"),
            [("value".into(), "float".into())]
        );
    }

    #[tokio::test]
    async fn with_fields_groups_by_measurement_and_floats_round_trip() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=grouped&withfields=true&cluster_name=prod%20east");
        let mut batch = small_batch();
        // Forms ryu writes that must parse: exponents, negative zero, integral floats.
        let floats = [1e20, 1.5e-7, -0.0, 123.0];
        for (i, f) in floats.iter().enumerate() {
            batch.sets[0].labeled.push(custom(&format!("custom/f{i}"), Value::Float(*f)));
        }
        let report = sink.write(&batch).await.unwrap();
        assert_eq!(report.points_written, 4 + floats.len());

        assert_eq!(
            names(&influxd, "grouped", "SHOW MEASUREMENTS"),
            ["cpu", "custom", "filesystem", "memory"]
        );
        assert_eq!(
            field_types(&influxd, "grouped", "memory"),
            [("node_utilization".into(), "float".into()), ("usage".into(), "integer".into())]
        );
        let custom_rows = rows(&influxd, "grouped", r#"SELECT f0, f1, f2, f3, cluster_name FROM "custom""#);
        assert_eq!(custom_rows.len(), 1);
        for (i, f) in floats.iter().enumerate() {
            assert_eq!(custom_rows[0][&format!("f{i}")].as_f64(), Some(*f));
        }
        assert_eq!(custom_rows[0]["cluster_name"], "prod east");
    }

    #[tokio::test]
    async fn creates_database_and_honours_retention() {
        let influxd = Influxd::start().unwrap();
        let policies = |influxd: &Influxd| -> Vec<(String, String, bool)> {
            rows(influxd, "", r#"SHOW RETENTION POLICIES ON "k8s""#)
                .into_iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap().into(),
                        r["duration"].as_str().unwrap().into(),
                        r["default"] == true,
                    )
                })
                .collect()
        };
        let mut sink = sink_for(&influxd.url(), "retention=48h");
        sink.start().await.unwrap();
        assert!(
            policies(&influxd).contains(&("default".into(), "48h0m0s".into(), true)),
            "{:?}",
            policies(&influxd)
        );

        // Another duration later: the policy is altered, not duplicated.
        let mut sink = sink_for(&influxd.url(), "retention=1w");
        // Points must be recent: older than the policy's duration, InfluxDB drops them.
        let mut batch = small_batch();
        batch.time = jiff::Timestamp::now().as_millisecond() as u64;
        let report = sink.write(&batch).await.unwrap();
        assert_eq!(report.points_written, 4);
        let now = policies(&influxd);
        assert!(now.contains(&("default".into(), "168h0m0s".into(), true)), "{now:?}");
        assert_eq!(now.iter().filter(|p| p.0 == "default").count(), 1);
        let count = rows(&influxd, "k8s", r#"SELECT count(value) FROM "default"."memory/usage""#);
        assert_eq!(count[0]["count"], 1, "points go to the default policy");

        // The database disappears under the sink: it is created again and the window written.
        influxd.query("", r#"DROP DATABASE "k8s""#).unwrap();
        let report = sink.write(&batch).await.unwrap();
        assert_eq!(report.points_written, 4);
        assert_eq!(report.requests, 4, "failed write, CREATE DATABASE, CREATE RETENTION POLICY, write again");
        assert_eq!(rows(&influxd, "k8s", r#"SELECT count(value) FROM "memory/usage""#)[0]["count"], 1);
    }

    #[tokio::test]
    async fn partial_write_is_counted_and_the_rest_written() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let mut first = MetricBatch { time: T, sets: vec![MetricSet::new(EntityKey::Cluster)] };
        first.sets[0].labeled.push(custom("custom/conflict", Value::Int(1)));
        sink.write(&first).await.unwrap();

        let mut second = small_batch();
        second.sets[1].labeled.push(custom("custom/conflict", Value::Float(1.5)));
        let report = sink.write(&second).await.unwrap();
        assert_eq!(
            report,
            WriteReport {
                points_written: 4,
                points_dropped: 1,
                points_skipped: 0,
                points_superseded: 0,
                requests: 1
            }
        );
        for m in ["cpu/usage_rate", "memory/usage", "filesystem/usage", "memory/node_utilization"] {
            let count = rows(&influxd, "k8s", &format!("SELECT count(value) FROM {}", quote_ident(m)));
            assert_eq!(count[0]["count"], 1, "{m}");
        }
        assert_eq!(field_types(&influxd, "k8s", "custom/conflict"), [("value".into(), "integer".into())]);
    }

    /// Pod labels of about 70 KiB as Heapster's `labels` tag: `k0:v0,k1:v1,...`.
    fn huge_labels() -> String {
        (0..5_000).map(|i| format!("label-{i}:value-{i}")).collect::<Vec<_>>().join(",")
    }

    #[tokio::test]
    async fn a_series_key_over_influxdbs_limit_is_shortened_not_refused() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=k8s");
        let mut batch = small_batch();
        let labels = huge_labels();
        assert!(labels.len() > 65_535);
        batch.sets[1].labels.set(LabelId::Labels, labels.as_str().into());
        let report = sink.write(&batch).await.unwrap();
        assert_eq!((report.points_written, report.points_dropped, report.points_skipped), (4, 0, 0));
        assert_eq!(sink.encoder.shortened(), 1);
        let rows = rows(&influxd, "k8s", r#"SELECT * FROM "memory/usage""#);
        assert_eq!(rows.len(), 1);
        let stored = rows[0]["labels"].as_str().unwrap();
        assert!(stored.len() < 65_535 && stored.len() > 55_000, "{}", stored.len());
        assert!(labels.starts_with(stored) && labels[stored.len()..].starts_with(','), "cut at a label");
    }

    #[tokio::test]
    async fn lines_influxdb_could_not_parse_are_counted_as_refused() {
        let influxd = Influxd::start().unwrap();
        let sink = sink_for(&influxd.url(), "db=k8s");
        influxd.query("", "CREATE DATABASE k8s").unwrap();
        let long = "x".repeat(70_000);
        let body = format!("m,a=b value=1 1\nm,l={long} value=2 1\nm,a=c value=3 1\nm,l=y{long} value=4 1\n");
        let outcome = write_once(&sink.writer.endpoint, Bytes::from(body), 4).await;
        assert_eq!(outcome, Sent::Written { refused: 2 }, "InfluxDB says dropped=0 for unparsable lines");
        assert_eq!(rows(&influxd, "k8s", "SELECT count(value) FROM m")[0]["count"], 2);
    }

    #[tokio::test]
    async fn wrong_password_fails_with_influxdbs_message_without_retry() {
        let influxd = Influxd::start_with_auth("admin", "right-one").unwrap();
        let mut sink = sink_for(&influxd.url(), "user=admin&pw=hunter2");
        let err = sink.write(&small_batch()).await.unwrap_err();
        let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
        assert_eq!(
            report,
            &WriteReport {
                points_written: 0,
                points_dropped: 4,
                points_skipped: 0,
                points_superseded: 0,
                requests: 1
            }
        );
        assert!(
            matches!(&**cause, InfluxError::Server { status: 401, message, .. } if message == "authorization failed"),
            "{cause:?}"
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"));

        // A refused large write (the password changed after the database was set up) still
        // reports InfluxDB's answer, although InfluxDB answers before reading the body.
        let mut sink = sink_for(&influxd.url(), "user=admin&pw=hunter2");
        sink.writer.db_ready = true;
        let err = sink.write(&many_nodes(5_000)).await.unwrap_err();
        let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
        assert_eq!((report.points_dropped, report.requests), (25_000, 3), "{cause:?}");
        assert!(matches!(&**cause, InfluxError::Server { status: 401, .. }), "{cause:?}");

        let mut sink = sink_for(&influxd.url(), "user=admin&pw=right-one");
        assert_eq!(sink.write(&small_batch()).await.unwrap().points_written, 4);
    }

    /// `nodes` node sets of five integer metrics each.
    fn many_nodes(nodes: i64) -> MetricBatch {
        let metrics = [
            MetricId::CpuUsageRate,
            MetricId::MemoryUsage,
            MetricId::MemoryRss,
            MetricId::MemoryCache,
            MetricId::MemoryWorkingSet,
        ];
        let sets = (0..nodes)
            .map(|i| {
                let node: heapster_dataflows::Name = format!("node-{i}").as_str().into();
                let mut set = MetricSet::new(EntityKey::Node { node: node.clone() });
                // Tags come from labels: without a distinct one, points would overwrite each other.
                set.labels.set(LabelId::Nodename, node);
                for (k, m) in metrics.iter().enumerate() {
                    set.values.set(*m, Value::Int(i * 10 + k as i64));
                }
                set
            })
            .collect();
        MetricBatch { time: T, sets }
    }

    #[tokio::test]
    async fn large_window_goes_in_chunks_of_ten_thousand() {
        let influxd = Influxd::start().unwrap();
        let mut sink = sink_for(&influxd.url(), "db=big&concurrency=2");
        sink.start().await.unwrap();
        let batch = many_nodes(5_000);
        assert_eq!(batch.point_count(), 25_000);
        let report = sink.write(&batch).await.unwrap();
        assert_eq!(
            report,
            WriteReport {
                points_written: 25_000,
                points_dropped: 0,
                points_skipped: 0,
                points_superseded: 0,
                requests: 3
            }
        );
        let json = influxd.query("big", "SELECT count(value) FROM /.*/").unwrap();
        let series = json["results"][0]["series"].as_array().unwrap();
        let total: i64 = series.iter().map(|s| s["values"][0][1].as_i64().unwrap()).sum();
        assert_eq!(series.len(), 5);
        assert_eq!(total, 25_000);
    }

    #[tokio::test]
    async fn down_server_is_retried_then_the_window_counted_dropped() {
        let port = free_port().unwrap();
        let mut sink = sink_for(&format!("http://127.0.0.1:{port}"), "");
        let started = Instant::now();
        let err = sink.write(&small_batch()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
        assert_eq!(
            report,
            &WriteReport {
                points_written: 0,
                points_dropped: 4,
                points_skipped: 0,
                points_superseded: 0,
                requests: 3
            }
        );
        assert!(matches!(&**cause, InfluxError::Unreachable { attempts: 3, .. }), "{cause:?}");
        assert!(err.to_string().contains("4 of 4 points"), "{err}");
    }

    /// Answers requests in order with `script`'s (status, body), recording each request.
    async fn scripted_server(
        script: Vec<(u16, &'static str)>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (status, body) in script {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() >= length || n == 0 {
                            break;
                        }
                    }
                }
                seen.push(String::from_utf8_lossy(&request).into_owned());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
            seen
        });
        (port, handle)
    }

    #[tokio::test]
    async fn retries_5xx_and_429_then_succeeds_with_credentials_only_in_the_header() {
        let ok_query = r#"{"results":[{"statement_id":0}]}"#;
        let (port, server) =
            scripted_server(vec![(200, ok_query), (503, r#"{"error":"busy"}"#), (429, ""), (204, "")]).await;
        let mut sink = sink_for(&format!("http://127.0.0.1:{port}"), "user=me&pw=s3cret");
        let report = sink.write(&small_batch()).await.unwrap();
        assert_eq!(
            report,
            WriteReport {
                points_written: 4,
                points_dropped: 0,
                points_skipped: 0,
                points_superseded: 0,
                requests: 4
            }
        );
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /query HTTP/1.1"), "{}", seen[0]);
        assert!(seen[0].ends_with("q=CREATE+DATABASE+%22k8s%22"), "{}", seen[0]);
        for request in &seen[1..] {
            assert!(request.starts_with("POST /write?db=k8s&precision=ns HTTP/1.1"), "{request}");
            assert!(request.contains("cpu/usage_rate,cluster_name=default,"), "{request}");
        }
        // base64("me:s3cret")
        assert!(seen.iter().all(|r| r.to_ascii_lowercase().contains("authorization: basic bwu6cznjcmv0")));
        assert!(seen.iter().all(|r| !r.lines().next().unwrap().contains("s3cret")));
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_keep_the_servers_message() {
        let (port, server) = scripted_server(vec![
            (200, r#"{"results":[{"statement_id":0}]}"#),
            (400, r#"{"error":"unable to parse 'x': bad timestamp"}"#),
        ])
        .await;
        let mut sink = sink_for(&format!("http://127.0.0.1:{port}"), "");
        let err = sink.write(&small_batch()).await.unwrap_err();
        let InfluxError::Window { report, cause } = &err else { panic!("{err:?}") };
        assert_eq!(report.requests, 2);
        assert_eq!(report.points_dropped, 4);
        assert_eq!(
            **cause,
            InfluxError::Server {
                action: "write".into(),
                status: 400,
                message: "unable to parse 'x': bad timestamp".into()
            }
        );
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[test]
    fn config_defaults_are_heapsters() {
        let c = InfluxConfig::from_uri("influxdb:").unwrap();
        assert_eq!(c.url.as_str(), "http://localhost:8086/");
        assert_eq!((c.user.as_str(), c.password.expose(), c.db.as_str()), ("root", "root", "k8s"));
        assert_eq!(c.retention, Retention::Keep);
        assert_eq!(c.retention_policy, "default");
        assert!(!c.with_fields && !c.insecure_ssl && !c.disable_counter_metrics);
        assert_eq!(c.cluster_name, "default");
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.backoff, Backoff::default());

        let bare = InfluxConfig::from_uri("influxdb:monitoring-influxdb:8086").unwrap();
        assert_eq!(bare.url.as_str(), "http://monitoring-influxdb:8086/");
        let https = InfluxConfig::from_uri("influxdb:https://h:8443").unwrap();
        assert_eq!(https.url.as_str(), "https://h:8443/");
    }

    #[test]
    fn config_takes_every_option() {
        let c = InfluxConfig::from_uri(
            "influxdb:http://influx.example:9999/prefix?db=metrics&user=heap&pw=pass&retention=7d&rpname=keep\
             &withfields=true&cluster_name=prod&secure=true&insecuressl=1&disable_counter_metrics=TRUE&concurrency=4",
        )
        .unwrap();
        assert_eq!(c.url.as_str(), "https://influx.example:9999/prefix/");
        assert_eq!((c.user.as_str(), c.password.expose(), c.db.as_str()), ("heap", "pass", "metrics"));
        assert_eq!(c.retention, Retention::Duration("7d".into()));
        assert_eq!(c.retention_policy, "keep");
        assert!(c.with_fields && c.insecure_ssl && c.disable_counter_metrics);
        assert_eq!(c.cluster_name, "prod");
        assert_eq!(c.concurrency, 4);
        let endpoint = Endpoint::new(&c).unwrap();
        assert_eq!(
            endpoint.write_url.as_str(),
            "https://influx.example:9999/prefix/write?db=metrics&precision=ns"
        );
        assert_eq!(endpoint.query_url.as_str(), "https://influx.example:9999/prefix/query");
    }

    #[test]
    fn config_rejects_bad_values_naming_them() {
        let reason = |uri: &str| InfluxConfig::from_uri(uri).unwrap_err().reason;
        assert!(reason("influxdb:h:1?withfields=maybe").contains("withfields=\"maybe\""));
        assert!(reason("influxdb:h:1?secure=yes").contains("secure"));
        assert!(reason("influxdb:h:1?concurrency=0").contains("concurrency"));
        assert!(reason("influxdb:h:1?concurrency=-2").contains("concurrency"));
        assert!(reason("influxdb:h:1?db=").contains("db"));
        assert!(reason("influxdb:ftp://h:1").contains("scheme"));
        let unknown = reason("influxdb:h:1?bogus=1");
        assert!(
            unknown.contains("\"bogus\"")
                && unknown.contains("cluster_name")
                && unknown.contains("concurrency")
        );
        for bad in ["48", "1x", "30m", "-1h", "h", "1.5h", "99999999999w"] {
            let r = reason(&format!("influxdb:h:1?retention={bad}"));
            assert!(r.contains("retention") && r.contains("48h"), "{bad}: {r}");
        }
        for good in ["1h", "48h", "7d", "2w", "3600s", "INF", "inf", "0"] {
            assert!(Retention::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn password_never_shows() {
        let c = InfluxConfig::from_uri("influxdb:http://h:8086?pw=hunter2&user=u").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_string().contains("hunter2"));
        for uri in [
            "influxdb:http://h:8086?pw=hunter2&bogus=1",
            "influxdb:http://h:8086?pw=hunter2&withfields=x",
            "influxdb:http://u:hunter2@h:8086",
            "influxdb:http://u:hunter2@h h:8086",
        ] {
            let err = InfluxConfig::from_uri(uri).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff { attempts: 5, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            let d = b.delay(attempt);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let spread: std::collections::HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn reads_partial_write_counts() {
        assert_eq!(dropped_count("partial write: field type conflict: ... dropped=12"), Some(12));
        assert_eq!(dropped_count("partial write: points beyond retention policy dropped=3"), Some(3));
        assert_eq!(dropped_count("partial write"), None);
    }

    mod events {
        use heapster_dataflows::Event;
        use serde_json::Value as Json;

        use super::*;
        use crate::sinks::events::tests::{LAST_MS, pulled, raw_of, service_event};

        const MESSAGE: &str = "Back-off pulling image \"reg/app:1\"\nC:\\data\r\n\ttab é";

        fn rfc3339(ms: i64) -> String {
            jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
        }

        fn count(influxd: &Influxd, db: &str, measurement: &str, field: &str) -> i64 {
            let q = format!("SELECT count({field}) FROM {}", quote_ident(measurement));
            rows(influxd, db, &q).first().map_or(0, |r| r["count"].as_i64().unwrap())
        }

        /// The `log/events` rows, with the JSON value parsed.
        fn log_events(influxd: &Influxd) -> Vec<(serde_json::Map<String, Json>, Json)> {
            rows(influxd, "k8s", r#"SELECT * FROM "log/events""#)
                .into_iter()
                .map(|row| {
                    let value = serde_json::from_str(row["value"].as_str().unwrap()).unwrap();
                    (row, value)
                })
                .collect()
        }

        fn with_count(mut event: Event, count: i64, last_ms: i64) -> Event {
            event.count = count;
            event.last_timestamp = last_ms;
            event.raw = raw_of(&event);
            event
        }

        #[tokio::test]
        async fn heapsters_schema_reads_back_and_a_resent_state_overwrites() {
            let influxd = Influxd::start().unwrap();
            let mut sink = sink_for(&influxd.url(), "db=k8s&cluster_name=east");
            let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
            let report = sink.write_events(&events).await.unwrap();
            assert_eq!(
                report,
                WriteReport { points_written: 2, requests: 2, ..WriteReport::default() },
                "one CREATE DATABASE and one write"
            );

            assert_eq!(names(&influxd, "k8s", "SHOW MEASUREMENTS"), ["log/events"]);
            assert_eq!(
                names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "log/events""#),
                ["cluster_name", "hostname", "pod_id", "pod_name", "uid"]
            );
            assert_eq!(field_types(&influxd, "k8s", "log/events"), [("value".into(), "string".into())]);

            let rows = log_events(&influxd);
            assert_eq!(rows.len(), 2);
            // Ordered by time: the service event is older.
            let (service_row, service_json) = &rows[0];
            let service = &events[1];
            assert_eq!(service_row["time"], Json::from(rfc3339(service.last_timestamp)));
            assert_eq!(service_row["uid"], service.uid.as_str());
            assert_eq!((&service_row["pod_id"], &service_row["hostname"]), (&Json::Null, &Json::Null));
            assert_eq!(service_json["involvedObject"]["kind"], "Service");
            assert_eq!(service_json["message"], service.message);

            let (pod_row, pod_json) = &rows[1];
            let pod = &events[0];
            assert_eq!(pod_row["time"], Json::from(rfc3339(LAST_MS)));
            assert_eq!(pod_row["uid"], pod.uid.as_str());
            assert_eq!(pod_row["pod_id"], pod.involved.uid.as_str());
            assert_eq!(pod_row["pod_name"], pod.involved.name.as_str());
            assert_eq!(pod_row["hostname"], pod.source_host.as_str());
            assert_eq!(pod_row["cluster_name"], "east");
            assert_eq!(pod_json["metadata"]["uid"], pod.uid.as_str());
            assert_eq!(pod_json["metadata"]["namespace"], pod.namespace.as_str());
            assert_eq!(pod_json["involvedObject"]["name"], pod.involved.name.as_str());
            assert_eq!(pod_json["reason"], pod.reason.as_str());
            assert_eq!(pod_json["message"], MESSAGE);
            assert_eq!(pod_json["type"], pod.kind.as_str());
            assert_eq!(pod_json["count"], pod.count);
            assert_eq!(pod_json["lastTimestamp"], Json::from(rfc3339(LAST_MS)));
            assert_eq!(pod_json["source"]["component"], pod.source_component.as_str());

            // After a restart the same states come again: nothing is added, nothing changes.
            let mut restarted = sink_for(&influxd.url(), "db=k8s&cluster_name=east");
            assert_eq!(restarted.write_events(&events).await.unwrap().points_written, 2);
            assert_eq!(count(&influxd, "k8s", "log/events", "value"), 2);
            assert_eq!(log_events(&influxd), rows);

            // The event repeats later: a second point for it.
            let repeated = with_count(events[0].clone(), 2, LAST_MS + 30_000);
            sink.write_events(std::slice::from_ref(&repeated)).await.unwrap();
            assert_eq!(count(&influxd, "k8s", "log/events", "value"), 3);
            let counts: Vec<i64> = log_events(&influxd)
                .iter()
                .filter(|(row, _)| row["uid"] == pod.uid.as_str())
                .map(|(_, json)| json["count"].as_i64().unwrap())
                .collect();
            assert_eq!(counts, [1, 2]);
        }

        #[tokio::test]
        async fn repeats_within_one_second_keep_the_newest_count() {
            let influxd = Influxd::start().unwrap();
            let mut sink = sink_for(&influxd.url(), "db=k8s");
            let first = pulled(1, LAST_MS, "m");
            let second = with_count(first.clone(), 2, LAST_MS);
            let third = with_count(first.clone(), 3, LAST_MS);

            // In separate batches: the later write overwrites the earlier point.
            sink.write_events(std::slice::from_ref(&first)).await.unwrap();
            sink.write_events(std::slice::from_ref(&second)).await.unwrap();
            assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
            assert_eq!(log_events(&influxd)[0].1["count"], 2);

            // In one batch, out of order: the highest count is what is sent.
            let report = sink.write_events(&[third, second]).await.unwrap();
            assert_eq!((report.points_written, report.points_superseded), (1, 1));
            let rows = log_events(&influxd);
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].1["count"], 3);
            assert_eq!(rows[0].0["time"], Json::from(rfc3339(LAST_MS)));
        }

        #[tokio::test]
        async fn with_fields_schema_reads_back() {
            let influxd = Influxd::start().unwrap();
            let mut sink = sink_for(&influxd.url(), "db=k8s&withfields=true");
            let events = vec![pulled(1, LAST_MS, MESSAGE), service_event()];
            assert_eq!(sink.write_events(&events).await.unwrap().points_written, 2);
            assert_eq!(sink.write_events(&events).await.unwrap().points_written, 2);

            assert_eq!(names(&influxd, "k8s", "SHOW MEASUREMENTS"), ["events"]);
            assert_eq!(
                names(&influxd, "k8s", r#"SHOW TAG KEYS FROM "events""#),
                [
                    "cluster_name",
                    "component",
                    "hostname",
                    "kind",
                    "namespace_name",
                    "object_name",
                    "pod_id",
                    "reason",
                    "type",
                    "uid"
                ]
            );
            assert_eq!(field_types(&influxd, "k8s", "events"), [("message".into(), "string".into())]);
            let rows = rows(&influxd, "k8s", r#"SELECT * FROM "events""#);
            assert_eq!(rows.len(), 2, "sent twice, stored once");
            let (service, pod) = (&rows[0], &rows[1]);
            assert_eq!(pod["message"], MESSAGE);
            assert_eq!(pod["time"], Json::from(rfc3339(LAST_MS)));
            let pod_event = &events[0];
            for (tag, want) in [
                ("cluster_name", "default"),
                ("component", pod_event.source_component.as_str()),
                ("hostname", pod_event.source_host.as_str()),
                ("kind", "Pod"),
                ("namespace_name", pod_event.namespace.as_str()),
                ("object_name", pod_event.involved.name.as_str()),
                ("pod_id", pod_event.involved.uid.as_str()),
                ("reason", pod_event.reason.as_str()),
                ("type", pod_event.kind.as_str()),
                ("uid", pod_event.uid.as_str()),
            ] {
                assert_eq!(pod[tag], want, "{tag}");
            }
            assert_eq!((&service["kind"], &service["pod_id"]), (&Json::from("Service"), &Json::Null));
        }

        /// A message of 40 KiB mixing every character line protocol treats specially.
        fn long_message(seed: usize) -> String {
            let unit = format!("line {seed} \"quoted\" back\\slash, a=b é\n");
            let mut message = unit.repeat((40 * 1024 - 1) / unit.len());
            message.extend(std::iter::repeat_n('x', 40 * 1024 - 1 - message.len()));
            message + "\\"
        }

        #[tokio::test]
        async fn large_messages_round_trip_in_chunks_of_bounded_size() {
            let influxd = Influxd::start().unwrap();
            let mut sink = sink_for(&influxd.url(), "db=k8s");
            let events: Vec<Event> = (0..130)
                .map(|i| {
                    let mut event = pulled(1, LAST_MS + i * 1_000, &long_message(i as usize));
                    event.uid = format!("uid-{i}").as_str().into();
                    event.raw = raw_of(&event);
                    event
                })
                .collect();
            // The requests the byte bound makes: a chunk closes once it holds the bound.
            let encoder = EventEncoder::new(false, "default");
            let mut chunks = 0;
            let mut bytes = 0;
            for event in &events {
                if bytes == 0 || bytes >= MAX_EVENT_BYTES_PER_WRITE {
                    chunks += 1;
                    bytes = 0;
                }
                let mut line = Vec::new();
                encoder.encode(event, &mut line).unwrap();
                bytes += line.len();
            }
            assert!(chunks > 1);

            let report = sink.write_events(&events).await.unwrap();
            assert_eq!(
                report,
                WriteReport { points_written: 130, requests: 1 + chunks, ..Default::default() }
            );
            let rows = log_events(&influxd);
            assert_eq!(rows.len(), 130);
            for ((row, json), event) in rows.iter().zip(&events) {
                assert_eq!(row["uid"], event.uid.as_str());
                assert_eq!(json["message"], event.message);
            }
            assert_eq!(events[0].message.len(), 40 * 1024);
        }

        #[tokio::test]
        async fn events_without_a_time_are_skipped_and_counted() {
            let influxd = Influxd::start().unwrap();
            let mut sink = sink_for(&influxd.url(), "db=k8s");
            let mut timeless = service_event();
            timeless.last_timestamp = 0;
            timeless.first_timestamp = 0;
            let report = sink.write_events(&[timeless.clone()]).await.unwrap();
            assert_eq!(report, WriteReport { points_skipped: 1, ..Default::default() }, "no request at all");

            let report = sink.write_events(&[timeless, pulled(1, LAST_MS, "m")]).await.unwrap();
            assert_eq!(
                report,
                WriteReport { points_written: 1, points_skipped: 1, requests: 2, ..Default::default() }
            );
            assert_eq!(count(&influxd, "k8s", "log/events", "value"), 1);
        }
    }
}
