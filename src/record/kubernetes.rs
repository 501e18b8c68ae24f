//! `heapster record --source=kubernetes:...`: what a live cluster says, window by window.
//!
//! Each window, on the same clock as the live source: the node, pod and namespace lists as the
//! API server answers them, then the summary of every Ready node in that node list. A node
//! whose scrape fails has no summary that window, as the live source would have had none.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use heapster_dataflows::model::Interner;

use super::report::{RecordError, RecordReport};
use crate::scenario::{ApiList, ScenarioWriter};
use crate::sources::clock::{now_ms, sleep_until};
use crate::sources::health::Health;
use crate::sources::kubernetes::config::{KubernetesConfig, clients};
use crate::sources::kubernetes::objects::parse_node_list;
use crate::sources::kubernetes::scrape::Scraper;

const LISTS: [(ApiList, &str); 3] = [
    (ApiList::Nodes, "/api/v1/nodes"),
    (ApiList::Pods, "/api/v1/pods"),
    (ApiList::Namespaces, "/api/v1/namespaces"),
];

/// Records `windows` windows of the cluster `config` names into `out`.
pub async fn record(
    config: KubernetesConfig,
    windows: usize,
    out: PathBuf,
    resolution: Duration,
) -> Result<RecordReport, RecordError> {
    let clients = clients(&config).await?;
    let timeout = config.kubelet_timeout.min(resolution / 2);
    let scraper = Scraper::new(&config, &clients, timeout);
    let write_error = |source| RecordError::Write { path: out.clone(), source };
    let mut writer =
        ScenarioWriter::create(&out, "recorded with heapster record", resolution.as_secs().max(1))
            .map_err(write_error)?;
    let health = Health::default();
    let stop = Arc::new(AtomicBool::new(false));
    let step = resolution.as_millis().max(1) as u64;
    let mut next = (now_ms() / step + 1) * step;
    let mut report = RecordReport::default();
    let mut interner = Interner::default();
    let mut progress = crate::progress::Progress::windows("record", windows as u64);
    while report.windows < windows {
        if !sleep_until(next, &stop).await {
            return Err(RecordError::Stopped(report.windows));
        }
        let mut lists = Vec::with_capacity(LISTS.len());
        for (list, path) in LISTS {
            let request = http::Request::get(path)
                .body(Vec::new())
                .map_err(|source| RecordError::Request { path, source })?;
            let body = clients
                .api
                .request_text(request)
                .await
                .map_err(|source| RecordError::List { path, source })?;
            lists.push((list, body));
        }
        let targets: Vec<crate::sources::NodeTarget> =
            match parse_node_list(lists[0].1.as_bytes(), &mut interner) {
                Ok(parsed) => parsed.targets.into_iter().filter(|t| t.ready).collect(),
                Err(source) => return Err(RecordError::NodeList { path: "/api/v1/nodes", source }),
            };
        let bodies: Vec<_> = futures::stream::iter(targets)
            .map(|target| {
                let scraper = &scraper;
                async move {
                    let body = scraper.scrape(&target).await;
                    (target, body)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;

        let window = writer.window(next).map_err(write_error)?;
        let mut window_bytes = 0u64;
        for (list, body) in &lists {
            window_bytes += body.len() as u64;
            window.api(*list, body.as_bytes()).map_err(write_error)?;
        }
        for (target, body) in bodies {
            match body {
                Ok(body) => {
                    window_bytes += body.len() as u64;
                    health.record(&target.name, Ok(()));
                    window.summary(&target.name, &body).map_err(write_error)?;
                    report.summaries += 1;
                }
                Err(e) => {
                    health.record(&target.name, Err(&e.to_string()));
                    report.failed += 1;
                }
            }
        }
        report.windows += 1;
        progress.window(window_bytes);
        if !progress.visible() {
            tracing::info!(window = report.windows, of = windows, "recorded");
        }
        next += step;
        interner.sweep();
    }
    progress.finish();
    writer.finish().map_err(write_error)?;
    Ok(report)
}
