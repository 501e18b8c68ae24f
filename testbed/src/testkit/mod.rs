//! Real servers on loopback for tests and benchmarks: an `influxd` and an `etcd` started on free
//! ports, and a `prometheus` scraping one target.

pub mod etcd;
pub mod influxd;
pub mod prometheus;
