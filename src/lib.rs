//! heapster: a cluster-monitoring collector for Kubernetes on a timely dataflow.
//!
//! Records flow one way: [`sources`] fetch bodies and metadata, the [`bridge`] feeds them to the
//! timely workers that run the graphs of `heapster-dataflows`, and complete windows and event
//! batches ([`batch`]) go to the [`sinks`], each on its own thread.
//!
//! Where new code goes:
//! - **A source**: a folder `sources/<name>/` with its `--source` config, a body type the worker
//!   that owns the node parses, and a `Live` + `Fetch` pair (which nodes a window has, how to fetch
//!   one); `sources::live::run` and the bridge's feed do the rest (see [`sources`]).
//! - **An operator**: in `dataflows/src/metrics/` (or beside the graph it joins), logic as plain
//!   functions with its timely wrapper at the end, wired in by one line; it holds windows with
//!   `metrics::window::Held` and is tested at 1 and 2 workers (see `heapster_dataflows`).
//! - **A sink**: a folder `sinks/<name>/` whose config implements `Sink`, opening the queue's
//!   `Encode`/`Deliver` halves (a network backend) or a `LocalWrite`; one line in
//!   `sinks::REGISTRY` names its scheme (see [`sinks`]).
//!
//! The modules:
//! - [`sources`]: kubelet summaries, Kubernetes objects and events, cAdvisor hosts, replay.
//! - [`bridge`]: the feed protocol into the workers (metadata to worker 0, each node's body to
//!   its owner, a close to all) and the collector that hands complete windows to the sinks.
//! - [`batch`]: a complete window of metric sets, a batch of events, a window's log table: what
//!   bridge and sinks share.
//! - [`sinks`]: log, file, InfluxDB, Google Cloud Monitoring and Logging, behind one queue.
//! - [`run`] and [`dispatch`]: start sources, workers, sinks and the API; hand windows out.
//! - [`scenario`] and [`record`]: the recorded-cluster format replay reads, and its recorder.
//! - [`checkpoint`] and [`state_lock`]: the event dedup state on disk (`--state_dir`).
//! - [`cluster`]: one dataflow across several processes (`--processes`, `--hostfile`).
//! - [`api`] and [`telemetry`]: `/healthz`, `/readyz`, `/metrics` and `metrics.k8s.io`.
//! - [`cli`], [`config`], [`logging`], [`progress`], [`errors`], [`backoff`], [`tls`]: flags,
//!   URIs, logs, progress bars, error chains, retry waits, the crypto provider.
//!
//! The test bed (synthetic clusters, the fixture server, real servers for tests) is the separate
//! crate `heapster-testbed`.

pub mod api;
pub mod backoff;
pub mod batch;
pub mod bridge;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod errors;
pub mod logging;
pub mod progress;
pub mod record;
pub mod run;
pub mod scenario;
pub mod sinks;
pub mod sources;
pub mod state_lock;
pub mod telemetry;
pub mod tls;
