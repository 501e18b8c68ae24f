//! The live Kubernetes source against the loopback fixture server (a kube-apiserver and one
//! kubelet per node, over real HTTPS), checked against `replay:` of the same scenario.
//!
//! Each test runs the heapster binary with `--metric_resolution=5s` (the shortest allowed) for a
//! few windows, so each takes some tens of seconds; they run in parallel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::FixtureServer;
use heapster_testbed::synth::{SynthSpec, TimelineEvent, synth};
use heapster_testbed::testkit::influxd::Influxd;
use support::*;

/// Bounds every wait: a run of N windows at 5 s takes about 5(N+1) s.
const PATIENCE: Duration = Duration::from_secs(120);

/// Collects from `server` (`options` added to the source URI, metrics only) into a file until
/// it holds `windows` complete windows, then stops with SIGTERM; the windows and the log.
async fn run_live(
    server: &FixtureServer,
    dir: &Path,
    options: &str,
    extra_sinks: &[String],
    windows: usize,
) -> (Vec<Window>, String) {
    let out = dir.join("live.lp");
    let mut args = vec![
        kubernetes_source(server, &format!("&events=false{options}")),
        "--metric_resolution=5s".into(),
        format!("--sink=file:{}", out.display()),
    ];
    args.extend(extra_sinks.iter().cloned());
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // A window is complete once the next one has begun.
        let log = Collector::run_until_windows(&dir, "live", &args, &out, windows + 1, PATIENCE);
        (windows_of(&out), log)
    })
    .await
    .expect("run")
}

fn has_node(window: &Window, node: &str) -> bool {
    window
        .iter()
        .any(|p| p.contains(&format!("nodename={node},")) || p.contains(&format!("nodename={node} ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_collection_into_influxdb_equals_replay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let influx = format!("--sink=influxdb:{}?db=live", influxd.url());
    let (windows, log) = run_live(&server, tmp.path(), "", &[influx], 5).await;
    let replayed = replay_windows(&small(), tmp.path());
    assert_same_windows(&windows, &replayed);

    // InfluxDB holds what the file sink wrote, point for point, in the first five windows.
    let answer = influxd
        .query("live", r#"SELECT count(value) FROM /.*/ GROUP BY time(5s) fill(none)"#)
        .expect("query");
    let mut per_window: BTreeMap<String, u64> = BTreeMap::new();
    for series in answer["results"][0]["series"].as_array().expect("series") {
        for row in series["values"].as_array().expect("values") {
            *per_window.entry(row[0].as_str().expect("time").to_string()).or_default() +=
                row[1].as_u64().unwrap_or(0);
        }
    }
    let counts: Vec<u64> = per_window.values().copied().take(5).collect();
    let expected: Vec<u64> = replayed.iter().map(|w| w.len() as u64).collect();
    assert_eq!(counts, expected, "{log}");
}

/// A synthetic cluster whose topology changes while it is watched.
fn timeline_scenario(dir: &Path) -> (PathBuf, String, String, (String, String)) {
    let out = dir.join("timeline");
    let mut spec = SynthSpec::new(4, 4, 6);
    synth(&spec, &out).expect("synth");
    let nodes = ready_nodes(&out, 0);
    let (ns, pod) = pods(&out, 0).into_iter().next().expect("a pod");
    spec.timeline = vec![
        TimelineEvent::NodeAdded { window: 1, node: "node-added".into() },
        TimelineEvent::NodeNotReady { window: 2, node: nodes[1].clone() },
        TimelineEvent::PodRelabel {
            window: 2,
            ns: ns.clone(),
            pod: pod.clone(),
            labels: BTreeMap::from([("release".to_string(), "canary".to_string())]),
        },
    ];
    synth(&spec, &out).expect("synth");
    // A node deleted from the API in window 3 (its kubelet would still answer).
    let deleted = nodes[2].clone();
    let file = window_dir(&out, 3).join("api/nodes.json");
    let mut list = api_list(&out, 3, "nodes.json");
    list["items"].as_array_mut().expect("items").retain(|n| n["metadata"]["name"] != deleted.as_str());
    std::fs::write(&file, serde_json::to_vec_pretty(&list).expect("json")).expect("write");
    // A 410 on every watch in window 4: the client must list again.
    std::fs::write(window_dir(&out, 4).join("api/faults.json"), br#"{"watch_gone": true}"#).expect("faults");
    (out, nodes[1].clone(), deleted, (ns, pod))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_follow_nodes_and_pods_across_a_410() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, not_ready, deleted, (_ns, relabelled)) = timeline_scenario(tmp.path());
    let server = serve(&scenario, tmp.path(), |_| {}).await;
    let (windows, log) = run_live(&server, tmp.path(), "", &[], 6).await;
    let replayed = replay_windows(&scenario, tmp.path());
    assert_same_windows(&windows, &replayed);

    assert!(
        !has_node(&windows[0], "node-added") && has_node(&windows[1], "node-added"),
        "added node from window 1"
    );
    assert!(
        has_node(&windows[1], &not_ready) && !has_node(&windows[2], &not_ready),
        "NotReady from window 2"
    );
    assert!(has_node(&windows[2], &deleted) && !has_node(&windows[3], &deleted), "deleted from window 3");
    let labels_of = |w: &Window| -> BTreeSet<bool> {
        w.iter()
            .filter(|p| p.contains(&format!("pod_name={relabelled},")) && p.contains("type=pod "))
            .map(|p| p.contains("release:canary"))
            .collect()
    };
    assert_eq!(labels_of(&windows[1]), BTreeSet::from([false]));
    assert_eq!(labels_of(&windows[2]), BTreeSet::from([true]));
    // After the 410 the metadata is the same as before, neither lost nor doubled.
    assert_eq!(labels_of(&windows[5]), BTreeSet::from([true]));
    assert!(server.stats().watches_expired > 0, "the 410 was served");
    assert!(server.stats().lists > 3, "the watchers listed again: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_a_failing_and_a_garbage_kubelet_do_not_hold_up_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("faults");
    synth(&SynthSpec::new(5, 3, 4), &scenario).expect("synth");
    let nodes = ready_nodes(&scenario, 1);
    let faults =
        [r#"{"delay_ms": 30000}"#, r#"{"status": 500, "body": "kubelet is sad"}"#, r#"{"garbage": true}"#];
    for (node, fault) in nodes.iter().zip(faults) {
        std::fs::write(window_dir(&scenario, 1).join(format!("kubelet/{node}.fault.json")), fault)
            .expect("fault");
    }
    let server = serve(&scenario, tmp.path(), |_| {}).await;
    let started = Instant::now();
    let (windows, log) = run_live(&server, tmp.path(), "&kubeletTimeout=2s", &[], 4).await;
    // Four 5 s windows, not held up by the 30 s kubelet.
    assert!(started.elapsed() < Duration::from_secs(30 + 25), "took {:?}", started.elapsed());

    let replayed = replay_windows(&scenario, tmp.path());
    // The healthy nodes' points of window 1 are all there, exactly as recorded.
    let healthy: Vec<&String> = nodes[3..].iter().collect();
    let of = |w: &Window, node: &str| -> Vec<String> {
        w.iter().filter(|p| p.contains(&format!("nodename={node},"))).cloned().collect()
    };
    for node in &healthy {
        assert_eq!(of(&windows[1], node), of(&replayed[1], node), "{node} in window 1");
        assert!(!of(&windows[1], node).is_empty());
    }
    // Rates need the window before, which the faulty nodes missed: compare the rest.
    let without_rates = |points: Vec<String>| -> Vec<String> {
        points.into_iter().filter(|p| !p.contains("rate") && !p.contains("utilization")).collect()
    };
    for node in &nodes[..3] {
        assert!(of(&windows[1], node).is_empty(), "{node} had a fault in window 1");
        let recovered = without_rates(of(&windows[2], node));
        assert!(!recovered.is_empty());
        assert_eq!(recovered, without_rates(of(&replayed[2], node)), "{node} recovers in window 2");
    }
    // Each failure is logged, naming the node.
    for (node, needle) in nodes.iter().zip(["timed out", "500", "summary rejected"]) {
        assert!(
            log.lines().any(|l| l.contains(node.as_str()) && l.contains(needle)),
            "{node}: {needle} not in:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_and_a_wrong_certificate_are_refused_and_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
    assert!(kubeconfig.contains("fixture-token"));
    let wrong = tmp.path().join("wrong-token.kubeconfig");
    std::fs::write(&wrong, kubeconfig.replace("fixture-token", "stolen-token")).expect("write");
    let source = kubernetes_source(&server, "&events=false")
        .replace(&server.kubeconfig().display().to_string(), &wrong.display().to_string());
    let out = tmp.path().join("wrong.lp");
    let log = run_briefly(
        tmp.path(),
        "wrong",
        &[&source, "--metric_resolution=5s", &format!("--sink=file:{}", out.display())],
        Duration::from_secs(8),
    );
    assert!(server.stats().api_unauthorized > 0, "the fixture server refused the token");
    assert!(log.contains("401") || log.contains("Unauthorized"), "{log}");
    assert!(window_times(&out).is_empty(), "nothing collected with a wrong token");
    assert!(!log.contains("stolen-token"), "the token was printed: {log}");

    // A server whose certificate is for another name: refused unless insecure=true.
    let other = tempfile::tempdir().expect("tempdir");
    let mismatched =
        serve(&small(), other.path(), |c| c.cert_name_override = Some("wrong.example".into())).await;
    let base = kubernetes_source(&mismatched, "&events=false");
    let out = other.path().join("tls.lp");
    let log = run_briefly(
        other.path(),
        "tls",
        &[&base, "--metric_resolution=5s", &format!("--sink=file:{}", out.display())],
        Duration::from_secs(8),
    );
    assert!(window_times(&out).is_empty(), "collected despite a wrong certificate");
    assert!(log.to_lowercase().contains("certificate"), "{log}");

    let insecure = format!("{base}&insecure=true");
    let out = other.path().join("insecure.lp");
    let dir = other.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args = [insecure, "--metric_resolution=5s".into(), format!("--sink=file:{}", out.display())];
        let mut live = Collector::start(&dir, "insecure", &args);
        live.wait_windows(&out, 1, PATIENCE);
    })
    .await
    .expect("insecure=true collects");
}

/// Runs heapster for `duration` (or until it exits), then SIGTERM; returns its log.
fn run_briefly(dir: &Path, name: &str, args: &[&str], duration: Duration) -> String {
    let mut collector = Collector::start(dir, name, args);
    let started = Instant::now();
    while started.elapsed() < duration && collector.try_wait().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    collector.stop_with_status().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_replays_to_the_points_of_the_live_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let recording = tmp.path().join("recording");
    let args = [
        "record".to_string(),
        kubernetes_source(&server, ""),
        "--windows=5".into(),
        format!("--out={}", recording.display()),
        "--metric_resolution=5s".into(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_heapster")).args(&args).output().expect("record")
    })
    .await
    .expect("record");
    assert!(run.status.success(), "{}", stderr(&run));
    // The recording replays to the same points as the original scenario, and so as a live run.
    let replayed = replay_windows(&recording, tmp.path());
    let original = {
        let dir = tmp.path().join("original");
        std::fs::create_dir_all(&dir).expect("dir");
        replay_windows(&small(), &dir)
    };
    assert_same_windows(&replayed, &original);
}
