//! The fixture server pages lists as an apiserver does (`limit`, `continue`); the live source,
//! whose watchers list 500 objects a page, still gets every pod: its windows equal replay's.

mod support;

use std::time::Duration;

use heapster_testbed::synth::{SynthSpec, synth};
use support::*;

const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_list_of_several_pages_reaches_the_graph_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("paged");
    // 600 pods: two pages of 500 for the source's pod watcher.
    synth(&SynthSpec::new(3, 200, 3), &scenario).expect("synth");
    assert!(pods(&scenario, 0).len() > 500);
    let server = serve(&scenario, tmp.path(), |_| {}).await;

    let out = tmp.path().join("live.lp");
    let args = [
        kubernetes_source(&server, "&events=false"),
        "--metric_resolution=5s".into(),
        format!("--sink=file:{}", out.display()),
    ];
    let (dir, out_path) = (tmp.path().to_path_buf(), out.clone());
    let log = tokio::task::spawn_blocking(move || {
        Collector::run_until_windows(&dir, "live", &args, &out_path, 4, PATIENCE)
    })
    .await
    .expect("run");

    let stats = server.stats();
    assert!(stats.list_pages >= 1, "the pod list was read in pages: {stats:?}\n{log}");
    let replayed = replay_windows(&scenario, tmp.path());
    assert_same_windows(&windows_of(&out), &replayed);
}
