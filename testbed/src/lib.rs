//! heapster's test bed: what tests, benchmarks and demos need and the collector does not. The
//! collector's library is a dependency (the scenario format, the TLS provider, the cAdvisor
//! parser); the collector takes this crate only as a dev-dependency.
//!
//! - [`synth`]: deterministic synthetic clusters in the scenario format (`heapster::scenario`).
//! - [`fixture_server`]: a scenario served as a kube-apiserver, kubelets, cAdvisor, fleet and
//!   Google's APIs on loopback, over the real wire protocols.
//! - [`testkit`]: real servers (`influxd`, `etcd`, `prometheus`) on loopback for tests and
//!   benchmarks.
//! - [`cli`], [`binary`]: the `heapster-testbed` binary (`synth`, `fixture-server`) and how the
//!   collector's tests find it.
//!
//! # Map of the code
//!
//! - A new emulated server (a remote API the collector talks to): a module under
//!   `fixture_server/` (a folder if it has several endpoints, as `google/`), started from
//!   [`fixture_server::FixtureServer`] or standing alone with its own `start`, answering over `http.rs`.
//! - A new synth generator (another body a scenario holds): a module under `synth/` called from
//!   [`synth::synth`] window by window, writing through `heapster::scenario::WindowWriter`, its
//!   randomness from `rng.rs` keyed by the spec's seed so the same spec gives the same bytes.
//! - A new test tool (a real program tests start, or a helper they share): a real server goes in
//!   `testkit/` (free ports, a temp dir, killed on drop); a helper of the collector's end-to-end
//!   tests goes in the root's `tests/support/`, of its benchmarks in `benches/common/`.

pub mod binary;
pub mod cli;
pub mod fixture_server;
pub mod synth;
pub mod testkit;

pub use binary::testbed_binary;
