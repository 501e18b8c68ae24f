//! Machines from a CoreOS fleet cluster, asked again every window.
//!
//! Two ways, as fleet exposes them: its registry in etcd's v2 keys API (what Heapster read:
//! `GET /v2/keys/_coreos.com/fleet/machines?recursive=true&sorted=true`, one
//! `<ID>/object` key per machine holding `{"ID","PublicIP","Metadata","Version"}`), and fleet's
//! own HTTP API (`GET /fleet/v1/machines`, paged by `nextPageToken`). Endpoints are tried in
//! order until one answers. When none does, the last known machines are kept; the outage and
//! the recovery are logged once each.
//!
//! A machine is named by its fleet machine ID (stable across address changes), reached at its
//! public IP, and its metadata becomes the node's `labels`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Host;
use super::config::FleetApi;

const MACHINES_KEY: &str = "/v2/keys/_coreos.com/fleet/machines?recursive=true&sorted=true";
const FLEET_MACHINES: &str = "/fleet/v1/machines";
/// Pages followed at most, against a server that never stops paging.
const MAX_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{url}: {}", crate::errors::error_chain(source))]
    Request { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: {message}")]
    Body { url: String, message: String },
    /// The endpoint answered, but is not etcd (auto mode then asks fleet's API).
    #[error("{url}: not an etcd keys API (HTTP {status})")]
    NotEtcd { url: String, status: u16 },
}

/// Fleet discovery with the last known answer.
pub struct Fleet {
    client: reqwest::Client,
    endpoints: Vec<url::Url>,
    api: FleetApi,
    last: Vec<Host>,
    failing: Option<String>,
}

impl Fleet {
    pub fn new(endpoints: Vec<url::Url>, api: FleetApi, timeout: Duration) -> Result<Fleet, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Fleet { client, endpoints, api, last: Vec::new(), failing: None })
    }

    /// The machines now, or the last known ones if no endpoint answers.
    pub async fn machines(&mut self) -> Vec<Host> {
        let mut errors = Vec::new();
        for endpoint in &self.endpoints {
            match self.ask(endpoint).await {
                Ok(hosts) => {
                    if self.failing.take().is_some() {
                        tracing::info!(endpoint = %endpoint, machines = hosts.len(), "fleet answers again");
                    }
                    self.last = hosts;
                    return self.last.clone();
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let message = errors.join("; ");
        if self.failing.as_deref() != Some(&message) {
            tracing::warn!(
                machines = self.last.len(),
                "fleet discovery failed: {message}; keeping the last known machines"
            );
            self.failing = Some(message);
        }
        self.last.clone()
    }

    async fn ask(&self, endpoint: &url::Url) -> Result<Vec<Host>, FleetError> {
        match self.api {
            FleetApi::Etcd => etcd_machines(&self.client, endpoint).await,
            FleetApi::Fleet => fleet_machines(&self.client, endpoint).await,
            FleetApi::Auto => match etcd_machines(&self.client, endpoint).await {
                Err(FleetError::NotEtcd { .. }) => fleet_machines(&self.client, endpoint).await,
                other => other,
            },
        }
    }
}

fn join(endpoint: &url::Url, path_and_query: &str) -> String {
    format!("{}{path_and_query}", endpoint.as_str().trim_end_matches('/'))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, bytes::Bytes), FleetError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|source| FleetError::Request { url: url.to_string(), source })?;
    let status = response.status().as_u16();
    let body =
        response.bytes().await.map_err(|source| FleetError::Request { url: url.to_string(), source })?;
    Ok((status, body))
}

/// etcd's v2 answer: a directory node of machine directories.
#[derive(Deserialize)]
struct EtcdResponse {
    node: Option<EtcdNode>,
}

#[derive(Deserialize)]
struct EtcdNode {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    nodes: Vec<EtcdNode>,
}

#[derive(Deserialize)]
struct EtcdError {
    #[serde(rename = "errorCode")]
    error_code: u32,
}

/// fleet's `MachineState` as it stores it in etcd.
#[derive(Deserialize)]
struct MachineState {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "PublicIP", default)]
    public_ip: String,
    #[serde(rename = "Metadata", default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// etcd's "Key not found": no machine has registered yet.
const ETCD_KEY_NOT_FOUND: u32 = 100;

pub async fn etcd_machines(client: &reqwest::Client, endpoint: &url::Url) -> Result<Vec<Host>, FleetError> {
    let url = join(endpoint, MACHINES_KEY);
    let (status, body) = get(client, &url).await?;
    if status == 404 {
        return match serde_json::from_slice::<EtcdError>(&body) {
            Ok(e) if e.error_code == ETCD_KEY_NOT_FOUND => Ok(Vec::new()),
            _ => Err(FleetError::NotEtcd { url, status }),
        };
    }
    if !(200..300).contains(&status) {
        return Err(FleetError::Status { url, status, body: excerpt(&body) });
    }
    let parsed: EtcdResponse = serde_json::from_slice(&body).map_err(|e| FleetError::Body {
        url: url.clone(),
        message: format!("not an etcd keys answer: {e}"),
    })?;
    let mut hosts = Vec::new();
    for machine in parsed.node.map(|n| n.nodes).unwrap_or_default() {
        let Some(object) = machine.nodes.iter().find(|n| n.key.ends_with("/object")) else { continue };
        let Some(value) = &object.value else { continue };
        match serde_json::from_str::<MachineState>(value) {
            Ok(state) if !state.id.is_empty() => hosts.push(Host {
                name: state.id.clone(),
                ip: state.public_ip,
                id: state.id,
                labels: state.metadata.unwrap_or_default(),
            }),
            Ok(_) => tracing::warn!(key = %object.key, "fleet machine without an ID; skipped"),
            Err(e) => tracing::warn!(key = %object.key, "fleet machine object: {e}; skipped"),
        }
    }
    Ok(super::HostList { items: hosts }.normalized().items)
}

#[derive(Deserialize)]
struct MachinePage {
    #[serde(default)]
    machines: Vec<Machine>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Machine {
    #[serde(default)]
    id: String,
    #[serde(rename = "primaryIP", default)]
    primary_ip: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

pub async fn fleet_machines(client: &reqwest::Client, endpoint: &url::Url) -> Result<Vec<Host>, FleetError> {
    let mut hosts = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let url = match &token {
            Some(t) => {
                let encoded: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
                join(endpoint, &format!("{FLEET_MACHINES}?nextPageToken={encoded}"))
            }
            None => join(endpoint, FLEET_MACHINES),
        };
        let (status, body) = get(client, &url).await?;
        if !(200..300).contains(&status) {
            return Err(FleetError::Status { url, status, body: excerpt(&body) });
        }
        let page: MachinePage = serde_json::from_slice(&body)
            .map_err(|e| FleetError::Body { url: url.clone(), message: format!("not a MachinePage: {e}") })?;
        for m in page.machines.into_iter().filter(|m| !m.id.is_empty()) {
            hosts.push(Host {
                name: m.id.clone(),
                ip: m.primary_ip,
                id: m.id,
                labels: m.metadata.unwrap_or_default(),
            });
        }
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(super::HostList { items: hosts }.normalized().items),
        }
    }
    Err(FleetError::Body {
        url: join(endpoint, FLEET_MACHINES),
        message: format!("more than {MAX_PAGES} pages"),
    })
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect::<String>().trim().to_string()
}
