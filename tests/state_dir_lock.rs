//! Two collectors on one `--state_dir`: the second is refused (exit 2) naming the directory and
//! the first one's pid; once the first has stopped, the directory is free again.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn a_second_collector_on_a_state_dir_exits_2_naming_the_holder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let state_arg = format!("--state_dir={}", state.display());
    // A paced replay of 60 s windows keeps the first collector running until stopped.
    let mut first = Collector::start(
        tmp.path(),
        "first",
        &[
            format!("--source=replay:{}?pace=real", small().display()),
            format!("--sink=file:{}", tmp.path().join("first.lp").display()),
            state_arg.clone(),
        ],
    );
    let pid = first.pid().to_string();
    first.wait_for("the first collector's lock", Duration::from_secs(60), |_| {
        (std::fs::read_to_string(state.join("lock")).unwrap_or_default().trim() == pid).then_some(())
    });

    let second_out = tmp.path().join("second.lp");
    let second = heapster(&[
        &format!("--source=replay:{}", small().display()),
        &format!("--sink=file:{}", second_out.display()),
        &state_arg,
    ]);
    let message = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{message}");
    assert!(message.contains(&state.display().to_string()), "names the directory: {message}");
    assert!(message.contains(&format!("pid {pid}")), "names the holder: {message}");
    assert!(!second_out.exists() || std::fs::read(&second_out).unwrap().is_empty(), "wrote nothing");

    first.stop();
    let third = heapster(&[
        &format!("--source=replay:{}", small().display()),
        &format!("--sink=file:{}", tmp.path().join("third.lp").display()),
        &state_arg,
    ]);
    assert!(third.status.success(), "the lock is released with its holder: {}", stderr(&third));
}
