//! `--source` and `--sink` URIs parsed into typed configs.
//!
//! Heapster's URI form is `scheme:rest?opt=value&...` where `rest` is often itself a URL
//! (`influxdb:http://host:8086?db=k8s`). Errors name the flag, the URI (with secrets masked) and
//! what was expected; the CLI turns them into exit status 2.

pub mod options;

pub use options::{UriOptions, redact};

/// A `--source` or `--sink` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}={uri}: {reason}")]
pub struct ConfigError {
    /// `--source` or `--sink`.
    pub flag: &'static str,
    /// The value as given, secrets masked.
    pub uri: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(flag: &'static str, uri: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError { flag, uri: redact(uri), reason: reason.into() }
    }
}
