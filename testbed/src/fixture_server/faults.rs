//! Fault files: how the recorded cluster misbehaves in a window (formats in the module doc of
//! [`super`]). All are read and checked when the server starts, so a typo fails the start
//! rather than a test half-way through.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FixtureError;
use heapster::scenario::Scenario;

/// `windows/NNNN/api/faults.json`; `heapster-testbed synth` writes it with the defaults left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFaults {
    /// On entering the window: every open watch gets a 410 `Expired` and the event log is
    /// compacted, so the client must list again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub watch_gone: bool,
    /// On entering the window: open watch connections are cut without a final chunk.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop_watches: bool,
    /// While the window is current, lists and gets answer a `Status` with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_error: Option<u16>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// `windows/NNNN/kubelet/<node>.fault.json`. Applied in this order: delay, status, garbage,
/// truncate; `endless` and `declared_length` replace a 200 answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletFault {
    /// Answer after this many milliseconds.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer this status instead of 200, with `body` (or the status' reason phrase) as text.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: Option<String>,
    /// Send only the first N bytes of the body, declaring its full length, then close.
    #[serde(default)]
    pub truncate: Option<usize>,
    /// Answer 200 with bytes that are not JSON.
    #[serde(default)]
    pub garbage: bool,
    /// Answer 200 with the summary followed by whitespace without end (chunked).
    #[serde(default)]
    pub endless: bool,
    /// Answer 200 declaring this `Content-Length`: the summary, then whitespace up to it.
    #[serde(default)]
    pub declared_length: Option<u64>,
}

/// Every fault file of a scenario.
#[derive(Debug, Default)]
pub struct Faults {
    /// Indexed by window.
    pub api: Vec<ApiFaults>,
    /// By (window, node).
    pub kubelet: HashMap<(usize, String), KubeletFault>,
}

impl Faults {
    pub fn load(scenario: &Scenario) -> Result<Faults, FixtureError> {
        let mut faults = Faults::default();
        for window in &scenario.windows {
            let api_file = scenario.api_faults_path(window.index);
            let api = match read_optional(&api_file)? {
                Some(bytes) => parse_api(&api_file, &bytes)?,
                None => ApiFaults::default(),
            };
            faults.api.push(api);
            for (node, file) in kubelet_fault_files(&window.dir.join("kubelet"))? {
                let bytes = fs::read(&file).map_err(|e| bad(&file, e.to_string()))?;
                faults.kubelet.insert((window.index, node), parse_kubelet(&file, &bytes)?);
            }
        }
        Ok(faults)
    }

    pub fn api(&self, window: usize) -> ApiFaults {
        self.api.get(window).cloned().unwrap_or_default()
    }

    pub fn kubelet(&self, window: usize, node: &str) -> Option<&KubeletFault> {
        self.kubelet.get(&(window, node.to_string()))
    }
}

fn bad(file: &Path, what: String) -> FixtureError {
    FixtureError::BadFile { file: file.to_path_buf(), what }
}

fn read_optional(file: &Path) -> Result<Option<Vec<u8>>, FixtureError> {
    match fs::read(file) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(file, e.to_string())),
    }
}

fn parse_api(file: &Path, bytes: &[u8]) -> Result<ApiFaults, FixtureError> {
    let faults: ApiFaults = serde_json::from_slice(bytes).map_err(|e| bad(file, e.to_string()))?;
    if let Some(code) = faults.list_error.filter(|c| !(400..=599).contains(c)) {
        return Err(bad(file, format!("list_error {code}: expected an HTTP error status (400-599)")));
    }
    Ok(faults)
}

fn parse_kubelet(file: &Path, bytes: &[u8]) -> Result<KubeletFault, FixtureError> {
    let fault: KubeletFault = serde_json::from_slice(bytes).map_err(|e| bad(file, e.to_string()))?;
    if let Some(code) = fault.status.filter(|c| !(100..=599).contains(c)) {
        return Err(bad(file, format!("status {code}: expected an HTTP status (100-599)")));
    }
    if fault.body.is_some() && fault.status.is_none() {
        return Err(bad(file, "body is only used with status".into()));
    }
    let oversized = fault.endless || fault.declared_length.is_some();
    if fault.endless && fault.declared_length.is_some() {
        return Err(bad(file, "endless and declared_length exclude each other".into()));
    }
    if oversized && (fault.garbage || fault.truncate.is_some()) {
        return Err(bad(file, "endless and declared_length go without garbage and truncate".into()));
    }
    Ok(fault)
}

/// `(node, path)` of every `<node>.fault.json` in a window's kubelet directory.
fn kubelet_fault_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, FixtureError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(dir, e.to_string())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(dir, e.to_string()))?;
        let name = entry.file_name();
        if let Some(node) = name.to_str().and_then(|n| n.strip_suffix(".fault.json")) {
            files.push((node.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_fault_files() {
        let p = Path::new("f.json");
        let api = parse_api(p, br#"{"watch_gone": true, "list_error": 503}"#).unwrap();
        assert_eq!(api, ApiFaults { watch_gone: true, drop_watches: false, list_error: Some(503) });
        let err = parse_api(p, br#"{"list_error": 200}"#).unwrap_err().to_string();
        assert!(err.contains("list_error 200"), "{err}");
        let err = parse_api(p, br#"{"watch_gonne": true}"#).unwrap_err().to_string();
        assert!(err.contains("watch_gonne"), "{err}");

        let k = parse_kubelet(p, br#"{"delay_ms": 10, "truncate": 5, "garbage": true}"#).unwrap();
        assert_eq!(k.delay_ms, Some(10));
        assert_eq!(k.truncate, Some(5));
        assert!(k.garbage);
        assert!(parse_kubelet(p, br#"{"status": 700}"#).unwrap_err().to_string().contains("status 700"));
        assert!(
            parse_kubelet(p, br#"{"body": "x"}"#).unwrap_err().to_string().contains("only used with status")
        );
        let k = parse_kubelet(p, br#"{"endless": true}"#).unwrap();
        assert!(k.endless && k.declared_length.is_none());
        let k = parse_kubelet(p, br#"{"declared_length": 100000000000}"#).unwrap();
        assert_eq!(k.declared_length, Some(100_000_000_000));
        let err = parse_kubelet(p, br#"{"endless": true, "declared_length": 5}"#).unwrap_err().to_string();
        assert!(err.contains("exclude each other"), "{err}");
        let err = parse_kubelet(p, br#"{"endless": true, "garbage": true}"#).unwrap_err().to_string();
        assert!(err.contains("without garbage"), "{err}");
    }
}
