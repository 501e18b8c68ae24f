//! Shared helpers of the end-to-end tests: running the binaries, reading the bundled scenarios,
//! a collector process under test ([`Collector`]), its output ([`lines`]) and the event points
//! scenarios and InfluxDB hold ([`events`]).

#![allow(dead_code, unused_imports)]

mod collector;
pub mod events;
pub mod lines;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub use collector::{Collector, api_flags, events_source, kubernetes_source, serve};
pub use events::{EventState, event_states, expected_event_points, stored_event_points};
pub use lines::{
    Window, assert_same_windows, group_windows, logged_count, replay_windows, strip_ansi, window_times,
    windows_of, windows_of_files,
};

pub fn small() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/small")
}

/// The bundled event timeline (a 410 and a dropped watch among its windows).
pub fn events_scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events")
}

/// Runs the heapster binary with `args` (its API on a free loopback port when it collects);
/// stdout, stderr and status come back.
pub fn heapster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heapster"))
        .args(api_flags(args))
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("cannot run heapster: {e}"))
}

/// Runs the test bed's binary (`synth`, `fixture-server`) with `args`.
pub fn testbed(args: &[&str]) -> Output {
    let binary = heapster_testbed::testbed_binary().unwrap_or_else(|e| panic!("heapster-testbed: {e}"));
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("cannot run heapster-testbed: {e}"))
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The scenario's manifest: window end times in ns, as InfluxDB reports them.
pub fn window_times_ns(scenario: &Path) -> Vec<i64> {
    let manifest = read_json(&scenario.join("scenario.json"));
    manifest["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| {
            let ts: jiff::Timestamp = w.as_str().expect("window time").parse().expect("RFC 3339");
            ts.as_nanosecond() as i64
        })
        .collect()
}

pub fn window_dir(scenario: &Path, window: usize) -> PathBuf {
    scenario.join("windows").join(format!("{window:04}"))
}

/// The node list in force in `window` (the latest recorded at or before it).
pub fn api_list(scenario: &Path, window: usize, file: &str) -> Value {
    (0..=window)
        .rev()
        .map(|w| window_dir(scenario, w).join("api").join(file))
        .find(|p| p.is_file())
        .map(|p| read_json(&p))
        .unwrap_or_else(|| panic!("no {file} at or before window {window}"))
}

/// Names of the nodes whose Ready condition is True in `window`.
pub fn ready_nodes(scenario: &Path, window: usize) -> Vec<String> {
    let nodes = api_list(scenario, window, "nodes.json");
    let mut ready: Vec<String> = nodes["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .map(|n| n["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    ready.sort();
    ready
}

/// `(namespace, pod)` of every pod in the pod list in force in `window`.
pub fn pods(scenario: &Path, window: usize) -> Vec<(String, String)> {
    let pods = api_list(scenario, window, "pods.json");
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            (
                p["metadata"]["namespace"].as_str().expect("namespace").to_string(),
                p["metadata"]["name"].as_str().expect("name").to_string(),
            )
        })
        .collect()
}

pub fn summary(scenario: &Path, window: usize, node: &str) -> Value {
    read_json(&window_dir(scenario, window).join("kubelet").join(format!("{node}.json")))
}

pub fn rfc3339_ns(v: &Value) -> i64 {
    let ts: jiff::Timestamp = v.as_str().expect("time").parse().expect("RFC 3339");
    ts.as_nanosecond() as i64
}

/// Copies a scenario directory, to corrupt it in a test.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Stops a child with SIGTERM, as an operator would; kills it if it has not exited within
/// `grace` and says so.
pub fn terminate(child: &mut std::process::Child, grace: std::time::Duration) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if started.elapsed() > grace {
            let _ = child.kill();
            let _ = child.wait();
            panic!("heapster did not stop within {grace:?} of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
