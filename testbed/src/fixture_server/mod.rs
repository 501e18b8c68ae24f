//! A recorded cluster served back over real HTTP on loopback: a kube-apiserver (HTTPS, bearer
//! token, lists and watches with resource versions) and one kubelet per node (read-only HTTP and
//! HTTPS `/stats/summary`), both misbehaving as the scenario says. The live Kubernetes source is
//! tested against it, since no real cluster runs here.
//!
//! # Timeline
//! The server is in window `k` (from 0). It enters `k+1` once every node Ready in window k's node
//! list has *requested* `/stats/summary` since `k` began (on arrival, whatever the answer), or on
//! `POST /fixture/advance` / [`FixtureServer::advance`]; it stays on the last window. A window
//! whose node list has no Ready node waits for a forced advance. With
//! [`FixtureConfig::advance_every`] set, a timer drives the clock instead of the scrapes (for
//! collectors that scrape nothing, such as an events-only one): each window lasts that long
//! from when it was entered, however it was entered. On entering `k+1`, the API
//! objects become window k+1's lists at once (watchers get the events), and kubelets answer
//! window k+1's bodies; a summary request gets the body of the window it arrived in.
//! `GET /fixture/state` answers `{"window": k, "windows": n}`; `GET /fixture/stats`
//! `{"summaries": total summary requests, "nodes": nodes that asked at least once}`.
//!
//! # API objects
//! Lists are the scenario's files in force ([`Scenario::api_file`]), items sorted by
//! namespace/name, with resource versions rewritten: one counter stamps window 0's objects 1..n
//! (nodes, pods, namespaces, then events), then every difference between consecutive windows
//! (by namespace/name: ADDED, MODIFIED, DELETED with the last state) gets the next value; a list
//! answers the counter. Events are objects like the others: a repeated event (same name, `count`
//! bumped) is MODIFIED, one gone from the list (past its TTL) is DELETED. Nodes'
//! `InternalIP`/`ExternalIP` addresses become their kubelet's loopback address and
//! `daemonEndpoints.kubeletEndpoint.Port` the kubelets' HTTPS port. Served: `/api/v1/nodes`,
//! `/api/v1/pods`, `/api/v1/namespaces`, `/api/v1/events`, `/api/v1/namespaces/{ns}/pods`,
//! `/api/v1/namespaces/{ns}/events`, single objects under each, the same events as
//! `events.k8s.io/v1` under `/apis/events.k8s.io/v1/[namespaces/{ns}/]events` (converted as the
//! apiserver converts them: `note`, `regarding`, `deprecatedCount`, ...), `/version`, `/api`,
//! `/apis`, `/api/v1`, `/apis/events.k8s.io[/v1]`, `/healthz`. A list with `limit=N` is paged
//! as the apiserver pages it: N items of a snapshot, `continue` and `remainingItemCount` while
//! more remain, every page of one list at the first page's resource version, a token for a
//! snapshot long gone `410 Expired` ([`paging`]); without `limit` a list is one page. A list's
//! `resourceVersion`/`resourceVersionMatch` get the current state, and
//! `labelSelector`/`fieldSelector` are ignored.
//!
//! Watches (`watch=1|true`): from `resourceVersion` N, the logged events above N, then new ones;
//! from 0 or none (or with `sendInitialEvents=true`), ADDED events of the current objects first.
//! `allowWatchBookmarks=true` adds a BOOKMARK every `bookmark_interval` and after each window
//! change (and after the initial events, with `sendInitialEvents`). The log keeps
//! `event_log_capacity` events; a watch from before it gets a 410 `Expired` ERROR event and ends,
//! as from a real apiserver; the log never drops the changes of the window last entered, so a
//! watch that was current before a burst gets all of it. `timeoutSeconds` ends the stream
//! cleanly. Each line is encoded once, when its change is logged, and sent in chunks of about
//! 256 KiB.
//!
//! # Fault files
//! `windows/NNNN/api/faults.json`, all fields optional:
//! `{"watch_gone": true}` on entering the window, open watches get the 410 ERROR and end, and
//! the log is compacted so resuming from an old RV is 410 too (the client must list again);
//! `{"drop_watches": true}` on entering the window, open watch connections are cut with no final
//! chunk, before that window's events; `{"list_error": 500}` lists and gets answer a `Status`
//! with that code while the window is current.
//!
//! `windows/NNNN/kubelet/<node>.fault.json`, all fields optional, applied in this order:
//! `{"delay_ms": 15000}` answer late; `{"status": 500, "body": "text"}` answer that status and
//! text (default: the reason phrase) instead of the summary; `{"garbage": true}` answer 200 with
//! bytes that are not JSON; `{"truncate": 1000}` declare the full `Content-Length`, send only the
//! first 1000 bytes, then close; `{"endless": true}` answer 200 with the summary followed by
//! whitespace without end (chunked); `{"declared_length": 100000000000}` answer 200 declaring
//! that `Content-Length` and send the summary, then whitespace up to it. A missing summary file
//! answers 404.
//!
//! # cAdvisor
//! cAdvisor scenarios (`windows/NNNN/cadvisor/`) are served by [`CadvisorFixture`]: one cAdvisor
//! per host on 127.0.0.x, same port for all, and fleet's HTTP API (format in its module).
//!
//! # Security
//! With a token, every apiserver path and the kubelets' HTTPS port need `Authorization: Bearer`
//! (401 otherwise: a `Status` from the apiserver, plain text from a kubelet, as the real ones);
//! the kubelets' read-only HTTP port needs nothing. Certificates come from a CA made at start;
//! `ca.crt` and a `kubeconfig` (JSON) that trusts it are written into `tls_dir`.

mod aggregation;
mod apiserver;
mod cadvisor;
mod clock;
mod faults;
mod filler;
pub mod google;
mod http;
mod kubelet;
mod listen;
mod load;
mod paging;
mod status;
mod store;
mod tls;
mod watch;

#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use clock::Clock;
use faults::Faults;
use heapster::scenario::{ApiList, Scenario, ScenarioError};
use load::KubeletAddrs;
use store::Store;

pub use aggregation::ApiRequest;
pub use cadvisor::{CadvisorFixture, CadvisorFixtureConfig};
pub use faults::{ApiFaults, KubeletFault};

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("fixture file {file}: {what}")]
    BadFile { file: PathBuf, what: String },
    #[error("fixture server: cannot listen for {what} on {addr}: {source}")]
    Bind { what: String, addr: SocketAddr, source: io::Error },
    #[error("fixture server: cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("fixture server: certificates: {0}")]
    Tls(String),
    #[error("fixture server: {0}")]
    Config(String),
    #[error("fixture server: runtime: {0}")]
    Runtime(io::Error),
}

#[derive(Clone, Debug)]
pub struct FixtureConfig {
    pub scenario: PathBuf,
    /// The apiserver's HTTPS address; port 0 picks one.
    pub listen: SocketAddr,
    /// Also serve the apiserver over plain HTTP here, for poking at it by hand.
    pub listen_http: Option<SocketAddr>,
    /// Bearer token the apiserver and the kubelets' HTTPS port require; `None` lets anyone in.
    pub token: Option<String>,
    /// Where `ca.crt` and `kubeconfig` are written.
    pub tls_dir: PathBuf,
    /// Serve certificates for this name only, so that clients verifying hostnames fail.
    pub cert_name_override: Option<String>,
    /// The first kubelet's address; the others follow in node-name order. Must be loopback.
    pub kubelet_base_ip: Ipv4Addr,
    /// The kubelets' read-only HTTP and HTTPS ports, the same on every address; 0 picks free ones.
    pub kubelet_http_port: u16,
    pub kubelet_https_port: u16,
    /// Watch events kept for watches resuming from a resource version.
    pub event_log_capacity: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Enter the next window this long after entering the current one, instead of when every
    /// Ready node has been scraped. `None` (the default) keeps the scrape-driven clock.
    pub advance_every: Option<Duration>,
    /// Also serve the Google emulation ([`google`]) here, from [`serve_forever`].
    pub google_listen: Option<SocketAddr>,
}

impl FixtureConfig {
    pub fn new(scenario: impl Into<PathBuf>, tls_dir: impl Into<PathBuf>) -> FixtureConfig {
        FixtureConfig {
            scenario: scenario.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            listen_http: None,
            token: None,
            tls_dir: tls_dir.into(),
            cert_name_override: None,
            kubelet_base_ip: Ipv4Addr::new(127, 0, 0, 2),
            kubelet_http_port: 0,
            kubelet_https_port: 0,
            event_log_capacity: 10_000,
            bookmark_interval: Duration::from_secs(5),
            advance_every: None,
            google_listen: None,
        }
    }
}

/// Counters for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixtureStats {
    /// List answers, errors included.
    pub lists: u64,
    /// Of those, pages answered for a `continue` token.
    pub list_pages: u64,
    pub gets: u64,
    pub discovery: u64,
    pub watches_opened: u64,
    /// ADDED, MODIFIED and DELETED events sent.
    pub watch_events: u64,
    pub bookmarks: u64,
    /// 410 `Expired` ERROR events sent.
    pub watches_expired: u64,
    pub watches_dropped: u64,
    pub api_unauthorized: u64,
    /// Answers forced by a `list_error` fault.
    pub api_faults: u64,
    /// `/stats/summary` requests by node, counted on arrival.
    pub summaries: BTreeMap<String, u64>,
    /// The `User-Agent`s that asked each node for its summary (cluster mode names the process).
    pub summary_agents: BTreeMap<String, std::collections::BTreeSet<String>>,
    pub kubelet_unauthorized: u64,
    pub kubelet_faults: u64,
    pub advances: u64,
}

struct State {
    clock: Clock,
    /// When the current window was entered, for the timer.
    entered: tokio::time::Instant,
    store: Store,
    /// Bumped by a `watch_gone` fault: open watches end with 410.
    gone_epoch: u64,
    /// Bumped by a `drop_watches` fault: open watches are cut.
    drop_epoch: u64,
}

/// What the handlers share.
struct Shared {
    scenario: Scenario,
    token: Option<String>,
    kubelets: KubeletAddrs,
    faults: Faults,
    bookmark_interval: Duration,
    /// Whether scrapes move the clock (no `advance_every`).
    scrape_driven: bool,
    state: Mutex<State>,
    /// Bumped after every window change, waking watches.
    changes: tokio::sync::watch::Sender<u64>,
    stats: Mutex<FixtureStats>,
    /// The snapshots behind `continue` tokens.
    pager: paging::Pager,
    /// The aggregated `metrics.k8s.io` backend and the requests seen.
    aggregation: aggregation::Aggregation,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, bump: impl FnOnce(&mut FixtureStats)) {
        bump(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Records a summary request from `node`; returns the window whose body it gets.
    fn scrape(&self, node: &str) -> usize {
        self.count(|s| *s.summaries.entry(node.to_string()).or_default() += 1);
        let mut state = self.state();
        let (window, complete) = state.clock.scrape(node);
        if complete && self.scrape_driven {
            self.advance_locked(&mut state);
        }
        window
    }

    fn advance(&self) -> bool {
        let mut state = self.state();
        self.advance_locked(&mut state)
    }

    fn advance_locked(&self, state: &mut State) -> bool {
        if state.clock.is_last() {
            return false;
        }
        let next = state.clock.window() + 1;
        let before = state.store.rv();
        for list in ApiList::WITH_EVENTS {
            if !self.scenario.api_changed(next, list) {
                continue;
            }
            match load::load_list(&self.scenario, next, list, &self.kubelets) {
                Ok(items) => state.store.replace(list, items),
                // Checked at start: only a file changed since could fail here.
                Err(e) => tracing::warn!("fixture server: window {next} keeps the previous {list:?}: {e}"),
            }
        }
        state.store.trim(before);
        let faults = self.faults.api(next);
        if faults.watch_gone {
            state.store.compact_all();
            state.gone_epoch += 1;
        }
        if faults.drop_watches {
            state.drop_epoch += 1;
        }
        let ready = state.store.ready_nodes();
        state.clock.enter_next(ready);
        state.entered = tokio::time::Instant::now();
        self.count(|s| s.advances += 1);
        self.changes.send_modify(|v| *v += 1);
        true
    }
}

/// A running fixture server; it stops on [`FixtureServer::shutdown`] or when dropped.
pub struct FixtureServer {
    shared: Arc<Shared>,
    tasks: Tasks,
    api_addr: SocketAddr,
    api_http_addr: Option<SocketAddr>,
    kubelet_http_port: u16,
    kubelet_https_port: u16,
    files: tls::ClientFiles,
}

impl FixtureServer {
    /// Opens the scenario, checks its files, binds every listener and writes the client files.
    pub async fn start(config: FixtureConfig) -> Result<FixtureServer, FixtureError> {
        heapster::tls::install_crypto_provider();
        let scenario = Scenario::open(&config.scenario)?;
        let faults = Faults::load(&scenario)?;
        load::check_lists(&scenario)?;
        let ca = tls::Ca::new()?;
        let names = load::all_node_names(&scenario)?;
        let addrs = listen::kubelet_addrs(&names, config.kubelet_base_ip)?;

        // Aborts what was started if a later step fails.
        let mut tasks = Tasks::default();
        let http_listeners = listen::bind_same_port(&addrs, config.kubelet_http_port, "kubelet HTTP").await?;
        let https_listeners =
            listen::bind_same_port(&addrs, config.kubelet_https_port, "kubelet HTTPS").await?;
        let kubelet_http_port = listen::local_port(http_listeners.first());
        let kubelet_https_port = listen::local_port(https_listeners.first());
        let kubelets =
            KubeletAddrs { addrs: addrs.iter().cloned().collect(), https_port: kubelet_https_port };

        let initial = ApiList::WITH_EVENTS.map(|list| load::load_list(&scenario, 0, list, &kubelets));
        let [nodes, pods, namespaces, events] = initial;
        let store = Store::new([nodes?, pods?, namespaces?, events?], config.event_log_capacity);
        let clock = Clock::new(scenario.windows.len(), store.ready_nodes());
        let shared = Arc::new(Shared {
            scenario,
            token: config.token.clone(),
            kubelets,
            faults,
            bookmark_interval: config.bookmark_interval.max(Duration::from_millis(10)),
            scrape_driven: config.advance_every.is_none(),
            state: Mutex::new(State {
                clock,
                entered: tokio::time::Instant::now(),
                store,
                gone_epoch: 0,
                drop_epoch: 0,
            }),
            changes: tokio::sync::watch::Sender::new(0),
            stats: Mutex::new(FixtureStats::default()),
            pager: paging::Pager::default(),
            aggregation: aggregation::Aggregation::default(),
        });

        if let Some(every) = config.advance_every {
            tasks.0.push(tokio::spawn(clock::run_timer(shared.clone(), every.max(Duration::from_millis(1)))));
        }

        let api_listener = listen::bind(config.listen, "the apiserver").await?;
        let api_addr = listen::reachable(api_listener.local_addr().map_err(FixtureError::Runtime)?);
        let api_names = match &config.cert_name_override {
            Some(name) => vec![name.clone()],
            None => vec![api_addr.ip().to_string(), "127.0.0.1".into(), "localhost".into(), "::1".into()],
        };
        let api_tls = TlsAcceptor::from(ca.server_config("kube-apiserver", &api_names)?);
        let api_handler = {
            let shared = shared.clone();
            Arc::new(move |request| apiserver::handle(shared.clone(), request))
        };
        tasks.0.push(http::serve(api_listener, Some(api_tls), api_handler.clone()));
        let mut api_http_addr = None;
        if let Some(addr) = config.listen_http {
            let listener = listen::bind(addr, "the apiserver (HTTP)").await?;
            api_http_addr = Some(listen::reachable(listener.local_addr().map_err(FixtureError::Runtime)?));
            tasks.0.push(http::serve(listener, None, api_handler));
        }

        for ((node, addr), (plain, secure)) in
            addrs.iter().zip(http_listeners.into_iter().zip(https_listeners))
        {
            let names = match &config.cert_name_override {
                Some(name) => vec![name.clone()],
                None => vec![addr.to_string(), node.clone()],
            };
            let acceptor = TlsAcceptor::from(ca.server_config(node, &names)?);
            let node: Arc<str> = Arc::from(node.as_str());
            for (listener, tls) in [(plain, None), (secure, Some(acceptor))] {
                let (shared, node, secure) = (shared.clone(), node.clone(), tls.is_some());
                let handler =
                    Arc::new(move |request| kubelet::handle(shared.clone(), node.clone(), secure, request));
                tasks.0.push(http::serve(listener, tls, handler));
            }
        }

        let api_url = format!("https://{api_addr}");
        let files = tls::write_client_files(&config.tls_dir, ca.pem(), &api_url, config.token.as_deref())?;
        Ok(FixtureServer {
            shared,
            tasks,
            api_addr,
            api_http_addr,
            kubelet_http_port,
            kubelet_https_port,
            files,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api_addr)
    }

    /// `http://...` when `listen_http` was set.
    pub fn api_http_url(&self) -> Option<String> {
        self.api_http_addr.map(|addr| format!("http://{addr}"))
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.files.kubeconfig
    }

    pub fn ca_cert(&self) -> &Path {
        &self.files.ca_cert
    }

    pub fn kubelet_http_port(&self) -> u16 {
        self.kubelet_http_port
    }

    pub fn kubelet_https_port(&self) -> u16 {
        self.kubelet_https_port
    }

    /// The loopback address of `node`'s kubelet.
    pub fn kubelet_addr(&self, node: &str) -> Option<Ipv4Addr> {
        self.shared.kubelets.addrs.get(node).copied()
    }

    /// Every node with a kubelet, and its address.
    pub fn kubelets(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.shared.kubelets.addrs
    }

    pub fn window(&self) -> usize {
        self.shared.state().clock.window()
    }

    pub fn windows(&self) -> usize {
        self.shared.state().clock.windows()
    }

    /// Enters the next window now (no-op on the last one).
    pub fn advance(&self) {
        self.shared.advance();
    }

    /// Serves `metrics.k8s.io` from `backend` (`http://host:port`), as an `APIService` does.
    pub fn register_metrics_api(&self, backend: &str) {
        self.shared.aggregation.register(backend);
    }

    /// Every authorized request so far, in RBAC's terms.
    pub fn requests(&self) -> std::collections::BTreeSet<ApiRequest> {
        self.shared.aggregation.requests()
    }

    pub fn stats(&self) -> FixtureStats {
        self.shared.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops every listener and connection, and waits until they are gone.
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

/// The server's tasks: accept loops, each owning its connections. Dropping aborts them all.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs a fixture server until Ctrl-C, printing where it listens once it does: the body of
/// `heapster-testbed fixture-server`.
pub fn serve_forever(config: FixtureConfig) -> Result<(), FixtureError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(FixtureError::Runtime)?;
    let config_google = config.google_listen.map(|addr| (addr, config.tls_dir.join("google")));
    runtime.block_on(async {
        let server = FixtureServer::start(config).await?;
        println!("api: {}", server.api_url());
        if let Some(url) = server.api_http_url() {
            println!("api (plain HTTP): {url}");
        }
        println!("kubeconfig: {}", server.kubeconfig().display());
        println!("ca: {}", server.ca_cert().display());
        println!(
            "kubelets: http port {}, https port {}",
            server.kubelet_http_port(),
            server.kubelet_https_port()
        );
        for (node, addr) in server.kubelets() {
            println!("kubelet {node}: {addr}");
        }
        println!("windows: {}", server.windows());
        let google = match config_google {
            Some((addr, dir)) => {
                let mut google_config = google::GoogleConfig::new(dir);
                google_config.listen = addr;
                let google = google::GoogleServer::start(google_config).await?;
                println!(
                    "google: {} (metadata_host={}, key {})",
                    google.url(),
                    google.metadata_host(),
                    google.key_file().display()
                );
                Some(google)
            }
            None => None,
        };
        tokio::signal::ctrl_c().await.map_err(FixtureError::Runtime)?;
        drop(google);
        server.shutdown().await;
        Ok(())
    })
}
