//! `--source`: the URI's scheme picks the source, whose own config reads the rest.

use super::cadvisor::config::CadvisorConfig;
use super::kubernetes::config::KubernetesConfig;
use super::replay::ReplayConfig;
use crate::config::ConfigError;

/// A parsed `--source` value.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    Replay(ReplayConfig),
    Kubernetes(KubernetesConfig),
    Cadvisor(CadvisorConfig),
}

const SOURCES: &[&str] = &["kubernetes", "kubernetes.summary_api", "kubernetes.events", "cadvisor", "replay"];

impl SourceConfig {
    pub fn from_uri(uri: &str) -> Result<SourceConfig, ConfigError> {
        let scheme = uri.split_once(':').map_or(uri, |(scheme, _)| scheme);
        match scheme {
            "replay" => ReplayConfig::from_uri(uri).map(SourceConfig::Replay),
            "kubernetes" | "kubernetes.summary_api" | "kubernetes.events" => {
                KubernetesConfig::from_uri(uri).map(SourceConfig::Kubernetes)
            }
            "cadvisor" => CadvisorConfig::from_uri(uri).map(SourceConfig::Cadvisor),
            other => Err(ConfigError::new(
                "--source",
                uri,
                format!("unknown source {other:?}; expected one of: {}", SOURCES.join(", ")),
            )),
        }
    }
}
