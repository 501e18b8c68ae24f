//! `--sink=influxdb:...`: Heapster's options and defaults.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::line_protocol::LineOptions;
use crate::config::{ConfigError, UriOptions, redact};
use crate::sinks::queue::BufferConfig;

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

/// A `retention=` value InfluxDB would not take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "option retention={value:?}: {why}; expected an InfluxDB duration of at least 1h (like 48h, 7d \
     or 2w), INF to keep points forever, or 0 to leave the database's retention policies alone"
)]
pub struct RetentionError {
    pub value: String,
    pub why: &'static str,
}

impl Retention {
    pub fn parse(s: &str) -> Result<Retention, RetentionError> {
        let bad = |why: &'static str| RetentionError { value: s.to_string(), why };
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
    pub(super) fn influxql(&self) -> Option<&str> {
        match self {
            Retention::Keep => None,
            Retention::Infinite => Some("INF"),
            Retention::Duration(d) => Some(d),
        }
    }
}

/// Where and how to write, from `--sink=influxdb:...`.
#[derive(Clone, Debug)]
pub struct InfluxConfig {
    /// `http(s)://host:port/` (with a path prefix if one was given).
    pub url: Url,
    pub user: String,
    /// Kept out of `Debug` output, and so out of logs and errors.
    pub password: SecretString,
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
        let url = base_url(target, secure).map_err(|e| error(e.to_string()))?;
        let user = opts.string_or("user", "root");
        let password = SecretString::from(opts.string_or("pw", "root"));
        let db = opts.string_or("db", "k8s");
        if db.is_empty() {
            return Err(error("option db is empty: expected a database name".into()));
        }
        let retention =
            Retention::parse(&opts.string_or("retention", "0")).map_err(|e| error(e.to_string()))?;
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

    pub(super) fn line_options(&self) -> LineOptions {
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

/// An InfluxDB address that cannot be used; `shown` is the address with any password hidden.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{shown:?} is not host:port or an http(s) URL ({source})")]
    NotAUrl { shown: String, source: url::ParseError },
    #[error("{shown:?}: scheme {scheme:?} not supported; expected http or https")]
    Scheme { shown: String, scheme: String },
    #[error("{shown:?}: no host")]
    NoHost { shown: String },
    #[error("{shown:?}: credentials in the URL are not used; give them as options user= and pw=")]
    Credentials { shown: String },
    #[error("{shown:?}: cannot switch to https")]
    NoHttps { shown: String },
}

fn base_url(target: &str, secure: bool) -> Result<Url, AddressError> {
    let target = if target.is_empty() { "localhost:8086" } else { target };
    let shown = redact(target);
    let text = if target.contains("://") { target.to_string() } else { format!("http://{target}") };
    let mut url =
        Url::parse(&text).map_err(|source| AddressError::NotAUrl { shown: shown.clone(), source })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AddressError::Scheme { shown, scheme: url.scheme().to_string() });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(AddressError::NoHost { shown });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AddressError::Credentials { shown });
    }
    if secure && url.set_scheme("https").is_err() {
        return Err(AddressError::NoHttps { shown });
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_fragment(None);
    Ok(url)
}
