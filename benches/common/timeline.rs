//! A live run seen once a second: the collector's own counters (`/metrics`) and the CPU and
//! memory of the collector and of the server it writes to, turned into one row per window.
//!
//! Used where the question is "does the backend keep up": how many points each window wrote, how
//! long each window took to be written after it was exported, what waited and what was dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::process::{cpu_seconds, current_rss_kib};

/// The collector's counters at one moment.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    pub windows_exported: u64,
    pub window_points: f64,
    pub points_written: u64,
    pub points_dropped: u64,
    pub windows_dropped: u64,
    pub queue_depth: u64,
}

/// One look at the run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Since the collector started.
    pub at: f64,
    pub counters: Counters,
    pub collector_cpu: f64,
    pub collector_rss_kib: u64,
    pub server_cpu: f64,
    pub server_rss_kib: u64,
}

/// The collector's API address, from its start-up line in `log` (`address=127.0.0.1:PORT`).
pub fn api_address(log: &Path) -> Option<String> {
    let log = std::fs::read_to_string(log).ok()?;
    let line = log.lines().find(|l| l.contains("serving /healthz"))?;
    let rest = line.split("address=").nth(1)?;
    Some(rest.split_whitespace().next()?.trim_matches('"').to_string())
}

/// A plain HTTP/1.0 GET; the body.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// The counters in a `/metrics` body (summed over sinks).
pub fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        match name {
            "heapster_windows_exported_total" => c.windows_exported += value as u64,
            "heapster_window_points" => c.window_points = value,
            "heapster_sink_points_written_total" => c.points_written += value as u64,
            "heapster_sink_points_dropped_total" => c.points_dropped += value as u64,
            "heapster_sink_windows_dropped_total" => c.windows_dropped += value as u64,
            "heapster_sink_queue_depth" => c.queue_depth += value as u64,
            _ => {}
        }
    }
    c
}

/// Samples the collector (`collector` pid, API at `api`) and `server` (pid) once.
pub fn sample(started: Instant, api: &str, collector: u32, server: u32) -> Result<Sample, String> {
    let counters = parse_counters(&http_get(api, "/metrics")?);
    Ok(Sample {
        at: started.elapsed().as_secs_f64(),
        counters,
        collector_cpu: cpu_seconds(collector)?,
        collector_rss_kib: current_rss_kib(collector)?,
        server_cpu: cpu_seconds(server)?,
        server_rss_kib: current_rss_kib(server)?,
    })
}

/// Prints one row per resolution interval (from the first sample on) and one per exported window:
/// when it was exported, when the sink had written it through (cumulative points written
/// reaching the window's share, windows being about equal), and so how long its write took.
pub fn print_report(samples: &[Sample], resolution: f64, server: &str) {
    let Some(first) = samples.first() else { return };
    println!(
        "{:>6} {:>9} {:>11} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "t s",
        "exported",
        "written",
        "pts/s",
        "waiting",
        "dropped",
        "queue",
        &format!("{server} cpu"),
        &format!("{server} RSS"),
        "coll. cpu",
        "coll. RSS"
    );
    let mut last = *first;
    let mut next = first.at + resolution;
    for s in samples.iter().skip(1) {
        if s.at + 0.5 < next && !std::ptr::eq(s, samples.last().unwrap_or(s)) {
            continue;
        }
        let span = (s.at - last.at).max(1e-3);
        let written = s.counters.points_written - last.counters.points_written;
        let through = written_through(s);
        println!(
            "{:>6.0} {:>9} {:>11} {:>9.0} {:>8} {:>8} {:>8} {:>10.2} {:>6} MiB {:>10.2} {:>6} MiB",
            s.at,
            s.counters.windows_exported,
            written,
            written as f64 / span,
            s.counters.windows_exported.saturating_sub(through + s.counters.windows_dropped),
            s.counters.windows_dropped,
            s.counters.queue_depth,
            s.server_cpu - last.server_cpu,
            s.server_rss_kib / 1024,
            s.collector_cpu - last.collector_cpu,
            s.collector_rss_kib / 1024,
        );
        last = *s;
        next = s.at + resolution;
    }
    let peak_server = samples.iter().map(|s| s.server_rss_kib).max().unwrap_or(0);
    println!("{server} RSS peak seen: {} MiB", peak_server / 1024);
    println!("{:>7} {:>11} {:>12} {:>12} {:>10}", "window", "points", "exported s", "written s", "write s");
    let exported_at = |k: u64| samples.iter().find(|s| s.counters.windows_exported >= k).map(|s| s.at);
    let written_at = |k: u64| samples.iter().find(|s| written_through(s) >= k).map(|s| s.at);
    let last = samples.last().unwrap_or(first);
    let mut previous_done = 0.0f64;
    for k in 1..=last.counters.windows_exported {
        let Some(exported) = exported_at(k) else { break };
        let done = written_at(k);
        let start = exported.max(previous_done);
        println!(
            "{:>7} {:>11.0} {:>12.0} {:>12} {:>10}",
            k,
            last.counters.window_points,
            exported,
            done.map_or("-".into(), |d| format!("{d:.0}")),
            done.map_or("not yet".into(), |d| format!("{:.0}", d - start)),
        );
        if let Some(done) = done {
            previous_done = done;
        }
    }
}

/// Windows whose points have all been written (or dropped), windows being about equal in size.
fn written_through(s: &Sample) -> u64 {
    let per_window = s.counters.window_points;
    if per_window < 1.0 {
        return 0;
    }
    let done = (s.counters.points_written + s.counters.points_dropped) as f64;
    // A window's share is an average: allow a point or so of rounding per window.
    ((done + 0.5 * per_window / 1000.0) / per_window).floor() as u64
}
