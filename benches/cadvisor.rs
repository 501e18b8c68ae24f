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

use common::{cached_scenario, replay_throughput, replay_throughput_table, size};
use heapster::bridge::Stats;
use heapster::sources::cadvisor::parse::{Bodies, parse_cadvisor};
use heapster_dataflows::model::Interner;
use heapster_testbed::synth::cadvisor::{
    CadvisorSpec, machine_body, subcontainers_body, write_cadvisor_scenario,
};

const CHILD_ENV: &str = "HEAPSTER_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        replay_throughput(&spec, |report| {
            if Stats::get(&report.stats.parse_warnings) > 0 || Stats::get(&report.stats.scrape_errors) > 0 {
                eprintln!("bodies with warnings or errors: {:?}", report.stats);
                std::process::exit(1);
            }
        });
        return;
    }
    let hosts = size("BENCH_HOSTS", 1000, 10);
    let pods = size("BENCH_PODS", 30, 3);
    let windows = size("BENCH_WINDOWS", 3, 2);
    let spec = CadvisorSpec { resolution_seconds: 60, ..CadvisorSpec::new(hosts, pods, windows) };
    parse_alone(&spec);
    let dir = std::env::temp_dir().join(format!("heapster-bench-cadvisor-{hosts}x{pods}x{windows}"));
    cached_scenario(&dir, &format!("{hosts} hosts x {pods} pods x {windows} windows"), |dir| {
        write_cadvisor_scenario(&spec, dir).map(drop)
    });
    replay_throughput_table(CHILD_ENV, &dir);
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
