//! SIGTERM during a paced replay stops it at once, not at the next window.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn sigterm_stops_a_paced_replay_between_windows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("paced.lp");
    // fixtures/small has 60 s windows: after the first, the replay waits a minute.
    let mut paced = Collector::start(
        tmp.path(),
        "paced",
        &[
            format!("--source=replay:{}?pace=real", small().display()),
            format!("--sink=file:{}", out.display()),
        ],
    );
    paced.wait_for("the first window", Duration::from_secs(60), |_| {
        (!std::fs::read_to_string(&out).unwrap_or_default().is_empty()).then_some(())
    });
    let signalled = Instant::now();
    // Well under the 60 s the next window is due in, with room for a loaded machine.
    let log = paced.stop();
    let took = signalled.elapsed();
    assert_eq!(window_times(&out).len(), 1, "only the first window was due: {log}");
    assert!(log.contains("replay stopped"), "{log}");
    eprintln!("stopped {took:?} after SIGTERM");
}
