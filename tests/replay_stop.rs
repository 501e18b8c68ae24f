//! SIGTERM during a paced replay stops it at once, not at the next window.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn sigterm_stops_a_paced_replay_between_windows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("paced.lp");
    let log_path = tmp.path().join("paced.log");
    // fixtures/small has 60 s windows: after the first, the replay waits a minute.
    let mut child = Command::new(env!("CARGO_BIN_EXE_heapster"))
        .arg(format!("--source=replay:{}?pace=real", small().display()))
        .arg(format!("--sink=file:{}", out.display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("heapster");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = Instant::now();
    while std::fs::read_to_string(&out).unwrap_or_default().is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("heapster exited with {status}: {}", log());
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no first window: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let signalled = Instant::now();
    // Well under the 60 s the next window is due in, with room for a loaded machine.
    let status = terminate(&mut child, Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(status.success(), "after SIGTERM: {status}: {}", log());
    let times: std::collections::BTreeSet<String> = std::fs::read_to_string(&out)
        .expect("output")
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(_, t)| t.to_string()))
        .collect();
    assert_eq!(times.len(), 1, "only the first window was due: {}", log());
    assert!(log().contains("replay stopped"), "{}", log());
    eprintln!("stopped {took:?} after SIGTERM");
}
