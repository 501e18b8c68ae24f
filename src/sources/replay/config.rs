//! What a replay is given (`replay:PATH?...`) and what it gives back.

use std::path::PathBuf;

use super::pace::Pace;
use crate::config::{ConfigError, UriOptions};
use crate::scenario::ScenarioError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    pub path: PathBuf,
    pub pace: Pace,
    /// Label node sets `schedulable=true|false`, as the `kubernetes` source's option does.
    pub schedulable_label: bool,
}

impl ReplayConfig {
    /// `replay:PATH[?pace=fast|real&schedulableLabel=false|true]`.
    pub fn from_uri(uri: &str) -> Result<ReplayConfig, ConfigError> {
        let rest = uri.strip_prefix("replay:").unwrap_or(uri);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(ConfigError::new("--source", uri, "expected replay:PATH, a scenario directory"));
        }
        let mut opts = UriOptions::parse("--source", uri, query);
        let pace = match opts.string_or("pace", "fast").as_str() {
            "fast" => Pace::Fast,
            "real" => Pace::Real,
            other => {
                return Err(ConfigError::new(
                    "--source",
                    uri,
                    format!("option pace={other:?}: expected fast or real"),
                ));
            }
        };
        let schedulable_label = opts.bool_or("schedulableLabel", false)?;
        opts.finish("replay source", &["pace", "schedulableLabel"])?;
        Ok(ReplayConfig { path: PathBuf::from(path), pace, schedulable_label })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("scenario {}: {source}", file.display())]
    List { file: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("scenario {0}: cAdvisor scenarios replay in one process, not in cluster mode")]
    CadvisorInCluster(PathBuf),
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub windows: usize,
    pub scrapes: usize,
    pub missing: usize,
    /// Events read from the scenario's lists (every listed event, every time it was listed).
    pub events: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        assert_eq!(
            ReplayConfig::from_uri("replay:fixtures/small").unwrap(),
            ReplayConfig {
                path: PathBuf::from("fixtures/small"),
                pace: Pace::Fast,
                schedulable_label: false
            }
        );
        assert!(ReplayConfig::from_uri("replay:/x?schedulableLabel=true").unwrap().schedulable_label);
        assert_eq!(ReplayConfig::from_uri("replay:/x?pace=real").unwrap().pace, Pace::Real);
        let err = ReplayConfig::from_uri("replay:/x?pace=slow").unwrap_err();
        assert!(err.to_string().contains("pace=\"slow\": expected fast or real"), "{err}");
        assert!(ReplayConfig::from_uri("replay:").is_err());
        assert!(ReplayConfig::from_uri("replay:/x?speed=2").unwrap_err().reason.contains("\"speed\""));
    }
}
