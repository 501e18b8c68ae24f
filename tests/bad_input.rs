//! Bad input gets a clear error naming what was wrong, and the rest of the window is still
//! written: truncated summaries, wrong-typed, negative and absent values, bad URIs.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::*;

/// One line of line protocol: measurement, tags, value, time.
#[derive(Debug)]
struct Point {
    measurement: String,
    tags: BTreeMap<String, String>,
    time: i64,
}

fn points(path: &Path) -> Vec<Point> {
    let text = std::fs::read_to_string(path).expect("output");
    text.lines()
        .map(|line| {
            // Our test data has no escaped spaces in the fields we look at: split on the last two spaces.
            let (rest, time) = line.rsplit_once(' ').expect("time");
            let (series, _field) = rest.rsplit_once(' ').expect("field");
            let mut parts = split_unescaped(series);
            let measurement = parts.remove(0);
            let tags = parts
                .into_iter()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            Point { measurement, tags, time: time.parse().expect("time") }
        })
        .collect()
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("part").push(n);
                }
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("part").push(c),
        }
    }
    out
}

fn has(points: &[Point], measurement: &str, time: i64, tags: &[(&str, &str)]) -> bool {
    points.iter().any(|p| {
        p.measurement == measurement
            && p.time == time
            && tags.iter().all(|(k, v)| p.tags.get(*k).map(String::as_str) == Some(*v))
    })
}

fn edit_summary(
    scenario: &Path,
    window: usize,
    node: &str,
    edit: impl FnOnce(&mut Value),
) -> (String, String) {
    let path = window_dir(scenario, window).join("kubelet").join(format!("{node}.json"));
    let mut body = read_json(&path);
    let pod = &mut body["pods"][0];
    let ns = pod["podRef"]["namespace"].as_str().expect("ns").to_string();
    let name = pod["podRef"]["name"].as_str().expect("pod").to_string();
    edit(&mut body);
    std::fs::write(&path, serde_json::to_vec(&body).expect("json")).expect("write");
    (ns, name)
}

#[test]
fn bad_summaries_are_reported_and_the_rest_of_the_window_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("scenario");
    copy_dir(&small(), &scenario);
    let times = window_times_ns(&scenario);
    let nodes = ready_nodes(&scenario, 1);
    assert!(nodes.len() >= 3, "{nodes:?}");
    let (truncated, wrong, odd) = (&nodes[0], &nodes[1], &nodes[2]);

    // Window 1: one node's body cut in half, another with a string where a number belongs.
    let path = window_dir(&scenario, 1).join("kubelet").join(format!("{truncated}.json"));
    let body = std::fs::read(&path).expect("summary");
    std::fs::write(&path, &body[..body.len() / 2]).expect("truncate");
    let (wrong_ns, wrong_pod) = edit_summary(&scenario, 1, wrong, |b| {
        b["pods"][0]["containers"][0]["memory"]["usageBytes"] = Value::from("12");
    });
    let wrong_container = read_json(&window_dir(&scenario, 1).join("kubelet").join(format!("{wrong}.json")))
        ["pods"][0]["containers"][0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    // Window 1 also: a negative counter and an absent value on the third node.
    let odd_container =
        read_json(&window_dir(&scenario, 1).join("kubelet").join(format!("{odd}.json")))["pods"][0]["containers"][0]
            ["name"]
            .as_str()
            .expect("name")
            .to_string();
    let (odd_ns, odd_pod) = edit_summary(&scenario, 1, odd, |b| {
        let c = &mut b["pods"][0]["containers"][0];
        c["cpu"]["usageCoreNanoSeconds"] = Value::from(-5);
        c["memory"].as_object_mut().expect("memory").remove("rssBytes");
    });

    let out = tmp.path().join("out.lp");
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", out.display()),
    ]);
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");

    // Each problem is named: node, where, what.
    let line_with = |needles: &[&str]| log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(line_with(&[truncated.as_str(), "offset"]), "truncated body not reported:\n{log}");
    assert!(line_with(&[wrong.as_str(), "usageBytes"]), "wrong type not reported:\n{log}");
    assert!(line_with(&[odd.as_str(), "usageCoreNanoSeconds"]), "negative value not reported:\n{log}");

    let written = points(&out);
    let t1 = times[1];
    // The truncated node lost window 1 only; the others are complete.
    assert!(!has(&written, "uptime", t1, &[("type", "node"), ("nodename", truncated)]));
    assert!(has(&written, "uptime", times[0], &[("type", "node"), ("nodename", truncated)]));
    assert!(has(&written, "uptime", times[2], &[("type", "node"), ("nodename", truncated)]));
    for node in [wrong, odd] {
        assert!(has(&written, "cpu/usage", t1, &[("type", "node"), ("nodename", node)]), "{node} window 1");
    }
    // Only the bad value is dropped: the same container's other values are there.
    let wrong_tags = [
        ("pod_name", wrong_pod.as_str()),
        ("namespace_name", wrong_ns.as_str()),
        ("container_name", wrong_container.as_str()),
    ];
    assert!(!has(&written, "memory/usage", t1, &wrong_tags));
    assert!(has(&written, "memory/working_set", t1, &wrong_tags));
    assert!(has(&written, "cpu/usage", t1, &wrong_tags));
    // Negative and absent values stay absent; nothing becomes zero.
    let odd_tags = [
        ("pod_name", odd_pod.as_str()),
        ("namespace_name", odd_ns.as_str()),
        ("container_name", odd_container.as_str()),
    ];
    assert!(!has(&written, "cpu/usage", t1, &odd_tags));
    assert!(!has(&written, "memory/rss", t1, &odd_tags));
    assert!(has(&written, "memory/working_set", t1, &odd_tags));
}

#[test]
fn bad_uris_exit_2_naming_the_flag() {
    let source = format!("--source=replay:{}", small().display());
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[&source, "--sink=kafka:localhost:9092"],
            &["--sink=kafka:localhost:9092", "unknown sink \"kafka\"", "influxdb"],
        ),
        (&[&source, "--sink=influxdb:http://[::1?db=k8s&pw=hunter2"], &["--sink=influxdb:", "pw=***"]),
        (
            &[&source, "--sink=influxdb:http://127.0.0.1:8086?withfields=maybe"],
            &["withfields", "true or false"],
        ),
        (&["--source=replay:/nonexistent?pace=slow"], &["--source", "pace"]),
        (&["--source=kafka:x"], &["--source=kafka:x", "unknown source"]),
        (&[&source, "--metric_resolution=1s"], &["metric_resolution", "5s"]),
    ];
    for (args, needles) in cases {
        let run = heapster(args);
        let log = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {log}");
        for needle in *needles {
            assert!(log.contains(needle), "{args:?}: {needle:?} missing in: {log}");
        }
        assert!(!log.contains("hunter2"), "password printed: {log}");
    }
}

#[test]
fn a_missing_scenario_is_a_clear_error() {
    let run = heapster(&["--source=replay:/nonexistent/scenario"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("/nonexistent/scenario"), "{}", stderr(&run));
}
