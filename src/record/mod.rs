//! `heapster record`: what a live cluster says, window by window, written as a scenario that
//! `replay:` and the fixture server both read (users record real clusters to replay them).
//!
//! - [`kubernetes`]: the API server's lists and every Ready node's summary.
//! - [`cadvisor`]: the hosts as discovered and every host's cAdvisor bodies.
//! - [`report`]: what a recording gives back.

pub mod cadvisor;
pub mod kubernetes;
pub mod report;

pub use report::{RecordError, RecordReport};

use crate::cli::RecordArgs;
use crate::sources::cadvisor::config::CadvisorConfig;
use crate::sources::kubernetes::config::KubernetesConfig;

/// Records what `args.source` names.
pub fn record(args: &RecordArgs) -> Result<RecordReport, RecordError> {
    let (windows, out, resolution) = (args.windows, args.out.clone(), args.metric_resolution);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RecordError::Runtime)?;
    if args.source.starts_with("cadvisor:") {
        let config = CadvisorConfig::from_uri(&args.source)?;
        return runtime.block_on(cadvisor::record(config, windows, out, resolution));
    }
    let config = KubernetesConfig::from_uri(&args.source)?;
    runtime.block_on(kubernetes::record(config, windows, out, resolution))
}
