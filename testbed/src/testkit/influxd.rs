//! A real InfluxDB 1.x (`influxd`) on loopback, in its own temporary directory.
//!
//! Talks to it over a plain HTTP/1.0 socket rather than an HTTP client library: HTTP/1.0 makes
//! the server close the connection after its answer (no chunking, no keep-alive), and a blocking
//! std socket can be used from inside an async test without tripping over the runtime.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long influxd may take to answer `/ping` before start-up is declared failed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries with fresh ports when influxd exits at start-up (another process took a port between
/// the probe and influxd's bind).
const START_ATTEMPTS: u32 = 3;

/// How influxd is configured: [`Sizing::Tests`] (the tests' small databases) or
/// [`Sizing::LargeCluster`] (millions of series, as a 1,000-node cluster writes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sizing {
    /// The in-memory index and InfluxDB's default limits (`max-series-per-database` 1,000,000,
    /// `max-values-per-tag` 100,000): quick to start, small, and the limits the sink must cope with.
    #[default]
    Tests,
    /// InfluxDB 1.6's advice for high series cardinality: the disk-based `tsi1` index (series
    /// are not all held in memory) and no series or tag-value limits. The write cache is capped
    /// at 2 GB (InfluxDB answers 500 past it and the sink retries), so that creating millions of
    /// series cannot take all the memory; cache snapshots and index log files keep their
    /// defaults (larger ones measured more memory, not more throughput).
    LargeCluster,
}

impl Sizing {
    /// The `[data]` lines of this sizing.
    fn data_section(self) -> &'static str {
        match self {
            Sizing::Tests => "  index-version = \"inmem\"\n",
            Sizing::LargeCluster => concat!(
                "  index-version = \"tsi1\"\n",
                "  max-series-per-database = 0\n",
                "  max-values-per-tag = 0\n",
                "  cache-max-memory-size = \"2g\"\n",
            ),
        }
    }
}

/// A running `influxd`, killed and its directory removed on drop.
pub struct Influxd {
    child: Child,
    dir: TempDir,
    port: u16,
    /// The RPC (backup/restore) service's port, 8088 unless told otherwise.
    rpc_port: u16,
    /// The admin user, when started with authentication on.
    admin: Option<(String, String)>,
}

impl Influxd {
    /// Starts influxd without authentication, sized for tests.
    pub fn start() -> io::Result<Influxd> {
        Self::start_inner(None, Sizing::Tests)
    }

    /// Starts influxd without authentication, configured as `sizing` says.
    pub fn start_sized(sizing: Sizing) -> io::Result<Influxd> {
        Self::start_inner(None, sizing)
    }

    /// Starts influxd with authentication on and one admin user.
    pub fn start_with_auth(user: &str, password: &str) -> io::Result<Influxd> {
        Self::start_inner(Some((user.to_string(), password.to_string())), Sizing::Tests)
    }

    fn start_inner(admin: Option<(String, String)>, sizing: Sizing) -> io::Result<Influxd> {
        let binary = find_on_path("influxd").ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "influxd not found; run scripts/test-deps.sh")
        })?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::spawn(&binary, admin.is_some(), sizing) {
                Ok(mut influxd) => {
                    if let Some((user, password)) = &admin {
                        // With no user yet, InfluxDB lets anyone create the first admin.
                        influxd.query_as(
                            None,
                            "",
                            &format!(
                                "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                                ident(user),
                                string(password)
                            ),
                        )?;
                    }
                    influxd.admin = admin;
                    return Ok(influxd);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("influxd did not start")))
    }

    fn spawn(binary: &Path, auth: bool, sizing: Sizing) -> io::Result<Influxd> {
        let dir = TempDir::new("heapster-influxd")?;
        let port = free_port()?;
        let rpc_port = free_port()?;
        let config = dir.path().join("influxdb.conf");
        fs::write(&config, config_text(dir.path(), port, rpc_port, auth, sizing))?;
        fs::File::create(dir.path().join("influxd.log"))?;
        let child = launch(binary, dir.path())?;
        let mut influxd = Influxd { child, dir, port, rpc_port, admin: None };
        influxd.wait_ready()?;
        Ok(influxd)
    }

    /// Polls `/ping` until it answers 204, influxd exits, or [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "influxd exited at start-up ({status}); log:\n{}",
                    self.log_tail()
                )));
            }
            if let Ok((204, _)) = self.http("GET", "/ping", None, b"") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "influxd did not answer /ping within {READY_TIMEOUT:?}; log:\n{}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel, never answered.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> io::Result<()> {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other(format!("kill -{name}: {status}"))) }
    }

    /// Kills the server (SIGKILL), keeping its data, port and configuration.
    pub fn kill(&mut self) -> io::Result<()> {
        let _ = self.child.kill();
        self.child.wait().map(|_| ())
    }

    /// Starts a killed server again, on the same port with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        let binary = find_on_path("influxd")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "influxd not found"))?;
        self.child = launch(&binary, self.dir.path())?;
        self.wait_ready()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (for measuring its CPU and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding its data, WAL, configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The RPC (backup/restore) service's loopback port.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// Runs InfluxQL `q` against `db` (may be empty) as the admin user, if any; fails on an HTTP
    /// error or a statement error, with InfluxDB's message.
    pub fn query(&self, db: &str, q: &str) -> io::Result<serde_json::Value> {
        let admin = self.admin.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        self.query_as(admin, db, q)
    }

    fn query_as(
        &self,
        credentials: Option<(&str, &str)>,
        db: &str,
        q: &str,
    ) -> io::Result<serde_json::Value> {
        // Everything in the URL and an empty body: InfluxDB answers a refused request without
        // reading its body, and unread bytes would make the close a reset that loses the answer.
        let params = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("db", db)
            .append_pair("q", q)
            .finish();
        let auth = credentials.map(|(user, password)| basic_auth(user, password));
        let (status, text) = self.http("POST", &format!("/query?{params}"), auth.as_deref(), b"")?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            io::Error::other(format!("query {q:?}: answer {status} is not JSON ({e}): {text}"))
        })?;
        let statement_error =
            json["results"].as_array().and_then(|results| results.iter().find_map(|r| r["error"].as_str()));
        if status != 200 || json.get("error").is_some() || statement_error.is_some() {
            return Err(io::Error::other(format!("query {q:?}: {status} {text}")));
        }
        Ok(json)
    }

    /// Writes line protocol into `db` as it is, as the admin user, if any: (status, body).
    pub fn write(&self, db: &str, lines: &[u8]) -> io::Result<(u16, String)> {
        let auth = self.admin.as_ref().map(|(user, password)| basic_auth(user, password));
        let db = url::form_urlencoded::Serializer::new(String::new()).append_pair("db", db).finish();
        self.http("POST", &format!("/write?{db}"), auth.as_deref(), lines)
    }

    /// The server's log so far (for failing tests).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// One HTTP/1.0 exchange: (status, body).
    fn http(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> io::Result<(u16, String)> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n", self.port);
        if let Some(authorization) = authorization {
            request.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(request.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {head:?}")))?;
        Ok((status, body.to_string()))
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// InfluxDB 1.6's configuration: everything on loopback and inside `dir`, nothing phoning home,
/// no internal monitoring database.
fn config_text(dir: &Path, port: u16, rpc_port: u16, auth: bool, sizing: Sizing) -> String {
    let d = |sub: &str| dir.join(sub).display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{meta}"

[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false
{data_tuning}
[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = true

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"#,
        meta = d("meta"),
        data = d("data"),
        wal = d("wal"),
        data_tuning = sizing.data_section(),
    )
}

/// Runs influxd with the configuration in `dir`, appending to its log.
fn launch(binary: &Path, dir: &Path) -> io::Result<Child> {
    let log = fs::OpenOptions::new().append(true).create(true).open(dir.join("influxd.log"))?;
    Command::new(binary)
        .arg("run")
        .arg("-config")
        .arg(dir.join("influxdb.conf"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// A port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// An HTTP Basic `Authorization` value.
fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An InfluxQL identifier in double quotes.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal in single quotes.
fn string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A directory removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> io::Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                // Left behind by an earlier process with the same pid: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_loopback_and_answers_queries() {
        let influxd = Influxd::start().unwrap();
        assert!(influxd.url().starts_with("http://127.0.0.1:"));
        influxd.query("", "CREATE DATABASE \"t\"").unwrap();
        let dbs = influxd.query("", "SHOW DATABASES").unwrap();
        let names = dbs["results"][0]["series"][0]["values"].to_string();
        assert!(names.contains("\"t\""), "{names}");
        let err = influxd.query("t", "SELECT nonsense FROM").unwrap_err();
        assert!(err.to_string().contains("error"), "{err}");
        // The RPC service listens on the loopback port it was given, not on 8088.
        TcpStream::connect((Ipv4Addr::LOCALHOST, influxd.rpc_port)).unwrap();
    }

    #[test]
    fn auth_variant_requires_the_admin() {
        let influxd = Influxd::start_with_auth("admin", "s3cret").unwrap();
        influxd.query("", "SHOW DATABASES").unwrap();
        let err = influxd.query_as(Some(("admin", "wrong")), "", "SHOW DATABASES").unwrap_err();
        assert!(err.to_string().contains("authorization failed"), "{err}");
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(basic_auth("me", "s3cret"), "Basic bWU6czNjcmV0");
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
        assert_eq!(basic_auth("ab", ""), "Basic YWI6");
    }

    #[test]
    fn large_cluster_sizing_lifts_the_series_limit_on_tsi1() {
        let influxd = Influxd::start_sized(Sizing::LargeCluster).unwrap();
        let config = fs::read_to_string(influxd.dir().join("influxdb.conf")).unwrap();
        assert!(config.contains("index-version = \"tsi1\""), "{config}");
        assert!(config.contains("max-series-per-database = 0"), "{config}");
        // influxd took the configuration: it answers, and its index is the one asked for.
        influxd.query("", "CREATE DATABASE \"t\"").unwrap();
        let (status, _) = influxd
            .http("POST", "/write?db=t", None, b"m,host=a value=1 1000000000\nm,host=b value=2 1000000000\n")
            .unwrap();
        assert_eq!(status, 204);
        let series = influxd.query("t", "SHOW SERIES").unwrap();
        assert_eq!(series["results"][0]["series"][0]["values"].as_array().map(Vec::len), Some(2), "{series}");
        assert!(influxd.dir().join("data/t").exists());
        // The tests' sizing keeps InfluxDB's defaults.
        let tests = config_text(Path::new("/x"), 1, 2, false, Sizing::Tests);
        assert!(tests.contains("index-version = \"inmem\""), "{tests}");
        assert!(!tests.contains("max-series-per-database"), "{tests}");
    }

    #[test]
    fn removes_its_directory_on_drop() {
        let influxd = Influxd::start().unwrap();
        let dir = influxd.dir.path().to_path_buf();
        assert!(dir.join("meta").exists());
        drop(influxd);
        assert!(!dir.exists());
    }
}
