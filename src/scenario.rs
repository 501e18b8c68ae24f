//! The scenario directory: what a cluster said, window by window (DESIGN §8).
//!
//! ```text
//! scenario.json                  {"description", "resolution_seconds", "windows": [RFC 3339 window ends]}
//! windows/0000/api/nodes.json    NodeList as GET /api/v1/nodes answers (optional after window 0:
//! windows/0000/api/pods.json     PodList   a window without a file inherits the previous one)
//! windows/0000/api/namespaces.json  NamespaceList
//! windows/0000/api/events.json   EventList as GET /api/v1/events answers (all namespaces; optional)
//! windows/0000/api/faults.json   optional: how the apiserver misbehaves on entering the window
//! windows/0000/kubelet/<node>.json  GET /stats/summary body of that node in that window
//! windows/0000/kubelet/<node>.fault.json  optional: how the kubelet misbehaves (fixture server)
//! expected/                      golden sink output
//! ```
//!
//! A cAdvisor scenario (the `cadvisor:` sources) has no API lists; window 0 has a host list
//! instead, and each window one body per host:
//!
//! ```text
//! windows/0000/cadvisor/hosts.json           Heapster's hosts file {"Items": [{"Name", "IP",
//!                                            "ID", "Labels"}]}; optional after window 0 (inherited)
//! windows/0000/cadvisor/<host>.json          POST /api/v1.3/subcontainers/ body of that host
//! windows/0000/cadvisor/<host>.machine.json  GET /api/v1.3/machine body (optional; inherited)
//! windows/0000/cadvisor/<host>.fault.json    optional: how that cAdvisor misbehaves (fixture
//!                                            server; the kubelet fault format)
//! ```
//!
//! The same files drive `replay:` and the fixture server, so a scenario runs both in memory and
//! over real HTTP (the fixture server, in the test bed). `heapster record` and the test bed's
//! `synth` write them with [`ScenarioWriter`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use heapster_dataflows::Time;
use serde::{Deserialize, Serialize};

/// The API lists a window can hold.
///
/// `events.json` holds core v1 Events as the apiserver lists them at the window's end: an event
/// that repeats keeps its name and uid with `count` bumped, `lastTimestamp` moved and a new
/// `metadata.resourceVersion`; an event past its TTL is gone from the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiList {
    Nodes,
    Pods,
    Namespaces,
    Events,
}

impl ApiList {
    /// The object lists the metadata watches follow: every list but events, which have their
    /// own source.
    pub const ALL: [ApiList; 3] = [ApiList::Nodes, ApiList::Pods, ApiList::Namespaces];
    /// Every list a scenario can hold.
    pub const WITH_EVENTS: [ApiList; 4] =
        [ApiList::Nodes, ApiList::Pods, ApiList::Namespaces, ApiList::Events];

    pub fn file_name(self) -> &'static str {
        match self {
            ApiList::Nodes => "nodes.json",
            ApiList::Pods => "pods.json",
            ApiList::Namespaces => "namespaces.json",
            ApiList::Events => "events.json",
        }
    }
}

/// `windows/NNNN/api/faults.json`: what the apiserver does wrong on entering a window (format in
/// the test bed's `heapster_testbed::fixture_server`).
pub const API_FAULTS_FILE: &str = "faults.json";

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error("scenario {file}: {source}")]
    Json { file: PathBuf, source: serde_json::Error },
    #[error("scenario {dir}: {what}")]
    Invalid { dir: PathBuf, what: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(default)]
    description: String,
    resolution_seconds: u64,
    windows: Vec<String>,
}

/// One recorded window.
#[derive(Clone, Debug)]
pub struct WindowSpec {
    pub index: usize,
    /// Window end, ms since the epoch.
    pub time: Time,
    pub dir: PathBuf,
}

/// An opened scenario directory.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub dir: PathBuf,
    pub description: String,
    pub resolution_ms: u64,
    pub windows: Vec<WindowSpec>,
}

impl Scenario {
    pub fn open(dir: &Path) -> Result<Scenario, ScenarioError> {
        let file = dir.join("scenario.json");
        let bytes = fs::read(&file).map_err(|source| ScenarioError::Io { dir: dir.to_path_buf(), source })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|source| ScenarioError::Json { file: file.clone(), source })?;
        let invalid = |what: String| ScenarioError::Invalid { dir: dir.to_path_buf(), what };
        if manifest.resolution_seconds == 0 {
            return Err(invalid("resolution_seconds must be positive".into()));
        }
        let mut windows = Vec::with_capacity(manifest.windows.len());
        let mut last: Option<Time> = None;
        for (index, text) in manifest.windows.iter().enumerate() {
            let ts: jiff::Timestamp =
                text.parse().map_err(|e| invalid(format!("window {index} time {text:?}: {e}")))?;
            let ms = ts.as_millisecond();
            if ms < 0 {
                return Err(invalid(format!("window {index} time {text:?} is before 1970")));
            }
            let time = ms as Time;
            if last.is_some_and(|l| time <= l) {
                return Err(invalid(format!(
                    "window {index} time {text:?} does not follow the previous window"
                )));
            }
            last = Some(time);
            windows.push(WindowSpec { index, time, dir: window_dir(dir, index) });
        }
        if windows.is_empty() {
            return Err(invalid("no windows".into()));
        }
        if !windows[0].dir.join("api").join(ApiList::Nodes.file_name()).is_file()
            && !windows[0].dir.join(CADVISOR_DIR).join(CADVISOR_HOSTS_FILE).is_file()
        {
            return Err(invalid("window 0 has no api/nodes.json (nor cadvisor/hosts.json)".into()));
        }
        Ok(Scenario {
            dir: dir.to_path_buf(),
            description: manifest.description,
            resolution_ms: manifest.resolution_seconds * 1000,
            windows,
        })
    }

    /// The list in force in `window`: its own file, or the latest earlier one.
    pub fn api_file(&self, window: usize, list: ApiList) -> Option<PathBuf> {
        (0..=window.min(self.windows.len().saturating_sub(1)))
            .rev()
            .map(|w| self.windows[w].dir.join("api").join(list.file_name()))
            .find(|p| p.is_file())
    }

    /// Whether `window` has its own copy of `list` (a change since the previous window).
    pub fn api_changed(&self, window: usize, list: ApiList) -> bool {
        self.windows.get(window).is_some_and(|w| w.dir.join("api").join(list.file_name()).is_file())
    }

    /// Where `window`'s apiserver faults are, if it has any.
    pub fn api_faults_path(&self, window: usize) -> PathBuf {
        self.windows[window].dir.join("api").join(API_FAULTS_FILE)
    }

    pub fn summary_path(&self, window: usize, node: &str) -> PathBuf {
        self.windows[window].dir.join("kubelet").join(format!("{node}.json"))
    }

    pub fn fault_path(&self, window: usize, node: &str) -> PathBuf {
        self.windows[window].dir.join("kubelet").join(format!("{node}.fault.json"))
    }

    pub fn expected_dir(&self) -> PathBuf {
        self.dir.join("expected")
    }

    /// Whether this is a cAdvisor scenario (window 0 lists hosts rather than API objects).
    pub fn is_cadvisor(&self) -> bool {
        self.windows[0].dir.join(CADVISOR_DIR).join(CADVISOR_HOSTS_FILE).is_file()
    }

    /// The cAdvisor host list in force in `window`: its own, or the latest earlier one.
    pub fn cadvisor_hosts_file(&self, window: usize) -> Option<PathBuf> {
        (0..=window.min(self.windows.len().saturating_sub(1)))
            .rev()
            .map(|w| self.windows[w].dir.join(CADVISOR_DIR).join(CADVISOR_HOSTS_FILE))
            .find(|p| p.is_file())
    }

    /// `window`'s subcontainers body of `host`.
    pub fn cadvisor_path(&self, window: usize, host: &str) -> PathBuf {
        self.windows[window].dir.join(CADVISOR_DIR).join(format!("{host}.json"))
    }

    /// The machine body of `host` in force in `window`.
    pub fn cadvisor_machine_path(&self, window: usize, host: &str) -> Option<PathBuf> {
        (0..=window.min(self.windows.len().saturating_sub(1)))
            .rev()
            .map(|w| self.windows[w].dir.join(CADVISOR_DIR).join(format!("{host}.machine.json")))
            .find(|p| p.is_file())
    }

    pub fn cadvisor_fault_path(&self, window: usize, host: &str) -> PathBuf {
        self.windows[window].dir.join(CADVISOR_DIR).join(format!("{host}.fault.json"))
    }
}

/// A window's cAdvisor folder and its host list.
pub const CADVISOR_DIR: &str = "cadvisor";
pub const CADVISOR_HOSTS_FILE: &str = "hosts.json";

fn window_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join("windows").join(format!("{index:04}"))
}

/// Writes a scenario directory window by window; `finish` writes the manifest last, so a
/// half-written scenario never opens.
pub struct ScenarioWriter {
    dir: PathBuf,
    description: String,
    resolution_seconds: u64,
    windows: Vec<String>,
}

impl ScenarioWriter {
    pub fn create(dir: &Path, description: &str, resolution_seconds: u64) -> io::Result<ScenarioWriter> {
        fs::create_dir_all(dir.join("windows"))?;
        Ok(ScenarioWriter {
            dir: dir.to_path_buf(),
            description: description.to_string(),
            resolution_seconds,
            windows: Vec::new(),
        })
    }

    /// Starts the next window, ending at `time` (ms since the epoch).
    pub fn window(&mut self, time: Time) -> io::Result<WindowWriter> {
        let index = self.windows.len();
        let ts = jiff::Timestamp::from_millisecond(time as i64)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.windows.push(ts.to_string());
        let dir = window_dir(&self.dir, index);
        fs::create_dir_all(dir.join("api"))?;
        fs::create_dir_all(dir.join("kubelet"))?;
        Ok(WindowWriter { dir })
    }

    pub fn finish(self) -> io::Result<PathBuf> {
        let manifest = Manifest {
            description: self.description,
            resolution_seconds: self.resolution_seconds,
            windows: self.windows,
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        bytes.push(b'\n');
        fs::write(self.dir.join("scenario.json"), bytes)?;
        Ok(self.dir)
    }
}

pub struct WindowWriter {
    dir: PathBuf,
}

impl WindowWriter {
    pub fn api(&self, list: ApiList, body: &[u8]) -> io::Result<()> {
        fs::write(self.dir.join("api").join(list.file_name()), body)
    }

    pub fn api_faults(&self, body: &[u8]) -> io::Result<()> {
        fs::write(self.dir.join("api").join(API_FAULTS_FILE), body)
    }

    pub fn summary(&self, node: &str, body: &[u8]) -> io::Result<()> {
        fs::write(self.dir.join("kubelet").join(format!("{node}.json")), body)
    }

    pub fn fault(&self, node: &str, body: &[u8]) -> io::Result<()> {
        fs::write(self.dir.join("kubelet").join(format!("{node}.fault.json")), body)
    }

    fn cadvisor_file(&self, name: &str, body: &[u8]) -> io::Result<()> {
        let dir = self.dir.join(CADVISOR_DIR);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), body)
    }

    pub fn cadvisor_hosts(&self, body: &[u8]) -> io::Result<()> {
        self.cadvisor_file(CADVISOR_HOSTS_FILE, body)
    }

    pub fn cadvisor(&self, host: &str, body: &[u8]) -> io::Result<()> {
        self.cadvisor_file(&format!("{host}.json"), body)
    }

    pub fn cadvisor_machine(&self, host: &str, body: &[u8]) -> io::Result<()> {
        self.cadvisor_file(&format!("{host}.machine.json"), body)
    }

    pub fn cadvisor_fault(&self, host: &str, body: &[u8]) -> io::Result<()> {
        self.cadvisor_file(&format!("{host}.fault.json"), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_with_inherited_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ScenarioWriter::create(tmp.path(), "t", 60).unwrap();
        let w0 = w.window(1_700_000_040_000).unwrap();
        w0.api(ApiList::Nodes, b"{\"items\":[]}").unwrap();
        w0.summary("n1", b"{}").unwrap();
        let w1 = w.window(1_700_000_100_000).unwrap();
        w1.api(ApiList::Pods, b"{\"items\":[]}").unwrap();
        w.finish().unwrap();

        let s = Scenario::open(tmp.path()).unwrap();
        assert_eq!(s.resolution_ms, 60_000);
        assert_eq!(s.windows.len(), 2);
        assert_eq!(s.windows[1].time, 1_700_000_100_000);
        assert_eq!(s.api_file(1, ApiList::Nodes), Some(s.windows[0].dir.join("api/nodes.json")));
        assert_eq!(s.api_file(0, ApiList::Pods), None);
        assert!(s.api_changed(1, ApiList::Pods));
        assert!(!s.api_changed(1, ApiList::Nodes));
        assert!(s.summary_path(0, "n1").is_file());
    }

    #[test]
    fn rejects_bad_manifests() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(Scenario::open(tmp.path()), Err(ScenarioError::Io { .. })));
        fs::write(tmp.path().join("scenario.json"), b"{\"resolution_seconds\": 60, \"windows\": [\"x\"]}")
            .unwrap();
        let err = Scenario::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("window 0 time \"x\""), "{err}");
        fs::write(tmp.path().join("scenario.json"), b"{\"resolution_seconds\": 60, \"windows\": [").unwrap();
        assert!(matches!(Scenario::open(tmp.path()), Err(ScenarioError::Json { .. })));
    }
}
