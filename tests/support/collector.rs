//! A collector process under test: output in files under the test's directory, its API on a
//! free loopback port (tests run in parallel; none may take 8082), stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::{FixtureConfig, FixtureServer};

use super::lines::{strip_ansi, windows_of};
use super::terminate;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// `args` plus `--heapster-port=0 --listen_ip=127.0.0.1` when they start a collector (not a
/// subcommand, `--help` or `--version`) that does not choose its port itself.
pub fn api_flags<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let subcommand = all.first().is_some_and(|a| !a.starts_with('-'));
    let informational = all.iter().any(|a| ["-h", "--help", "-V", "--version"].contains(&a.as_str()));
    let chosen = all.iter().any(|a| a.starts_with("--heapster-port") || a.starts_with("--listen_ip"));
    if !(subcommand || informational || chosen) {
        all.extend(["--heapster-port=0".to_string(), "--listen_ip=127.0.0.1".to_string()]);
    }
    all
}

/// `--source=kubernetes:...` for the fixture server: its kubeconfig, its kubelets over HTTPS,
/// and `options` (`&events=false`, say) appended to the URI.
pub fn kubernetes_source(server: &FixtureServer, options: &str) -> String {
    format!(
        "--source=kubernetes:{}?inClusterConfig=false&auth={}&kubeletHttps=true&kubeletPort={}{options}",
        server.api_url(),
        server.kubeconfig().display(),
        server.kubelet_https_port()
    )
}

/// `--source=kubernetes.events:...` for the fixture server: its events only.
pub fn events_source(server: &FixtureServer) -> String {
    format!(
        "--source=kubernetes.events:{}?inClusterConfig=false&auth={}",
        server.api_url(),
        server.kubeconfig().display()
    )
}

/// The fixture server for `scenario`, asking for the token `fixture-token`, with `edit` applied
/// to its configuration; its TLS files under `dir/tls`.
pub async fn serve(scenario: &Path, dir: &Path, edit: impl FnOnce(&mut FixtureConfig)) -> FixtureServer {
    let mut config = FixtureConfig::new(scenario, dir.join("tls"));
    config.token = Some("fixture-token".into());
    edit(&mut config);
    FixtureServer::start(config).await.expect("fixture server")
}

/// A running `heapster`; killed when dropped.
pub struct Collector {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Collector {
    /// Starts `heapster args...` (see [`api_flags`]) with stdout in `dir/name.out` and stderr in
    /// `dir/name.log`.
    pub fn start<S: AsRef<str>>(dir: &Path, name: &str, args: &[S]) -> Collector {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_heapster"))
            .args(api_flags(args))
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("heapster");
        Collector { child, stdout, stderr }
    }

    /// What it logged so far, colour codes removed.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// What it printed on stdout so far.
    pub fn out(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for it to exit by itself (a replay ending, say).
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait")
    }

    /// Panics with the log if it has exited.
    pub fn assert_running(&mut self, waiting_for: &str) {
        if let Some(status) = self.try_wait() {
            panic!("heapster exited with {status} while waiting for {waiting_for}: {}", self.log());
        }
    }

    /// Polls `check` until it gives a value; panics, with the log, if heapster exits first or
    /// `patience` runs out.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        patience: Duration,
        mut check: impl FnMut(&Collector) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(value) = self.poll(what, deadline, &mut check) {
                return value;
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Collector::wait_for`] for async tests whose servers run on the test's own runtime.
    pub async fn wait_for_async<T>(
        &mut self,
        what: &str,
        patience: Duration,
        mut check: impl FnMut(&Collector) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(value) = self.poll(what, deadline, &mut check) {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look of a wait: `check`'s value, or none yet; panics if heapster has exited or the
    /// deadline has passed.
    fn poll<T>(
        &mut self,
        what: &str,
        deadline: Instant,
        check: impl FnOnce(&Collector) -> Option<T>,
    ) -> Option<T> {
        if let Some(value) = check(self) {
            return Some(value);
        }
        self.assert_running(what);
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {}", self.log());
        None
    }

    /// Waits until the file sink writing `file` holds at least `windows` windows.
    pub fn wait_windows(&mut self, file: &Path, windows: usize, patience: Duration) {
        self.wait_for(&format!("{windows} windows in {}", file.display()), patience, |_| {
            (windows_of(file).len() >= windows).then_some(())
        })
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&mut self, needle: &str, patience: Duration) {
        self.wait_for(&format!("{needle:?} in the log"), patience, |c| c.log().contains(needle).then_some(()))
    }

    /// Stops it with SIGTERM, as an operator would; checks it exited cleanly and returns its log.
    pub fn stop(self) -> String {
        self.stop_within(Duration::from_secs(20))
    }

    /// [`Collector::stop`], allowing it `grace` to finish (a sink draining a backlog, say).
    pub fn stop_within(mut self, grace: Duration) -> String {
        let status = terminate(&mut self.child, grace);
        let log = self.log();
        assert!(status.success(), "heapster after SIGTERM: {status}: {log}");
        log
    }

    /// Stops it with SIGTERM (if it still runs); how it exited, and its log.
    pub fn stop_with_status(mut self) -> (ExitStatus, String) {
        let status = terminate(&mut self.child, Duration::from_secs(20));
        (status, self.log())
    }

    /// Starts `heapster args...`, waits until the file sink writing `out` holds `windows`
    /// windows, then stops it with SIGTERM; its log.
    pub fn run_until_windows<S: AsRef<str>>(
        dir: &Path,
        name: &str,
        args: &[S],
        out: &Path,
        windows: usize,
        patience: Duration,
    ) -> String {
        let mut collector = Collector::start(dir, name, args);
        collector.wait_windows(out, windows, patience);
        collector.stop()
    }

    /// Sends SIGTERM and returns at once (to stop several together); see [`Collector::stop`].
    pub fn sigterm(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// SIGKILL, as a crash would; waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}
