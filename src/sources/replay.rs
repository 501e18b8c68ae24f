//! `replay:PATH`: a recorded scenario fed window by window, as the live source would.
//!
//! The same rules as a live cluster apply: each window's node list decides which nodes are
//! scraped (Ready ones only), and metadata changes take effect in the window that recorded them.
//! Deterministic: the same scenario gives the same windows, whatever the number of workers.
//! In cluster mode each process reads only the bodies of the nodes its workers own; the leader
//! alone feeds metadata and events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heapster_dataflows::Time;
use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::model::Interner;

use crate::bridge::{Feeds, WorkersGone};
use crate::cluster::Share;
use crate::config::{ConfigError, UriOptions};
use crate::scenario::{ApiList, Scenario, ScenarioError};
use crate::sources::health::Health;
use crate::sources::kubelet::SummaryScrape;
use crate::sources::kubernetes::events::parse_event_list;
use crate::sources::kubernetes::objects::{parse_namespace_list, parse_node_list, parse_pod_list};
use crate::sources::meta_state::{Kind, MetaState};
use crate::sources::{NodeTarget, ScrapeError};

/// How fast windows follow each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the graph takes them.
    Fast,
    /// At the recorded resolution.
    Real,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    pub path: PathBuf,
    pub pace: Pace,
    /// Label node sets `schedulable=true|false`, as the `kubernetes` source's option does.
    pub schedulable_label: bool,
}

impl ReplayConfig {
    /// `replay:PATH[?pace=fast|real&schedulableLabel=false|true]`.
    pub fn from_uri(uri: &str) -> Result<ReplayConfig, ConfigError> {
        let rest = uri.strip_prefix("replay:").unwrap_or(uri);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(ConfigError::new("--source", uri, "expected replay:PATH, a scenario directory"));
        }
        let mut opts = UriOptions::parse("--source", uri, query);
        let pace = match opts.string_or("pace", "fast").as_str() {
            "fast" => Pace::Fast,
            "real" => Pace::Real,
            other => {
                return Err(ConfigError::new(
                    "--source",
                    uri,
                    format!("option pace={other:?}: expected fast or real"),
                ));
            }
        };
        let schedulable_label = opts.bool_or("schedulableLabel", false)?;
        opts.finish("replay source", &["pace", "schedulableLabel"])?;
        Ok(ReplayConfig { path: PathBuf::from(path), pace, schedulable_label })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("scenario {file}: {message}")]
    List { file: PathBuf, message: String },
    #[error("scenario {0}: cAdvisor scenarios replay in one process, not in cluster mode")]
    CadvisorInCluster(PathBuf),
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub windows: usize,
    pub scrapes: usize,
    pub missing: usize,
    /// Events read from the scenario's lists (every listed event, every time it was listed).
    pub events: usize,
}

pub struct Replay {
    scenario: Scenario,
    pace: Pace,
    schedulable_label: bool,
}

impl Replay {
    /// The scenario, for a process with `share` of the cluster's workers: it replays only the
    /// nodes its feeds own.
    pub fn open(config: &ReplayConfig, share: Share) -> Result<Replay, ReplayError> {
        let scenario = Scenario::open(&config.path)?;
        if share.processes > 1 && scenario.is_cadvisor() {
            return Err(ReplayError::CadvisorInCluster(scenario.dir.clone()));
        }
        Ok(Replay { scenario, pace: config.pace, schedulable_label: config.schedulable_label })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Feeds every window to the workers; stops early when `stop` is set.
    pub fn run(&self, feeds: &Feeds, stop: &AtomicBool) -> Result<ReplayReport, ReplayError> {
        if self.scenario.is_cadvisor() {
            return crate::sources::cadvisor::replay::run(&self.scenario, self.pace, feeds, stop);
        }
        let mut interner = Interner::default();
        let mut meta = MetaState::default();
        let mut targets: Vec<NodeTarget> = Vec::new();
        let mut report = ReplayReport::default();
        let health = Health::default();
        let started = Instant::now();
        let first = self.scenario.windows.first().map_or(0, |w| w.time);
        let share = feeds.share();
        let mut progress = crate::progress::Progress::windows("replay", self.scenario.windows.len() as u64);

        for window in &self.scenario.windows {
            if self.pace == Pace::Real {
                let due = started + Duration::from_millis(window.time - first);
                sleep_until(due, stop);
            }
            if stop.load(Ordering::Relaxed) {
                tracing::info!(window = window.index, "replay stopped");
                break;
            }
            let mut changes = Vec::new();
            for list in ApiList::ALL {
                if window.index > 0 && !self.scenario.api_changed(window.index, list) {
                    continue;
                }
                // Other processes need the node list only, for their targets.
                if !share.is_leader() && list != ApiList::Nodes {
                    continue;
                }
                let Some(file) = self.scenario.api_file(window.index, list) else { continue };
                let (records, new_targets) = read_list(&file, list, &mut interner)?;
                if let Some(t) = new_targets {
                    targets = t;
                }
                let kind = match list {
                    ApiList::Nodes => Kind::Node,
                    ApiList::Pods => Kind::Pod,
                    ApiList::Namespaces => Kind::Namespace,
                    ApiList::Events => continue,
                };
                changes.extend(meta.replace(kind, records));
            }
            if stopped(feeds.metadata(window.time, changes)) {
                break;
            }
            let mut window_bytes = 0u64;
            for target in targets.iter().filter(|t| t.ready && feeds.owns(&t.name)) {
                let path = self.scenario.summary_path(window.index, &target.name);
                let body = std::fs::read(&path).map_err(|e| ScrapeError::Missing(e.kind().to_string()));
                window_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
                report.missing += usize::from(body.is_err());
                match &body {
                    Ok(_) => health.record(&target.name, Ok(())),
                    Err(e) => health.record(&target.name, Err(&e.to_string())),
                }
                report.scrapes += 1;
                let mut target = target.clone();
                target.schedulable_label = self.schedulable_label;
                if stopped(feeds.scrape(window.time, Box::new(SummaryScrape { target, body }))) {
                    return Ok(report);
                }
            }
            if stopped(feeds.close(window.time)) {
                return Ok(report);
            }
            if share.is_leader() && stopped(self.feed_events(window.index, window.time, feeds, &mut report)) {
                return Ok(report);
            }
            report.windows += 1;
            progress.window(window_bytes);
            interner.sweep();
        }
        progress.finish();
        Ok(report)
    }
}

impl Replay {
    /// The window's event list, if it changed: every event in it (dedup drops the states
    /// already exported), then the tick at every worker.
    fn feed_events(
        &self,
        window: usize,
        time: Time,
        feeds: &Feeds,
        report: &mut ReplayReport,
    ) -> Result<(), WorkersGone> {
        let changed = self.scenario.api_changed(window, ApiList::Events);
        let mut resource_version = None;
        if changed && let Some(file) = self.scenario.api_file(window, ApiList::Events) {
            match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|body| parse_event_list(&body).map_err(|e| e.to_string()))
            {
                Ok(parsed) => {
                    for w in parsed.warnings {
                        tracing::warn!(file = %file.display(), "{w}");
                    }
                    report.events += parsed.events.len();
                    resource_version = parsed.resource_version;
                    feeds.events(time, parsed.events)?;
                }
                Err(e) => tracing::error!(file = %file.display(), "events not replayed: {e}"),
            }
        }
        feeds.events_tick(time, resource_version)
    }
}

/// How often a paced replay looks at the stop flag while it waits for a window.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Sleeps until `due`, or until `stop` is set: a stop never waits for the next window.
fn sleep_until(due: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(left) = due.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return;
        };
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

/// Whether the workers stopped (logged: a replay ends early only then or when told to stop).
pub(crate) fn stopped(sent: Result<(), WorkersGone>) -> bool {
    sent.is_err_and(|_| {
        tracing::warn!("workers stopped before the replay ended");
        true
    })
}

type ListRead = (Vec<MetaRecord>, Option<Vec<NodeTarget>>);

fn read_list(file: &Path, list: ApiList, interner: &mut Interner) -> Result<ListRead, ReplayError> {
    let body = std::fs::read(file)
        .map_err(|e| ReplayError::List { file: file.to_path_buf(), message: e.to_string() })?;
    let fail =
        |e: &dyn std::fmt::Display| ReplayError::List { file: file.to_path_buf(), message: e.to_string() };
    let (records, targets, warnings) = match list {
        ApiList::Nodes => {
            let parsed = parse_node_list(&body, interner).map_err(|e| fail(&e))?;
            (parsed.records, Some(parsed.targets), parsed.warnings)
        }
        ApiList::Pods => {
            let parsed = parse_pod_list(&body, interner).map_err(|e| fail(&e))?;
            (parsed.records, None, parsed.warnings)
        }
        ApiList::Namespaces => {
            let parsed = parse_namespace_list(&body, interner).map_err(|e| fail(&e))?;
            (parsed.records, None, parsed.warnings)
        }
        // Events carry no metadata; `ApiList::ALL` never asks for them.
        ApiList::Events => (Vec::new(), None, Vec::new()),
    };
    for warning in warnings {
        tracing::warn!(file = %file.display(), "{warning}");
    }
    Ok((records, targets))
}

/// The window end the replay's first window stands for, for logs and tests.
pub fn first_window(scenario: &Scenario) -> Option<Time> {
    scenario.windows.first().map(|w| w.time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        assert_eq!(
            ReplayConfig::from_uri("replay:fixtures/small").unwrap(),
            ReplayConfig {
                path: PathBuf::from("fixtures/small"),
                pace: Pace::Fast,
                schedulable_label: false
            }
        );
        assert!(ReplayConfig::from_uri("replay:/x?schedulableLabel=true").unwrap().schedulable_label);
        assert_eq!(ReplayConfig::from_uri("replay:/x?pace=real").unwrap().pace, Pace::Real);
        let err = ReplayConfig::from_uri("replay:/x?pace=slow").unwrap_err();
        assert!(err.to_string().contains("pace=\"slow\": expected fast or real"), "{err}");
        assert!(ReplayConfig::from_uri("replay:").is_err());
        assert!(ReplayConfig::from_uri("replay:/x?speed=2").unwrap_err().reason.contains("\"speed\""));
    }

    #[test]
    fn a_paced_wait_ends_when_stopped() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        sleep_until(started + Duration::from_secs(600), &stop);
        // Far from the 600 s it was due to wait, however slow the machine.
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
        setter.join().unwrap();
        // A due time already past returns at once, stopped or not.
        sleep_until(Instant::now(), &AtomicBool::new(false));
    }
}
