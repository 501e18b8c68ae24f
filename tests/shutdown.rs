//! SIGTERM during a live run: the scrapes in flight are cancelled, the window they belonged to
//! is not exported (and says so), and every window the collector accepted reaches every sink,
//! a file and a real InfluxDB behind its disk-buffered queue; nothing is reported lost.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::Influxd;
use support::*;

/// Bounds every wait: a few 5 s windows.
const PATIENCE: Duration = Duration::from_secs(90);

/// The delayed kubelet answers this late, so that each window's scrapes stay in flight for most
/// of the window (the kubelet timeout is longer).
const SLOW_KUBELET: &[u8] = br#"{"delay_ms": 3000}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_scrape_cancels_that_window_and_flushes_every_accepted_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("cluster");
    let windows = 6;
    synth(&SynthSpec::new(6, 3, windows), &scenario).expect("synth");
    let slow = ready_nodes(&scenario, 0)[0].clone();
    for window in 0..windows {
        let dir = window_dir(&scenario, window).join("kubelet");
        std::fs::write(dir.join(format!("{slow}.fault.json")), SLOW_KUBELET).expect("fault");
    }
    let server = serve(&scenario, tmp.path(), |_| {}).await;
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let out = tmp.path().join("live.lp");
    let args = [
        kubernetes_source(&server, "&events=false&kubeletTimeout=4s"),
        "--metric_resolution=5s".into(),
        format!("--sink=file:{}", out.display()),
        format!("--sink=influxdb:{}?db=stop", influxd.url()),
        format!("--state_dir={}", tmp.path().join("state").display()),
    ];

    let dir = tmp.path().to_path_buf();
    let out_path = out.clone();
    let fast = ready_nodes(&scenario, 0)[1].clone();
    let (status, log) = tokio::task::block_in_place(move || {
        let mut collector = Collector::start(&dir, "live", &args);
        let api = collector.wait_for("the API's address", PATIENCE, |c| {
            c.log().lines().find_map(|l| {
                l.split("metrics.k8s.io on http://").nth(1)?.split_whitespace().next().map(str::to_string)
            })
        });
        // Two windows out (the second has rates), then a round whose fast node is in while the
        // slow one is still being waited for: SIGTERM lands with scrapes in flight.
        collector.wait_windows(&out_path, 2, PATIENCE);
        let written = windows_of(&out_path).len();
        let before = scrapes_ok(&api, &fast);
        collector.wait_for("a round with the slow kubelet in flight", PATIENCE, |_| {
            (scrapes_ok(&api, &fast) > before).then_some(())
        });
        assert_eq!(windows_of(&out_path).len(), written, "the round is still open");
        collector.stop_with_status()
    });
    assert!(status.success(), "heapster after SIGTERM: {status}:\n{log}");
    assert!(log.contains("the window's scrapes in flight are cancelled"), "{log}");
    assert!(log.contains("not exported: the stop cancelled its scrapes"), "{log}");

    // Every window the collector accepted is in the file and in InfluxDB, whole.
    let accepted = logged_count(&log, "windows");
    let file = windows_of(&out);
    assert!(accepted >= 2, "{log}");
    assert_eq!(file.len() as u64, accepted, "windows in the file\n{log}");
    for line in strip_ansi(&log).lines().filter(|l| l.contains("sink finished")) {
        for field in ["dropped_windows", "dropped_points", "dropped_events", "errors"] {
            assert!(line.contains(&format!(" {field}=0")), "{field} in {line}");
        }
        assert!(line.contains(&format!(" windows={accepted} ")), "{line}");
    }
    let answer = influxd
        .query("stop", r#"SELECT count(value) FROM /.*/ GROUP BY time(5s) fill(none)"#)
        .expect("query");
    let mut per_window: BTreeMap<String, u64> = BTreeMap::new();
    for series in answer["results"][0]["series"].as_array().expect("series") {
        for row in series["values"].as_array().expect("values") {
            *per_window.entry(row[0].as_str().expect("time").to_string()).or_default() +=
                row[1].as_u64().unwrap_or(0);
        }
    }
    let stored: Vec<u64> = per_window.into_values().collect();
    let written: Vec<u64> = file.iter().map(|w| w.len() as u64).collect();
    assert_eq!(stored, written, "points per window in InfluxDB and in the file\n{log}");
}

/// The collector's count of `node`'s successful scrapes, from its own `/metrics` (0 while it
/// cannot be read): a scrape is counted as its body goes to the workers.
fn scrapes_ok(api: &str, node: &str) -> u64 {
    let Ok(mut stream) = TcpStream::connect(api) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(stream, "GET /metrics HTTP/1.0\r\nHost: {api}\r\n\r\n").is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let series = format!("heapster_node_scrapes_total{{node=\"{node}\",outcome=\"ok\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0)
}
