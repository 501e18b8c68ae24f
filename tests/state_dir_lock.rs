//! Two collectors on one `--state_dir`: the second is refused (exit 2) naming the directory and
//! the first one's pid; once the first has stopped, the directory is free again.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_second_collector_on_a_state_dir_exits_2_naming_the_holder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let state_arg = format!("--state_dir={}", state.display());
    let log_path = tmp.path().join("first.log");
    // A paced replay of 60 s windows keeps the first collector running until stopped.
    let mut first = Command::new(env!("CARGO_BIN_EXE_heapster"))
        .arg(format!("--source=replay:{}?pace=real", small().display()))
        .arg(format!("--sink=file:{}", tmp.path().join("first.lp").display()))
        .arg(&state_arg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("heapster");
    let pid = first.id().to_string();
    let started = Instant::now();
    while std::fs::read_to_string(state.join("lock")).unwrap_or_default().trim() != pid {
        if let Ok(Some(status)) = first.try_wait() {
            panic!("first heapster exited with {status}: {}", std::fs::read_to_string(&log_path).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the first collector took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }

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

    let status = terminate(&mut first, Duration::from_secs(20));
    assert!(status.success(), "first after SIGTERM: {status}");
    let third = heapster(&[
        &format!("--source=replay:{}", small().display()),
        &format!("--sink=file:{}", tmp.path().join("third.lp").display()),
        &state_arg,
    ]);
    assert!(third.status.success(), "the lock is released with its holder: {}", stderr(&third));
}
