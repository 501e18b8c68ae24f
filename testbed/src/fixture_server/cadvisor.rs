//! A recorded cAdvisor scenario served back over real HTTP on loopback: one cAdvisor per host
//! (each on its own 127.0.0.x address, all on the same port, as in a real fleet) and fleet's
//! HTTP API, misbehaving as the scenario's fault files say.
//!
//! # Timeline
//! The server is in window `k` (from 0). It enters `k+1` once every host listed in window k
//! has requested its subcontainers since `k` began, or on [`CadvisorFixture::advance`], or,
//! with `advance_every` set, that long after entering `k`; it stays on the last window.
//!
//! # cAdvisor
//! `POST` (or `GET`) `/api/v1.3/subcontainers[/]` answers the host's body of the current
//! window (404 if the scenario has none), `GET /api/v1.3/machine` its machine body in force,
//! `/healthz` `ok`, anything else 404 as cAdvisor does. `windows/NNNN/cadvisor/<host>.fault.json`
//! takes the kubelet fault format (`delay_ms`, `status`/`body`, `garbage`, `truncate`).
//!
//! # Fleet
//! `GET /fleet/v1/machines` lists the current window's hosts as fleet's `MachinePage`
//! (`id` = the host's ID or name, `primaryIP` = its loopback address, `metadata` = its labels),
//! `page_size` machines a page, following pages by `nextPageToken`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::http::{self, Body};
use super::{FixtureError, KubeletFault, Tasks, listen};
use heapster::scenario::Scenario;
use heapster::sources::cadvisor::Host;
use heapster::sources::cadvisor::hosts::read_hosts;

/// Bytes that no JSON parser accepts.
const GARBAGE: &[u8] = b"\x1f\x8b\x08\x00<html><body>502 Bad Gateway</body></html>\xff\xfe\x00";
const NOT_FOUND: &str = "404 page not found\n";

#[derive(Clone, Debug)]
pub struct CadvisorFixtureConfig {
    pub scenario: PathBuf,
    /// The first host's address; the others follow in name order. Must be loopback.
    pub base_ip: Ipv4Addr,
    /// cAdvisor's port on every address; 0 picks one free on all of them.
    pub port: u16,
    /// Where fleet's HTTP API listens; port 0 picks one.
    pub fleet_listen: SocketAddr,
    /// Machines per page of fleet's API.
    pub page_size: usize,
    /// Enter the next window this long after the current one, instead of when every host was
    /// scraped.
    pub advance_every: Option<Duration>,
}

impl CadvisorFixtureConfig {
    pub fn new(scenario: impl Into<PathBuf>) -> CadvisorFixtureConfig {
        CadvisorFixtureConfig {
            scenario: scenario.into(),
            base_ip: Ipv4Addr::new(127, 0, 0, 2),
            port: 0,
            fleet_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            page_size: 2,
            advance_every: None,
        }
    }
}

struct Clock {
    window: usize,
    entered: tokio::time::Instant,
    scraped: BTreeSet<String>,
}

struct Shared {
    scenario: Scenario,
    /// Host lists by window (inherited where a window has none).
    hosts: Vec<Vec<Host>>,
    addrs: BTreeMap<String, Ipv4Addr>,
    faults: BTreeMap<(usize, String), KubeletFault>,
    scrape_driven: bool,
    page_size: usize,
    clock: Mutex<Clock>,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn window(&self) -> usize {
        self.clock().window
    }

    /// Counts a subcontainers request; returns the window whose body it gets.
    fn scrape(&self, host: &str) -> usize {
        *self.requests.lock().unwrap_or_else(PoisonError::into_inner).entry(host.to_string()).or_default() +=
            1;
        let mut clock = self.clock();
        let window = clock.window;
        clock.scraped.insert(host.to_string());
        let listed = &self.hosts[window];
        if self.scrape_driven && listed.iter().all(|h| clock.scraped.contains(&h.name)) {
            self.enter_next(&mut clock);
        }
        window
    }

    fn enter_next(&self, clock: &mut Clock) -> bool {
        if clock.window + 1 >= self.hosts.len() {
            return false;
        }
        clock.window += 1;
        clock.scraped.clear();
        clock.entered = tokio::time::Instant::now();
        true
    }

    /// The hosts of `window`, with the addresses this server gave them.
    fn listed(&self, window: usize) -> Vec<Host> {
        self.hosts[window.min(self.hosts.len() - 1)]
            .iter()
            .map(|h| Host {
                ip: self.addrs.get(&h.name).map(ToString::to_string).unwrap_or_default(),
                ..h.clone()
            })
            .collect()
    }
}

/// A running cAdvisor fixture; it stops on [`CadvisorFixture::shutdown`] or when dropped.
pub struct CadvisorFixture {
    shared: Arc<Shared>,
    tasks: Tasks,
    port: u16,
    fleet_addr: SocketAddr,
}

impl CadvisorFixture {
    pub async fn start(config: CadvisorFixtureConfig) -> Result<CadvisorFixture, FixtureError> {
        let scenario = Scenario::open(&config.scenario)?;
        if !scenario.is_cadvisor() {
            return Err(FixtureError::Config(format!(
                "{} is not a cAdvisor scenario",
                config.scenario.display()
            )));
        }
        let mut hosts = Vec::with_capacity(scenario.windows.len());
        let mut names = BTreeSet::new();
        let mut faults = BTreeMap::new();
        for window in &scenario.windows {
            let file = scenario.cadvisor_hosts_file(window.index).ok_or_else(|| {
                FixtureError::Config(format!("window {} has no cadvisor/hosts.json", window.index))
            })?;
            let list = read_hosts(&file)
                .map_err(|e| FixtureError::BadFile { file: file.clone(), what: e.to_string() })?;
            for host in &list {
                names.insert(host.name.clone());
                let fault = scenario.cadvisor_fault_path(window.index, &host.name);
                if let Ok(bytes) = std::fs::read(&fault) {
                    let parsed: KubeletFault = serde_json::from_slice(&bytes)
                        .map_err(|e| FixtureError::BadFile { file: fault.clone(), what: e.to_string() })?;
                    faults.insert((window.index, host.name.clone()), parsed);
                }
            }
            hosts.push(list);
        }
        let addrs = listen::kubelet_addrs(&names, config.base_ip)?;
        let mut tasks = Tasks::default();
        let listeners = listen::bind_same_port(&addrs, config.port, "cAdvisor").await?;
        let port = listen::local_port(listeners.first());
        let shared = Arc::new(Shared {
            scenario,
            hosts,
            addrs: addrs.iter().cloned().collect(),
            faults,
            scrape_driven: config.advance_every.is_none(),
            page_size: config.page_size.max(1),
            clock: Mutex::new(Clock {
                window: 0,
                entered: tokio::time::Instant::now(),
                scraped: BTreeSet::new(),
            }),
            requests: Mutex::new(BTreeMap::new()),
        });
        if let Some(every) = config.advance_every {
            let shared = shared.clone();
            let every = every.max(Duration::from_millis(1));
            tasks.0.push(tokio::spawn(async move {
                loop {
                    let due = shared.clock().entered + every;
                    tokio::time::sleep_until(due).await;
                    let mut clock = shared.clock();
                    if clock.entered + every <= tokio::time::Instant::now() && !shared.enter_next(&mut clock)
                    {
                        return;
                    }
                }
            }));
        }
        for ((host, _), listener) in addrs.iter().zip(listeners) {
            let (shared, host) = (shared.clone(), Arc::<str>::from(host.as_str()));
            let handler = Arc::new(move |request| cadvisor(shared.clone(), host.clone(), request));
            tasks.0.push(http::serve(listener, None, handler));
        }
        let fleet_listener = listen::bind(config.fleet_listen, "fleet's API").await?;
        let fleet_addr = listen::reachable(fleet_listener.local_addr().map_err(FixtureError::Runtime)?);
        let handler = {
            let shared = shared.clone();
            Arc::new(move |request| fleet(shared.clone(), request))
        };
        tasks.0.push(http::serve(fleet_listener, None, handler));
        Ok(CadvisorFixture { shared, tasks, port, fleet_addr })
    }

    /// cAdvisor's port on every host address.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self, host: &str) -> Option<Ipv4Addr> {
        self.shared.addrs.get(host).copied()
    }

    /// `http://127.0.0.1:PORT`: fleet's API.
    pub fn fleet_url(&self) -> String {
        format!("http://{}", self.fleet_addr)
    }

    /// The hosts listed in `window`, with their loopback addresses: a hosts file's contents.
    pub fn hosts(&self, window: usize) -> Vec<Host> {
        self.shared.listed(window)
    }

    pub fn window(&self) -> usize {
        self.shared.window()
    }

    pub fn windows(&self) -> usize {
        self.shared.hosts.len()
    }

    /// Enters the next window now (no-op on the last one).
    pub fn advance(&self) -> bool {
        let mut clock = self.shared.clock();
        self.shared.enter_next(&mut clock)
    }

    /// Subcontainers requests by host.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.shared.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks.0);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn cadvisor(shared: Arc<Shared>, host: Arc<str>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    match path {
        "/api/v1.3/subcontainers" | "/api/v1.3/subcontainers/" => {}
        "/api/v1.3/machine" | "/api/v1.3/machine/" => {
            let window = shared.window();
            return match shared.scenario.cadvisor_machine_path(window, &host).map(std::fs::read) {
                Some(Ok(bytes)) => http::json(StatusCode::OK, bytes),
                _ => http::text(StatusCode::NOT_FOUND, NOT_FOUND),
            };
        }
        "/healthz" => return http::text(StatusCode::OK, "ok"),
        _ => return http::text(StatusCode::NOT_FOUND, NOT_FOUND),
    }
    if request.method() != Method::POST && request.method() != Method::GET {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let window = shared.scrape(&host);
    let fault = shared.faults.get(&(window, host.to_string())).cloned().unwrap_or_default();
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (status, content_type, body) = match fault.status.filter(|&s| s != 200) {
        Some(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text =
                fault.body.clone().unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
            (status, "text/plain; charset=utf-8", Bytes::from(text))
        }
        None => match tokio::fs::read(shared.scenario.cadvisor_path(window, &host)).await {
            Ok(bytes) => (StatusCode::OK, "application/json", Bytes::from(bytes)),
            Err(_) => return http::text(StatusCode::NOT_FOUND, NOT_FOUND),
        },
    };
    let body = if fault.garbage { Bytes::from_static(GARBAGE) } else { body };
    match fault.truncate {
        Some(keep) if keep < body.len() => http::truncated(status, content_type, body, keep),
        _ => http::response(status, content_type, body),
    }
}

async fn fleet(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() != "/fleet/v1/machines" {
        return http::json(StatusCode::NOT_FOUND, r#"{"error":{"code":404,"message":"resource not found"}}"#);
    }
    if request.method() != Method::GET {
        return http::json(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":{"code":405,"message":"only GET"}}"#);
    }
    let start: usize = request
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "nextPageToken"))
        .and_then(|(_, v)| v.strip_prefix("page-").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let hosts = shared.listed(shared.window());
    let end = (start + shared.page_size).min(hosts.len());
    let machines: Vec<_> = hosts[start.min(end)..end]
        .iter()
        .map(|h| {
            let id = if h.id.is_empty() { &h.name } else { &h.id };
            json!({"id": id, "primaryIP": h.ip, "metadata": h.labels})
        })
        .collect();
    let mut page = json!({ "machines": machines });
    if end < hosts.len() {
        page["nextPageToken"] = json!(format!("page-{end}"));
    }
    http::json(StatusCode::OK, page.to_string())
}
