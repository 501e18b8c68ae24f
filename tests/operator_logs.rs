//! What an operator reads: log lines without colour codes off a terminal, JSON lines with
//! `--log_format=json`, one line for an unreachable API server however long it stays down, the
//! in-cluster hint, and `--help` naming every source and option.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn logs_off_a_terminal_have_no_colour_and_json_is_one_object_a_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.lp");
    let scenario = format!("--source=replay:{}", small().display());
    let sink = format!("--sink=file:{}", out.display());
    let text = heapster(&[&scenario, &sink, "--heapster-port=0", "--listen_ip=127.0.0.1"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let log = stderr(&text);
    assert!(log.contains("replay done"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log:?}");

    let json =
        heapster(&[&scenario, &sink, "--heapster-port=0", "--listen_ip=127.0.0.1", "--log_format=json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let lines: Vec<serde_json::Value> = stderr(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "replay done" && l["level"] == "INFO"),
        "{lines:?}"
    );

    // Progress bars are drawn only on a terminal.
    let synth = testbed(
        &["synth", "--nodes", "3", "--pods-per-node", "2", "--windows", "2", "--out"]
            .into_iter()
            .chain([tmp.path().join("s").to_str().expect("path")])
            .collect::<Vec<_>>(),
    );
    assert!(synth.status.success(), "{}", stderr(&synth));
    assert!(
        !stderr(&synth).contains('\u{1b}') && !stderr(&synth).contains("windows ("),
        "{}",
        stderr(&synth)
    );
}

#[test]
fn an_unreachable_api_server_is_one_line_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:1"}}],
            "users":[{"name":"u","user":{"token":"t"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
            "current-context":"x"}"#,
    )
    .expect("kubeconfig");
    let log = tmp.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_heapster"))
        .arg(format!(
            "--source=kubernetes:https://127.0.0.1:1?inClusterConfig=false&auth={}",
            kubeconfig.display()
        ))
        .args(["--metric_resolution=5s", "--heapster-port=0", "--listen_ip=127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("heapster");
    // The watches retry with backoff for a while: every retry fails the same way.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("heapster exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&mut child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("127.0.0.1:1")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("API server https://127.0.0.1:1") && lines[0].contains("refused"), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn outside_a_cluster_the_error_says_what_to_use() {
    let run = Command::new(env!("CARGO_BIN_EXE_heapster"))
        .args(["--source=kubernetes:", "--heapster-port=0", "--listen_ip=127.0.0.1"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("heapster");
    assert!(!run.status.success());
    assert!(stderr(&run).contains("inClusterConfig=false&auth=KUBECONFIG"), "{}", stderr(&run));
}

#[test]
fn help_names_every_source_and_option() {
    let help = heapster(&["--help"]);
    let text = stdout(&help);
    for needle in [
        "kubernetes:",
        "kubernetes.summary_api:",
        "kubernetes.events:",
        "replay:",
        "inClusterConfig",
        "kubeletHttps",
        "influxdb:",
        "--heapster-port",
        "--listen_ip",
        "--tls_client_ca",
        "--allowed_users",
        "--log_format",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    // Every option of every subcommand has a line of its own.
    for (binary, sub) in
        [(heapster as fn(&[&str]) -> _, "record"), (testbed, "synth"), (testbed, "fixture-server")]
    {
        let text = stdout(&binary(&[sub, "-h"]));
        assert!(text.contains("Usage:"), "{sub} -h:\n{text}");
        for line in text.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.trim().split("  ").filter(|p| !p.trim().is_empty()).count() >= 2;
            assert!(described, "{sub}: undocumented option {line:?}:\n{text}");
        }
    }
}

/// The collector's binary carries no test-bed command; the test bed's binary has them.
#[test]
fn the_test_bed_commands_are_in_their_own_binary() {
    let collector = stdout(&heapster(&["--help"]));
    let commands = |help: &str| -> Vec<String> {
        help.split("Commands:")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .map(|block| {
                block.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(commands(&collector), ["record", "help"], "{collector}");
    for sub in ["synth", "fixture-server"] {
        let refused = heapster(&[sub, "--help"]);
        assert!(!refused.status.success(), "heapster {sub}: {}", stdout(&refused));
    }
    let testbed_help = stdout(&testbed(&["--help"]));
    assert_eq!(commands(&testbed_help), ["synth", "fixture-server", "help"], "{testbed_help}");
}
