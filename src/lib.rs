//! heapster: a cluster-monitoring collector for Kubernetes on a timely dataflow.
//!
//! - [`scenario`]: the recorded-cluster format that replay, the fixture server and `synth` share.
//! - [`sources`]: kubelet summaries, Kubernetes objects, replay.
//! - [`sinks`]: log, file, InfluxDB.

pub mod scenario;
pub mod sinks;
pub mod sources;
