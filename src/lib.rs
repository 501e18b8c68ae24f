//! heapster: a cluster-monitoring collector for Kubernetes on a timely dataflow.
//!
//! - [`scenario`]: the recorded-cluster format that replay, the fixture server and `synth` share.
//! - [`sources`]: kubelet summaries, Kubernetes objects, replay.
//! - [`sinks`]: log, file, InfluxDB.
//! - [`checkpoint`]: the event dedup state on disk (`--state_dir`), saved atomically.
//! - [`state_lock`]: one collector per `--state_dir`.
//! - [`cluster`]: one dataflow across several processes (`--processes`, `--hostfile`).
//! - [`config`]: `--source`/`--sink` URIs into typed configs.
//! - [`errors`]: an error with its causes, as logs and reports print it.
//! - [`api`]: `/healthz`, `/readyz`, `/metrics` and `metrics.k8s.io` over HTTP(S).
//! - [`telemetry`]: the collector's own metrics and the last window, for the API.

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
