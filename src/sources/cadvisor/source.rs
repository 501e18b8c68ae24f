//! The live cAdvisor source: every window, the hosts as discovered, then every host's cAdvisor,
//! each worker's hosts scraped by that worker's own task.
//!
//! The same protocol and rules as the Kubernetes source ([`crate::sources::kubernetes::source`]):
//! windows end on multiples of the resolution; scrapes are spread over the first tenth of the
//! window; a host that fails or hangs costs only itself (per-host timeout, bounded by the
//! window), its state changes are logged once by [`Health`]; every worker gets its `Close`
//! whatever the hosts do.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::Sender;
use futures::StreamExt;
use heapster_dataflows::Time;
use heapster_dataflows::model::node_owner;

use super::config::{CadvisorConfig, Discovery};
use super::fleet::Fleet;
use super::hosts::{HostsError, HostsWatcher};
use super::scrape::CadvisorClient;
use super::{CadvisorScrape, Host};
use crate::bridge::Feed;
use crate::sources::health::Health;
use crate::sources::kubernetes::source::{SourceError, jitter, jitter_max, now_ms, sleep_until};

/// Scrapes in flight per worker.
const CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CadvisorSourceError {
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error("cAdvisor client: {0}")]
    Client(String),
    #[error(transparent)]
    Source(#[from] SourceError),
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

/// Runs windows until `stop` is set, feeding the workers.
pub async fn run(
    config: CadvisorConfig,
    feeds: Vec<Sender<Feed>>,
    resolution: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), CadvisorSourceError> {
    let timeout = config.timeout.min(resolution.saturating_sub(resolution / 5 + jitter_max(resolution)));
    let client = CadvisorClient::new(config.port, timeout).map_err(CadvisorSourceError::Client)?;
    let mut hosts = Hosts::start(&config, timeout.min(resolution / 5))?;
    let machines = MachineCache::default();
    let health = Arc::new(Health::default());
    let step = resolution.as_millis().max(1) as u64;
    let mut next = (now_ms() / step + 1) * step;
    tracing::info!(
        resolution = %humantime::format_duration(resolution),
        timeout = %humantime::format_duration(timeout),
        "collecting from cAdvisor"
    );
    while sleep_until(next, &stop).await {
        let list = hosts.current().await;
        machines.retain(&list);
        tracing::debug!(window = next, hosts = list.len(), "window");
        feed_window(&feeds, next, list, &client, &machines, &health, resolution).await?;
        let now = now_ms();
        next += step;
        if now >= next {
            let skipped = (now - next) / step + 1;
            tracing::warn!(skipped, "scrapes took longer than the resolution; windows skipped");
            next += skipped * step;
        }
    }
    tracing::info!("cAdvisor source stopped");
    Ok(())
}

async fn feed_window(
    feeds: &[Sender<Feed>],
    time: Time,
    hosts: Vec<Host>,
    client: &CadvisorClient,
    machines: &MachineCache,
    health: &Arc<Health>,
    resolution: Duration,
) -> Result<(), SourceError> {
    let mut per_worker: Vec<Vec<Host>> = vec![Vec::new(); feeds.len()];
    for host in hosts {
        per_worker[node_owner(&host.name, feeds.len())].push(host);
    }
    let tasks: Vec<_> = per_worker
        .into_iter()
        .zip(feeds.iter().cloned())
        .map(|(hosts, feed)| {
            let (client, machines, health) = (client.clone(), machines.clone(), Arc::clone(health));
            tokio::spawn(async move {
                let mut scrapes = futures::stream::iter(hosts)
                    .map(|host| {
                        let (client, machines) = (&client, &machines);
                        async move {
                            tokio::time::sleep(jitter(&host.name, resolution)).await;
                            scrape_host(client, machines, &host, time, resolution).await
                        }
                    })
                    .buffer_unordered(CONCURRENCY);
                while let Some(scrape) = scrapes.next().await {
                    match &scrape.body {
                        Ok(_) => health.record(&scrape.host.target.name, Ok(())),
                        Err(e) => health.record(&scrape.host.target.name, Err(&e.to_string())),
                    }
                    send(&feed, Feed::Cadvisor { time, scrape: Box::new(scrape) })?;
                }
                send(&feed, Feed::Close { time })
            })
        })
        .collect();
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => tracing::error!("a scrape task failed: {e}"),
        }
    }
    result
}

fn send(feed: &Sender<Feed>, message: Feed) -> Result<(), SourceError> {
    tokio::task::block_in_place(|| feed.send(message)).map_err(|_| SourceError::WorkersGone)
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
