//! The command line: Heapster's flags, plus `record` (a live cluster into a scenario).
//!
//! `heapster --source=URI --sink=URI...` collects, as Heapster did. A bad flag or URI exits with
//! status 2 and a message naming the flag and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use heapster_dataflows::events::DedupConfig;
use heapster_dataflows::meta::LabelPolicy;

use crate::api::{ApiConfig, TlsFiles};
use crate::config::ConfigError;
use crate::run::RunConfig;
use crate::sinks::SinkConfig;
use crate::sources::config::SourceConfig;

/// The shortest `--metric_resolution` Heapster accepted.
pub const MIN_RESOLUTION: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "heapster",
    version,
    about = "Cluster-monitoring collector for Kubernetes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub collect: CollectArgs,
    /// How log lines on stderr look: text (colour only on a terminal) or json (one object a line).
    #[arg(long = "log_format", value_name = "FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

/// `--log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Where metrics come from, one of:
    /// kubernetes:https://APISERVER?OPTIONS (alias kubernetes.summary_api:; kubernetes.events:
    /// collects events only), with Heapster's options inClusterConfig (default true; outside a
    /// cluster use inClusterConfig=false&auth=KUBECONFIG), auth (a kubeconfig), insecure,
    /// useServiceAccount, kubeletPort (10255, or 10250 with kubeletHttps), kubeletHttps, plus
    /// kubeletTimeout (default 10s) and events (default true);
    /// replay:PATH[?pace=real] (a recorded scenario, as `heapster record` or `synth` writes).
    #[arg(long = "source", value_name = "URI")]
    pub sources: Vec<String>,
    /// Where metrics go, repeatable: log (default; a table per window on stdout),
    /// file:PATH[?withfields=&cluster_name=] (line protocol), or
    /// influxdb:http://HOST:8086?db=k8s&user=&pw=&retention=&withfields=&cluster_name=&secure=&insecuressl=
    #[arg(long = "sink", value_name = "URI")]
    pub sinks: Vec<String>,
    /// The window length: how often nodes are scraped (at least 5s).
    #[arg(long = "metric_resolution", value_name = "DURATION", default_value = "60s", value_parser = parse_resolution)]
    pub metric_resolution: Duration,
    /// Separator between `key:value` pairs in the `labels` label.
    #[arg(long = "label_separator", value_name = "SEP", default_value = ",")]
    pub label_separator: String,
    /// A pod or node label left out of the `labels` label, repeatable.
    #[arg(long = "ignore_label", value_name = "NAME")]
    pub ignore_labels: Vec<String>,
    /// A pod or node label also stored as a label of its own: NAME or NEW_NAME=NAME, repeatable.
    #[arg(long = "store_label", value_name = "[NEW=]NAME")]
    pub store_labels: Vec<String>,
    /// Where the event checkpoint is kept, so a restart exports no event twice.
    #[arg(long = "state_dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long an event's state is remembered (at least the API server's --event-ttl).
    #[arg(long = "event_ttl", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub event_ttl: Duration,
    /// At most this many event states are remembered; the oldest go first.
    #[arg(long = "event_max_entries", value_name = "N", default_value_t = 1_000_000)]
    pub event_max_entries: usize,
    /// Timely worker threads; nodes are split across them by a stable hash.
    #[arg(short = 'w', long = "workers", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Processes running one dataflow together (cluster mode); each needs the same flags.
    #[arg(long = "processes", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,
    /// This process's index in the cluster, from 0 (process 0 reads events and metadata).
    #[arg(long = "process", value_name = "I", default_value_t = 0)]
    pub process: u16,
    /// The cluster's addresses, one host:port per line, in process order.
    #[arg(long = "hostfile", value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// How long a process waits for its peers at start before giving up.
    #[arg(long = "cluster_connect_timeout", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub cluster_connect_timeout: Duration,
    /// The port of /healthz, /readyz, /metrics and metrics.k8s.io (0: any free port, logged).
    #[arg(long = "heapster-port", value_name = "PORT", default_value_t = 8082)]
    pub heapster_port: u16,
    /// The address to serve on (default: every interface).
    #[arg(long = "listen_ip", value_name = "IP", default_value = "0.0.0.0")]
    pub listen_ip: std::net::IpAddr,
    /// Serve HTTPS with this certificate (PEM; needs --tls_key).
    #[arg(long = "tls_cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls_cert (PEM).
    #[arg(long = "tls_key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM; needs --tls_cert).
    #[arg(long = "tls_client_ca", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Client certificate common names allowed in, comma-separated (needs --tls_client_ca;
    /// default: any certificate the CA signed).
    #[arg(long = "allowed_users", value_name = "CN,...", value_delimiter = ',')]
    pub allowed_users: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record what a live cluster says into a scenario directory.
    Record(RecordArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The live source: kubernetes:https://...?inClusterConfig=false&auth=KUBECONFIG...
    #[arg(long = "source", value_name = "URI")]
    pub source: String,
    /// How many windows to record.
    #[arg(long, value_name = "N")]
    pub windows: usize,
    /// The scenario directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The window length: how often nodes are scraped (at least 5s).
    #[arg(long = "metric_resolution", value_name = "DURATION", default_value = "60s", value_parser = parse_resolution)]
    pub metric_resolution: Duration,
}

/// A duration flag that does not parse, or is too short (clap prints it after the flag's name).
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration like {example}: {source}")]
    Syntax { example: &'static str, source: humantime::DurationError },
    #[error("must be at least {}", humantime::format_duration(*.0))]
    TooShort(Duration),
}

fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text).map_err(|source| DurationError::Syntax { example: "1h or 30m", source })
}

fn parse_resolution(text: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text)
        .map_err(|source| DurationError::Syntax { example: "60s or 1m", source })?;
    if d < MIN_RESOLUTION {
        return Err(DurationError::TooShort(MIN_RESOLUTION));
    }
    Ok(d)
}

impl CollectArgs {
    /// The API server's flags, checked together.
    fn api_config(&self) -> Result<ApiConfig, ConfigError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() })
            }
            (None, None) => None,
            (Some(cert), None) => {
                return Err(ConfigError::new(
                    "--tls_cert",
                    &cert.display().to_string(),
                    "needs --tls_key too",
                ));
            }
            (None, Some(key)) => {
                return Err(ConfigError::new(
                    "--tls_key",
                    &key.display().to_string(),
                    "needs --tls_cert too",
                ));
            }
        };
        if let (Some(ca), None) = (&self.tls_client_ca, &tls) {
            return Err(ConfigError::new(
                "--tls_client_ca",
                &ca.display().to_string(),
                "needs --tls_cert and --tls_key (client certificates are checked over TLS)",
            ));
        }
        if !self.allowed_users.is_empty() && self.tls_client_ca.is_none() {
            return Err(ConfigError::new(
                "--allowed_users",
                &self.allowed_users.join(","),
                "needs --tls_client_ca (users are client certificate common names)",
            ));
        }
        Ok(ApiConfig {
            listen: std::net::SocketAddr::new(self.listen_ip, self.heapster_port),
            tls,
            allowed_users: self.allowed_users.iter().filter(|u| !u.is_empty()).cloned().collect(),
        })
    }

    /// Turns the flags into a run, validating every URI.
    pub fn to_config(&self) -> Result<RunConfig, ConfigError> {
        let source = match self.sources.as_slice() {
            [] => {
                return Err(ConfigError::new(
                    "--source",
                    "",
                    "required, e.g. --source=replay:fixtures/small",
                ));
            }
            [one] => SourceConfig::from_uri(one)?,
            [_, second, ..] => {
                return Err(ConfigError::new("--source", second, "only one metrics source is supported"));
            }
        };
        let sinks = if self.sinks.is_empty() {
            vec![SinkConfig::log()]
        } else {
            self.sinks.iter().map(|s| SinkConfig::from_uri(s)).collect::<Result<_, _>>()?
        };
        let mut store = Vec::with_capacity(self.store_labels.len());
        for spec in &self.store_labels {
            let (to, from) = spec.split_once('=').unwrap_or((spec, spec));
            if to.is_empty() || from.is_empty() {
                return Err(ConfigError::new("--store_label", spec, "expected NAME or NEW_NAME=NAME"));
            }
            store.push((to.to_string(), from.to_string()));
        }
        let labels = LabelPolicy {
            separator: self.label_separator.clone(),
            ignore: self.ignore_labels.clone(),
            store,
        };
        let dedup = DedupConfig {
            ttl_ms: u64::try_from(self.event_ttl.as_millis()).unwrap_or(u64::MAX),
            max_entries: self.event_max_entries.max(1),
        };
        let cluster = crate::cluster::ClusterConfig::from_flags(
            usize::from(self.processes),
            usize::from(self.process),
            self.hostfile.as_deref(),
            self.cluster_connect_timeout,
        )?;
        if cluster.is_some() && matches!(source, SourceConfig::Cadvisor(_)) {
            return Err(ConfigError::new(
                "--processes",
                &self.processes.to_string(),
                "cluster mode runs the kubernetes and replay sources; a cadvisor source runs in one process",
            ));
        }
        let api = self.api_config()?;
        Ok(RunConfig {
            api: Some(api),
            source,
            sinks,
            workers: usize::from(self.workers),
            labels,
            resolution: self.metric_resolution,
            dedup,
            state_dir: self.state_dir.clone(),
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("heapster").chain(args.iter().copied()))
    }

    #[test]
    fn heapster_flags_parse() {
        let cli = parse(&[
            "--source=replay:fixtures/small",
            "--sink=log",
            "--sink=file:/tmp/out.lp",
            "--metric_resolution=30s",
            "--label_separator=;",
            "--ignore_label=pod-template-hash",
            "--store_label=app",
            "--store_label=team=owner",
            "-w",
            "4",
        ])
        .unwrap();
        let config = cli.collect.to_config().unwrap();
        assert_eq!(config.workers, 4);
        assert_eq!(config.sinks.len(), 2);
        assert_eq!(config.resolution, Duration::from_secs(30));
        assert_eq!(config.labels.separator, ";");
        assert_eq!(config.labels.store, vec![("app".into(), "app".into()), ("team".into(), "owner".into())]);
    }

    #[test]
    fn defaults_to_the_log_sink() {
        let config = parse(&["--source=replay:x"]).unwrap().collect.to_config().unwrap();
        assert!(matches!(config.sinks.as_slice(), [only] if only.name() == "log"));
        assert_eq!(config.resolution, Duration::from_secs(60));
        assert_eq!(config.workers, 1);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in
            [&["--metric_resolution=1s"][..], &["--metric_resolution=soon"], &["-w", "0"], &["--frobnicate"]]
        {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let err = parse(&["--metric_resolution=2s"]).unwrap_err().to_string();
        assert!(err.contains("metric_resolution") && err.contains("at least 5s"), "{err}");
    }

    #[test]
    fn bad_uris_name_the_flag() {
        let err = parse(&["--source=replay:x", "--sink=kafka:x"]).unwrap().collect.to_config().unwrap_err();
        assert_eq!(err.flag, "--sink");
        let err = parse(&["--source=nope:x"]).unwrap().collect.to_config().unwrap_err();
        assert!(err.to_string().starts_with("--source=nope:x: unknown source"), "{err}");
        let err = parse(&[]).unwrap().collect.to_config().unwrap_err();
        assert!(err.to_string().contains("required"), "{err}");
    }
}
