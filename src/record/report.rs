//! What a recording gives back, whatever its source.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::sources::kubernetes::config::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("GET {path}: {message}")]
    List { path: &'static str, message: String },
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
