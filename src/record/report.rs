//! What a recording gives back, whatever its source.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::sources::cadvisor::source::CadvisorSourceError;
use crate::sources::kubernetes::config::ClientError;
use crate::sources::kubernetes::objects::ObjectError;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("GET {path}: {source}")]
    Request { path: &'static str, source: http::Error },
    #[error("GET {path}: {source}")]
    List { path: &'static str, source: kube::Error },
    #[error("GET {path}: {source}")]
    NodeList { path: &'static str, source: ObjectError },
    #[error("cAdvisor hosts: {0}")]
    Hosts(#[from] CadvisorSourceError),
    #[error("the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("stopped after {0} windows")]
    Stopped(usize),
}

#[derive(Debug, Default)]
pub struct RecordReport {
    pub windows: usize,
    pub summaries: usize,
    pub failed: usize,
}
