//! `--source=kubernetes:...` (and `kubernetes.summary_api:`, `kubernetes.events:`): Heapster's
//! options, and the API and kubelet clients they describe.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `inClusterConfig` | `true` | take the API server, CA and token from the pod's service account |
//! | `auth` | | a kubeconfig file (used when not in cluster) |
//! | `insecure` | `false` | skip TLS verification (API server and kubelets) |
//! | `useServiceAccount` | `false` | use the service account token even out of cluster |
//! | `kubeletPort` | `10255`, or `10250` with `kubeletHttps` | |
//! | `kubeletHttps` | `false` | scrape kubelets over HTTPS with the bearer token |
//! | `kubeletTimeout` | `10s` | per-node scrape timeout (capped below the resolution) |
//! | `events` | `true` | also collect events (`kubernetes.events:` collects only events) |
//!
//! The URL after the scheme, when given, overrides the kubeconfig's server, as in Heapster.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::config::{ConfigError, UriOptions};

/// Where the service account's token and CA live in a pod.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const OPTIONS: &[&str] = &[
    "inClusterConfig",
    "auth",
    "insecure",
    "useServiceAccount",
    "kubeletPort",
    "kubeletHttps",
    "kubeletTimeout",
    "events",
    "schedulableLabel",
];

/// What the source collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collect {
    Metrics,
    MetricsAndEvents,
    Events,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The API server, when the URI names one.
    pub server: Option<String>,
    pub in_cluster: bool,
    pub kubeconfig: Option<PathBuf>,
    pub insecure: bool,
    pub use_service_account: bool,
    pub kubelet_port: u16,
    pub kubelet_https: bool,
    pub kubelet_timeout: Duration,
    pub collect: Collect,
    /// Label node sets `schedulable=true|false` (not in Heapster's summary source).
    pub schedulable_label: bool,
}

impl KubernetesConfig {
    pub fn from_uri(uri: &str) -> Result<KubernetesConfig, ConfigError> {
        let (scheme, rest) = uri.split_once(':').unwrap_or((uri, ""));
        let events_only = match scheme {
            "kubernetes" | "kubernetes.summary_api" => false,
            "kubernetes.events" => true,
            other => {
                return Err(ConfigError::new("--source", uri, format!("not a kubernetes source: {other:?}")));
            }
        };
        let (server, query) = match rest.split_once('?') {
            Some((s, q)) => (s, Some(q)),
            None => (rest, None),
        };
        let server = server.trim_matches(|c| c == '\'' || c == '"');
        let server = if server.is_empty() {
            None
        } else {
            let parsed = url::Url::parse(server).map_err(|e| {
                ConfigError::new("--source", uri, format!("API server {server:?} is not a URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(ConfigError::new(
                    "--source",
                    uri,
                    format!("API server {server:?}: expected http(s)://host[:port]"),
                ));
            }
            Some(server.trim_end_matches('/').to_string())
        };
        let mut opts = UriOptions::parse("--source", uri, query);
        let in_cluster = opts.bool_or("inClusterConfig", true)?;
        let kubeconfig = opts.string("auth").filter(|s| !s.is_empty()).map(PathBuf::from);
        let insecure = opts.bool_or("insecure", false)?;
        let use_service_account = opts.bool_or("useServiceAccount", false)?;
        let kubelet_https = opts.bool_or("kubeletHttps", false)?;
        let port = opts.u64_or("kubeletPort", if kubelet_https { 10250 } else { 10255 })?;
        let kubelet_port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
            ConfigError::new("--source", uri, format!("option kubeletPort={port}: expected 1-65535"))
        })?;
        let kubelet_timeout = opts.duration_or("kubeletTimeout", Duration::from_secs(10))?;
        let events = opts.bool_or("events", true)?;
        let schedulable_label = opts.bool_or("schedulableLabel", false)?;
        opts.finish("kubernetes source", OPTIONS)?;
        if !in_cluster && kubeconfig.is_none() && server.is_none() {
            return Err(ConfigError::new(
                "--source",
                uri,
                "inClusterConfig=false needs auth=KUBECONFIG or an API server URL",
            ));
        }
        let collect = match (events_only, events) {
            (true, _) => Collect::Events,
            (false, true) => Collect::MetricsAndEvents,
            (false, false) => Collect::Metrics,
        };
        Ok(KubernetesConfig {
            server,
            in_cluster,
            kubeconfig,
            insecure,
            use_service_account,
            kubelet_port,
            kubelet_https,
            kubelet_timeout,
            collect,
            schedulable_label,
        })
    }

    pub fn metrics(&self) -> bool {
        self.collect != Collect::Events
    }

    pub fn events(&self) -> bool {
        self.collect != Collect::Metrics
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "in-cluster configuration: {0}; outside a cluster, use kubernetes:https://APISERVER?inClusterConfig=false&auth=KUBECONFIG"
    )]
    InCluster(#[source] kube::config::InClusterError),
    #[error("in-cluster configuration: {}: {source}", path.display())]
    ServiceAccount { path: PathBuf, source: std::io::Error },
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig { path: PathBuf, source: kube::config::KubeconfigError },
    #[error("API server {0:?} is not a valid URI")]
    Server(String),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("kubelet client: {0}")]
    Kubelet(#[source] super::kubelet_client::KubeletClientError),
}

/// The clients a Kubernetes source needs.
#[derive(Clone)]
pub struct Clients {
    pub api: kube::Client,
    pub kubelet: super::kubelet_client::KubeletClient,
    /// Bearer token for kubelets over HTTPS.
    pub kubelet_token: Option<String>,
}

/// Builds the API client (in-cluster, kubeconfig, or a bare URL) and a kubelet client that trusts
/// the cluster's CA and carries its token.
pub async fn clients(config: &KubernetesConfig) -> Result<Clients, ClientError> {
    crate::tls::install_crypto_provider();
    let mut kube_config = if config.in_cluster {
        kube::Config::incluster().map_err(ClientError::InCluster)?
    } else if let Some(path) = &config.kubeconfig {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|source| ClientError::Kubeconfig { path: path.clone(), source })?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|source| ClientError::Kubeconfig { path: path.clone(), source })?
    } else {
        let server = config.server.clone().unwrap_or_default();
        kube::Config::new(server.parse().map_err(|_| ClientError::Server(server.clone()))?)
    };
    if let Some(server) = &config.server {
        kube_config.cluster_url = server.parse().map_err(|_| ClientError::Server(server.clone()))?;
    }
    if config.insecure {
        kube_config.accept_invalid_certs = true;
    }
    super::reach::set_url(&kube_config.cluster_url.to_string());
    let mut token = kube_config.auth_info.token.as_ref().map(|t| t.expose_secret().to_string());
    if config.use_service_account || (config.in_cluster && token.is_none()) {
        let path = PathBuf::from(SERVICE_ACCOUNT_DIR).join("token");
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let t = t.trim().to_string();
                kube_config.auth_info.token = Some(t.clone().into());
                token = Some(t);
            }
            Err(e) if config.use_service_account => {
                return Err(ClientError::ServiceAccount { path, source: e });
            }
            Err(_) => {}
        }
    }

    let roots = kube_config.root_cert.as_deref().unwrap_or_default();
    let kubelet = super::kubelet_client::KubeletClient::new(roots, config.insecure, config.kubelet_timeout)
        .map_err(ClientError::Kubelet)?;
    let api = kube::Client::try_from(kube_config).map_err(ClientError::Client)?;
    Ok(Clients { api, kubelet, kubelet_token: token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heapster_uris_parse() {
        let c = KubernetesConfig::from_uri(
            "kubernetes:https://127.0.0.1:6443?inClusterConfig=false&auth=/tmp/kc&kubeletHttps=true&kubeletPort=11250&insecure=true",
        )
        .unwrap();
        assert_eq!(c.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert!(!c.in_cluster && c.insecure && c.kubelet_https);
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert_eq!(c.kubelet_port, 11250);
        assert_eq!(c.collect, Collect::MetricsAndEvents);
        assert!(!c.schedulable_label, "off unless asked for");

        let c = KubernetesConfig::from_uri("kubernetes:''").unwrap();
        assert!(c.in_cluster && c.server.is_none());
        assert!(KubernetesConfig::from_uri("kubernetes:?schedulableLabel=true").unwrap().schedulable_label);
        assert_eq!(c.kubelet_port, 10255);
        assert_eq!(KubernetesConfig::from_uri("kubernetes:?kubeletHttps=true").unwrap().kubelet_port, 10250);
        let c = KubernetesConfig::from_uri("kubernetes.summary_api:https://k?events=false").unwrap();
        assert_eq!(c.collect, Collect::Metrics);
        assert_eq!(
            KubernetesConfig::from_uri("kubernetes.events:https://k").unwrap().collect,
            Collect::Events
        );
    }

    #[test]
    fn bad_options_are_named() {
        let cases = [
            ("kubernetes:https://k?kubeletPort=0", "kubeletPort"),
            ("kubernetes:https://k?kubeletPort=70000", "kubeletPort"),
            ("kubernetes:https://k?insecure=yes", "insecure"),
            ("kubernetes:https://k?schedulableLabel=1x", "schedulableLabel"),
            ("kubernetes:https://k?kubeletTimeout=x", "kubeletTimeout"),
            ("kubernetes:https://k?bogus=1", "\"bogus\""),
            ("kubernetes:ftp://k", "http(s)"),
            ("kubernetes:not a url", "not a URL"),
            ("kubernetes:?inClusterConfig=false", "auth=KUBECONFIG"),
        ];
        for (uri, needle) in cases {
            let err = KubernetesConfig::from_uri(uri).unwrap_err();
            assert!(err.reason.contains(needle), "{uri}: {err}");
            assert_eq!(err.flag, "--source");
        }
    }
}
