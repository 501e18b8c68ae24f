//! The live cAdvisor source: every window, the hosts as discovered, then every host's cAdvisor
//! ([`crate::sources::live`] runs the windows: the same schedule, spread and protocol as the
//! Kubernetes source). A host that fails or hangs costs only itself (per-host timeout, bounded
//! by the window).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use heapster_dataflows::Time;

use super::config::{CadvisorConfig, Discovery};
use super::fleet::Fleet;
use super::hosts::{HostsError, HostsWatcher};
use super::scrape::CadvisorClient;
use super::{CadvisorScrape, Host};
use crate::bridge::{Feeds, WorkersGone};
use crate::sources::ScrapeError;
use crate::sources::clock::now_ms;
use crate::sources::live::{self, Fetch, Live, Window, jitter_max};

#[derive(Debug, thiserror::Error)]
pub enum CadvisorSourceError {
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error("cAdvisor client: {}", crate::errors::error_chain(.0))]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Workers(#[from] WorkersGone),
}

/// Where the hosts of a window come from.
pub enum Hosts {
    File(HostsWatcher),
    Standalone,
    Fleet(Fleet),
}

impl Hosts {
    /// `discovery_timeout` bounds each fleet request: discovery happens at the start of a
    /// window, before any scrape.
    pub fn start(config: &CadvisorConfig, discovery_timeout: Duration) -> Result<Hosts, CadvisorSourceError> {
        Ok(match &config.discovery {
            Discovery::External { standalone: true, .. } => Hosts::Standalone,
            Discovery::External { hosts_file, .. } => Hosts::File(HostsWatcher::start(hosts_file)?),
            Discovery::Coreos { endpoints, api } => Hosts::Fleet(
                Fleet::new(endpoints.clone(), *api, discovery_timeout)
                    .map_err(CadvisorSourceError::Client)?,
            ),
        })
    }

    /// The hosts in force now.
    pub async fn current(&mut self) -> Vec<Host> {
        match self {
            Hosts::File(watcher) => watcher.hosts(),
            Hosts::Standalone => {
                vec![Host { name: "localhost".into(), ip: "127.0.0.1".into(), ..Host::default() }]
            }
            Hosts::Fleet(fleet) => fleet.machines().await,
        }
    }
}

/// Machine bodies by host: capacity rarely changes, so it is read once per host and again
/// after the host failed.
#[derive(Clone, Default)]
pub struct MachineCache(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl MachineCache {
    fn get(&self, host: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(host).cloned()
    }

    fn put(&self, host: &str, body: Option<Vec<u8>>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match body {
            Some(body) => map.insert(host.to_string(), body),
            None => map.remove(host),
        };
    }

    /// Forgets hosts no longer listed.
    fn retain(&self, hosts: &[Host]) {
        let names: std::collections::HashSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|k, _| names.contains(k.as_str()));
    }
}

/// One host's scrape for the window ending at `time`: the machine body (cached) and the
/// subcontainers.
pub async fn scrape_host(
    client: &CadvisorClient,
    machines: &MachineCache,
    host: &Host,
    time: Time,
    resolution: Duration,
) -> CadvisorScrape {
    let target = host.target();
    let mut machine = machines.get(&host.name);
    if machine.is_none() {
        match client.machine(&target.target).await {
            Ok(body) => machine = Some(body),
            // Capacity is optional; the stats are what matter.
            Err(e) => tracing::debug!(host = %host.name, "machine info: {e}"),
        }
    }
    let start = time.saturating_sub(resolution.as_millis() as u64);
    let body = client.subcontainers(&target.target, start, time.max(now_ms())).await;
    machines.put(&host.name, if body.is_ok() { machine.clone() } else { None });
    CadvisorScrape { host: target, machine, body }
}

/// Scrapes hosts' cAdvisor, with their machine bodies cached.
#[derive(Clone)]
struct Cadvisors {
    client: CadvisorClient,
    machines: MachineCache,
    resolution: Duration,
}

impl Fetch for Cadvisors {
    type Node = Host;
    type Body = CadvisorScrape;

    fn name(host: &Host) -> &str {
        &host.name
    }

    async fn fetch(&self, host: Host, time: Time) -> CadvisorScrape {
        scrape_host(&self.client, &self.machines, &host, time, self.resolution).await
    }

    fn failure(scrape: &CadvisorScrape) -> Option<&ScrapeError> {
        scrape.body.as_ref().err()
    }
}

/// The discovered hosts as a live source.
struct Discovered {
    hosts: Hosts,
    fetch: Cadvisors,
}

impl Live for Discovered {
    type Fetch = Cadvisors;

    async fn window(&mut self, _time: Time) -> Window<Host> {
        let nodes = self.hosts.current().await;
        self.fetch.machines.retain(&nodes);
        Window { nodes, changes: Vec::new() }
    }

    fn fetcher(&self) -> Cadvisors {
        self.fetch.clone()
    }
}

/// Runs windows until `stop` is set, feeding the workers.
pub async fn run(
    config: CadvisorConfig,
    feeds: Feeds,
    resolution: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), CadvisorSourceError> {
    let timeout = config.timeout.min(resolution.saturating_sub(resolution / 5 + jitter_max(resolution)));
    let client = CadvisorClient::new(config.port, timeout).map_err(CadvisorSourceError::Client)?;
    let hosts = Hosts::start(&config, timeout.min(resolution / 5))?;
    let fetch = Cadvisors { client, machines: MachineCache::default(), resolution };
    tracing::info!(
        resolution = %humantime::format_duration(resolution),
        timeout = %humantime::format_duration(timeout),
        "collecting from cAdvisor"
    );
    live::run(Discovered { hosts, fetch }, feeds, resolution, stop, None).await?;
    tracing::info!("cAdvisor source stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn standalone_scrapes_localhost_only() {
        let config =
            CadvisorConfig::from_uri("cadvisor:external?standalone=true&hostsFile=/nonexistent/hosts")
                .expect("config");
        let mut hosts = Hosts::start(&config, Duration::from_secs(1)).expect("no hosts file needed");
        let list = hosts.current().await;
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].name.as_str(), list[0].ip.as_str()), ("localhost", "127.0.0.1"));
    }

    #[test]
    fn a_missing_hosts_directory_is_named() {
        let config =
            CadvisorConfig::from_uri("cadvisor:external?hostsFile=/nonexistent/dir/hosts").expect("config");
        let Err(err) = Hosts::start(&config, Duration::from_secs(1)) else { panic!("no directory to watch") };
        assert!(
            err.to_string().contains("hosts file /nonexistent/dir/hosts: cannot watch /nonexistent/dir"),
            "{err}"
        );
    }
}
