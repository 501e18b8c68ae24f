//! Outage harness: a synthetic cluster (1,000 nodes x 30 pods, 6 windows) replayed into a real
//! influxd with the disk buffer, once with InfluxDB up (the baseline) and once with InfluxDB
//! killed until every window is buffered, then started again. Prints points lost, buffer bytes
//! on disk per window, peak RSS of both runs, and how long the backlog took to drain.
//!
//! Replay produces windows as fast as it can, so "every window buffered" stands for an outage as
//! long as the scenario (6 windows: 6 minutes at the default 60 s resolution).
//!
//! Under `cargo test` (no `--bench`) it runs a 5 x 2 x 3 smoke size instead. Sizes can be changed
//! with `BENCH_NODES`, `BENCH_PODS`, `BENCH_WINDOWS`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::size;
use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::Influxd;

const PATIENCE: Duration = Duration::from_secs(3600);

fn main() {
    let nodes = size("BENCH_NODES", 1000, 5);
    let pods = size("BENCH_PODS", 30, 2);
    let windows = size("BENCH_WINDOWS", 6, 3);
    let scenario = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    if !scenario.join("scenario.json").is_file()
        && let Err(e) = synth(&SynthSpec::new(nodes, pods, windows), &scenario)
    {
        eprintln!("synth failed: {e}");
        std::process::exit(1);
    }
    println!("{nodes} nodes x {pods} pods x {windows} windows, disk buffer");
    let work = tempfile::tempdir().expect("tempdir");

    let baseline = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let (run, _) = replay(&scenario, &baseline.url(), &work.path().join("baseline"), |_, _| {});
    let baseline_kib = run.peak_rss_kib;
    let expected = stored_points(&baseline);
    println!(
        "no outage: {expected} points in InfluxDB, {:.1} s, peak RSS {} MiB",
        run.elapsed.as_secs_f64(),
        run.peak_rss_kib / 1024
    );
    drop(baseline);

    let mut influxd = Influxd::start().expect("influxd");
    influxd.kill().expect("kill influxd");
    let state = work.path().join("outage");
    let buffer_dir = state.join("sink-buffer");
    let mut buffered = (0u64, 0usize);
    let mut drain_started = None;
    let url = influxd.url();
    let (run, _) = replay(&scenario, &url, &state, |child, log| {
        // The outage lasts until every window is in the buffer.
        let started = Instant::now();
        while !log().contains("replay done") {
            assert!(child.try_wait().expect("wait").is_none(), "heapster ended early:\n{}", log());
            assert!(started.elapsed() < PATIENCE, "replay never done");
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut last = (u64::MAX, 0);
        loop {
            let now = dir_size(&buffer_dir);
            if now == last {
                break;
            }
            last = now;
            std::thread::sleep(Duration::from_secs(2));
        }
        buffered = last;
        influxd.restart().expect("restart influxd");
        drain_started = Some(Instant::now());
    });
    let drained = drain_started.map_or(Duration::ZERO, |t| t.elapsed());
    let stored = stored_points(&influxd);
    let windows_buffered = windows.max(1) as u64;
    println!(
        "outage: {stored} points in InfluxDB, {} lost; {} MB on disk in {} chunk files ({:.1} MB per window); \
         peak RSS {} MiB ({:+} MiB vs no outage); backlog drained in {:.1} s",
        expected.saturating_sub(stored),
        buffered.0 / 1_000_000,
        buffered.1,
        buffered.0 as f64 / 1e6 / windows_buffered as f64,
        run.peak_rss_kib / 1024,
        (run.peak_rss_kib as i64 - baseline_kib as i64) / 1024,
        drained.as_secs_f64()
    );
}

/// What a replay run measured.
struct Measured {
    elapsed: Duration,
    peak_rss_kib: u64,
}

/// Replays `scenario` into `influxd` with the disk buffer under `state`; `during` runs while the
/// collector runs. Returns the measures and the log.
fn replay(
    scenario: &Path,
    url: &str,
    state: &Path,
    during: impl FnOnce(&mut Child, &dyn Fn() -> String),
) -> (Measured, String) {
    std::fs::create_dir_all(state).expect("state dir");
    let log_path = state.with_extension("log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_heapster"))
        .args([
            format!("--source=replay:{}", scenario.display()),
            format!("--sink=influxdb:{url}?db=k8s&buffer=disk"),
            format!("--state_dir={}", state.display()),
            "--heapster-port=0".into(),
            "--listen_ip=127.0.0.1".into(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("heapster");
    let pid = child.id();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = std::sync::Arc::clone(&peak);
        std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            while let Ok(text) = std::fs::read_to_string(&status) {
                if let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    during(&mut child, &log);
    let status = child.wait().expect("wait");
    let _ = watcher.join();
    assert!(status.success(), "heapster failed ({status}):\n{}", log());
    let peak_rss_kib = peak.load(std::sync::atomic::Ordering::Relaxed);
    (Measured { elapsed: started.elapsed(), peak_rss_kib }, log())
}

/// Points InfluxDB holds in `k8s`, over every measurement.
fn stored_points(influxd: &Influxd) -> u64 {
    let answer = influxd.query("k8s", "SELECT count(value) FROM /.*/").expect("count");
    answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["values"][0][1].as_u64().unwrap_or(0))
        .sum()
}

/// (bytes, files) under `dir`.
fn dir_size(dir: &Path) -> (u64, usize) {
    let mut total = (0, 0);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(meta) = entry.metadata() {
                total.0 += meta.len();
                total.1 += 1;
            }
        }
    }
    total
}
