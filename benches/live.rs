//! Live harness: the path users run, side by side with replay.
//!
//! A synthetic cluster (1,000 nodes x 30 pods) is served by `heapster-testbed fixture-server` in
//! its own process, as a kube-apiserver and one kubelet per node on 127.0.0.x; the collector runs
//! in its own process against it, windows of `BENCH_RESOLUTION_S` (15 s). For each configuration (live
//! and replay, `-w 1` and `-w 2`, a null sink and a real `influxd`) it prints, per process:
//! CPU-s per steady window (from /proc, over `BENCH_STEADY` windows after the first), peak RSS,
//! nodes scraped per window, start-up (seconds and collector CPU-s until the first window's
//! scrapes are done), how long SIGTERM took, and the windows the sinks dropped.
//!
//! Under `cargo test` (no `--bench`) it runs a 3-node smoke size with 5 s windows, live and
//! replay with the null sink only. `BENCH_CONFIGS` picks configurations by name, comma
//! separated (`replay-w1-null,live-w1-null,live-w2-null,live-w1-influxdb,...`); `BENCH_HEAPSTER`
//! runs another build's binary (before/after a change).
//!
//! The InfluxDB configurations start `influxd` sized for millions of series
//! ([`Sizing::LargeCluster`]; `BENCH_INFLUXD_SIZING=tests` for the tests' configuration), append
//! `BENCH_INFLUX_OPTIONS` (like `&concurrency=2`) to the sink URI, and live runs print a timeline:
//! per window, points written and at what rate, windows exported, waiting and dropped, influxd's
//! and the collector's CPU and RSS, then when each window was written through and how long that
//! took. A live run is stopped, and fails, when influxd's RSS passes `BENCH_INFLUXD_MAX_MIB`
//! (8,000).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

mod common;

use common::process::*;
use common::size;
use common::timeline;
use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::{Influxd, Sizing};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Live,
    Replay,
}

#[derive(Clone, Copy, PartialEq)]
enum SinkKind {
    Null,
    Influxdb,
}

struct Bench {
    scenario: PathBuf,
    nodes: usize,
    steady: usize,
    resolution: Duration,
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let nodes = size("BENCH_NODES", 1000, 3);
    let pods = size("BENCH_PODS", 30, 2);
    let windows = size("BENCH_WINDOWS", 5, 2);
    let steady = size("BENCH_STEADY", 4, 1);
    let resolution = Duration::from_secs(size("BENCH_RESOLUTION_S", 15, 5) as u64);
    let scenario = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    if !scenario.join("scenario.json").is_file() {
        let started = Instant::now();
        if let Err(e) = synth(&SynthSpec::new(nodes, pods, windows), &scenario) {
            fail(&format!("synth failed: {e}"));
        }
        println!("synthesized {nodes} nodes x {pods} pods x {windows} windows in {:.1?}", started.elapsed());
    }
    let all: Vec<(Mode, usize, SinkKind)> = if benchmarking {
        vec![
            (Mode::Replay, 1, SinkKind::Null),
            (Mode::Replay, 2, SinkKind::Null),
            (Mode::Live, 1, SinkKind::Null),
            (Mode::Live, 2, SinkKind::Null),
            (Mode::Replay, 1, SinkKind::Influxdb),
            (Mode::Live, 1, SinkKind::Influxdb),
        ]
    } else {
        vec![(Mode::Replay, 1, SinkKind::Null), (Mode::Live, 1, SinkKind::Null)]
    };
    let wanted = std::env::var("BENCH_CONFIGS").ok();
    let bench = Bench { scenario, nodes, steady, resolution };
    println!(
        "{:<24} {:>12} {:>12} {:>10} {:>10} {:>9} {:>15} {:>9} {:>8}",
        "run",
        "cpu s/window",
        "fixture cpu",
        "peak RSS",
        "fixt. RSS",
        "nodes/win",
        "start s (cpu s)",
        "stop s",
        "dropped"
    );
    for (mode, workers, sink) in all {
        let name = config_name(mode, workers, sink);
        if wanted.as_ref().is_some_and(|w| !w.split(',').any(|n| n == name)) {
            continue;
        }
        let row = match mode {
            Mode::Live => bench.live(workers, sink),
            Mode::Replay => bench.replay(workers, sink),
        };
        match row {
            Ok(row) => println!("{}", row.render(&name)),
            Err(e) => fail(&format!("{name}: {e}")),
        }
    }
}

fn config_name(mode: Mode, workers: usize, sink: SinkKind) -> String {
    let mode = if mode == Mode::Live { "live" } else { "replay" };
    let sink = if sink == SinkKind::Null { "null" } else { "influxdb" };
    format!("{mode}-w{workers}-{sink}")
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}

/// One configuration's figures.
#[derive(Default)]
struct Row {
    cpu_per_window: f64,
    fixture_cpu_per_window: Option<f64>,
    peak_rss_mib: u64,
    fixture_rss_mib: Option<u64>,
    nodes_per_window: Option<f64>,
    startup: Option<(f64, f64)>,
    stop_seconds: f64,
    dropped: usize,
}

impl Row {
    fn render(&self, name: &str) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        format!(
            "{:<24} {:>12.3} {:>12} {:>6} MiB {:>10} {:>9} {:>15} {:>9.2} {:>8}",
            name,
            self.cpu_per_window,
            opt(self.fixture_cpu_per_window, 3),
            self.peak_rss_mib,
            self.fixture_rss_mib.map_or("-".into(), |m| format!("{m} MiB")),
            opt(self.nodes_per_window, 0),
            self.startup.map_or("-".into(), |(s, c)| format!("{s:.1} ({c:.2})")),
            self.stop_seconds,
            self.dropped,
        )
    }
}

impl Bench {
    /// Replay at full speed as its own process: CPU and peak RSS over the whole run.
    fn replay(&self, workers: usize, sink: SinkKind) -> Result<Row, String> {
        let influxd = start_influxd(sink)?;
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let mut args = vec![format!("--source=replay:{}", self.scenario.display()), format!("-w{workers}")];
        args.push(sink_flag(influxd.as_ref()));
        let started = Instant::now();
        let child = collector(&args, log.path())?;
        let (status, usage) = wait_with_usage(child)?;
        let wall = started.elapsed().as_secs_f64();
        if !status {
            return Err(format!(
                "replay failed: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            ));
        }
        let windows = scenario_windows(&self.scenario)?.max(1) as f64;
        Ok(Row {
            cpu_per_window: usage.cpu_seconds / windows,
            peak_rss_mib: usage.max_rss_kib / 1024,
            stop_seconds: wall,
            dropped: dropped_windows(log.path()),
            ..Row::default()
        })
    }

    /// The collector against the fixture server, both in their own processes.
    fn live(&self, workers: usize, sink: SinkKind) -> Result<Row, String> {
        let influxd = start_influxd(sink)?;
        let tls = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut server = fixture_server(&self.scenario, tls.path())?;
        let guard = KillOnDrop(vec![]);
        let result = self.live_against(&mut server, workers, influxd.as_ref(), guard);
        let _ = server.kill();
        let _ = server.wait();
        result
    }

    fn live_against(
        &self,
        server: &mut Child,
        workers: usize,
        influxd: Option<&Influxd>,
        mut guard: KillOnDrop,
    ) -> Result<Row, String> {
        let info = FixtureInfo::read(server)?;
        let source = format!(
            "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}&events=false",
            info.api, info.kubeconfig, info.kubelet_https_port
        );
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let args = vec![
            source,
            format!("--metric_resolution={}s", self.resolution.as_secs()),
            format!("-w{workers}"),
            sink_flag(influxd),
        ];
        let started = Instant::now();
        let child = collector(&args, log.path())?;
        let pid = child.id();
        guard.0.push(child);
        let mut watch =
            influxd.map(|influxd| Watch::new(started, log.path(), pid, influxd.pid(), self.resolution));
        // Start-up: until every node was scraped once.
        let stats = |what: &str| fixture_stats(&info.api_addr).map_err(|e| format!("{what}: {e}"));
        wait_until(|| Ok(stats("start-up")?.0 >= self.nodes as u64), "the first window's scrapes")?;
        let startup = (started.elapsed().as_secs_f64(), cpu_seconds(pid)?);
        // Steady windows: from the boundary after the next one, `steady` whole resolutions.
        let first = next_boundary(self.resolution) + self.resolution;
        wait_watching(first, watch.as_mut())?;
        let (cpu0, fixture0, scraped0) = (cpu_seconds(pid)?, cpu_seconds(server.id())?, stats("steady")?.0);
        wait_watching(first + self.resolution * self.steady as u32, watch.as_mut())?;
        let (cpu1, fixture1, scraped1) = (cpu_seconds(pid)?, cpu_seconds(server.id())?, stats("steady")?.0);
        if let Some(watch) = &watch {
            timeline::print_report(&watch.samples, self.resolution.as_secs_f64(), "influxd");
        }
        let peak = peak_rss_kib(pid)?;
        let fixture_peak = peak_rss_kib(server.id())?;
        let windows = self.steady as f64;
        let stopping = Instant::now();
        let child = guard.0.pop().ok_or("no collector")?;
        signal(pid, "TERM");
        let (ok, _) = wait_with_usage(child)?;
        let stop_seconds = stopping.elapsed().as_secs_f64();
        // A collector stopped with windows InfluxDB has not taken yet exits with an error after
        // its bounded flush; those windows are counted as dropped in the row, not a failed run.
        let abandoned =
            std::fs::read_to_string(log.path()).is_ok_and(|l| l.contains("stopping: not written"));
        if !ok && (influxd.is_none() || !abandoned) {
            return Err(format!(
                "collector failed: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            ));
        }
        Ok(Row {
            cpu_per_window: (cpu1 - cpu0) / windows,
            fixture_cpu_per_window: Some((fixture1 - fixture0) / windows),
            peak_rss_mib: peak / 1024,
            fixture_rss_mib: Some(fixture_peak / 1024),
            nodes_per_window: Some((scraped1 - scraped0) as f64 / windows),
            startup: Some(startup),
            stop_seconds,
            dropped: dropped_windows(log.path()),
        })
    }
}

/// Samples a live run with an InfluxDB sink once a second ([`timeline`]).
struct Watch {
    started: Instant,
    log: PathBuf,
    api: Option<String>,
    collector: u32,
    influxd: u32,
    max_influxd_kib: u64,
    resolution: f64,
    samples: Vec<timeline::Sample>,
}

impl Watch {
    fn new(started: Instant, log: &Path, collector: u32, influxd: u32, resolution: Duration) -> Watch {
        let max_mib = size("BENCH_INFLUXD_MAX_MIB", 8000, 8000) as u64;
        Watch {
            started,
            log: log.to_path_buf(),
            api: None,
            collector,
            influxd,
            max_influxd_kib: max_mib * 1024,
            resolution: resolution.as_secs_f64(),
            samples: Vec::new(),
        }
    }

    /// One sample; an error once influxd is over its memory bound.
    fn sample(&mut self) -> Result<(), String> {
        if self.api.is_none() {
            self.api = timeline::api_address(&self.log);
        }
        let Some(api) = &self.api else { return Ok(()) };
        let sample = timeline::sample(self.started, api, self.collector, self.influxd)?;
        self.samples.push(sample);
        if sample.server_rss_kib > self.max_influxd_kib {
            timeline::print_report(&self.samples, self.resolution, "influxd");
            return Err(format!(
                "influxd's RSS reached {} MiB, over BENCH_INFLUXD_MAX_MIB={}; stopped",
                sample.server_rss_kib / 1024,
                self.max_influxd_kib / 1024
            ));
        }
        Ok(())
    }
}

/// Sleeps until `at`, sampling once a second if watching.
fn wait_watching(at: std::time::SystemTime, watch: Option<&mut Watch>) -> Result<(), String> {
    let Some(watch) = watch else {
        sleep_until(at);
        return Ok(());
    };
    while let Ok(left) = at.duration_since(std::time::SystemTime::now()) {
        watch.sample()?;
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
    watch.sample()
}

fn start_influxd(sink: SinkKind) -> Result<Option<Influxd>, String> {
    let sizing = match std::env::var("BENCH_INFLUXD_SIZING").as_deref() {
        Ok("tests") => Sizing::Tests,
        _ => Sizing::LargeCluster,
    };
    match sink {
        SinkKind::Null => Ok(None),
        SinkKind::Influxdb => Influxd::start_sized(sizing).map(Some).map_err(|e| format!("influxd: {e}")),
    }
}

fn sink_flag(influxd: Option<&Influxd>) -> String {
    match influxd {
        None => "--sink=file:/dev/null".into(),
        Some(influxd) => format!(
            "--sink=influxdb:{}?db=k8s{}",
            influxd.url(),
            std::env::var("BENCH_INFLUX_OPTIONS").unwrap_or_default()
        ),
    }
}

/// Windows the sinks dropped, from each sink's `sink finished` line at exit.
fn dropped_windows(log: &Path) -> usize {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("sink finished"))
        .filter_map(|l| l.split("dropped_windows=").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .sum()
}
