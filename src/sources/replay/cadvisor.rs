//! A recorded cAdvisor scenario fed window by window, as the live source would: each window's
//! host list decides which hosts are scraped; a host without a body that window is a failed
//! scrape. Deterministic, whatever the number of workers.

use std::sync::atomic::AtomicBool;

use heapster_dataflows::Name;

use super::config::{ReplayError, ReplayReport};
use super::pace::{Pace, Pacer, stopped};
use crate::bridge::Feeds;
use crate::scenario::Scenario;
use crate::sources::ScrapeError;
use crate::sources::cadvisor::hosts::read_hosts;
use crate::sources::cadvisor::{CadvisorScrape, Host};
use crate::sources::health::Health;

/// Feeds every window to the workers; stops early when `stop` is set.
pub fn run(
    scenario: &Scenario,
    pace: Pace,
    feeds: &Feeds,
    stop: &AtomicBool,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport::default();
    let health = Health::default();
    let pacer = Pacer::new(pace, scenario);
    let mut hosts: Vec<Host> = Vec::new();
    let mut hosts_file = None;
    let mut last_time = None;
    for window in &scenario.windows {
        if !pacer.wait(window.time, stop) {
            tracing::info!(window = window.index, "replay stopped");
            break;
        }
        let file = scenario.cadvisor_hosts_file(window.index);
        if file != hosts_file {
            if let Some(file) = &file {
                hosts = read_hosts(file)
                    .map_err(|e| ReplayError::List { file: file.clone(), source: e.into() })?;
            }
            hosts_file = file;
        }
        // One window's sets in memory at a time (see the Kubernetes replay).
        if let Some(last) = last_time
            && !feeds.wait_for_sinks(last, stop)
        {
            break;
        }
        for host in &hosts {
            let body = std::fs::read(scenario.cadvisor_path(window.index, &host.name))
                .map_err(|e| ScrapeError::Missing(e.kind().to_string()));
            let machine =
                scenario.cadvisor_machine_path(window.index, &host.name).and_then(|p| std::fs::read(p).ok());
            report.missing += usize::from(body.is_err());
            report.scrapes += 1;
            match &body {
                Ok(_) => health.record(&Name::new(&host.name), Ok(())),
                Err(e) => health.record(&Name::new(&host.name), Err(&e.to_string())),
            }
            let scrape = CadvisorScrape { host: host.target(), machine, body };
            if stopped(feeds.scrape(window.time, Box::new(scrape))) {
                return Ok(report);
            }
        }
        if stopped(feeds.close(window.time)) || stopped(feeds.events_tick(window.time, None)) {
            return Ok(report);
        }
        report.windows += 1;
        last_time = Some(window.time);
    }
    Ok(report)
}
