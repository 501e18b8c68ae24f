//! InfluxDB going away while the collector runs: frozen (SIGSTOP), killed, back again. Every
//! window the `file:` sink of the same run wrote must be in InfluxDB, point for point, unless the
//! buffer bound dropped it, and then it is counted exactly and logged once. Also: the disk
//! buffer across a collector restart, replay against a dead InfluxDB, and the event checkpoint
//! through a stalled sink.
//!
//! Windows are 5 s (the shortest resolution); outages last a few windows.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::FixtureServer;
use heapster_testbed::testkit::influxd::Influxd;
use support::*;

const PATIENCE: Duration = Duration::from_secs(120);

/// A collector run: the live source against the fixture server, a `file:` sink and InfluxDB.
struct Run {
    collector: Collector,
    out: PathBuf,
}

impl Run {
    fn start(server: &FixtureServer, dir: &Path, name: &str, sink: &str, extra: &[String]) -> Run {
        let out = dir.join(format!("{name}.lp"));
        let mut args = vec![
            kubernetes_source(server, "&events=false"),
            "--metric_resolution=5s".into(),
            format!("--sink=file:{}", out.display()),
            format!("--sink={sink}"),
        ];
        args.extend(extra.iter().cloned());
        Run { collector: Collector::start(dir, name, &args), out }
    }

    /// Waits until the file sink holds `more` windows beyond what it holds now.
    fn wait_windows(&mut self, more: usize) {
        let target = windows_in(&self.out).len() + more;
        let out = &self.out;
        self.collector.wait_for(&format!("{more} more windows"), PATIENCE, |_| {
            (windows_in(out).len() >= target).then_some(())
        });
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&mut self, needle: &str) {
        self.collector.wait_log(needle, PATIENCE);
    }

    /// SIGTERM; returns the windows the file sink wrote and the log.
    fn stop(self) -> (BTreeMap<i64, u64>, String) {
        let log = self.collector.stop_within(Duration::from_secs(40));
        (windows_in(&self.out), log)
    }
}

/// Points per window time (ns) in a line-protocol file; a window still being written is left out.
fn windows_in(path: &Path) -> BTreeMap<i64, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut windows: BTreeMap<i64, u64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(time) = line.rsplit_once(' ').and_then(|(_, t)| t.parse().ok()) {
            *windows.entry(time).or_default() += 1;
        }
    }
    if !text.ends_with('\n')
        && let Some(last) = windows.keys().next_back().copied()
    {
        windows.remove(&last);
    }
    windows
}

/// Points InfluxDB holds at each of `times`.
fn stored(influxd: &Influxd, db: &str, times: impl IntoIterator<Item = i64>) -> BTreeMap<i64, u64> {
    times
        .into_iter()
        .map(|t| {
            let answer =
                influxd.query(db, &format!("SELECT count(value) FROM /.*/ WHERE time = {t}")).expect("query");
            let count = answer["results"][0]["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["values"][0][1].as_u64().unwrap_or(0))
                .sum();
            (t, count)
        })
        .collect()
}

/// Polls until InfluxDB holds `expected` (the collector may still be draining its backlog).
fn until_stored(influxd: &Influxd, db: &str, expected: &BTreeMap<i64, u64>) -> BTreeMap<i64, u64> {
    let started = Instant::now();
    loop {
        let found = stored(influxd, db, expected.keys().copied());
        if &found == expected || started.elapsed() > PATIENCE {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A number from the InfluxDB sink's `sink finished` line.
fn sink_count(log: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("sink finished") && l.contains("sink=http"))
        .unwrap_or_else(|| panic!("no summary of the InfluxDB sink:\n{log}"));
    line.split(&format!(" {field}="))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_then_killed_influxdb_loses_no_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let mut influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let sink = format!("influxdb:{}?db=k8s", influxd.url());
    let dir = tmp.path().to_path_buf();
    let (windows, found, log) = tokio::task::spawn_blocking(move || {
        let mut run = Run::start(&server, &dir, "live", &sink, &[]);
        run.wait_windows(2);
        influxd.pause().expect("SIGSTOP");
        run.wait_windows(2);
        influxd.kill().expect("SIGKILL");
        run.wait_windows(2);
        influxd.restart().expect("restart");
        run.wait_windows(2);
        let (windows, log) = run.stop();
        let found = until_stored(&influxd, "k8s", &windows);
        (windows, found, log)
    })
    .await
    .expect("run");
    assert!(windows.len() >= 8, "{windows:?}");
    assert_eq!(found, windows, "every window of the file sink is in InfluxDB:\n{log}");
    assert_eq!(sink_count(&log, "dropped_points"), 0, "{log}");
    assert!(sink_count(&log, "retries") > 0, "the outage was seen:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_buffer_carries_an_outage_across_a_collector_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let mut influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let sink = format!("influxdb:{}?db=k8s&buffer=disk", influxd.url());
    let state = tmp.path().join("state");
    let extra = [format!("--state_dir={}", state.display())];
    let dir = tmp.path().to_path_buf();
    let (windows, found, logs, left) = tokio::task::spawn_blocking(move || {
        let mut first = Run::start(&server, &dir, "first", &sink, &extra);
        first.wait_windows(1);
        influxd.kill().expect("SIGKILL");
        first.wait_windows(2);
        let (mut windows, first_log) = first.stop();

        let mut second = Run::start(&server, &dir, "second", &sink, &extra);
        second.wait_log("disk buffer holds chunks from an earlier run");
        second.wait_windows(1);
        influxd.restart().expect("restart");
        second.wait_windows(2);
        let (second_windows, second_log) = second.stop();
        windows.extend(second_windows);
        let found = until_stored(&influxd, "k8s", &windows);
        let left: Vec<_> = walk(&state.join("sink-buffer"));
        (windows, found, format!("{first_log}\n----\n{second_log}"), left)
    })
    .await
    .expect("run");
    assert!(logs.contains("kept in the disk buffer for the next start"), "{logs}");
    assert!(windows.len() >= 6, "{windows:?}");
    assert_eq!(found, windows, "every window of both runs is in InfluxDB:\n{logs}");
    assert!(left.is_empty(), "written chunks are removed: {left:?}");
}

/// Files under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_bound_drops_the_oldest_windows_counted_and_logged_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let mut influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    // A window of the small scenario is 450-700 KB of line protocol: this holds one or two.
    let sink = format!("influxdb:{}?db=k8s&max_buffer_bytes=1MiB", influxd.url());
    let dir = tmp.path().to_path_buf();
    let (windows, found, log) = tokio::task::spawn_blocking(move || {
        let mut run = Run::start(&server, &dir, "live", &sink, &[]);
        run.wait_windows(1);
        // Kill between two windows, once InfluxDB holds what was sent: a write cut off mid-way
        // may be stored and yet unacknowledged, so dropped later and counted although present.
        let sent = windows_in(&run.out);
        until_stored(&influxd, "k8s", &sent);
        influxd.kill().expect("SIGKILL");
        run.wait_windows(5);
        influxd.restart().expect("restart");
        run.wait_windows(2);
        let (windows, log) = run.stop();
        // Wait for the last windows to land, then look at every window.
        let last: BTreeMap<i64, u64> = windows.iter().rev().take(1).map(|(t, n)| (*t, *n)).collect();
        until_stored(&influxd, "k8s", &last);
        (windows.clone(), stored(&influxd, "k8s", windows.keys().copied()), log)
    })
    .await
    .expect("run");
    let missing: Vec<i64> = windows.keys().filter(|t| found[t] == 0).copied().collect();
    let partial: Vec<i64> =
        windows.keys().filter(|t| found[t] != 0 && found[t] != windows[t]).copied().collect();
    assert!(partial.is_empty(), "windows are dropped whole: {partial:?}\n{log}");
    assert!(missing.len() >= 2, "a five-window outage overflows a 1 MiB buffer: {found:?}\n{log}");
    assert_eq!(sink_count(&log, "dropped_windows"), missing.len() as u64, "{log}");
    assert_eq!(sink_count(&log, "dropped_points"), missing.iter().map(|t| windows[t]).sum::<u64>(), "{log}");
    assert_eq!(log.matches("sink buffer full").count(), 1, "logged once for the outage:\n{log}");
    // The oldest go first: the windows kept in the outage are its last ones.
    let first_missing = missing[0];
    let kept_after: BTreeSet<i64> =
        windows.keys().filter(|t| **t > first_missing && found[t] != 0).copied().collect();
    assert!(
        kept_after.iter().all(|t| missing.iter().all(|m| m < t)),
        "dropped {missing:?}, kept {kept_after:?}"
    );
}

#[test]
fn replay_waits_for_a_dead_influxdb_and_writes_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    influxd.kill().expect("SIGKILL");
    let out = tmp.path().join("replay.lp");
    let mut replay = Collector::start(
        tmp.path(),
        "replay",
        &[
            format!("--source=replay:{}", small().display()),
            format!("--sink=file:{}", out.display()),
            format!("--sink=influxdb:{}?db=k8s", influxd.url()),
        ],
    );
    replay.wait_log("buffering and retrying", PATIENCE);
    // Still waiting once every window is encoded and buffered.
    replay.assert_running("InfluxDB to come back");
    influxd.restart().expect("restart");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = replay.try_wait() {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "replay did not finish: {}", replay.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = replay.log();
    assert!(status.success(), "rc {status}: {log}");
    let windows = windows_in(&out);
    assert_eq!(windows.len(), 5);
    assert_eq!(stored(&influxd, "k8s", windows.keys().copied()), windows, "{log}");
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_event_sink_holds_the_checkpoint_then_lets_it_advance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = events_scenario();
    let server = serve(&scenario, tmp.path(), |c| c.advance_every = Some(Duration::from_secs(3))).await;
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let state = tmp.path().join("state");
    let mut child = Collector::start(
        tmp.path(),
        "events",
        &[
            events_source(&server),
            format!("--sink=influxdb:{}?db=events", influxd.url()),
            "--metric_resolution=5s".to_string(),
            "--event_ttl=3650d".to_string(),
            format!("--state_dir={}", state.display()),
        ],
    );
    let checkpoint = state.join("state.bin");
    let started = Instant::now();
    while !checkpoint.is_file() {
        assert!(started.elapsed() < PATIENCE, "no checkpoint: {}", child.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stall longer than the sink's queue of ticks and its request timeout.
    influxd.pause().expect("SIGSTOP");
    let stall = Instant::now();
    let first_rss = rss_bytes(child.pid());
    let mut peak_rss = first_rss;
    while stall.elapsed() < Duration::from_secs(35) || server.window() + 1 < server.windows() {
        child.assert_running("the end of the stall");
        peak_rss = peak_rss.max(rss_bytes(child.pid()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let frozen_at = std::fs::metadata(&checkpoint).expect("checkpoint").modified().expect("mtime");
    influxd.resume().expect("SIGCONT");

    let expected = expected_event_points(&scenario);
    let started = Instant::now();
    while stored_event_points(&influxd, "events") != expected && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The checkpoint moves again (it is saved at most every 2 s).
    while std::fs::metadata(&checkpoint).expect("checkpoint").modified().expect("mtime") <= frozen_at {
        assert!(started.elapsed() < PATIENCE, "the checkpoint never advanced again: {}", child.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log =
        tokio::task::spawn_blocking(move || child.stop_within(Duration::from_secs(40))).await.expect("stop");
    assert_eq!(stored_event_points(&influxd, "events"), expected, "no event missing or doubled:\n{log}");

    let (_, saved) = heapster::checkpoint::CheckpointStore::open(&state).expect("open state");
    let saved: BTreeSet<String> =
        saved.expect("a checkpoint").seen.iter().map(|s| s.uid.to_string()).collect();
    let uids: BTreeSet<String> = expected.keys().map(|(uid, _)| uid.clone()).collect();
    assert_eq!(saved, uids, "the checkpoint holds every event written");
    assert!(
        peak_rss < first_rss + (32 << 20),
        "RSS grew from {first_rss} to {peak_rss} bytes during the stall"
    );
}
