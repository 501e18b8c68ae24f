//! A recorded Kubernetes scenario fed window by window, as the live source would: each
//! window's node list decides which nodes are scraped (Ready ones only), and metadata changes
//! take effect in the window that recorded them. In cluster mode each process reads only the
//! bodies of the nodes its workers own, and decodes and feeds only those nodes' and pods'
//! metadata (each pod's by its node); the leader alone feeds the namespaces and events.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use heapster_dataflows::Time;
use heapster_dataflows::meta::MetaRecord;
use heapster_dataflows::model::Interner;

use super::config::{ReplayError, ReplayReport};
use super::pace::{Pace, Pacer, stopped};
use crate::bridge::{Feeds, WorkersGone};
use crate::cluster::Share;
use crate::scenario::{ApiList, Scenario};
use crate::sources::health::Health;
use crate::sources::kubelet::SummaryScrape;
use crate::sources::kubernetes::events::{EventError, read_event_list};
use crate::sources::kubernetes::objects::{
    parse_namespace_list, parse_node_list, parse_node_list_where, parse_pod_list, parse_pod_list_where,
};
use crate::sources::meta_state::{Kind, MetaState};
use crate::sources::{NodeTarget, ScrapeError};

/// Feeds every window to the workers; stops early when `stop` is set. `schedulable_label`
/// labels node sets `schedulable=true|false`.
pub fn run(
    scenario: &Scenario,
    pace: Pace,
    schedulable_label: bool,
    feeds: &Feeds,
    stop: &AtomicBool,
) -> Result<ReplayReport, ReplayError> {
    let mut interner = Interner::default();
    let mut meta = MetaState::default();
    let mut targets: Vec<NodeTarget> = Vec::new();
    let mut report = ReplayReport::default();
    let health = Health::default();
    let pacer = Pacer::new(pace, scenario);
    let share = feeds.share();
    let mut progress = crate::progress::Progress::windows("replay", scenario.windows.len() as u64);
    let mut last_time = None;

    for window in &scenario.windows {
        if !pacer.wait(window.time, stop) {
            tracing::info!(window = window.index, "replay stopped");
            break;
        }
        // One window in memory at a time: the last one is written before this one's lists and
        // bodies are read (a pod list's body alone is as large as a window's sets).
        if let Some(last) = last_time
            && !feeds.wait_for_sinks(last, stop)
        {
            break;
        }
        let mut changes = Vec::new();
        for list in ApiList::ALL {
            if window.index > 0 && !scenario.api_changed(window.index, list) {
                continue;
            }
            // The namespaces, which every worker gets, come from the leader alone.
            if !share.is_leader() && list == ApiList::Namespaces {
                continue;
            }
            let Some(file) = scenario.api_file(window.index, list) else { continue };
            let (records, new_targets) = read_list(&file, list, share, &mut interner)?;
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
            let path = scenario.summary_path(window.index, &target.name);
            let body = std::fs::read(&path).map_err(|e| ScrapeError::Missing(e.kind().to_string()));
            window_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
            report.missing += usize::from(body.is_err());
            match &body {
                Ok(_) => health.record(&target.name, Ok(())),
                Err(e) => health.record(&target.name, Err(&e.to_string())),
            }
            report.scrapes += 1;
            let mut target = target.clone();
            target.schedulable_label = schedulable_label;
            if stopped(feeds.scrape(window.time, Box::new(SummaryScrape { target, body }))) {
                return Ok(report);
            }
        }
        if stopped(feeds.close(window.time)) {
            return Ok(report);
        }
        if share.is_leader() && stopped(feed_events(scenario, window.index, window.time, feeds, &mut report))
        {
            return Ok(report);
        }
        report.windows += 1;
        last_time = Some(window.time);
        progress.window(window_bytes);
        interner.sweep();
    }
    progress.finish();
    Ok(report)
}

/// The window's event list, if it changed: every event in it (dedup drops the states
/// already exported), read and fed a chunk at a time, then the tick at every worker.
fn feed_events(
    scenario: &Scenario,
    window: usize,
    time: Time,
    feeds: &Feeds,
    report: &mut ReplayReport,
) -> Result<(), WorkersGone> {
    let changed = scenario.api_changed(window, ApiList::Events);
    let mut resource_version = None;
    if changed && let Some(file) = scenario.api_file(window, ApiList::Events) {
        let mut gone = None;
        let read = std::fs::File::open(&file).map_err(EventError::Read).and_then(|body| {
            read_event_list(body, EVENT_CHUNK, |chunk| {
                for w in chunk.warnings {
                    tracing::warn!(file = %file.display(), "{w}");
                }
                report.events += chunk.events.len();
                match feeds.events(time, chunk.events) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        gone = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
        });
        if let Some(e) = gone {
            return Err(e);
        }
        match read {
            Ok(version) => resource_version = version,
            Err(e) => tracing::error!(file = %file.display(), "events not replayed past this point: {e}"),
        }
    }
    feeds.events_tick(time, resource_version)
}

/// Events fed at a time: a list of any size takes little memory on its way in.
const EVENT_CHUNK: usize = 4096;

type ListRead = (Vec<MetaRecord>, Option<Vec<NodeTarget>>);

/// A list's records and (nodes) targets: in a cluster, only the nodes and pods `share`'s workers
/// own, the other items skipped undecoded.
fn read_list(
    file: &Path,
    list: ApiList,
    share: Share,
    interner: &mut Interner,
) -> Result<ListRead, ReplayError> {
    let all = share.processes == 1;
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| ReplayError::List {
        file: file.to_path_buf(),
        source: e,
    };
    let body = std::fs::read(file).map_err(|e| fail(e.into()))?;
    let (records, targets, warnings) = match list {
        ApiList::Nodes => {
            let parsed = if all {
                parse_node_list(&body, interner)
            } else {
                parse_node_list_where(&body, interner, |name| {
                    name.map_or(share.is_leader(), |n| share.local_owner(n).is_some())
                })
            };
            let parsed = parsed.map_err(|e| fail(e.into()))?;
            (parsed.records, Some(parsed.targets), parsed.warnings)
        }
        ApiList::Pods => {
            let parsed = if all {
                parse_pod_list(&body, interner)
            } else {
                parse_pod_list_where(&body, interner, |place| share.keeps_pod(place))
            };
            let parsed = parsed.map_err(|e| fail(e.into()))?;
            (parsed.records, None, parsed.warnings)
        }
        ApiList::Namespaces => {
            let parsed = parse_namespace_list(&body, interner).map_err(|e| fail(e.into()))?;
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
