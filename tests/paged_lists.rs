//! The fixture server pages lists as an apiserver does (`limit`, `continue`); the live source,
//! whose watchers list 500 objects a page, still gets every pod: its windows equal replay's.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::{FixtureConfig, FixtureServer};
use heapster_testbed::synth::{SynthSpec, synth};
use support::*;

const PATIENCE: Duration = Duration::from_secs(120);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_list_of_several_pages_reaches_the_graph_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("paged");
    // 600 pods: two pages of 500 for the source's pod watcher.
    synth(&SynthSpec::new(3, 200, 3), &scenario).expect("synth");
    assert!(pods(&scenario, 0).len() > 500);
    let mut config = FixtureConfig::new(&scenario, tmp.path().join("tls"));
    config.token = Some("fixture-token".into());
    let server = FixtureServer::start(config).await.expect("fixture server");

    let out = tmp.path().join("live.lp");
    let log_path = tmp.path().join("live.log");
    let args = [
        format!(
            "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}&events=false",
            server.api_url(),
            server.kubeconfig().display(),
            server.kubelet_https_port()
        ),
        "--metric_resolution=5s".into(),
        format!("--sink=file:{}", out.display()),
    ];
    let log_file = std::fs::File::create(&log_path).expect("log");
    let out_path = out.clone();
    let log = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heapster"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("heapster");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let started = Instant::now();
        while windows_of(&out_path).len() < 4 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("heapster exited with {status}: {}", log());
            }
            assert!(started.elapsed() < PATIENCE, "no 4 windows in time: {}", log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let status = terminate(&mut child, Duration::from_secs(20));
        assert!(status.success(), "heapster after SIGTERM: {status}: {}", log());
        log()
    })
    .await
    .expect("run");

    let stats = server.stats();
    assert!(stats.list_pages >= 1, "the pod list was read in pages: {stats:?}");
    let replay_out = tmp.path().join("replay.lp");
    let replay = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", replay_out.display()),
    ]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let live = windows_of(&out);
    let replayed = windows_of(&replay_out);
    for (i, (l, r)) in live.iter().zip(&replayed).enumerate() {
        if l != r {
            let only_live: Vec<_> = l.iter().filter(|p| !r.contains(p)).take(3).collect();
            let only_replay: Vec<_> = r.iter().filter(|p| !l.contains(p)).take(3).collect();
            panic!("window {i} differs: live only {only_live:#?}, replay only {only_replay:#?}\n{log}");
        }
    }
}
