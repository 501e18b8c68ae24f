//! cAdvisor harness: a synthetic 1,000-host fleet, each host running 30 single-container pods
//! (with their `POD` infrastructure containers and the system containers, 64 cAdvisor
//! containers a host), 3 windows, from `/api/v1.3/subcontainers/` bodies through the dataflow
//! to line-protocol bytes written to /dev/null (`-w 1` and `-w 2`), plus the parser alone on
//! one host's body.
//!
//! Under `cargo test` (no `--bench`) it runs a 10 x 3 x 2 smoke size instead. Prints the same
//! columns as the throughput harness (body MB/s is cAdvisor bodies here). Sizes:
//! `BENCH_HOSTS`, `BENCH_PODS`, `BENCH_WINDOWS`.

use std::time::Instant;

mod common;

use common::{peak_rss_kib, replay_to_null, run_child, run_or_exit, size};
use heapster::bridge::Stats;
use heapster::run::RunConfig;
use heapster::sources::cadvisor::parse::{Bodies, parse_cadvisor};
use heapster_dataflows::model::Interner;
use heapster_testbed::synth::cadvisor::{
    CadvisorSpec, machine_body, subcontainers_body, write_cadvisor_scenario,
};

const CHILD_ENV: &str = "HEAPSTER_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let hosts = size("BENCH_HOSTS", 1000, 10);
    let pods = size("BENCH_PODS", 30, 3);
    let windows = size("BENCH_WINDOWS", 3, 2);
    let spec = CadvisorSpec { resolution_seconds: 60, ..CadvisorSpec::new(hosts, pods, windows) };
    parse_alone(&spec);
    let dir = std::env::temp_dir().join(format!("heapster-bench-cadvisor-{hosts}x{pods}x{windows}"));
    if !dir.join("scenario.json").is_file() {
        let generated = Instant::now();
        if let Err(e) = write_cadvisor_scenario(&spec, &dir) {
            eprintln!("synth failed: {e}");
            std::process::exit(1);
        }
        println!(
            "synthesized {hosts} hosts x {pods} pods x {windows} windows in {:.1?}",
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

/// The parser alone, one core: one host's body parsed over and over for about a second.
fn parse_alone(spec: &CadvisorSpec) {
    let body = subcontainers_body(spec, 1, 1, spec.start_ms + 60_000);
    let machine = machine_body(1);
    let host = spec.hosts()[1.min(spec.hosts.saturating_sub(1))].target();
    let mut interner = Interner::default();
    let mut out = Vec::new();
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed().as_secs_f64() < 1.0 || rounds < 3 {
        out.clear();
        let bodies = Bodies { subcontainers: &body, machine: Some(&machine) };
        if let Err(e) = parse_cadvisor(bodies, &host.target, host.labels.as_ref(), &mut interner, &mut out) {
            eprintln!("parse failed: {e}");
            std::process::exit(1);
        }
        rounds += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "parser alone: {} B body, {} sets, {:.0} us/body, {:.0} MB/s",
        body.len(),
        out.len(),
        1e6 * seconds / rounds as f64,
        (body.len() + machine.len()) as f64 * rounds as f64 / seconds / 1e6
    );
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
    if Stats::get(&report.stats.parse_warnings) > 0 || Stats::get(&report.stats.scrape_errors) > 0 {
        eprintln!("bodies with warnings or errors: {:?}", report.stats);
        std::process::exit(1);
    }
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
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
