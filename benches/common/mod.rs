//! What the benchmark harnesses share: sizes from the environment, and this process's figures.

// Each harness uses its own part of these.
#![allow(dead_code)]

pub mod process;
pub mod timeline;

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

/// User + system CPU seconds of this process, from /proc.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}

/// The scenario in `dir`, written by `write` unless an earlier run left it there (`what` says
/// what was written, for the line printed).
pub fn cached_scenario<E: std::fmt::Display>(
    dir: &std::path::Path,
    what: &str,
    write: impl FnOnce(&std::path::Path) -> Result<(), E>,
) {
    if dir.join("scenario.json").is_file() {
        println!("reusing {}", dir.display());
        return;
    }
    let generated = std::time::Instant::now();
    if let Err(e) = write(dir) {
        eprintln!("synth failed: {e}");
        std::process::exit(1);
    }
    println!("synthesized {what} in {:.1?}", generated.elapsed());
}

/// Replays `dir` into /dev/null at `-w 1` and `-w 2`, each in a child process (`child_env`
/// names the variable that makes one, which calls [`replay_throughput`]); prints a row each.
pub fn replay_throughput_table(child_env: &str, dir: &std::path::Path) {
    println!(
        "{:<5} {:>12} {:>14} {:>10} {:>10} {:>12} {:>10}",
        "-w", "sets/s", "values/s", "MB/s", "s/window", "cpu s/window", "peak RSS"
    );
    for workers in [1, 2] {
        run_child(child_env, &format!("{}|{workers}", dir.display()), &format!("-w {workers}"));
    }
}

/// The child's side of [`replay_throughput_table`]: `spec` is `DIR|WORKERS`; `check` looks at
/// the run's report before its row is printed (and may exit).
pub fn replay_throughput(spec: &str, check: impl FnOnce(&heapster::run::RunReport)) {
    use heapster::bridge::Stats;
    let Some((dir, workers)) = spec.split_once('|') else { return };
    let workers: usize = workers.parse().unwrap_or(1);
    let config = heapster::run::RunConfig { workers, ..replay_to_null(dir) };
    let cpu_before = cpu_seconds();
    let started = std::time::Instant::now();
    let report = run_or_exit(config);
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    check(&report);
    let windows = Stats::get(&report.stats.windows).max(1) as f64;
    let sets = Stats::get(&report.stats.metric_sets) as f64;
    let values = Stats::get(&report.stats.metric_values) as f64;
    let mb = Stats::get(&report.stats.summary_bytes) as f64 / 1e6;
    println!(
        "{:<5} {:>12.0} {:>14.0} {:>10.1} {:>10.3} {:>12.3} {:>7} MiB",
        workers,
        sets / wall,
        values / wall,
        mb / wall,
        wall / windows,
        cpu / windows,
        peak_rss_kib() / 1024
    );
}
