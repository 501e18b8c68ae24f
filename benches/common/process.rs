//! Collector and fixture-server processes seen from outside: started, waited for, and measured
//! from /proc (CPU-s, peak RSS), for the harnesses that run them as their own processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any one wait of a harness may last before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// Children killed if the harness bails out early.
pub struct KillOnDrop(pub Vec<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The binary under test: this build's, or `BENCH_HEAPSTER` to compare another build.
pub fn heapster_bin() -> PathBuf {
    std::env::var_os("BENCH_HEAPSTER")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_heapster")), PathBuf::from)
}

/// Starts the collector with `args`. Its API is served on loopback at a port of its own unless
/// `args` name one: a fixed 8082 would be taken by another run, which then skips building the
/// API's snapshot and measures less than a user pays.
pub fn collector(args: &[String], log: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut command = Command::new(heapster_bin());
    command.args(args);
    if !args.iter().any(|a| a.starts_with("--heapster-port")) {
        command.args(["--heapster-port=0", "--listen_ip=127.0.0.1"]);
    }
    command
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start heapster: {e}"))
}

pub fn scenario_windows(scenario: &Path) -> Result<usize, String> {
    let manifest = std::fs::read(scenario.join("scenario.json")).map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    Ok(manifest["windows"].as_array().map_or(0, Vec::len))
}

/// Starts `heapster-testbed fixture-server` on `scenario`, its TLS files in `tls_dir`; its
/// addresses are read with [`FixtureInfo::read`].
pub fn fixture_server(scenario: &Path, tls_dir: &Path) -> Result<Child, String> {
    let testbed = heapster_testbed::testbed_binary().map_err(|e| e.to_string())?;
    Command::new(testbed)
        .args(["fixture-server", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(scenario)
        .arg("--tls-dir")
        .arg(tls_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the fixture server: {e}"))
}

/// What `heapster-testbed fixture-server` prints about itself at start.
pub struct FixtureInfo {
    pub api: String,
    pub api_addr: String,
    pub kubeconfig: String,
    pub kubelet_https_port: String,
}

impl FixtureInfo {
    pub fn read(server: &mut Child) -> Result<FixtureInfo, String> {
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
pub fn fixture_stats(api_addr: &str) -> Result<(u64, u64), String> {
    let body = https_get(api_addr, "/fixture/stats")?;
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((value["summaries"].as_u64().unwrap_or(0), value["nodes"].as_u64().unwrap_or(0)))
}

/// A GET over TLS that trusts anything: the harness only reads its own fixture server's counter.
pub fn https_get(addr: &str, path: &str) -> Result<String, String> {
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
pub struct AnyCert;

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

pub fn wait_until(mut done: impl FnMut() -> Result<bool, String>, what: &str) -> Result<(), String> {
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
pub fn next_boundary(resolution: Duration) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let step = resolution.as_millis().max(1);
    let next = (now.as_millis() / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(next as u64)
}

pub fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// User + system CPU seconds of a running process, from /proc.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("pid {pid}: {e}"))?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Peak RSS of a running process, KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmHWM:")
}

/// Resident set size of a running process now, KiB.
pub fn current_rss_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmRSS:")
}

/// One `/proc/<pid>/status` figure in kB (`field` with its colon); 0 when the kernel omits it.
fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("pid {pid}: {e}"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0))
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

pub struct Usage {
    pub cpu_seconds: f64,
    pub max_rss_kib: u64,
}

/// Waits for `child` and reads its own resource usage (wait4), not that of all children.
pub fn wait_with_usage(child: Child) -> Result<(bool, Usage), String> {
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
