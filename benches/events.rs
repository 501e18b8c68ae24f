//! Events harness: a burst of 100,000 events through the replay path (list parsing, dedup,
//! collector) on one worker, reporting events/s (wall), events per CPU-second (the figure to
//! trust on a shared machine) and peak RSS; then rollouts of 20,000 events a window with a
//! two-window TTL, for 6 and for 12 windows: the dedup state and peak RSS stay flat once the TTL
//! evicts, whatever the number of windows.
//!
//! Each run is a child process of this binary, so its peak RSS is its own. Sizes can be changed
//! with `BENCH_BURST` and `BENCH_ROLLOUT`; under `cargo test` (no `--bench`) smoke sizes run.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use common::{cpu_seconds, peak_rss_kib, replay_to_null, run_child, run_or_exit, size};
use heapster::run::RunConfig;
use heapster_dataflows::events::DedupConfig;
use heapster_testbed::synth::{EventHook, SynthSpec, synth};

const CHILD_ENV: &str = "HEAPSTER_EVENTS_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let burst = size("BENCH_BURST", 100_000, 500);
    let rollout = size("BENCH_ROLLOUT", 20_000, 100);
    let base = std::env::temp_dir().join("heapster-events-bench");

    let burst_dir = base.join(format!("burst-{burst}"));
    prepare(&burst_dir, SynthSpec::event_burst(burst));
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "run", "events", "events/s", "events/cpu-s", "dedup held", "evicted", "peak RSS"
    );
    spawn("burst", &burst_dir, 3_600_000);

    for windows in [6, 12] {
        let dir = base.join(format!("rollouts-{rollout}x{windows}"));
        let mut spec = SynthSpec::event_burst(rollout);
        spec.windows = windows;
        spec.events.ttl_windows = 2;
        let template = spec.events.hooks.first().cloned();
        spec.events.hooks = (1..windows)
            .filter_map(|window| match &template {
                Some(EventHook::Rollout { ns, deployment, events, .. }) => Some(EventHook::Rollout {
                    window,
                    ns: ns.clone(),
                    deployment: deployment.clone(),
                    events: *events,
                }),
                _ => None,
            })
            .collect();
        prepare(&dir, spec);
        // The dedup TTL matches the scenario's: two windows of 60 s.
        spawn(&format!("rollouts x{windows}, ttl 2 windows"), &dir, 120_000);
    }
}

fn prepare(dir: &Path, spec: SynthSpec) {
    if dir.join("scenario.json").is_file() {
        return;
    }
    let started = Instant::now();
    match synth(&spec, dir) {
        Ok(report) => {
            println!("synthesized {} ({} events) in {:.1?}", dir.display(), report.events, started.elapsed())
        }
        Err(e) => {
            eprintln!("synth failed: {e}");
            std::process::exit(1);
        }
    }
}

fn spawn(label: &str, dir: &Path, ttl_ms: u64) {
    run_child(CHILD_ENV, &format!("{}|{ttl_ms}|{label}", dir.display()), label);
}

fn child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (Some(dir), Some(ttl), Some(label)) = (parts.next(), parts.next(), parts.next()) else { return };
    let config = RunConfig {
        dedup: DedupConfig { ttl_ms: ttl.parse().unwrap_or(3_600_000), ..DedupConfig::default() },
        resolution: Duration::from_secs(60),
        ..replay_to_null(dir)
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let report = run_or_exit(config);
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_before).max(0.01);
    let exported = report.events.exported.load(Ordering::Relaxed);
    let held = report.events.entries.load(Ordering::Relaxed);
    let evicted = report.events.evicted_ttl.load(Ordering::Relaxed)
        + report.events.evicted_full.load(Ordering::Relaxed);
    println!(
        "{:<28} {:>10} {:>12.0} {:>12.0} {:>12} {:>10} {:>6} MiB",
        label,
        exported,
        exported as f64 / wall,
        exported as f64 / cpu,
        held,
        evicted,
        peak_rss_kib() / 1024
    );
}
