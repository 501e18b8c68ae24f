//! Real servers on loopback for tests and benchmarks: an `influxd` started on a free port.

pub mod influxd;
