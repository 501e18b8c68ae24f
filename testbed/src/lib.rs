//! heapster's test bed: what tests, benchmarks and demos need and the collector does not.
//!
//! - [`synth`]: deterministic synthetic clusters in the scenario format (`heapster::scenario`).
//! - [`fixture_server`]: a scenario served as a kube-apiserver, kubelets, cAdvisor, fleet and
//!   Google's APIs on loopback, over the real wire protocols.
//! - [`testkit`]: real servers (influxd, etcd, prometheus) on loopback for tests and benchmarks.

pub mod binary;
pub mod cli;
pub mod fixture_server;
pub mod synth;
pub mod testkit;

pub use binary::testbed_binary;
