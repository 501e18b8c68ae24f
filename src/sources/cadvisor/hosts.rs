//! Heapster's hosts file (`{"Items": [{"Name": ..., "IP": ...}]}`) and its watcher.
//!
//! The file is re-read when the file system says it changed (inotify through `notify`), not
//! every window. The directory is watched rather than the file, so that a file replaced by a
//! rename (what editors and config managers do) is seen too. A file that does not parse keeps
//! the last good list and is logged with its line and column; an empty file means no hosts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use notify::{RecursiveMode, Watcher as _};

use super::{Host, HostList};

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hosts file {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("hosts file {file}: line {line}, column {column}: {message}")]
    Malformed { file: PathBuf, line: usize, column: usize, message: String },
    #[error("hosts file {file}: cannot watch {dir}: {source}")]
    Watch { file: PathBuf, dir: PathBuf, source: notify::Error },
}

/// Parses a hosts file's bytes; whitespace only is an empty list.
pub fn parse_hosts(file: &Path, bytes: &[u8]) -> Result<Vec<Host>, HostsError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let list: HostList = serde_json::from_slice(bytes).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        HostsError::Malformed { file: file.to_path_buf(), line, column, message }
    })?;
    Ok(list.normalized().items)
}

/// Reads and parses the file.
pub fn read_hosts(file: &Path) -> Result<Vec<Host>, HostsError> {
    let bytes =
        std::fs::read(file).map_err(|source| HostsError::Read { file: file.to_path_buf(), source })?;
    parse_hosts(file, &bytes)
}

/// How long the file must be quiet before it is read.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The hosts in force, kept current by a file watcher.
pub struct HostsWatcher {
    current: Arc<Mutex<Current>>,
    // Dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
}

#[derive(Default)]
struct Current {
    hosts: Vec<Host>,
    /// Successful reads so far (tests and logs).
    reads: u64,
    /// The last error, to log each distinct one once.
    error: Option<String>,
}

impl Current {
    fn reload(&mut self, file: &Path) {
        match read_hosts(file) {
            Ok(hosts) => {
                if hosts != self.hosts || self.error.is_some() {
                    tracing::info!(file = %file.display(), hosts = hosts.len(), "hosts file read");
                }
                self.hosts = hosts;
                self.reads += 1;
                self.error = None;
            }
            Err(e) => {
                let message = e.to_string();
                if self.error.as_deref() != Some(&message) {
                    tracing::error!(hosts = self.hosts.len(), "{message}; keeping the last good host list");
                    self.error = Some(message);
                }
            }
        }
    }
}

impl HostsWatcher {
    /// Reads the file now and watches its directory for changes to it.
    pub fn start(file: &Path) -> Result<HostsWatcher, HostsError> {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let current = Arc::new(Mutex::new(Current::default()));
        let watch_error =
            |source: notify::Error| HostsError::Watch { file: file.clone(), dir: dir.clone(), source };
        let (changed, changes) = std::sync::mpsc::channel::<()>();
        let mut watcher = {
            let file = file.clone();
            let name = file.file_name().map(ToOwned::to_owned);
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let ours = event.paths.iter().any(|p| p.file_name().map(ToOwned::to_owned) == name);
                    if ours && !event.kind.is_access() {
                        let _ = changed.send(());
                    }
                }
                Err(e) => tracing::warn!(file = %file.display(), "hosts file watch: {e}"),
            })
            .map_err(watch_error)?
        };
        {
            // Reads once the file has been quiet for a moment: a write in place truncates first,
            // and the empty file in between is not the new list. Ends with the watcher.
            let current = Arc::clone(&current);
            let file = file.clone();
            std::thread::Builder::new()
                .name("hosts-file".into())
                .spawn(move || {
                    while changes.recv().is_ok() {
                        while changes.recv_timeout(SETTLE).is_ok() {}
                        current.lock().unwrap_or_else(PoisonError::into_inner).reload(&file);
                    }
                })
                .map_err(|e| watch_error(notify::Error::io(e)))?;
        }
        watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(watch_error)?;
        current.lock().unwrap_or_else(PoisonError::into_inner).reload(&file);
        Ok(HostsWatcher { current, _watcher: watcher })
    }

    /// The hosts as of the last good read.
    pub fn hosts(&self) -> Vec<Host> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).hosts.clone()
    }

    /// Why the last read failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).error.clone()
    }

    /// Good reads so far.
    pub fn reads(&self) -> u64 {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).reads
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn host(name: &str, ip: &str) -> Host {
        Host { name: name.into(), ip: ip.into(), ..Host::default() }
    }

    #[test]
    fn parses_heapsters_format() {
        let f = Path::new("/h");
        let hosts = parse_hosts(
            f,
            br#"{"Items": [{"Name": "server-105", "IP": "192.168.99.105"}, {"Name": "a", "IP": "10.0.0.1"}]}"#,
        )
        .unwrap();
        assert_eq!(hosts, vec![host("a", "10.0.0.1"), host("server-105", "192.168.99.105")]);
        assert!(parse_hosts(f, b"  \n").unwrap().is_empty());
        assert!(parse_hosts(f, b"{}").unwrap().is_empty());
    }

    #[test]
    fn malformed_files_name_line_and_column() {
        let err = parse_hosts(Path::new("/etc/h"), b"{\"Items\": [\n  {\"Name\": \"a\", \"IP\": 5}\n]}")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("hosts file /etc/h: line 2, column"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn follows_edits_and_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, br#"{"Items": [{"Name": "a", "IP": "127.0.0.2"}]}"#).unwrap();
        let watcher = HostsWatcher::start(&file).unwrap();
        assert_eq!(watcher.hosts(), vec![host("a", "127.0.0.2")]);

        std::fs::write(
            &file,
            br#"{"Items": [{"Name": "a", "IP": "127.0.0.2"}, {"Name": "b", "IP": "127.0.0.3"}]}"#,
        )
        .unwrap();
        wait_for("host b", || watcher.hosts().len() == 2);

        let reads = watcher.reads();
        std::fs::write(&file, b"{\"Items\": [").unwrap();
        wait_for("the error", || watcher.error().is_some());
        let error = watcher.error().unwrap_or_default();
        assert!(error.contains("line 1, column 11"), "{error}");
        assert_eq!(watcher.hosts().len(), 2, "a malformed file keeps the old list");
        assert_eq!(watcher.reads(), reads);

        // Replaced by a rename, as editors do.
        let tmp = dir.path().join(".hosts.tmp");
        std::fs::write(&tmp, br#"{"Items": [{"Name": "b", "IP": "127.0.0.3"}]}"#).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        wait_for("only host b", || watcher.hosts() == vec![host("b", "127.0.0.3")]);

        std::fs::write(&file, b"").unwrap();
        wait_for("no hosts", || watcher.hosts().is_empty());
    }
}
