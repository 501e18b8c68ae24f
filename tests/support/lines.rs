//! Reading what a collector wrote: line protocol from its file sink, counts from its log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{heapster, stderr};

/// One window's points without their timestamp, sorted.
pub type Window = Vec<String>;

/// The windows of a line-protocol file, in time order.
pub fn windows_of(path: &Path) -> Vec<Window> {
    windows_of_files(&[path])
}

/// The windows of several line-protocol files together (the processes of a cluster, say).
pub fn windows_of_files(files: &[&Path]) -> Vec<Window> {
    let text: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect();
    group_windows(text.iter().flat_map(|t| t.lines()).filter_map(|line| {
        let (point, time) = line.rsplit_once(' ')?;
        Some((time.to_string(), point.to_string()))
    }))
}

/// `(time, point)` pairs grouped into windows, in time order, each sorted.
pub fn group_windows(points: impl IntoIterator<Item = (String, String)>) -> Vec<Window> {
    let mut by_time: BTreeMap<String, Window> = BTreeMap::new();
    for (time, point) in points {
        by_time.entry(time).or_default().push(point);
    }
    by_time
        .into_values()
        .map(|mut w| {
            w.sort();
            w
        })
        .collect()
}

/// The distinct timestamps of a line-protocol file.
pub fn window_times(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(_, t)| t.to_string()))
        .collect()
}

/// Replays `scenario` into `dir/replay.lp`; its windows.
pub fn replay_windows(scenario: &Path, dir: &Path) -> Vec<Window> {
    let out = dir.join("replay.lp");
    let run = heapster(&[
        &format!("--source=replay:{}", scenario.display()),
        &format!("--sink=file:{}", out.display()),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    windows_of(&out)
}

/// The live run's first windows are the replay's, point for point; a panic names a few points
/// of the first window that differs.
pub fn assert_same_windows(live: &[Window], replayed: &[Window]) {
    assert!(live.len() >= replayed.len(), "{} live windows for {} recorded", live.len(), replayed.len());
    for (i, (l, r)) in live.iter().zip(replayed).enumerate() {
        if l != r {
            let only_live: Vec<_> = l.iter().filter(|p| !r.contains(p)).take(3).collect();
            let only_replay: Vec<_> = r.iter().filter(|p| !l.contains(p)).take(3).collect();
            panic!("window {i} differs: live only {only_live:#?}, replay only {only_replay:#?}");
        }
    }
}

/// `text` without ANSI colour sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number logged last as `field=N`.
pub fn logged_count(log: &str, field: &str) -> u64 {
    let log = strip_ansi(log);
    log.lines()
        .rev()
        .find_map(|l| l.split(&format!(" {field}=")).nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in the log:\n{log}"))
}
