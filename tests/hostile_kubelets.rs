//! Kubelets that send too much: one streams a body without end, one declares a
//! `Content-Length` of 100 GB. The collector reads neither past its cap, the other nodes'
//! windows are complete, and the process' peak RSS barely moves.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::{FixtureConfig, FixtureServer};
use heapster_testbed::synth::{SynthSpec, synth};
use support::*;

const PATIENCE: Duration = Duration::from_secs(120);
/// The peak RSS may grow this much past its value after the first window.
const RSS_GROWTH_LIMIT_KIB: u64 = 100 << 10;

/// One window's points without their timestamp, sorted, by window time.
fn windows_of(path: &Path) -> Vec<Vec<String>> {
    let mut by_time: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some((point, time)) = line.rsplit_once(' ') {
            by_time.entry(time.to_string()).or_default().push(point.to_string());
        }
    }
    by_time
        .into_values()
        .map(|mut w| {
            w.sort();
            w
        })
        .collect()
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_and_a_huge_kubelet_body_cost_neither_memory_nor_the_others_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("hostile");
    synth(&SynthSpec::new(5, 3, 5), &scenario).expect("synth");
    let nodes = ready_nodes(&scenario, 1);
    let (endless, huge) = (&nodes[0], &nodes[1]);
    for window in [1, 2] {
        let dir = window_dir(&scenario, window).join("kubelet");
        std::fs::write(dir.join(format!("{endless}.fault.json")), br#"{"endless": true}"#).expect("fault");
        std::fs::write(dir.join(format!("{huge}.fault.json")), br#"{"declared_length": 100000000000}"#)
            .expect("fault");
    }
    let mut config = FixtureConfig::new(&scenario, tmp.path().join("tls"));
    config.token = Some("fixture-token".into());
    let server = FixtureServer::start(config).await.expect("fixture server");

    let out = tmp.path().join("live.lp");
    let log_path = tmp.path().join("live.log");
    let source = format!(
        "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}&events=false&kubeletTimeout=4s",
        server.api_url(),
        server.kubeconfig().display(),
        server.kubelet_https_port()
    );
    let args = [source, "--metric_resolution=5s".into(), format!("--sink=file:{}", out.display())];
    let log_file = std::fs::File::create(&log_path).expect("log");
    let out_path = out.clone();
    let (baseline, peak, log) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heapster"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("heapster");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let started = Instant::now();
        let wait_for = |windows: usize, child: &mut std::process::Child| {
            while windows_of(&out_path).len() < windows {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("heapster exited with {status}: {}", log());
                }
                assert!(started.elapsed() < PATIENCE, "no {windows} windows in time: {}", log());
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        // Window 0 is clean: its peak is the baseline; windows 1 and 2 have the faults.
        wait_for(1, &mut child);
        let baseline = peak_rss_kib(child.id());
        wait_for(5, &mut child);
        let peak = peak_rss_kib(child.id());
        let status = terminate(&mut child, Duration::from_secs(20));
        assert!(status.success(), "heapster after SIGTERM: {status}: {}", log());
        (baseline, peak, log())
    })
    .await
    .expect("run");

    eprintln!("peak RSS after window 0: {baseline} KiB, after window 4: {peak} KiB");
    assert!(server.stats().kubelet_faults >= 4, "the faults were served");
    assert!(
        peak.saturating_sub(baseline) < RSS_GROWTH_LIMIT_KIB,
        "peak RSS grew from {baseline} KiB to {peak} KiB:\n{log}"
    );
    let live = windows_of(&out);
    let replay_out = tmp.path().join("replay.lp");
    let replay = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", replay_out.display()),
    ]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let replayed = windows_of(&replay_out);
    let of = |w: &[String], node: &str| -> Vec<String> {
        w.iter().filter(|p| p.contains(&format!("nodename={node},"))).cloned().collect()
    };
    for window in [1, 2] {
        for node in &nodes[2..] {
            let points = of(&live[window], node);
            assert!(!points.is_empty(), "{node} in window {window}");
            assert_eq!(points, of(&replayed[window], node), "{node} in window {window}");
        }
        for node in [endless, huge] {
            assert!(of(&live[window], node).is_empty(), "{node} sent too much in window {window}");
        }
    }
    let logged = |node: &str, needle: &str| log.lines().any(|l| l.contains(node) && l.contains(needle));
    assert!(logged(endless, "over the 16777216-byte limit; stopped reading"), "{endless}:\n{log}");
    assert!(logged(huge, "declares a body of 100000000000 bytes"), "{huge}:\n{log}");
}
