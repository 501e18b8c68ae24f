//! `heapster record --source=cadvisor:...`: each window, the hosts as discovered and every
//! host's bodies, written as a cAdvisor scenario that `replay:` and the fixture server read.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;

use super::report::{RecordError, RecordReport};
use crate::scenario::ScenarioWriter;
use crate::sources::cadvisor::HostList;
use crate::sources::cadvisor::config::CadvisorConfig;
use crate::sources::cadvisor::scrape::CadvisorClient;
use crate::sources::cadvisor::source::{CadvisorSourceError, Hosts, MachineCache, scrape_host};
use crate::sources::clock::{now_ms, sleep_until};
use crate::sources::health::Health;

/// Records `windows` windows of the hosts `config` finds into `out`.
pub async fn record(
    config: CadvisorConfig,
    windows: usize,
    out: PathBuf,
    resolution: Duration,
) -> Result<RecordReport, RecordError> {
    let timeout = config.timeout.min(resolution / 2);
    let client = CadvisorClient::new(config.port, timeout).map_err(CadvisorSourceError::Client)?;
    let mut hosts = Hosts::start(&config, timeout)?;
    let write_error = |source| RecordError::Write { path: out.clone(), source };
    let mut writer =
        ScenarioWriter::create(&out, "recorded with heapster record (cAdvisor)", resolution.as_secs().max(1))
            .map_err(write_error)?;
    let machines = MachineCache::default();
    let health = Health::default();
    let stop = Arc::new(AtomicBool::new(false));
    let step = resolution.as_millis().max(1) as u64;
    let mut next = (now_ms() / step + 1) * step;
    let mut report = RecordReport::default();
    let mut last_hosts: Option<HostList> = None;
    while report.windows < windows {
        if !sleep_until(next, &stop).await {
            return Err(RecordError::Stopped(report.windows));
        }
        let list = HostList { items: hosts.current().await };
        let scrapes: Vec<_> = futures::stream::iter(list.items.clone())
            .map(|host| {
                let (client, machines) = (&client, &machines);
                async move { scrape_host(client, machines, &host, next, resolution).await }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let window = writer.window(next).map_err(write_error)?;
        if last_hosts.as_ref() != Some(&list) {
            let mut body =
                serde_json::to_vec_pretty(&list).map_err(|e| write_error(std::io::Error::other(e)))?;
            body.push(b'\n');
            window.cadvisor_hosts(&body).map_err(write_error)?;
            last_hosts = Some(list);
        }
        for scrape in scrapes {
            let name = scrape.host.target.name.clone();
            match scrape.body {
                Ok(body) => {
                    health.record(&name, Ok(()));
                    window.cadvisor(&name, &body).map_err(write_error)?;
                    if let Some(machine) = &scrape.machine {
                        window.cadvisor_machine(&name, machine).map_err(write_error)?;
                    }
                    report.summaries += 1;
                }
                Err(e) => {
                    health.record(&name, Err(&e.to_string()));
                    report.failed += 1;
                }
            }
        }
        report.windows += 1;
        tracing::info!(window = report.windows, of = windows, "recorded");
        next += step;
    }
    writer.finish().map_err(write_error)?;
    Ok(report)
}
