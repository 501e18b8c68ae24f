//! Cluster mode end to end: three processes of two workers each, on loopback, against one
//! process of one worker. The same file output (lines sorted) and the same InfluxDB contents,
//! in replay and live; each process scrapes only its own nodes (the fixture server's request
//! log says who asked each kubelet); a killed process stops the others, and a restart of all
//! three loses and doubles no event.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use heapster::cluster::Share;
use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::{Influxd, free_port};
use serde_json::Value;
use support::*;

const PROCESSES: usize = 3;
const WORKERS: usize = 2;
const PATIENCE: Duration = Duration::from_secs(120);

/// One process of a cluster under test, with its own file sink.
struct Process {
    collector: Collector,
    out: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        self.collector.log()
    }
}

/// A hostfile naming free loopback ports.
fn hostfile(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let lines: Vec<String> =
        (0..PROCESSES).map(|_| format!("127.0.0.1:{}", free_port().expect("free port"))).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("hostfile");
    path
}

/// Starts the three processes with `args`, each with its own file sink (and `state_dir`, if
/// `state` is given, as `<state>-<process>`).
fn start_cluster(dir: &Path, tag: &str, args: &[String], state: Option<&Path>) -> Vec<Process> {
    let hosts = hostfile(dir, &format!("{tag}.hosts"));
    (0..PROCESSES)
        .map(|i| {
            let out = dir.join(format!("{tag}-{i}.lp"));
            let mut all = args.to_vec();
            all.extend([
                format!("--sink=file:{}", out.display()),
                format!("-w={WORKERS}"),
                format!("--processes={PROCESSES}"),
                format!("--process={i}"),
                format!("--hostfile={}", hosts.display()),
            ]);
            if let Some(state) = state {
                all.push(format!("--state_dir={}-{i}", state.display()));
            }
            Process { collector: Collector::start(dir, &format!("{tag}-{i}"), &all), out }
        })
        .collect()
}

/// Waits for every process to exit, within `patience`.
fn wait_all(processes: &mut [Process], patience: Duration) -> Vec<ExitStatus> {
    let started = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; processes.len()];
    while statuses.iter().any(Option::is_none) {
        for (p, status) in processes.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                *status = p.collector.try_wait();
            }
        }
        if started.elapsed() > patience {
            let logs: Vec<String> = processes.iter().map(Process::log).collect();
            panic!("the cluster did not finish within {patience:?}:\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    statuses.into_iter().flatten().collect()
}

fn assert_all_succeeded(processes: &mut [Process], patience: Duration) {
    let statuses = wait_all(processes, patience);
    for (p, status) in processes.iter().zip(statuses) {
        assert!(status.success(), "{status}: {}", p.log());
    }
}

fn sorted_lines(files: &[&Path]) -> Vec<String> {
    let mut lines: Vec<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// Every point of a database, as `measurement column=value ...` lines, sorted.
fn influx_contents(influxd: &Influxd, db: &str) -> Vec<String> {
    let answer = influxd.query(db, "SHOW MEASUREMENTS").expect("measurements");
    let names: Vec<String> = answer["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_string))
        .collect();
    let mut points = Vec::new();
    for name in names {
        let answer = influxd.query(db, &format!("SELECT * FROM \"{name}\"")).expect("select");
        for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
            let columns: Vec<&str> =
                series["columns"].as_array().expect("columns").iter().filter_map(Value::as_str).collect();
            for row in series["values"].as_array().expect("values") {
                let mut line = name.clone();
                for (column, value) in columns.iter().zip(row.as_array().expect("row")) {
                    if !value.is_null() {
                        line.push_str(&format!(" {column}={value}"));
                    }
                }
                points.push(line);
            }
        }
    }
    points.sort();
    points
}

/// Replays `scenario` in one process of one worker and in the cluster, into files and InfluxDB.
fn replay_in_both(scenario: &Path) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let source = format!("--source=replay:{}", scenario.display());
    let single = tmp.path().join("single.lp");
    let run = heapster(&[
        &source,
        &format!("--sink=file:{}", single.display()),
        &format!("--sink=influxdb:{}?db=single", influxd.url()),
    ]);
    let single_log = strip_ansi(&stderr(&run));
    assert!(run.status.success(), "{single_log}");

    let args = [source, format!("--sink=influxdb:{}?db=cluster", influxd.url())];
    let mut cluster = start_cluster(tmp.path(), "cluster", &args, None);
    assert_all_succeeded(&mut cluster, PATIENCE);

    let expected = sorted_lines(&[&single]);
    assert!(!expected.is_empty());
    let outs: Vec<&Path> = cluster.iter().map(|p| p.out.as_path()).collect();
    assert!(sorted_lines(&outs) == expected, "the cluster's files differ from one process's");
    let stored = influx_contents(&influxd, "single");
    assert!(!stored.is_empty());
    assert!(influx_contents(&influxd, "cluster") == stored, "InfluxDB contents differ");
    // Each process read only its own nodes' bodies: together, each body once.
    let scrapes: u64 = cluster.iter().map(|p| logged_count(&p.log(), "scrapes")).sum();
    assert_eq!(scrapes, logged_count(&single_log, "scrapes"));
}

#[test]
fn replay_of_small_is_the_same_in_a_cluster() {
    replay_in_both(&small());
}

#[test]
fn replay_of_events_is_the_same_in_a_cluster() {
    replay_in_both(&events_scenario());
}

#[test]
fn replay_of_a_200_node_cluster_is_the_same_in_a_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("synth");
    synth(&SynthSpec::new(200, 1, 2), &scenario).expect("synth");
    replay_in_both(&scenario);
}

/// A database's points grouped by time, oldest first, each group without its time and sorted:
/// live and replayed windows compare although their clocks differ.
fn influx_windows(influxd: &Influxd, db: &str) -> Vec<Vec<String>> {
    group_windows(influx_contents(influxd, db).into_iter().map(|line| {
        let mut time = String::new();
        let rest: Vec<&str> = line
            .split(' ')
            .filter(|part| match part.strip_prefix("time=") {
                Some(t) => {
                    time = t.to_string();
                    false
                }
                None => true,
            })
            .collect();
        (time, rest.join(" "))
    }))
}

/// Runs `scenario` live from the fixture server on a 3 x 2 cluster until its `windows` recorded
/// windows are complete, and checks them, in the files and in InfluxDB, against one process's
/// replay of the same scenario, point for point. Returns the fixture server's request log.
async fn live_cluster_matches_one_process(
    scenario: &Path,
    windows: usize,
) -> heapster_testbed::fixture_server::FixtureStats {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(scenario, tmp.path(), |_| {}).await;
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let args = [
        format!("--sink=influxdb:{}?db=live", influxd.url()),
        format!(
            // The kubelets' read-only HTTP port: 200 TLS handshakes a window are not what this
            // test is about (the single-process live tests cover HTTPS).
            "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletPort={}&events=false",
            server.api_url(),
            server.kubeconfig().display(),
            server.kubelet_http_port()
        ),
        "--metric_resolution=5s".to_string(),
    ];
    let mut cluster = start_cluster(tmp.path(), "live", &args, None);
    let outs: Vec<PathBuf> = cluster.iter().map(|p| p.out.clone()).collect();
    let cluster = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let outs: Vec<&Path> = outs.iter().map(PathBuf::as_path).collect();
        // One window more than recorded: the recorded ones are then complete.
        while windows_of_files(&outs).len() <= windows {
            for p in cluster.iter_mut() {
                if let Some(status) = p.collector.try_wait() {
                    panic!("a process exited with {status}: {}", p.log());
                }
            }
            assert!(started.elapsed() < PATIENCE, "no {windows} windows in time: {}", cluster[0].log());
            std::thread::sleep(Duration::from_millis(200));
        }
        for p in &cluster {
            p.collector.sigterm();
        }
        assert_all_succeeded(&mut cluster, Duration::from_secs(30));
        cluster
    })
    .await
    .expect("run");

    // The cluster's windows are one process's replay of the same scenario, point for point.
    let single = tmp.path().join("single.lp");
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", single.display()),
        &format!("--sink=influxdb:{}?db=single", influxd.url()),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let replayed = windows_of(&single);
    let outs: Vec<&Path> = cluster.iter().map(|p| p.out.as_path()).collect();
    let live = windows_of_files(&outs);
    assert_eq!(replayed.len(), windows);
    for (i, (l, r)) in live.iter().zip(&replayed).enumerate() {
        if l != r {
            let warnings: Vec<String> = cluster
                .iter()
                .flat_map(|p| {
                    p.log().lines().filter(|l| !l.contains(" INFO ")).map(str::to_string).collect::<Vec<_>>()
                })
                .take(20)
                .collect();
            let per_process: Vec<usize> =
                cluster.iter().map(|p| windows_of(&p.out).first().map_or(0, Vec::len)).collect();
            panic!(
                "window {i} differs from one process's ({} points for {}; first windows per process {per_process:?}):\n{}",
                l.len(),
                r.len(),
                warnings.join("\n")
            );
        }
    }

    // InfluxDB too: the cluster's first windows hold what one process's replay wrote.
    let stored = influx_windows(&influxd, "single");
    assert_eq!(stored.len(), windows);
    let live = influx_windows(&influxd, "live");
    assert!(live.len() >= windows, "{} windows in InfluxDB", live.len());
    for (i, (l, r)) in live.iter().zip(&stored).enumerate() {
        assert!(
            l == r,
            "InfluxDB window {i} differs from one process's ({} points for {})",
            l.len(),
            r.len()
        );
    }

    server.stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_processes_scrape_only_their_own_nodes_and_match_one_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("synth");
    synth(&SynthSpec::new(200, 1, 2), &scenario).expect("synth");
    let stats = live_cluster_matches_one_process(&scenario, 2).await;
    // The fixture server's request log: every kubelet was asked only by the process owning it.
    let agents = stats.summary_agents;
    assert_eq!(agents.len(), 200, "every node was scraped");
    let mut per_process = [0usize; PROCESSES];
    for (node, asked_by) in &agents {
        let owner = (0..PROCESSES)
            .find(|&process| {
                Share { process, processes: PROCESSES, workers: WORKERS }.local_owner(node).is_some()
            })
            .expect("an owner");
        let expected = format!("heapster/{} (process {owner} of {PROCESSES})", env!("CARGO_PKG_VERSION"));
        assert_eq!(asked_by, &BTreeSet::from([expected]), "{node}");
        per_process[owner] += 1;
    }
    assert!(per_process.iter().all(|&n| n > 0), "{per_process:?}");
}

/// `fixtures/small` live: a restarted container, a deleted pod and a node that turns NotReady,
/// with each process keeping the metadata of its own nodes' pods from its own watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_small_is_the_same_in_a_cluster() {
    live_cluster_matches_one_process(&small(), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_stops_the_others_and_a_restart_of_all_loses_no_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = events_scenario();
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let server = serve(&scenario, tmp.path(), |c| c.advance_every = Some(Duration::from_secs(3))).await;
    let args = [
        events_source(&server),
        format!("--sink=influxdb:{}?db=events", influxd.url()),
        "--metric_resolution=5s".to_string(),
        // The recorded events are weeks old: a TTL longer than their age.
        "--event_ttl=3650d".to_string(),
    ];
    let state = tmp.path().join("state");
    let mut first = start_cluster(tmp.path(), "first", &args, Some(&state));
    let started = Instant::now();
    let leader_checkpoint = PathBuf::from(format!("{}-0", state.display())).join("state.bin");
    while server.window() < 3 || !leader_checkpoint.is_file() {
        assert!(started.elapsed() < PATIENCE, "no checkpoint before window 3: {}", first[0].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first[2].collector.kill();
    let killed = Instant::now();
    let mut survivors: Vec<Process> = first.drain(..2).collect();
    let statuses = tokio::task::spawn_blocking(move || {
        let statuses = wait_all(&mut survivors, Duration::from_secs(10));
        (statuses, survivors)
    })
    .await
    .expect("wait");
    let (statuses, survivors) = statuses;
    assert!(killed.elapsed() < Duration::from_secs(10));
    for (p, status) in survivors.iter().zip(statuses) {
        let log = p.log();
        assert!(!status.success(), "a survivor exited cleanly: {log}");
        assert!(log.contains("lost peer process 2"), "the lost peer is not named: {log}");
    }

    let mut second = start_cluster(tmp.path(), "second", &args, Some(&state));
    let expected = expected_event_points(&scenario);
    let started = Instant::now();
    while server.window() + 1 < server.windows() || stored_event_points(&influxd, "events") != expected {
        if started.elapsed() > PATIENCE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in &second {
        p.collector.sigterm();
    }
    let second = tokio::task::spawn_blocking(move || {
        assert_all_succeeded(&mut second, Duration::from_secs(30));
        second
    })
    .await
    .expect("stop");
    assert!(second[0].log().contains("event checkpoint loaded"), "{}", second[0].log());
    // The content of an uninterrupted run.
    assert_eq!(stored_event_points(&influxd, "events"), expected);
    // The restart did not start over: states checkpointed before the kill were not sent again.
    let exported: u64 = second.iter().map(|p| logged_count(&p.log(), "events_exported")).sum();
    let states = event_states(&scenario).len();
    assert!(exported < states as u64, "{exported} exported again of {states}");
}

#[test]
fn an_unreachable_peer_is_named_after_a_bounded_wait() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hosts = hostfile(tmp.path(), "hosts");
    let started = Instant::now();
    let run = heapster(&[
        &format!("--source=replay:{}", small().display()),
        "--processes=3",
        "--process=1",
        &format!("--hostfile={}", hosts.display()),
        "--cluster_connect_timeout=2s",
    ]);
    let log = strip_ansi(&stderr(&run));
    assert!(!run.status.success(), "{log}");
    assert!(started.elapsed() < PATIENCE);
    assert!(log.contains("not reachable within 2s"), "{log}");
    let addresses = std::fs::read_to_string(&hosts).expect("hosts");
    let addresses: Vec<&str> = addresses.lines().collect();
    assert!(log.contains(&format!("process 0 ({})", addresses[0])), "{log}");
    assert!(log.contains(&format!("process 2 ({})", addresses[2])), "{log}");
}

/// The log sink's tables in `out`, one per window: each line of a table split into its cells,
/// from its `window ...` header to the blank line after it (event lines are left out).
fn printed_tables(out: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut open = false;
    for line in out.lines() {
        if line.starts_with("window ") {
            tables.push(Vec::new());
            open = true;
        }
        if line.trim().is_empty() {
            open = false;
        }
        if let (true, Some(table)) = (open, tables.last_mut()) {
            table.push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    tables
}

/// The log table is global: process 0 prints the one table of the whole cluster, gathered from
/// every process's share, the same as one process prints; the others print none. The cluster
/// aggregate, global too, is written by one process only.
#[test]
fn process_0_prints_the_one_log_table_of_the_whole_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("synth");
    synth(&SynthSpec::new(200, 2, 2), &scenario).expect("synth");
    let source = format!("--source=replay:{}", scenario.display());
    let run = heapster(&[&source, "--sink=log"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let expected = printed_tables(&stdout(&run));
    assert_eq!(expected.len(), 2, "{}", stdout(&run));
    // Every node has its row, and pods are counted and listed.
    let node_rows = expected[0].iter().skip(2).take_while(|row| row[0] != "busiest").count();
    assert_eq!(node_rows, 200, "{:?}", expected[0]);
    assert!(expected[0][0].join(" ").contains("200 nodes, 400 pods"), "{:?}", expected[0][0]);

    let args = [source, "--sink=log".to_string()];
    let mut cluster = start_cluster(tmp.path(), "table", &args, None);
    assert_all_succeeded(&mut cluster, PATIENCE);
    assert_eq!(printed_tables(&cluster[0].collector.out()), expected, "process 0's tables");
    for p in &cluster[1..] {
        assert!(printed_tables(&p.collector.out()).is_empty(), "{}", p.collector.out());
        let said = p.log().lines().filter(|l| l.contains("process 0 prints the table")).count();
        assert_eq!(said, 1, "{}", p.log());
    }
    assert!(!cluster[0].log().contains("process 0 prints the table"), "{}", cluster[0].log());

    // Each window's cluster aggregate is in the file of one process only, once.
    let with_cluster: Vec<usize> = cluster
        .iter()
        .map(|p| {
            let lines = std::fs::read_to_string(&p.out).unwrap_or_default();
            lines.lines().filter(|l| l.starts_with("cpu/request,") && l.contains("type=cluster")).count()
        })
        .collect();
    assert_eq!(with_cluster.iter().filter(|&&n| n > 0).count(), 1, "{with_cluster:?}");
    assert_eq!(with_cluster.iter().sum::<usize>(), 2, "one per window: {with_cluster:?}");
}
