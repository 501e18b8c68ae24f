//! Events end to end: the events source against the fixture server (a 410 and a dropped watch
//! connection mid-scenario), into a real influxd; exactly the scenario's event states, once
//! each, also across a SIGKILL and a restart; bad events reported without stopping the stream.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::FixtureServer;
use heapster_testbed::testkit::influxd::Influxd;
use support::*;

/// Each fixture window lasts this long; the events scenario has 8.
const WINDOW: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(90);

async fn serve_events(dir: &Path) -> FixtureServer {
    serve(&events_scenario(), dir, |c| c.advance_every = Some(WINDOW)).await
}

/// The events source against `server` into InfluxDB's `db` (checkpoint in `state_dir`).
fn start(
    server: &FixtureServer,
    influxd: &Influxd,
    db: &str,
    state_dir: Option<&Path>,
    name: &str,
    dir: &Path,
) -> Collector {
    let mut args = vec![
        events_source(server),
        format!("--sink=influxdb:{}?db={db}", influxd.url()),
        "--metric_resolution=5s".to_string(),
        // The TTL counts from the collector's clock, and the recorded events are weeks old:
        // a TTL longer than their age stands for a cluster whose events are fresh.
        "--event_ttl=3650d".to_string(),
    ];
    if let Some(dir) = state_dir {
        args.push(format!("--state_dir={}", dir.display()));
    }
    Collector::start(dir, name, &args)
}

/// Waits until the fixture is in its last window and InfluxDB holds `expected` (or patience
/// runs out: the caller's assertions then show what is missing).
async fn until_stored(server: &FixtureServer, influxd: &Influxd, expected: &BTreeMap<(String, i64), i64>) {
    let started = Instant::now();
    while server.window() + 1 < server.windows() {
        assert!(started.elapsed() < PATIENCE, "the fixture did not reach its last window");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while started.elapsed() < PATIENCE && &stored_event_points(influxd, "events") != expected {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops heapster with SIGTERM, checks it exited cleanly and returns its log.
async fn stop(collector: Collector) -> String {
    tokio::task::spawn_blocking(move || collector.stop()).await.expect("stop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_state_once_across_a_410_and_a_dropped_watch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let server = serve_events(tmp.path()).await;
    let child = start(&server, &influxd, "events", None, "heapster", tmp.path());
    let states = event_states(&events_scenario());
    let expected = expected_event_points(&events_scenario());
    until_stored(&server, &influxd, &expected).await;
    let log = stop(child).await;
    assert!(
        server.stats().watches_expired > 0 && server.stats().watches_dropped > 0,
        "the faults were served"
    );

    assert_eq!(
        logged_count(&log, "events_exported"),
        states.len() as u64,
        "each state exported once:\n{log}"
    );
    assert_eq!(stored_event_points(&influxd, "events"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_and_a_restart_with_the_same_state_dir_lose_and_double_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let influxd = Influxd::start().expect("influxd (run scripts/test-deps.sh)");
    let server = serve_events(tmp.path()).await;
    let state = tmp.path().join("state");
    let mut first = start(&server, &influxd, "events", Some(&state), "first", tmp.path());
    // Killed mid-scenario, once a checkpoint was written.
    let started = Instant::now();
    while server.window() < 3 || !state.join("state.bin").is_file() {
        assert!(started.elapsed() < PATIENCE, "no checkpoint before window 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();

    let second = start(&server, &influxd, "events", Some(&state), "second", tmp.path());
    let states = event_states(&events_scenario());
    let expected = expected_event_points(&events_scenario());
    until_stored(&server, &influxd, &expected).await;
    let log = stop(second).await;
    assert!(log.contains("event checkpoint loaded"), "{log}");

    // The same content as an uninterrupted run.
    assert_eq!(stored_event_points(&influxd, "events"), expected);
    // The restart did not start over: the checkpoint's states were not exported again.
    assert!(logged_count(&log, "events_exported") < states.len() as u64, "{log}");
}

#[test]
fn bad_events_are_reported_and_the_stream_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("bad-events");
    copy_dir(&small(), &scenario);
    let event = |uid: &str, name: &str, kind: &str, message: String, count: i64, last: &str| {
        serde_json::json!({
            "metadata": {"name": name, "namespace": "web", "uid": uid, "resourceVersion": "7"},
            "involvedObject": {"kind": "Pod", "namespace": "web", "name": "api-1", "uid": "p-1"},
            "reason": "Testing", "message": message, "type": kind, "count": count,
            "firstTimestamp": "2026-11-01T09:59:00Z", "lastTimestamp": last,
            "source": {"component": "kubelet", "host": "node-1"}
        })
    };
    let huge = "x".repeat(1 << 20);
    let mut no_uid = event("", "no-uid.1", "Normal", "lost".into(), 1, "2026-11-01T09:59:30Z");
    no_uid["metadata"].as_object_mut().expect("metadata").remove("uid");
    let mut sparse = event("u-sparse", "sparse.1", "Normal", String::new(), 1, "2026-11-01T09:59:31Z");
    for field in ["involvedObject", "reason", "message", "source", "count", "firstTimestamp"] {
        sparse.as_object_mut().expect("event").remove(field);
    }
    let lists = [
        vec![
            event("u-ok", "ok.1", "Normal", "fine".into(), 1, "2026-11-01T09:59:10Z"),
            no_uid,
            event("u-odd", "odd.1", "Critical", "odd type".into(), 1, "2026-11-01T09:59:20Z"),
            event("u-huge", "huge.1", "Warning", huge, 1, "2026-11-01T09:59:25Z"),
            sparse,
        ],
        vec![event("u-ok", "ok.1", "Normal", "fine".into(), 2, "2026-11-01T10:00:40Z")],
    ];
    for (window, items) in lists.iter().enumerate() {
        std::fs::create_dir_all(window_dir(&scenario, window).join("api")).expect("mkdir");
        let list = serde_json::json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": items});
        std::fs::write(
            window_dir(&scenario, window).join("api/events.json"),
            serde_json::to_vec(&list).expect("json"),
        )
        .expect("write");
    }
    let run = heapster(&[&format!("--source=replay:{}", scenario.display())]);
    let (out, log) = (stdout(&run), strip_ansi(&stderr(&run)));
    assert!(run.status.success(), "{log}");
    let lines_about = |needle: &str| out.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines_about("fine"), 2, "both states of the good event:\n{out}");
    assert_eq!(lines_about("odd type"), 1, "an unknown type is exported:\n{out}");
    assert_eq!(lines_about("xxxxxxxx"), 1, "a huge message is exported, cut:\n{out}");
    assert!(out.lines().all(|l| l.len() < 64 * 1024), "the 1 MiB message was cut");
    // The event with most fields missing: exported, or rejected with a line naming it.
    let sparse_exported = out.lines().any(|l| l.starts_with("2026-11-01T09:59:31Z"));
    assert!(
        sparse_exported || log.lines().any(|l| l.contains("sparse.1")),
        "sparse event lost silently:\n{log}"
    );
    let expected = 4 + u64::from(sparse_exported);
    assert_eq!(logged_count(&log, "events_exported"), expected, "{log}");
    for needle in ["no-uid.1", "Critical", "huge.1"] {
        assert!(log.lines().any(|l| l.contains(needle)), "{needle} not reported:\n{log}");
    }
}
