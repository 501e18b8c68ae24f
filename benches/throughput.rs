//! Throughput harness: a synthetic 1,000-node x 30-pod cluster (5 windows), from summary JSON
//! bytes through the dataflow to InfluxDB line-protocol bytes written to /dev/null, for `-w 1`
//! and `-w 2`.
//!
//! Under `cargo test` (no `--bench`) it runs a 10 x 3 x 2 smoke size instead.
//!
//! Each configuration runs in a child process of this binary, so its CPU time and peak RSS are
//! its own. Prints metric sets/s, metric values/s, summary MB/s, seconds and CPU seconds per
//! window, and peak RSS. Sizes can be changed with `BENCH_NODES`, `BENCH_PODS`, `BENCH_WINDOWS`.

mod common;

use common::{cached_scenario, replay_throughput, replay_throughput_table, size};
use heapster_testbed::synth::{SynthSpec, synth};

const CHILD_ENV: &str = "HEAPSTER_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        replay_throughput(&spec, |_| {});
        return;
    }
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let nodes = size("BENCH_NODES", 1000, 10);
    let pods = size("BENCH_PODS", 30, 3);
    let windows = size("BENCH_WINDOWS", 5, 2);
    let dir = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    cached_scenario(&dir, &format!("{nodes} nodes x {pods} pods x {windows} windows"), |dir| {
        synth(&SynthSpec::new(nodes, pods, windows), dir).map(drop)
    });
    replay_throughput_table(CHILD_ENV, &dir);
}
