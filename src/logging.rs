//! Log lines on stderr: `--log_format=text` (colour only when stderr is a terminal) or `json`
//! (one object a line, for log collectors). `RUST_LOG` picks the levels, `info` by default.

use std::io::IsTerminal;

use crate::cli::LogFormat;

/// The levels unless `RUST_LOG` says otherwise. kube's own crates report every failed retry of
/// an unreachable API server; the sources log each change once instead.
pub const DEFAULT_FILTER: &str = "info,kube_client=off,kube_runtime=off";

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
    }
}
