//! What the benchmark harnesses share: sizes from the environment, and this process's figures.

// Each harness uses its own part of these.
#![allow(dead_code)]

/// A size from the environment; else `full` under `cargo bench`, and `smoke` when the harness
/// runs as a test (`cargo test --all-targets` builds and runs it without `--bench`): the test
/// suite checks that the harness works, not how fast, and must not take minutes doing so.
pub fn size(name: &str, full: usize, smoke: usize) -> usize {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let default = if benchmarking { full } else { smoke };
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident set size of this process, in KiB (Linux).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs this benchmark binary again as a child with `env=spec`, so the child's peak RSS and
/// CPU time are its own, and prints what it prints; exits if it fails.
pub fn run_child(env: &str, spec: &str, label: &str) {
    let exe = std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("bench"));
    let output = std::process::Command::new(exe)
        .env(env, spec)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the child: {e}"));
    if !output.status.success() {
        eprintln!("{label} failed: {}", String::from_utf8_lossy(&output.stderr));
        std::process::exit(1);
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

/// A fast replay of `dir` into line protocol written to /dev/null.
pub fn replay_to_null(dir: &str) -> heapster::run::RunConfig {
    use heapster::run::{RunConfig, SourceConfig};
    use heapster::sinks::SinkConfig;
    use heapster::sinks::file::FileConfig;
    use heapster::sources::replay::{Pace, ReplayConfig};
    let source =
        SourceConfig::Replay(ReplayConfig { path: dir.into(), pace: Pace::Fast, schedulable_label: false });
    let sink = SinkConfig::new(FileConfig {
        path: "/dev/null".into(),
        with_fields: false,
        cluster_name: "default".into(),
    });
    RunConfig::new(source, vec![sink])
}

/// Runs the pipeline to the end, or exits with its error.
pub fn run_or_exit(config: heapster::run::RunConfig) -> heapster::run::RunReport {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    heapster::run::run(config, stop).unwrap_or_else(|e| {
        eprintln!("run failed: {e}");
        std::process::exit(1);
    })
}
