//! Real servers on loopback for tests and benchmarks: an `influxd` and an `etcd` started on free
//! ports.

pub mod etcd;
pub mod influxd;
