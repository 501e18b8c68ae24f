//! Cluster mode's cost: what each process of a cluster pays against one process doing it all.
//!
//! Replay of a synthetic cluster (20,000 nodes x 30 pods, `BENCH_WINDOWS` windows) by one process
//! of one worker, then by `BENCH_PROCESSES` (4) processes of one worker on loopback; and the same
//! live against `heapster-testbed fixture-server` at `BENCH_LIVE_NODES` (5,000) nodes, one process
//! then `BENCH_LIVE_PROCESSES` (2). Per process it prints: the share of the nodes it owns, CPU-s
//! per window (from the kernel: the whole run in replay, `BENCH_STEADY` steady windows live),
//! that CPU against the single process's times the share (the goal: under +15%), peak RSS (its
//! own `VmHWM`), and bytes sent to and received from the other processes per window (the
//! collector's own counters on its peer sockets, logged at exit), and live, the nodes scraped
//! per steady window by all the processes together (fewer than the nodes: the collectors did
//! not keep up).
//!
//! Under `cargo test` (no `--bench`) it runs a smoke size: a few nodes, two processes. The
//! scenarios it synthesizes go under the temp dir as `heapster-cluster-bench-*` and are deleted
//! at the end unless `BENCH_KEEP_SCENARIOS=1` (a 20,000-node window is about 2 GB).
//! `BENCH_CONFIGS` picks runs by name (`replay-single,replay-cluster,live-single,live-cluster`);
//! `BENCH_HEAPSTER` runs another build's binary.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

mod common;

use common::process::*;
use common::size;
use heapster::cluster::Share;
use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::free_port;

fn main() {
    let pods = size("BENCH_PODS", 30, 2);
    let windows = size("BENCH_WINDOWS", 3, 2);
    let replay = Sizes { nodes: size("BENCH_NODES", 20_000, 6), processes: size("BENCH_PROCESSES", 4, 2) };
    let live =
        Sizes { nodes: size("BENCH_LIVE_NODES", 5_000, 6), processes: size("BENCH_LIVE_PROCESSES", 2, 2) };
    let live_windows = size("BENCH_LIVE_WINDOWS", 5, 3);
    let steady = size("BENCH_STEADY", 3, 1);
    let resolution = Duration::from_secs(size("BENCH_RESOLUTION_S", 15, 5) as u64);
    let keep = std::env::var("BENCH_KEEP_SCENARIOS").is_ok_and(|v| v == "1");
    let wanted = std::env::var("BENCH_CONFIGS").ok();
    let wants = |name: &str| wanted.as_ref().is_none_or(|w| w.split(',').any(|n| n == name));
    let mut made = Vec::new();

    println!(
        "{:<18} {:>7} {:>13} {:>13} {:>9} {:>10} {:>14} {:>14} {:>10}",
        "run",
        "share",
        "cpu s/window",
        "single*share",
        "overhead",
        "peak RSS",
        "sent B/window",
        "recv B/window",
        "nodes/win"
    );
    let result = (|| -> Result<(), String> {
        if wants("replay-single") || wants("replay-cluster") {
            let scenario = scenario(replay.nodes, pods, windows, &mut made)?;
            let single = if wants("replay-single") { Some(replay_run(&scenario, 1)?) } else { None };
            print_rows(&format!("replay-{}x1", 1), &single, None);
            if wants("replay-cluster") {
                let rows = replay_run(&scenario, replay.processes)?;
                print_rows(&format!("replay-{}x1", replay.processes), &Some(rows), single.as_ref());
            }
        }
        if wants("live-single") || wants("live-cluster") {
            let scenario = scenario(live.nodes, pods, live_windows, &mut made)?;
            let bench = Live { scenario: &scenario, nodes: live.nodes, steady, resolution };
            let single = if wants("live-single") { Some(bench.run(1)?) } else { None };
            print_rows("live-1x1", &single, None);
            if wants("live-cluster") {
                let rows = bench.run(live.processes)?;
                print_rows(&format!("live-{}x1", live.processes), &Some(rows), single.as_ref());
            }
        }
        Ok(())
    })();
    if !keep {
        for dir in made {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("cannot delete {}: {e}", dir.display());
            }
        }
    }
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

struct Sizes {
    nodes: usize,
    processes: usize,
}

/// One process's figures.
struct Row {
    share: f64,
    cpu_per_window: f64,
    peak_rss_mib: u64,
    /// Bytes to and from the other processes per window (cluster runs).
    traffic: Option<(f64, f64)>,
    /// Live: summaries the fixture server served per steady window, to all processes together.
    scraped: Option<f64>,
}

fn print_rows(name: &str, rows: &Option<Vec<Row>>, single: Option<&Vec<Row>>) {
    let Some(rows) = rows else { return };
    let reference = single.and_then(|s| s.first()).map(|s| s.cpu_per_window);
    for (process, row) in rows.iter().enumerate() {
        let expected = reference.map(|r| r * row.share);
        let per_window = |v: Option<(f64, f64)>, pick: fn((f64, f64)) -> f64| {
            v.map_or("-".to_string(), |v| format!("{:.0}", pick(v)))
        };
        println!(
            "{:<18} {:>7.3} {:>13.3} {:>13} {:>9} {:>6} MiB {:>14} {:>14} {:>10}",
            format!("{name} p{process}"),
            row.share,
            row.cpu_per_window,
            expected.map_or("-".to_string(), |e| format!("{e:.3}")),
            expected.map_or("-".to_string(), |e| format!("{:+.1}%", (row.cpu_per_window / e - 1.0) * 100.0)),
            row.peak_rss_mib,
            per_window(row.traffic, |t| t.0),
            per_window(row.traffic, |t| t.1),
            row.scraped.map_or("-".to_string(), |n| format!("{n:.0}")),
        );
    }
}

/// The synthetic scenario of that size under the temp dir, made (and listed in `made`) if absent.
fn scenario(nodes: usize, pods: usize, windows: usize, made: &mut Vec<PathBuf>) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("heapster-cluster-bench-{nodes}x{pods}x{windows}"));
    if !dir.join("scenario.json").is_file() {
        let started = Instant::now();
        made.push(dir.clone());
        synth(&SynthSpec::new(nodes, pods, windows), &dir).map_err(|e| format!("synth failed: {e}"))?;
        println!("synthesized {nodes} nodes x {pods} pods x {windows} windows in {:.1?}", started.elapsed());
    }
    Ok(dir)
}

/// The nodes of a scenario (one kubelet body each in its first window).
fn node_names(scenario: &Path) -> Result<Vec<String>, String> {
    let dir = scenario.join("windows").join("0000").join("kubelet");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect())
}

/// The share of `nodes` each of `processes` one-worker processes owns.
fn shares(nodes: &[String], processes: usize) -> Vec<f64> {
    (0..processes)
        .map(|process| {
            let share = Share { process, processes, workers: 1 };
            let owned = nodes.iter().filter(|n| share.local_owner(n).is_some()).count();
            owned as f64 / nodes.len().max(1) as f64
        })
        .collect()
}

/// `--processes`, `--process`, `--hostfile` of each process (none for a single one).
fn cluster_flags(dir: &Path, processes: usize) -> Result<Vec<Vec<String>>, String> {
    if processes == 1 {
        return Ok(vec![Vec::new()]);
    }
    let mut hosts = String::new();
    for _ in 0..processes {
        hosts.push_str(&format!("127.0.0.1:{}\n", free_port().map_err(|e| e.to_string())?));
    }
    let hostfile = dir.join("hosts");
    std::fs::write(&hostfile, hosts).map_err(|e| e.to_string())?;
    Ok((0..processes)
        .map(|i| {
            vec![
                format!("--processes={processes}"),
                format!("--process={i}"),
                format!("--hostfile={}", hostfile.display()),
            ]
        })
        .collect())
}

/// `(bytes_sent, bytes_received)` from a process's `exchanged with the other processes` line.
fn traffic(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.contains("exchanged with the other processes"))?;
    Some((logged(line, "bytes_sent")?, logged(line, "bytes_received")?))
}

/// The number after ` field=` in a log line (the last such line of a log).
fn logged(log: &str, field: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.split(&format!(" {field}=")).nth(1))?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Replays `scenario` at full speed with `processes` processes of one worker into /dev/null;
/// each process's CPU and peak RSS over its whole run (from wait4).
fn replay_run(scenario: &Path, processes: usize) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let windows = scenario_windows(scenario)?.max(1) as f64;
    let shares = shares(&node_names(scenario)?, processes);
    let mut guard = KillOnDrop(Vec::new());
    let mut logs = Vec::new();
    for (i, flags) in cluster_flags(dir.path(), processes)?.into_iter().enumerate() {
        let log = dir.path().join(format!("{i}.log"));
        let mut args = vec![
            format!("--source=replay:{}", scenario.display()),
            "-w1".into(),
            "--sink=file:/dev/null".into(),
        ];
        args.extend(flags);
        guard.0.push(collector(&args, &log)?);
        logs.push(log);
    }
    let peaks = watch_peaks(&guard.0);
    let mut rows = Vec::new();
    for (i, child) in std::mem::take(&mut guard.0).into_iter().enumerate() {
        let (ok, usage) = wait_with_usage(child)?;
        let log = std::fs::read_to_string(&logs[i]).unwrap_or_default();
        if !ok {
            return Err(format!("replay process {i} failed: {log}"));
        }
        rows.push(Row {
            share: shares[i],
            cpu_per_window: usage.cpu_seconds / windows,
            peak_rss_mib: peaks[i] / 1024,
            traffic: traffic(&log).map(|(s, r)| (s as f64 / windows, r as f64 / windows)),
            scraped: None,
        });
    }
    Ok(rows)
}

/// Each child's peak RSS (KiB) from its own memory (`VmHWM`), polled until all have exited (their
/// `/proc` entry lost it). wait4's `ru_maxrss` will not do: a child spawned from this process
/// starts its count from this process's own peak, the gigabytes a synthesis just used.
fn watch_peaks(children: &[Child]) -> Vec<u64> {
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let mut peaks = vec![0; pids.len()];
    let deadline = Instant::now() + Duration::from_secs(3600);
    while Instant::now() < deadline {
        let mut running = false;
        for (pid, peak) in pids.iter().zip(peaks.iter_mut()) {
            // 0 (no VmHWM line) once the process has exited and waits to be reaped.
            let kib = peak_rss_kib(*pid).unwrap_or(0);
            running |= kib > 0;
            *peak = (*peak).max(kib);
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    peaks
}

/// Collectors against one fixture server, each in its own process.
struct Live<'a> {
    scenario: &'a Path,
    nodes: usize,
    steady: usize,
    resolution: Duration,
}

impl Live<'_> {
    fn run(&self, processes: usize) -> Result<Vec<Row>, String> {
        let tls = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut server = fixture_server(self.scenario, tls.path())?;
        let result = self.against(&mut server, processes);
        let _ = server.kill();
        let _ = server.wait();
        result
    }

    /// Steady windows from /proc while every process runs, then SIGTERM to all; the bytes
    /// exchanged per window are each process's totals at exit over the windows it completed.
    fn against(&self, server: &mut Child, processes: usize) -> Result<Vec<Row>, String> {
        let info = FixtureInfo::read(server)?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let shares = shares(&node_names(self.scenario)?, processes);
        let mut guard = KillOnDrop(Vec::new());
        let mut logs = Vec::new();
        for (i, flags) in cluster_flags(dir.path(), processes)?.into_iter().enumerate() {
            let log = dir.path().join(format!("{i}.log"));
            let mut args = vec![
                format!(
                    "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}&events=false",
                    info.api, info.kubeconfig, info.kubelet_https_port
                ),
                format!("--metric_resolution={}s", self.resolution.as_secs()),
                "-w1".into(),
                "--sink=file:/dev/null".into(),
            ];
            args.extend(flags);
            guard.0.push(collector(&args, &log)?);
            logs.push(log);
        }
        let pids: Vec<u32> = guard.0.iter().map(Child::id).collect();
        let stats = |what: &str| fixture_stats(&info.api_addr).map_err(|e| format!("{what}: {e}"));
        wait_until(|| Ok(stats("start-up")?.0 >= self.nodes as u64), "the first window's scrapes")?;
        let first = next_boundary(self.resolution) + self.resolution;
        sleep_until(first);
        let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_, _>>()?;
        let (scraped_before, fixture_before) = (stats("steady")?.0, cpu_seconds(server.id())?);
        sleep_until(first + self.resolution * self.steady as u32);
        let after: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_, _>>()?;
        let scraped = (stats("steady")?.0 - scraped_before) as f64 / self.steady as f64;
        let peaks: Vec<u64> = pids.iter().map(|&p| peak_rss_kib(p)).collect::<Result<_, _>>()?;
        // The fixture server shares the machine: what it takes is not the collectors' to use.
        println!(
            "fixture server: {:.3} cpu s/window, peak RSS {} MiB",
            (cpu_seconds(server.id())? - fixture_before) / self.steady as f64,
            peak_rss_kib(server.id())? / 1024
        );
        for &pid in &pids {
            signal(pid, "TERM");
        }
        let mut rows = Vec::new();
        for (i, child) in std::mem::take(&mut guard.0).into_iter().enumerate() {
            let (ok, _) = wait_with_usage(child)?;
            let log = std::fs::read_to_string(&logs[i]).unwrap_or_default();
            if !ok {
                return Err(format!("live process {i} failed: {log}"));
            }
            let windows = logged(&log, "windows").unwrap_or(0).max(1) as f64;
            rows.push(Row {
                share: shares[i],
                cpu_per_window: (after[i] - before[i]) / self.steady as f64,
                peak_rss_mib: peaks[i] / 1024,
                traffic: traffic(&log).map(|(s, r)| (s as f64 / windows, r as f64 / windows)),
                scraped: Some(scraped),
            });
        }
        Ok(rows)
    }
}
