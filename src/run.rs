//! The collector's main job: a source, the workers, the collector and the sinks, wired together.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use heapster_dataflows::meta::LabelPolicy;

use std::path::PathBuf;

use heapster_dataflows::events::{DedupConfig, DedupCounters};

use crate::bridge::{self, EventsConfig, Feeds, Stats, WorkerConfig, WorkersError, WorkersGone};
use crate::checkpoint::{CheckpointError, CheckpointStore, Checkpointer};
use crate::cluster::connect::ConnectError;
use crate::cluster::{ClusterConfig, Share};
use crate::dispatch::dispatch;
use crate::sinks::{Overflow, SinkConfig, SinkContext, SinkHandle, SinkStats};
use crate::sources::cadvisor::source::CadvisorSourceError;
/// Kept at this path too: benchmarks and tests build run configs from it.
pub use crate::sources::config::SourceConfig;
use crate::sources::kubernetes::config::ClientError;
use crate::sources::kubernetes::event_watch::EventSourceError;
use crate::sources::kubernetes::{event_watch, source};
use crate::sources::replay::{Replay, ReplayError};
use crate::state_lock::{StateLock, StateLockError};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub source: SourceConfig,
    pub sinks: Vec<SinkConfig>,
    pub workers: usize,
    pub labels: LabelPolicy,
    pub resolution: Duration,
    /// Events: how long and how many states the dedup keeps.
    pub dedup: DedupConfig,
    /// Where the event checkpoint lives (`--state_dir`); none: no checkpoint.
    pub state_dir: Option<PathBuf>,
    /// One process of several (`--processes`); none: this process alone.
    pub cluster: Option<ClusterConfig>,
    /// The HTTP(S) API (`--heapster-port`...); none: no port opened.
    pub api: Option<crate::api::ApiConfig>,
}

impl RunConfig {
    /// A run with Heapster's defaults.
    pub fn new(source: SourceConfig, sinks: Vec<SinkConfig>) -> RunConfig {
        RunConfig {
            source,
            sinks,
            workers: 1,
            labels: LabelPolicy::default(),
            resolution: Duration::from_secs(60),
            dedup: DedupConfig::default(),
            state_dir: None,
            cluster: None,
            api: None,
        }
    }
}

/// How often the event checkpoint may be written.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("sink {name}: {source}")]
    Sink { name: String, source: std::io::Error },
    #[error(transparent)]
    Kubernetes(#[from] ClientError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    StateDir(#[from] StateLockError),
    #[error("the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("workers: {0}")]
    Workers(#[from] WorkersError),
    #[error("cluster: {0}")]
    Cluster(#[from] ConnectError),
    #[error("{what} thread: {source}")]
    Spawn { what: &'static str, source: std::io::Error },
    #[error("{0} thread panicked")]
    Panicked(&'static str),
    #[error("{what}: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    #[error(transparent)]
    Source(#[from] WorkersGone),
    #[error(transparent)]
    Cadvisor(#[from] CadvisorSourceError),
    #[error(transparent)]
    Events(#[from] EventSourceError),
    #[error("the API server: {0}")]
    Api(#[from] crate::api::ApiError),
}

/// What a run did, for the caller's summary line and for benchmarks.
#[derive(Debug)]
pub struct RunReport {
    pub stats: Arc<Stats>,
    pub sinks: Vec<(String, Arc<SinkStats>)>,
    pub events: Arc<DedupCounters>,
    pub elapsed: Duration,
    /// Bytes exchanged with the other processes (cluster mode).
    pub traffic: Option<Arc<crate::cluster::connect::Traffic>>,
}

/// Listens for SIGINT and SIGTERM on a thread of its own, so that a busy I/O runtime does not
/// delay the stop; the thread ends with the returned guard.
fn listen_for_signals(stop: &Arc<AtomicBool>) -> Result<tokio::sync::oneshot::Sender<()>, RunError> {
    let (ended, run_ended) = tokio::sync::oneshot::channel::<()>();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RunError::Runtime)?;
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = stop_on_signal(stop) => {}
                    _ = run_ended => {}
                }
            });
        })
        .map_err(|source| RunError::Spawn { what: "signals", source })?;
    Ok(ended)
}

/// Logs a step of the end of a run: at info when stopping (an operator sees where the time
/// went), at debug when a replay simply ends.
fn ending(stop: &AtomicBool, what: &str) {
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("stopping: {what}");
    } else {
        tracing::debug!("{what}");
    }
}

/// Sets `stop` on SIGINT or SIGTERM: the scrapes in flight are cancelled, the windows the
/// workers accepted go to the sinks, the sinks flush.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("stopping: cancelling the scrapes in flight, flushing the windows already accepted");
    crate::sources::clock::request_stop(&stop);
}

/// Runs until the source ends (replay) or `stop` is set.
pub fn run(config: RunConfig, stop: Arc<AtomicBool>) -> Result<RunReport, RunError> {
    crate::tls::install_crypto_provider();
    let started = Instant::now();
    // Held to the end of the run: no other collector writes into this state dir meanwhile.
    let _state_lock = config.state_dir.as_deref().map(StateLock::acquire).transpose()?;
    let workers = config.workers.max(1);
    let stats = Arc::new(Stats::default());
    let share = Share::of(config.cluster.as_ref(), workers);
    // The peers first: nothing is scraped or written before every process is there.
    let mut traffic = None;
    let mut started_ms = None;
    let network = match &config.cluster {
        Some(cluster) => {
            let network = crate::cluster::connect::connect(cluster, workers)?;
            traffic = Some(Arc::clone(&network.traffic));
            started_ms = Some(network.started_ms);
            crate::cluster::lost::exit_on_lost_peer(cluster.addresses.clone());
            Some(network)
        }
        None => None,
    };

    let overflow = match config.source {
        SourceConfig::Replay(_) => Overflow::Wait,
        SourceConfig::Kubernetes(_) | SourceConfig::Cadvisor(_) => Overflow::Drop,
    };
    // One thread: the scrapes wait on the network, not the CPU (a 1,000-node window is ~0.15
    // CPU-s of it), and a second thread only adds wake-ups of its sibling and parking on a
    // condition variable beside the driver's epoll. Still multi-thread flavoured, so that a feed
    // send that must wait hands the thread's work over (`block_in_place`) instead of stalling it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("io")
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let _signals = listen_for_signals(&stop)?;
    // Another process on the port must not stop collection: the API is off then, and says so.
    let _api = match &config.api {
        Some(api) => match crate::api::start(api) {
            Ok(server) => Some(server),
            Err(e @ crate::api::ApiError::Bind { .. }) => {
                tracing::error!("{e}; /healthz, /metrics and metrics.k8s.io are not served");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let log_table = config.sinks.iter().any(SinkConfig::wants_table);
    let mut sinks = Vec::with_capacity(config.sinks.len());
    let sink_context = SinkContext { state_dir: config.state_dir.clone(), stop: Arc::clone(&stop) };
    for sink in config.sinks {
        let name = format!("{sink:?}");
        // Replay waits for sinks, so a short queue suffices; live collection rides out a slow
        // sink for a few windows before dropping (a buffered sink's queue is drained at once into
        // its buffer).
        let queue = if overflow == Overflow::Wait { 2 } else { 16 };
        let handle = SinkHandle::spawn_in(sink, queue, overflow, &sink_context)
            .map_err(|source| RunError::Sink { name: crate::config::redact(&name), source })?;
        sinks.push(handle);
    }

    let events = match &config.source {
        SourceConfig::Replay(_) => true,
        SourceConfig::Kubernetes(k) => k.events(),
        SourceConfig::Cadvisor(_) => false,
    };
    let (checkpointer, seed, resume_from) = match (&config.state_dir, events) {
        (Some(dir), true) => {
            let (store, loaded) = CheckpointStore::open(dir)?;
            let loaded = loaded.unwrap_or_default();
            tracing::info!(
                state = %store.path().display(),
                states = loaded.seen.len(),
                resource_version = loaded.resource_version.as_deref().unwrap_or("-"),
                "event checkpoint loaded"
            );
            let seed = Arc::new(loaded.seen.clone());
            // A cluster lists again at start: the leader's version may be ahead of what another
            // process had written when it stopped; the dedup states drop what was exported.
            let resume = if share.processes > 1 { None } else { loaded.resource_version.clone() };
            let checkpointer = Checkpointer::new(
                store,
                loaded.seen,
                loaded.resource_version,
                CHECKPOINT_INTERVAL,
                config.dedup.ttl_ms,
            );
            (Some(checkpointer), seed, resume)
        }
        _ => (None, Arc::new(Vec::new()), None),
    };
    let counters = Arc::new(DedupCounters::default());
    crate::telemetry::global().attach(crate::telemetry::RunCounters {
        stats: Arc::clone(&stats),
        sinks: sinks.iter().map(|s| (s.name.clone(), Arc::clone(&s.stats))).collect(),
        events: events.then(|| Arc::clone(&counters)),
        resolution: config.resolution,
        label_separator: config.labels.separator.clone(),
    });

    let (collected_tx, collected_rx) = crossbeam_channel::unbounded();
    let collector_stats = Arc::clone(&stats);
    let collector = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || dispatch(collected_rx, workers, sinks, collector_stats, checkpointer))
        .map_err(|source| RunError::Spawn { what: "collector", source })?;

    let mut senders = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        // A few bodies in flight per worker: enough to keep it busy, little memory.
        let (tx, rx) = bridge::Feed::channel(8);
        senders.push(tx);
        receivers.push(rx);
    }
    let feeds = Feeds::new(senders, share).with_sinks(Arc::clone(&stats.in_sinks));
    let source: Box<dyn FnOnce() -> Result<(), RunError>> = match config.source {
        SourceConfig::Replay(replay) => {
            let replay = Replay::open(&replay, share)?;
            tracing::info!(
                scenario = %replay.scenario().dir.display(),
                windows = replay.scenario().windows.len(),
                workers,
                "replaying"
            );
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name("replay".into())
                .spawn(move || replay.run(&feeds, &stop))
                .map_err(|source| RunError::Spawn { what: "replay", source })?;
            Box::new(move || {
                let report = thread.join().map_err(|_| RunError::Panicked("replay"))??;
                tracing::info!(
                    windows = report.windows,
                    scrapes = report.scrapes,
                    missing = report.missing,
                    "replay done"
                );
                Ok(())
            })
        }
        SourceConfig::Kubernetes(kubernetes) => {
            let clients = runtime.block_on(source::clients(&kubernetes))?;
            let events_task = (kubernetes.events() && share.is_leader()).then(|| {
                runtime.spawn(event_watch::run(
                    clients.api.clone(),
                    feeds.clone(),
                    resume_from,
                    Arc::clone(&stop),
                ))
            });
            let metrics_task = runtime.spawn(source::run(
                kubernetes,
                clients,
                feeds,
                config.resolution,
                Arc::clone(&stop),
                started_ms,
            ));
            let handle = runtime.handle().clone();
            Box::new(move || {
                let metrics = match handle.block_on(metrics_task) {
                    Ok(result) => result.map_err(RunError::from),
                    Err(source) => Err(RunError::Task { what: "Kubernetes source", source }),
                };
                if let Some(task) = events_task {
                    handle
                        .block_on(task)
                        .map_err(|source| RunError::Task { what: "event source", source })??;
                }
                metrics
            })
        }
        SourceConfig::Cadvisor(cadvisor) => {
            let task = runtime.spawn(crate::sources::cadvisor::source::run(
                cadvisor,
                feeds,
                config.resolution,
                Arc::clone(&stop),
            ));
            let handle = runtime.handle().clone();
            Box::new(move || match handle.block_on(task) {
                Ok(result) => result.map_err(RunError::from),
                Err(source) => Err(RunError::Task { what: "cAdvisor source", source }),
            })
        }
    };

    let events_config =
        events.then(|| EventsConfig { dedup: config.dedup.clone(), seed, counters: Arc::clone(&counters) });
    let worker_config =
        WorkerConfig { workers, share, labels: config.labels, events: events_config, table: log_table };
    let workers_result =
        bridge::run_workers_on(worker_config, network, receivers, collected_tx, Arc::clone(&stats));
    ending(&stop, "the workers are done, every window they accepted is with the collector");
    let source_result = source();
    let sinks = collector.join().map_err(|_| RunError::Panicked("collector"))?;
    ending(&stop, "the sinks are flushed");
    workers_result?;
    source_result?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    ending(&stop, "the I/O runtime is down");
    Ok(RunReport { stats, sinks, events: counters, elapsed: started.elapsed(), traffic })
}
