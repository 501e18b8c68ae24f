//! Live harness: the path users run, side by side with replay.
//!
//! A synthetic cluster (1,000 nodes x 30 pods) is served by `heapster-testbed fixture-server` in
//! its own process, as a kube-apiserver and one kubelet per node on 127.0.0.x; the collector runs
//! in its own process against it, windows of `BENCH_RESOLUTION_S` (15 s). For each configuration (live
//! and replay, `-w 1` and `-w 2`, a null sink and a real `influxd`) it prints, per process:
//! CPU-s per steady window (from /proc, over `BENCH_STEADY` windows after the first), peak RSS,
//! nodes scraped per window, start-up (seconds and collector CPU-s until the first window's
//! scrapes are done), how long SIGTERM took, and the windows the sinks dropped.
//!
//! Under `cargo test` (no `--bench`) it runs a 3-node smoke size with 5 s windows, live and
//! replay with the null sink only. `BENCH_CONFIGS` picks configurations by name, comma
//! separated (`replay-w1-null,live-w1-null,live-w2-null,live-w1-influxdb,...`); `BENCH_HEAPSTER`
//! runs another build's binary (before/after a change).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::size;
use heapster_testbed::synth::{SynthSpec, synth};
use heapster_testbed::testkit::influxd::Influxd;

/// How long any one wait of the harness may last before it gives up.
const PATIENCE: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Live,
    Replay,
}

#[derive(Clone, Copy, PartialEq)]
enum SinkKind {
    Null,
    Influxdb,
}

struct Bench {
    scenario: PathBuf,
    nodes: usize,
    steady: usize,
    resolution: Duration,
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let nodes = size("BENCH_NODES", 1000, 3);
    let pods = size("BENCH_PODS", 30, 2);
    let windows = size("BENCH_WINDOWS", 5, 2);
    let steady = size("BENCH_STEADY", 4, 1);
    let resolution = Duration::from_secs(size("BENCH_RESOLUTION_S", 15, 5) as u64);
    let scenario = std::env::temp_dir().join(format!("heapster-bench-{nodes}x{pods}x{windows}"));
    if !scenario.join("scenario.json").is_file() {
        let started = Instant::now();
        if let Err(e) = synth(&SynthSpec::new(nodes, pods, windows), &scenario) {
            fail(&format!("synth failed: {e}"));
        }
        println!("synthesized {nodes} nodes x {pods} pods x {windows} windows in {:.1?}", started.elapsed());
    }
    let all: Vec<(Mode, usize, SinkKind)> = if benchmarking {
        vec![
            (Mode::Replay, 1, SinkKind::Null),
            (Mode::Replay, 2, SinkKind::Null),
            (Mode::Live, 1, SinkKind::Null),
            (Mode::Live, 2, SinkKind::Null),
            (Mode::Replay, 1, SinkKind::Influxdb),
            (Mode::Live, 1, SinkKind::Influxdb),
        ]
    } else {
        vec![(Mode::Replay, 1, SinkKind::Null), (Mode::Live, 1, SinkKind::Null)]
    };
    let wanted = std::env::var("BENCH_CONFIGS").ok();
    let bench = Bench { scenario, nodes, steady, resolution };
    println!(
        "{:<24} {:>12} {:>12} {:>10} {:>10} {:>9} {:>15} {:>9} {:>8}",
        "run",
        "cpu s/window",
        "fixture cpu",
        "peak RSS",
        "fixt. RSS",
        "nodes/win",
        "start s (cpu s)",
        "stop s",
        "dropped"
    );
    for (mode, workers, sink) in all {
        let name = config_name(mode, workers, sink);
        if wanted.as_ref().is_some_and(|w| !w.split(',').any(|n| n == name)) {
            continue;
        }
        let row = match mode {
            Mode::Live => bench.live(workers, sink),
            Mode::Replay => bench.replay(workers, sink),
        };
        match row {
            Ok(row) => println!("{}", row.render(&name)),
            Err(e) => fail(&format!("{name}: {e}")),
        }
    }
}

fn config_name(mode: Mode, workers: usize, sink: SinkKind) -> String {
    let mode = if mode == Mode::Live { "live" } else { "replay" };
    let sink = if sink == SinkKind::Null { "null" } else { "influxdb" };
    format!("{mode}-w{workers}-{sink}")
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}

/// One configuration's figures.
#[derive(Default)]
struct Row {
    cpu_per_window: f64,
    fixture_cpu_per_window: Option<f64>,
    peak_rss_mib: u64,
    fixture_rss_mib: Option<u64>,
    nodes_per_window: Option<f64>,
    startup: Option<(f64, f64)>,
    stop_seconds: f64,
    dropped: usize,
}

impl Row {
    fn render(&self, name: &str) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        format!(
            "{:<24} {:>12.3} {:>12} {:>6} MiB {:>10} {:>9} {:>15} {:>9.2} {:>8}",
            name,
            self.cpu_per_window,
            opt(self.fixture_cpu_per_window, 3),
            self.peak_rss_mib,
            self.fixture_rss_mib.map_or("-".into(), |m| format!("{m} MiB")),
            opt(self.nodes_per_window, 0),
            self.startup.map_or("-".into(), |(s, c)| format!("{s:.1} ({c:.2})")),
            self.stop_seconds,
            self.dropped,
        )
    }
}

impl Bench {
    /// Replay at full speed as its own process: CPU and peak RSS over the whole run.
    fn replay(&self, workers: usize, sink: SinkKind) -> Result<Row, String> {
        let influxd = start_influxd(sink)?;
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let mut args = vec![format!("--source=replay:{}", self.scenario.display()), format!("-w{workers}")];
        args.push(sink_flag(influxd.as_ref()));
        let started = Instant::now();
        let child = collector(&args, log.path())?;
        let (status, usage) = wait_with_usage(child)?;
        let wall = started.elapsed().as_secs_f64();
        if !status {
            return Err(format!(
                "replay failed: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            ));
        }
        let windows = scenario_windows(&self.scenario)?.max(1) as f64;
        Ok(Row {
            cpu_per_window: usage.cpu_seconds / windows,
            peak_rss_mib: usage.max_rss_kib / 1024,
            stop_seconds: wall,
            dropped: dropped_windows(log.path()),
            ..Row::default()
        })
    }

    /// The collector against the fixture server, both in their own processes.
    fn live(&self, workers: usize, sink: SinkKind) -> Result<Row, String> {
        let influxd = start_influxd(sink)?;
        let tls = tempfile::tempdir().map_err(|e| e.to_string())?;
        let testbed = heapster_testbed::testbed_binary().map_err(|e| e.to_string())?;
        let mut server = Command::new(testbed)
            .args(["fixture-server", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&self.scenario)
            .arg("--tls-dir")
            .arg(tls.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the fixture server: {e}"))?;
        let guard = KillOnDrop(vec![]);
        let result = self.live_against(&mut server, workers, influxd.as_ref(), guard);
        let _ = server.kill();
        let _ = server.wait();
        result
    }

    fn live_against(
        &self,
        server: &mut Child,
        workers: usize,
        influxd: Option<&Influxd>,
        mut guard: KillOnDrop,
    ) -> Result<Row, String> {
        let info = FixtureInfo::read(server)?;
        let source = format!(
            "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}&events=false",
            info.api, info.kubeconfig, info.kubelet_https_port
        );
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let args = vec![
            source,
            format!("--metric_resolution={}s", self.resolution.as_secs()),
            format!("-w{workers}"),
            sink_flag(influxd),
        ];
        let started = Instant::now();
        let child = collector(&args, log.path())?;
        let pid = child.id();
        guard.0.push(child);
        // Start-up: until every node was scraped once.
        let stats = |what: &str| fixture_stats(&info.api_addr).map_err(|e| format!("{what}: {e}"));
        wait_until(|| Ok(stats("start-up")?.0 >= self.nodes as u64), "the first window's scrapes")?;
        let startup = (started.elapsed().as_secs_f64(), cpu_seconds(pid)?);
        // Steady windows: from the boundary after the next one, `steady` whole resolutions.
        let first = next_boundary(self.resolution) + self.resolution;
        sleep_until(first);
        let (cpu0, fixture0, scraped0) = (cpu_seconds(pid)?, cpu_seconds(server.id())?, stats("steady")?.0);
        sleep_until(first + self.resolution * self.steady as u32);
        let (cpu1, fixture1, scraped1) = (cpu_seconds(pid)?, cpu_seconds(server.id())?, stats("steady")?.0);
        let peak = peak_rss_kib(pid)?;
        let fixture_peak = peak_rss_kib(server.id())?;
        let windows = self.steady as f64;
        let stopping = Instant::now();
        let child = guard.0.pop().ok_or("no collector")?;
        signal(pid, "TERM");
        let (ok, _) = wait_with_usage(child)?;
        let stop_seconds = stopping.elapsed().as_secs_f64();
        if !ok {
            return Err(format!(
                "collector failed: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            ));
        }
        Ok(Row {
            cpu_per_window: (cpu1 - cpu0) / windows,
            fixture_cpu_per_window: Some((fixture1 - fixture0) / windows),
            peak_rss_mib: peak / 1024,
            fixture_rss_mib: Some(fixture_peak / 1024),
            nodes_per_window: Some((scraped1 - scraped0) as f64 / windows),
            startup: Some(startup),
            stop_seconds,
            dropped: dropped_windows(log.path()),
        })
    }
}

/// Children killed if the harness bails out early.
struct KillOnDrop(Vec<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The binary under test: this build's, or `BENCH_HEAPSTER` to compare another build.
fn heapster_bin() -> PathBuf {
    std::env::var_os("BENCH_HEAPSTER")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_heapster")), PathBuf::from)
}

fn start_influxd(sink: SinkKind) -> Result<Option<Influxd>, String> {
    match sink {
        SinkKind::Null => Ok(None),
        SinkKind::Influxdb => Influxd::start().map(Some).map_err(|e| format!("influxd: {e}")),
    }
}

fn sink_flag(influxd: Option<&Influxd>) -> String {
    match influxd {
        None => "--sink=file:/dev/null".into(),
        Some(influxd) => format!("--sink=influxdb:{}?db=k8s", influxd.url()),
    }
}

fn collector(args: &[String], log: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    Command::new(heapster_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start heapster: {e}"))
}

/// Windows the sinks dropped, from each sink's `sink finished` line at exit.
fn dropped_windows(log: &Path) -> usize {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("sink finished"))
        .filter_map(|l| l.split("dropped_windows=").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .sum()
}

fn scenario_windows(scenario: &Path) -> Result<usize, String> {
    let manifest = std::fs::read(scenario.join("scenario.json")).map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    Ok(manifest["windows"].as_array().map_or(0, Vec::len))
}

/// What `heapster-testbed fixture-server` prints about itself at start.
struct FixtureInfo {
    api: String,
    api_addr: String,
    kubeconfig: String,
    kubelet_https_port: String,
}

impl FixtureInfo {
    fn read(server: &mut Child) -> Result<FixtureInfo, String> {
        let stdout = server.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut kubeconfig, mut port) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.map_err(|e| e.to_string())?;
            if let Some(v) = line.strip_prefix("api: ") {
                api = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("kubeconfig: ") {
                kubeconfig = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("kubelets: ") {
                port = v.rsplit(' ').next().map(str::to_string);
            } else if line.starts_with("windows: ") {
                break;
            }
        }
        // The rest of its output is not needed, but the pipe must not fill up.
        std::thread::spawn(move || for _ in lines {});
        let api = api.ok_or("the fixture server printed no api address")?;
        let api_addr = api.trim_start_matches("https://").trim_end_matches('/').to_string();
        Ok(FixtureInfo {
            api,
            api_addr,
            kubeconfig: kubeconfig.ok_or("no kubeconfig")?,
            kubelet_https_port: port.ok_or("no kubelet port")?,
        })
    }
}

/// `(summary requests, nodes)` from the fixture server's `/fixture/stats`, over its HTTPS port.
fn fixture_stats(api_addr: &str) -> Result<(u64, u64), String> {
    let body = https_get(api_addr, "/fixture/stats")?;
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((value["summaries"].as_u64().unwrap_or(0), value["nodes"].as_u64().unwrap_or(0)))
}

/// A GET over TLS that trusts anything: the harness only reads its own fixture server's counter.
fn https_get(addr: &str, path: &str) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(tls, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A close without close_notify still ends the body: keep what arrived.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

fn wait_until(mut done: impl FnMut() -> Result<bool, String>, what: &str) -> Result<(), String> {
    let started = Instant::now();
    while !done()? {
        if started.elapsed() > PATIENCE {
            return Err(format!("no {what} within {PATIENCE:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The next multiple of `resolution` since the epoch (windows are aligned to it).
fn next_boundary(resolution: Duration) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let step = resolution.as_millis().max(1);
    let next = (now.as_millis() / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(next as u64)
}

fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// User + system CPU seconds of a running process, from /proc.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("pid {pid}: {e}"))?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Peak RSS of a running process, KiB.
fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("pid {pid}: {e}"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0))
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

struct Usage {
    cpu_seconds: f64,
    max_rss_kib: u64,
}

/// Waits for `child` and reads its own resource usage (wait4), not that of all children.
fn wait_with_usage(child: Child) -> Result<(bool, Usage), String> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let deadline = Instant::now() + PATIENCE;
    loop {
        // SAFETY: pid is our own unwaited child; status and usage point to live locals.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            break;
        }
        if got < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        if Instant::now() > deadline {
            signal(pid as u32, "KILL");
            return Err(format!("pid {pid} did not exit within {PATIENCE:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // `child` was reaped by wait4; dropping it does not wait again.
    drop(child);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((
        ok,
        Usage {
            cpu_seconds: secs(usage.ru_utime) + secs(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
        },
    ))
}
