//! Real servers on loopback for tests and benchmarks: an `influxd` started on a free port, and a
//! `prometheus` scraping one target.

pub mod influxd;
pub mod prometheus;
