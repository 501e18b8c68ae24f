//! The HTTP API under a request storm: a fast replay of a synthetic 1,000-node x 30-pod cluster
//! (3 windows) into `file:/dev/null`, timed alone and while one client sends up to 10,000
//! requests on one kept-alive connection (node and pod lists of metrics.k8s.io, /metrics,
//! /healthz) to the collector's API.
//! Runs alternate (quiet, storm, quiet, ...) so that the machine's drift hits both alike; prints
//! each run's wall time, the collector's CPU time, of which its `api` thread's (sampled from
//! `/proc` every 20 ms while it runs), the collector's peak RSS, the requests answered, the bytes
//! they carried and the client's own CPU time (on a small machine the client competes with the
//! replay for cores), then the medians and the slowdown.
//!
//! Under `cargo test` (no `--bench`) it runs a 10 x 3 x 2 smoke size, one run of each.
//! Sizes: `BENCH_NODES`, `BENCH_PODS`, `BENCH_WINDOWS`, `BENCH_RUNS`, `BENCH_REQUESTS`.
//! `BENCH_CLIENT_IDLE=1` runs the client at `SCHED_IDLE`: in production the client (kubectl,
//! Prometheus, the HPA) runs on other machines, and here its CPU would otherwise count as the
//! API's cost to the replay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{cached_scenario, size};
use heapster_testbed::synth::{SynthSpec, synth};

/// The paths a storm cycles through: the two lists `kubectl top` reads, and the probes.
const PATHS: [&str; 4] =
    ["/apis/metrics.k8s.io/v1beta1/nodes", "/apis/metrics.k8s.io/v1beta1/pods", "/metrics", "/healthz"];

fn main() {
    let nodes = size("BENCH_NODES", 1000, 10);
    let pods = size("BENCH_PODS", 30, 3);
    let windows = size("BENCH_WINDOWS", 3, 2);
    let runs = size("BENCH_RUNS", 3, 1);
    let requests = size("BENCH_REQUESTS", 10_000, 200);
    let client_idle = std::env::var("BENCH_CLIENT_IDLE").is_ok_and(|v| v == "1");
    let dir = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    cached_scenario(&dir, &format!("{nodes} nodes x {pods} pods x {windows} windows"), |dir| {
        synth(&SynthSpec::new(nodes, pods, windows), dir).map(drop)
    });
    let work = std::env::temp_dir().join(format!("heapster-bench-api-storm-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work) {
        fail(&format!("{}: {e}", work.display()));
    }
    println!(
        "replay of {nodes} nodes x {pods} pods x {windows} windows; storm of up to {requests} requests; client at {}",
        if client_idle { "SCHED_IDLE" } else { "normal priority" }
    );
    println!(
        "{:<4} {:<6} {:>9} {:>13} {:>9} {:>12} {:>8} {:>10} {:>12} {:>13}",
        "run",
        "mode",
        "wall s",
        "collector s",
        "api s",
        "pipeline s",
        "peak MB",
        "answered",
        "MB received",
        "client cpu s"
    );
    let (mut quiet, mut storm) = (Vec::<Run>::new(), Vec::<Run>::new());
    for run in 0..runs {
        for loaded in [false, true] {
            let log = work.join(format!("run{run}-{}.log", if loaded { "storm" } else { "quiet" }));
            let r = replay(&dir, &log, if loaded { requests } else { 0 }, client_idle)
                .unwrap_or_else(|e| fail(&format!("run {run}: {e}")));
            let mode = if loaded { "storm" } else { "quiet" };
            println!(
                "{run:<4} {mode:<6} {:>9.2} {:>13.2} {:>9.2} {:>12.2} {:>8.0} {:>10} {:>12.1} {:>13.2}",
                r.wall,
                r.collector_cpu,
                r.api_cpu,
                r.collector_cpu - r.api_cpu,
                r.peak_rss as f64 / 1e6,
                r.client.answered,
                r.client.bytes as f64 / 1e6,
                r.client.cpu
            );
            if loaded {
                storm.push(r);
            } else {
                quiet.push(r);
            }
        }
    }
    let walls = |runs: &[Run]| runs.iter().map(|r| r.wall).collect::<Vec<f64>>();
    println!("quiet wall s: {:.2?}", walls(&quiet));
    println!("storm wall s: {:.2?}", walls(&storm));
    let medians: [(&str, Measure); 5] = [
        ("wall s", |r| r.wall),
        ("collector cpu s", |r| r.collector_cpu),
        ("pipeline cpu s (without the api thread)", |r| r.collector_cpu - r.api_cpu),
        ("peak RSS MB", |r| r.peak_rss as f64 / 1e6),
        ("answered", |r| r.client.answered as f64),
    ];
    for (name, value) in medians {
        let q = median(&mut quiet.iter().map(value).collect::<Vec<_>>());
        let s = median(&mut storm.iter().map(value).collect::<Vec<_>>());
        println!("median {name}: quiet {q:.2}, storm {s:.2}; {:+.1}%", (s / q - 1.0) * 100.0);
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Kills the collector if the harness leaves early.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One figure of a run.
type Measure = fn(&Run) -> f64;

struct Run {
    wall: f64,
    collector_cpu: f64,
    /// The collector's `api` thread, as last sampled.
    api_cpu: f64,
    /// The collector's peak resident set (`VmHWM`), bytes, as last sampled.
    peak_rss: u64,
    client: Client,
}

/// What [`sample`] saw last of the collector.
#[derive(Clone, Copy, Default)]
struct Sampled {
    api_cpu: f64,
    peak_rss: u64,
}

/// CPU seconds of the thread named `api` and the peak RSS of process `pid`, from `/proc`.
fn sample_once(pid: u32) -> Option<Sampled> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim();
    let peak_rss = kb.parse::<u64>().ok()? * 1024;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut api_cpu = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != "api" {
            continue;
        }
        // utime and stime: fields 14 and 15, the 12th and 13th after the comm.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        api_cpu += (field(11) + field(12)) / ticks;
    }
    Some(Sampled { api_cpu, peak_rss })
}

/// Samples the collector every 20 ms until `done`; returns the last sample.
fn sample(pid: u32, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Sampled> {
    std::thread::spawn(move || {
        let mut last = Sampled::default();
        while !done.load(Ordering::Relaxed) {
            if let Some(now) = sample_once(pid) {
                last = now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last
    })
}

#[derive(Default)]
struct Client {
    answered: usize,
    bytes: u64,
    cpu: f64,
}

/// CPU seconds (user + system) of this thread or of the reaped children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage points to a live local.
    unsafe { libc::getrusage(who, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// One replay; with `requests > 0`, a client sends up to that many while it runs.
fn replay(scenario: &Path, log: &Path, requests: usize, client_idle: bool) -> Result<Run, String> {
    let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let children_before = cpu_seconds(libc::RUSAGE_CHILDREN);
    let started = Instant::now();
    let child = Command::new(heapster_bin())
        .arg(format!("--source=replay:{}", scenario.display()))
        .args(["--sink=file:/dev/null", "-w", "1", "--heapster-port=0", "--listen_ip=127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start heapster: {e}"))?;
    let mut child = KillOnDrop(child);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample(child.0.id(), done.clone());
    let client = (requests > 0).then(|| {
        let (log, done) = (log.to_path_buf(), done.clone());
        std::thread::spawn(move || {
            if client_idle {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is this thread; param points to a live local.
                if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
                    eprintln!("the client stays at normal priority: {}", std::io::Error::last_os_error());
                }
            }
            storm(&log, requests, &done)
        })
    });
    let status = child.0.wait().map_err(|e| format!("wait: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let collector_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
    done.store(true, Ordering::Relaxed);
    let client = client.map_or_else(Client::default, |c| c.join().unwrap_or_default());
    let sampled = sampler.join().unwrap_or_default();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        return Err(format!("heapster failed ({status}): {text}"));
    }
    Ok(Run { wall, collector_cpu, api_cpu: sampled.api_cpu, peak_rss: sampled.peak_rss, client })
}

fn heapster_bin() -> PathBuf {
    std::env::var_os("BENCH_HEAPSTER")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_heapster")), PathBuf::from)
}

/// Sends requests until `requests` were answered or the collector is gone.
fn storm(log: &Path, requests: usize, done: &AtomicBool) -> Client {
    let mut client = Client::default();
    if let Some(addr) = api_address(log, done) {
        let mut connection = None;
        // Lists stay empty until a window has rates: the storm starts on a populated snapshot,
        // so that it reads real lists.
        loop {
            match get(&mut connection, &addr, PATHS[0]) {
                Ok(bytes) if bytes > 4096 => break,
                Ok(_) if !done.load(Ordering::Relaxed) => std::thread::sleep(Duration::from_millis(20)),
                _ => return client,
            }
        }
        while client.answered < requests && !done.load(Ordering::Relaxed) {
            match get(&mut connection, &addr, PATHS[client.answered % PATHS.len()]) {
                Ok(bytes) => {
                    client.answered += 1;
                    client.bytes += bytes;
                }
                // The replay ended and the API went down with it.
                Err(_) => break,
            }
        }
    }
    client.cpu = cpu_seconds(libc::RUSAGE_THREAD);
    client
}

/// The API's address from the collector's log line, once it is written.
fn api_address(log: &Path, done: &AtomicBool) -> Option<String> {
    while !done.load(Ordering::Relaxed) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| l.split("http://").nth(1)) {
            return Some(addr.split_whitespace().next()?.trim_matches('"').to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// One HTTP/1.1 GET on a kept-alive connection (as kubectl and Prometheus send them), opened
/// when there is none; the body is read whole and dropped. Returns the body's length.
fn get(connection: &mut Option<BufReader<TcpStream>>, addr: &str, path: &str) -> std::io::Result<u64> {
    let reader = match connection {
        Some(reader) => reader,
        None => {
            let stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            connection.insert(BufReader::new(stream))
        }
    };
    // One write: a request in pieces waits on delayed ACKs.
    reader.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.contains(" 200 ") {
        return Err(std::io::Error::other(format!("{path}: {}", line.trim())));
    }
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<u64>().ok();
        }
    }
    let Some(length) = length else {
        // No length: the body ends with the connection.
        let body = std::io::copy(reader, &mut std::io::sink())?;
        *connection = None;
        return Ok(body);
    };
    std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())
}
