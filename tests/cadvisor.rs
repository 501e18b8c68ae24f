//! The cAdvisor sources end to end: replayed captures against their numbers, and live
//! collection (hosts file, fleet in a real etcd, fleet's HTTP API) against the fixture server's
//! cAdvisors on 127.0.0.x, checked against `replay:` of the same scenario.
//!
//! Live runs use `--metric_resolution=5s` (the shortest allowed) for a few windows each; the
//! tests run in parallel.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heapster::sources::cadvisor::{Host, HostList};
use heapster_testbed::fixture_server::{CadvisorFixture, CadvisorFixtureConfig};
use heapster_testbed::synth::cadvisor::{CadvisorSpec, host_name, write_cadvisor_scenario};
use heapster_testbed::testkit::etcd::Etcd;
use heapster_testbed::testkit::influxd::Influxd;
use serde_json::{Value as Json, json};
use support::*;

/// Bounds every wait.
const PATIENCE: Duration = Duration::from_secs(90);

/// The hosts whose node set is in `window`.
fn nodes(window: &Window) -> BTreeSet<String> {
    window
        .iter()
        .filter(|p| p.contains(",type=node"))
        .filter_map(|p| p.split(',').find_map(|t| t.strip_prefix("nodename=")).map(str::to_string))
        .collect()
}

/// The collector under test, its file sink read as windows.
struct Live {
    collector: Collector,
    out: PathBuf,
}

impl Live {
    fn start(dir: &Path, source: &str, extra: &[String]) -> Live {
        let out = dir.join("live.lp");
        let mut args = vec![
            format!("--source={source}"),
            "--metric_resolution=5s".into(),
            format!("--sink=file:{}", out.display()),
        ];
        args.extend(extra.iter().cloned());
        Live { collector: Collector::start(dir, "live", &args), out }
    }

    fn windows(&self) -> Vec<Window> {
        windows_of(&self.out)
    }

    /// Waits until `done` holds for the windows written so far; returns their number then.
    async fn wait(&mut self, what: &str, done: impl Fn(&[Window]) -> bool) -> usize {
        let out = self.out.clone();
        self.collector
            .wait_for_async(what, PATIENCE, |_| {
                let windows = windows_of(&out);
                done(&windows).then_some(windows.len())
            })
            .await
    }

    /// Stops heapster with SIGTERM; returns every window and the log.
    fn stop(self) -> (Vec<Window>, String) {
        let log = self.collector.stop();
        (windows_of(&self.out), log)
    }
}

fn capture(name: &str) -> Json {
    read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures").join(name))
}

fn write_hosts(file: &Path, hosts: &[Host]) {
    let body = serde_json::to_vec_pretty(&HostList { items: hosts.to_vec() }).expect("json");
    // Replaced by a rename, as a config manager would.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, body).expect("write hosts");
    std::fs::rename(&tmp, file).expect("rename hosts");
}

/// A two-window scenario from a capture: window 0 without each container's newest sample,
/// window 1 the capture as recorded, so rates come from its last two samples.
fn capture_scenario(dir: &Path, name: &str, host: &str) -> PathBuf {
    let out = dir.join(format!("capture-{host}"));
    let full = capture(name);
    let mut older = full.clone();
    for c in older.as_array_mut().expect("array") {
        let stats = c["stats"].as_array_mut().expect("stats");
        let newest =
            stats.iter().enumerate().max_by_key(|(_, s)| rfc3339_ns(&s["timestamp"])).map(|(i, _)| i);
        stats.remove(newest.expect("a sample"));
    }
    let mut writer = heapster::scenario::ScenarioWriter::create(&out, "capture", 60).expect("writer");
    let w0 = writer.window(1_700_000_040_000).expect("window");
    let hosts =
        HostList { items: vec![Host { name: host.into(), ip: "10.0.0.1".into(), ..Host::default() }] };
    w0.cadvisor_hosts(&serde_json::to_vec(&hosts).expect("json")).expect("hosts");
    w0.cadvisor(host, &serde_json::to_vec(&older).expect("json")).expect("body");
    w0.cadvisor_machine(host, br#"{"num_cores": 2, "memory_capacity": 3892248576}"#).expect("machine");
    let w1 = writer.window(1_700_000_100_000).expect("window");
    w1.cadvisor(host, &serde_json::to_vec(&full).expect("json")).expect("body");
    writer.finish().expect("finish");
    out
}

/// `measurement,tags value=V` lines of one window, as (measurement, tags, value).
fn points(window: &Window) -> Vec<(String, String, String)> {
    window
        .iter()
        .filter_map(|p| {
            let (series, value) = p.split_once(" value=")?;
            let (measurement, tags) = series.split_once(',')?;
            Some((measurement.to_string(), tags.to_string(), value.to_string()))
        })
        .collect()
}

fn value_of(window: &Window, measurement: &str, tags: &[&str]) -> Option<String> {
    points(window)
        .into_iter()
        .find(|(m, t, _)| m == measurement && tags.iter().all(|tag| t.split(',').any(|x| x == *tag)))
        .map(|(_, _, v)| v)
}

#[test]
fn replayed_captures_give_their_numbers_and_rates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, host) in [("cadvisor-v1.3-subcontainers-gke-2016.json", "gke"), ("cadvisor-1.2.json", "dd")] {
        let scenario = capture_scenario(tmp.path(), name, host);
        let windows = replay_windows(&scenario, tmp.path());
        assert_eq!(windows.len(), 2, "{name}");
        let root = capture(name)
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["name"] == "/")
            .cloned()
            .expect("root");
        let mut stats = root["stats"].as_array().expect("stats").clone();
        stats.sort_by_key(|s| rfc3339_ns(&s["timestamp"]));
        let (prev, last) = (&stats[stats.len() - 2], &stats[stats.len() - 1]);
        let dt = rfc3339_ns(&last["timestamp"]) - rfc3339_ns(&prev["timestamp"]);
        let n = |v: &Json| v.as_i64().expect("integer");
        let node = ["type=node", &format!("nodename={host}")];
        let w = &windows[1];
        let int = |m: &str| value_of(w, m, &node).unwrap_or_else(|| panic!("{name}: no {m}"));
        assert_eq!(int("cpu/usage"), format!("{}i", n(&last["cpu"]["usage"]["total"])), "{name}");
        let cpu_delta = i128::from(n(&last["cpu"]["usage"]["total"]) - n(&prev["cpu"]["usage"]["total"]));
        // Millicores: CPU-ns per ns of wall time, times 1000.
        assert_eq!(int("cpu/usage_rate"), format!("{}i", 1000 * cpu_delta / i128::from(dt)), "{name}");
        assert_eq!(int("memory/usage"), format!("{}i", n(&last["memory"]["usage"])), "{name}");
        assert_eq!(int("memory/working_set"), format!("{}i", n(&last["memory"]["working_set"])), "{name}");
        assert_eq!(int("network/rx"), format!("{}i", n(&last["network"]["rx_bytes"])), "{name}");
        assert_eq!(int("network/tx"), format!("{}i", n(&last["network"]["tx_bytes"])), "{name}");
        let rx_rate: f64 = int("network/rx_rate").parse().expect("float");
        let expected =
            1e9 * (n(&last["network"]["rx_bytes"]) - n(&prev["network"]["rx_bytes"])) as f64 / dt as f64;
        assert!(
            (rx_rate - expected).abs() <= expected.abs() * 1e-9,
            "{name}: rx_rate {rx_rate} != {expected}"
        );
        let float = |m: &str| int(m).parse::<f64>().unwrap_or_else(|e| panic!("{name} {m}: {e}"));
        assert_eq!(float("cpu/node_capacity"), 2000.0, "{name}");
        assert_eq!(float("memory/node_capacity"), 3_892_248_576.0, "{name}");
        for fs in last["filesystem"].as_array().expect("filesystem") {
            let device = fs["device"].as_str().expect("device");
            let id =
                format!("resource_id={}", device.replace(' ', "\\ ").replace(',', "\\,").replace('=', "\\="));
            let tags = ["type=node", &id];
            assert_eq!(
                value_of(w, "filesystem/usage", &tags),
                Some(format!("{}i", n(&fs["usage"]))),
                "{name} {device}"
            );
            assert_eq!(
                value_of(w, "filesystem/limit", &tags),
                Some(format!("{}i", n(&fs["capacity"]))),
                "{name} {device}"
            );
        }
        // A container's CPU rate, summed into its pod.
        for kind in ["type=pod_container", "type=pod"] {
            let found =
                points(w).iter().any(|(m, t, _)| m == "cpu/usage_rate" && t.split(',').any(|x| x == kind));
            assert!(found, "{name}: cpu/usage_rate for {kind}");
        }
    }
}

fn synth(dir: &Path, hosts: usize, windows: usize) -> (PathBuf, CadvisorSpec) {
    let out = dir.join("scenario");
    let spec = CadvisorSpec::new(hosts, 2, windows);
    write_cadvisor_scenario(&spec, &out).expect("synth");
    (out, spec)
}

async fn serve(scenario: &Path, edit: impl FnOnce(&mut CadvisorFixtureConfig)) -> CadvisorFixture {
    let mut config = CadvisorFixtureConfig::new(scenario);
    edit(&mut config);
    CadvisorFixture::start(config).await.expect("fixture server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_live_into_influxdb_equals_replay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, _) = synth(tmp.path(), 3, 3);
    let fixture = serve(&scenario, |_| {}).await;
    let hosts_file = tmp.path().join("hosts");
    write_hosts(&hosts_file, &fixture.hosts(0));
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let source =
        format!("cadvisor:external?hostsFile={}&cadvisorPort={}", hosts_file.display(), fixture.port());
    let mut live = Live::start(tmp.path(), &source, &[format!("--sink=influxdb:{}?db=live", influxd.url())]);
    live.wait("4 windows", |w| w.len() > 3).await;
    let (windows, log) = live.stop();
    let replayed = replay_windows(&scenario, tmp.path());
    assert_same_windows(&windows, &replayed);

    let answer = influxd
        .query("live", r#"SELECT count(value) FROM "memory/usage" GROUP BY time(5s) fill(none)"#)
        .expect("query");
    let counts: Vec<u64> = answer["results"][0]["series"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|row| row[1].as_u64())
        .take(3)
        .collect();
    let expected: Vec<u64> =
        replayed.iter().map(|w| w.iter().filter(|p| p.starts_with("memory/usage,")).count() as u64).collect();
    assert_eq!(counts, expected, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_file_edits_take_effect_and_a_bad_file_keeps_the_list() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, _) = synth(tmp.path(), 3, 2);
    let fixture = serve(&scenario, |c| c.advance_every = Some(Duration::from_secs(3600))).await;
    let all = fixture.hosts(0);
    let hosts_file = tmp.path().join("hosts");
    write_hosts(&hosts_file, &all[..2]);
    let source =
        format!("cadvisor:external?hostsFile={}&cadvisorPort={}", hosts_file.display(), fixture.port());
    let mut live = Live::start(tmp.path(), &source, &[]);
    let (h0, h1, h2) = (host_name(0), host_name(1), host_name(2));
    let first: BTreeSet<String> = [h0.clone(), h1.clone()].into();
    live.wait("hosts 0 and 1", |w| w.last().is_some_and(|w| nodes(w) == first)).await;

    write_hosts(&hosts_file, &all[1..]);
    let edited = live.wait("host 2", |w| w.iter().any(|w| nodes(w).contains(&h2))).await;
    std::fs::write(&hosts_file, b"{\"Items\": [{\"Name\": \"x\", \"IP\": }]}").expect("write");
    live.wait("the error and a window after it", |w| {
        w.len() > edited + 1
            && std::fs::read_to_string(tmp.path().join("live.log")).unwrap_or_default().contains("column")
    })
    .await;
    let (windows, log) = live.stop();
    let added = windows.iter().position(|w| nodes(w).contains(&h2)).expect("host 2 scraped");
    let second: BTreeSet<String> = [h1.clone(), h2.clone()].into();
    for (i, w) in windows.iter().enumerate().skip(added) {
        assert_eq!(nodes(w), second, "window {i}: from the edit on, hosts 1 and 2 (bad file ignored)");
    }
    for (i, w) in windows.iter().enumerate().take(added.saturating_sub(1)) {
        assert_eq!(nodes(w), first, "window {i}: before the edit, hosts 0 and 1");
    }
    assert!(log.contains(&format!("hosts file {}: line 1, column", hosts_file.display())), "{log}");
    assert!(log.contains("keeping the last good host list"), "{log}");
}

/// fleet's machine object, as fleet writes it into etcd.
fn machine_object(host: &Host) -> String {
    json!({"ID": host.id, "PublicIP": host.ip, "Metadata": host.labels, "Version": "0.11.8"}).to_string()
}

fn put_machine(etcd: &Etcd, host: &Host) {
    etcd.put(&format!("/_coreos.com/fleet/machines/{}/object", host.id), &machine_object(host))
        .expect("put machine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coreos_from_etcd_equals_replay_and_follows_machines_through_an_outage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Four hosts, of which window 0 and 1 list three; the last window lists all four.
    let (scenario, spec) = synth(tmp.path(), 4, 3);
    let hosts = spec.hosts();
    let three = HostList { items: hosts[..3].to_vec() };
    std::fs::write(
        window_dir(&scenario, 0).join("cadvisor/hosts.json"),
        serde_json::to_vec(&three).expect("json"),
    )
    .expect("write");
    std::fs::write(
        window_dir(&scenario, 2).join("cadvisor/hosts.json"),
        serde_json::to_vec(&HostList { items: hosts.clone() }).expect("json"),
    )
    .expect("write");
    let fixture = serve(&scenario, |_| {}).await;
    let mut etcd = Etcd::start().expect("etcd (run scripts/test-deps.sh)");
    let served = fixture.hosts(2);
    for host in &served[..3] {
        put_machine(&etcd, host);
    }
    let source =
        format!("cadvisor:coreos?fleetEndpoint={}&fleetApi=etcd&cadvisorPort={}", etcd.url(), fixture.port());
    let mut live = Live::start(tmp.path(), &source, &[]);
    live.wait("2 windows", |w| w.len() > 2).await;
    let replayed = replay_windows(&scenario, tmp.path());
    assert_same_windows(&live.windows()[..2], &replayed[..2]);

    // A machine joins, another leaves.
    put_machine(&etcd, &served[3]);
    etcd.delete(&format!("/_coreos.com/fleet/machines/{}", served[0].id)).expect("delete");
    let want: BTreeSet<String> = [host_name(1), host_name(2), host_name(3)].into();
    let changed = live.wait("hosts 1-3", |w| w.last().is_some_and(|w| nodes(w) == want)).await;

    // etcd down for two windows: scraping goes on with the last list.
    etcd.stop();
    let stopped = live.wait("two windows without etcd", |w| w.len() >= changed + 3).await;
    etcd.resume().expect("etcd again");
    live.wait("fleet answers again", |_| {
        std::fs::read_to_string(tmp.path().join("live.log"))
            .unwrap_or_default()
            .contains("fleet answers again")
    })
    .await;
    let (windows, log) = live.stop();
    for (i, w) in windows.iter().enumerate().skip(changed).take(stopped - changed) {
        assert_eq!(nodes(w), want, "window {i}: the last known machines are scraped");
    }
    assert_eq!(log.matches("fleet discovery failed").count(), 1, "logged once per state change: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coreos_from_fleets_api_equals_replay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, _) = synth(tmp.path(), 3, 3);
    // Two machines a page: the source must follow nextPageToken.
    let fixture = serve(&scenario, |c| c.page_size = 2).await;
    let source =
        format!("cadvisor:coreos?fleetEndpoint={}&cadvisorPort={}", fixture.fleet_url(), fixture.port());
    let mut live = Live::start(tmp.path(), &source, &[]);
    live.wait("4 windows", |w| w.len() > 3).await;
    let (windows, _) = live.stop();
    assert_same_windows(&windows, &replay_windows(&scenario, tmp.path()));
    assert!(windows[0].iter().any(|p| p.contains("labels=region:eu")), "fleet metadata becomes node labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_are_named_and_the_others_complete_their_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, _) = synth(tmp.path(), 6, 2);
    let w0 = window_dir(&scenario, 0).join("cadvisor");
    let fault = |host: usize, body: &str| {
        std::fs::write(w0.join(format!("{}.fault.json", host_name(host))), body).expect("fault")
    };
    fault(0, r#"{"truncate": 1000}"#);
    fault(1, r#"{"garbage": true}"#);
    fault(2, r#"{"status": 404, "body": "404 page not found"}"#);
    fault(3, r#"{"delay_ms": 30000}"#);
    // Wrong types: one value lost, the rest of the host kept.
    let body_file = w0.join(format!("{}.json", host_name(4)));
    let mut body = read_json(&body_file);
    for c in body.as_array_mut().expect("array") {
        c["stats"][0]["memory"]["usage"] = json!("lots");
    }
    std::fs::write(&body_file, serde_json::to_vec(&body).expect("json")).expect("write");
    let fixture = serve(&scenario, |_| {}).await;
    let hosts_file = tmp.path().join("hosts");
    write_hosts(&hosts_file, &fixture.hosts(0));
    let source = format!(
        "cadvisor:external?hostsFile={}&cadvisorPort={}&timeout=2s",
        hosts_file.display(),
        fixture.port()
    );
    let mut live = Live::start(tmp.path(), &source, &[]);
    live.wait("2 windows", |w| w.len() > 1).await;
    let (windows, log) = live.stop();
    let good: BTreeSet<String> = [host_name(4), host_name(5)].into();
    assert_eq!(nodes(&windows[0]), good, "the others' window is complete: {log}");
    assert!(
        value_of(&windows[0], "memory/usage", &["type=node", &format!("nodename={}", host_name(4))])
            .is_none()
    );
    assert!(
        value_of(&windows[0], "memory/working_set", &["type=node", &format!("nodename={}", host_name(4))])
            .is_some()
    );
    assert_eq!(nodes(&windows[1]).len(), 6, "every host recovers in window 1: {log}");
    for (host, needle) in [
        (0, "end of file before message length reached"),
        (1, "malformed cAdvisor subcontainers body"),
        (2, "HTTP 404 Not Found: 404 page not found (this cAdvisor does not serve API v1.3"),
        (3, "timed out after 2s"),
        (4, "expected an unsigned integer, found string \"lots\""),
    ] {
        let name = host_name(host);
        assert!(
            log.lines().any(|l| l.contains(&format!("host {name}")) && l.contains(needle)),
            "host {name}: {needle}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_gives_the_live_points() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (scenario, _) = synth(tmp.path(), 3, 3);
    let fixture = serve(&scenario, |_| {}).await;
    let source =
        format!("cadvisor:coreos?fleetEndpoint={}&cadvisorPort={}", fixture.fleet_url(), fixture.port());
    let recorded = tmp.path().join("recorded");
    let args = [
        "record".to_string(),
        format!("--source={source}"),
        "--windows=3".into(),
        format!("--out={}", recorded.display()),
        "--metric_resolution=5s".into(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        heapster(&args)
    })
    .await
    .expect("record");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(recorded.join("windows/0000/cadvisor/hosts.json").is_file());
    let from_recording = replay_windows(&recorded, &tmp.path().join("r1").tap_mkdir());
    let from_source = replay_windows(&scenario, &tmp.path().join("r2").tap_mkdir());
    assert_eq!(from_recording.len(), 3);
    assert_same_windows(&from_recording, &from_source);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).expect("mkdir");
        self
    }
}
