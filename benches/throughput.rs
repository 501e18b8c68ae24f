//! Throughput harness: a synthetic 1,000-node x 30-pod cluster (5 windows), from summary JSON
//! bytes through the dataflow to InfluxDB line-protocol bytes written to /dev/null, for `-w 1`
//! and `-w 2`.
//!
//! Under `cargo test` (no `--bench`) it runs a 10 x 3 x 2 smoke size instead.
//!
//! Each configuration runs in a child process of this binary, so its CPU time and peak RSS are
//! its own. Prints metric sets/s, metric values/s, summary MB/s, seconds and CPU seconds per
//! window, and peak RSS. Sizes can be changed with `BENCH_NODES`, `BENCH_PODS`, `BENCH_WINDOWS`.

use std::time::Instant;

mod common;

use common::{peak_rss_kib, replay_to_null, run_child, run_or_exit, size};
use heapster::bridge::Stats;
use heapster::run::RunConfig;
use heapster_testbed::synth::{SynthSpec, synth};

const CHILD_ENV: &str = "HEAPSTER_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let nodes = size("BENCH_NODES", 1000, 10);
    let pods = size("BENCH_PODS", 30, 3);
    let windows = size("BENCH_WINDOWS", 5, 2);
    let dir = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    let generated = Instant::now();
    if !dir.join("scenario.json").is_file() {
        let spec = SynthSpec { ..SynthSpec::new(nodes, pods, windows) };
        if let Err(e) = synth(&spec, &dir) {
            eprintln!("synth failed: {e}");
            std::process::exit(1);
        }
        println!(
            "synthesized {nodes} nodes x {pods} pods x {windows} windows in {:.1?}",
            generated.elapsed()
        );
    } else {
        println!("reusing {}", dir.display());
    }
    println!(
        "{:<5} {:>12} {:>14} {:>10} {:>10} {:>12} {:>10}",
        "-w", "sets/s", "values/s", "MB/s", "s/window", "cpu s/window", "peak RSS"
    );
    for workers in [1, 2] {
        run_child(CHILD_ENV, &format!("{}|{workers}", dir.display()), &format!("-w {workers}"));
    }
}

fn child(spec: &str) {
    let Some((dir, workers)) = spec.split_once('|') else { return };
    let workers: usize = workers.parse().unwrap_or(1);
    let config = RunConfig { workers, ..replay_to_null(dir) };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let report = run_or_exit(config);
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let windows = Stats::get(&report.stats.windows).max(1) as f64;
    let sets = Stats::get(&report.stats.metric_sets) as f64;
    let values = Stats::get(&report.stats.metric_values) as f64;
    let mb = Stats::get(&report.stats.summary_bytes) as f64 / 1e6;
    println!(
        "{:<5} {:>12.0} {:>14.0} {:>10.1} {:>10.3} {:>12.3} {:>7} MiB",
        workers,
        sets / wall,
        values / wall,
        mb / wall,
        wall / windows,
        cpu / windows,
        peak_rss_kib() / 1024
    );
}

/// User + system CPU seconds of this process, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}
