//! Where a Google sink sends, and with which identity: URI options first, then the
//! environment variables Google's libraries read, then Google's defaults.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::backoff::Backoff;
use crate::config::{ConfigError, UriOptions};
use crate::sinks::queue::BufferConfig;

/// The metadata server every GCE VM and GKE node reaches.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The options the Google sinks share.
pub const SHARED_OPTIONS: &[&str] = &[
    "project",
    "credentials",
    "metadata_host",
    "endpoint",
    "concurrency",
    "cluster_name",
    "location",
    "buffer",
    "max_buffer_bytes",
];

/// How a Google sink reaches its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleOptions {
    /// `project=`, else the key file's `project_id`, else the metadata server's.
    pub project: Option<String>,
    /// A service-account key file (`credentials=`, else `GOOGLE_APPLICATION_CREDENTIALS`);
    /// `None`: the metadata server.
    pub credentials: Option<PathBuf>,
    /// `metadata_host=`, else `GCE_METADATA_HOST`, else `metadata.google.internal`.
    pub metadata_host: String,
    /// The API's base URL (`endpoint=`, else the override variable, else Google's).
    pub endpoint: Url,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// `cluster_name` of the monitored resources.
    pub cluster_name: String,
    /// `location` of the monitored resources; else the metadata server's zone, else `global`.
    pub location: Option<String>,
    /// Tries in all for one request.
    pub attempts: u32,
    pub backoff: Backoff,
    /// For one request, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Where writes wait while the API is away (`buffer=`, `max_buffer_bytes=`).
    pub buffer: BufferConfig,
}

/// The options of `--sink=<scheme>[?option=value&...]` (`<scheme>:` also accepted); a sink
/// of this kind takes no address.
pub fn sink_options(uri: &str, scheme: &str) -> Result<UriOptions, ConfigError> {
    let rest = uri.strip_prefix(scheme).unwrap_or(uri);
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let (target, query) = match rest.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (rest, None),
    };
    if !target.is_empty() {
        return Err(ConfigError::new(
            "--sink",
            uri,
            format!("expected {scheme} or {scheme}?option=value&..."),
        ));
    }
    Ok(UriOptions::parse("--sink", uri, query))
}

impl GoogleOptions {
    /// The disk buffer's folder name: the sink, project and endpoint, so two sinks never share
    /// one.
    pub fn buffer_name(&self, scheme: &str) -> String {
        let raw = format!(
            "{scheme}-{}-{}-{}",
            self.project.as_deref().unwrap_or("default"),
            self.endpoint.host_str().unwrap_or(""),
            self.endpoint.port_or_known_default().unwrap_or(0)
        );
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
    }

    /// Reads the shared options from `opts`. `default_endpoint` is Google's URL for the API and
    /// `endpoint_env` the variable that overrides it.
    pub fn parse(
        opts: &mut UriOptions,
        uri: &str,
        default_endpoint: &str,
        endpoint_env: &str,
        default_concurrency: u64,
    ) -> Result<GoogleOptions, ConfigError> {
        let error = |reason: String| ConfigError::new("--sink", uri, reason);
        let project = opts.string("project").filter(|p| !p.is_empty());
        let credentials = opts
            .string("credentials")
            .or_else(|| std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let metadata_host = opts
            .string("metadata_host")
            .or_else(|| std::env::var("GCE_METADATA_HOST").ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
        let endpoint_text = opts
            .string("endpoint")
            .or_else(|| std::env::var(endpoint_env).ok())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| default_endpoint.to_string());
        let mut endpoint = Url::parse(&endpoint_text)
            .map_err(|e| error(format!("endpoint {endpoint_text:?} is not a URL ({e})")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(error(format!("endpoint {endpoint_text:?}: expected an http(s) URL")));
        }
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        let concurrency = opts.u64_or("concurrency", default_concurrency)?;
        if concurrency == 0 {
            return Err(error("option concurrency=0: expected at least 1".into()));
        }
        let cluster_name = opts.string_or("cluster_name", "default");
        let buffer = BufferConfig::from_options(opts, "--sink", uri)?;
        let location = opts.string("location").filter(|l| !l.is_empty());
        Ok(GoogleOptions {
            project,
            credentials,
            metadata_host,
            endpoint,
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            cluster_name,
            location,
            // Google asks clients to back off for longer than a local database would need.
            attempts: 8,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            timeout: Duration::from_secs(30),
            buffer,
        })
    }
}
