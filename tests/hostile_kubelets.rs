//! Kubelets that send too much: one streams a body without end, one declares a
//! `Content-Length` of 100 GB. The collector reads neither past its cap, the other nodes'
//! windows are complete, and the process' peak RSS barely moves.

mod support;

use std::time::Duration;

use heapster_testbed::synth::{SynthSpec, synth};
use support::*;

const PATIENCE: Duration = Duration::from_secs(120);
/// The peak RSS may grow this much past its value after the first window.
const RSS_GROWTH_LIMIT_KIB: u64 = 100 << 10;

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
    let server = serve(&scenario, tmp.path(), |_| {}).await;

    let out = tmp.path().join("live.lp");
    let args = [
        kubernetes_source(&server, "&events=false&kubeletTimeout=4s"),
        "--metric_resolution=5s".into(),
        format!("--sink=file:{}", out.display()),
    ];
    let (dir, out_path) = (tmp.path().to_path_buf(), out.clone());
    let (baseline, peak, log) = tokio::task::spawn_blocking(move || {
        let mut live = Collector::start(&dir, "live", &args);
        // Window 0 is clean: its peak is the baseline; windows 1 and 2 have the faults.
        live.wait_windows(&out_path, 1, PATIENCE);
        let baseline = peak_rss_kib(live.pid());
        live.wait_windows(&out_path, 5, PATIENCE);
        let peak = peak_rss_kib(live.pid());
        (baseline, peak, live.stop())
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
    let replayed = replay_windows(&scenario, tmp.path());
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
