//! Synthetic recorded clusters: a deterministic generator of scenario directories
//! ([`heapster::scenario`]) whose bodies look like what real API servers and kubelets send.
//!
//! Everything follows from a [`SynthSpec`]: its sizes and seed lay out the cluster, its
//! timeline changes it window by window (restarts, deletions, nodes going NotReady, relabels,
//! new nodes). With [`EventsSpec`] on, it also records the cluster's Kubernetes events
//! (`api/events.json`) and apiserver faults for their watches (`api/faults.json`). The same spec
//! always gives byte-identical files, so a generated scenario can be committed and checked
//! against its generator. Bodies are written node by node: at most one
//! window's bodies are ever in memory, whatever the cluster size.

pub mod cadvisor;
mod catalog;
mod cluster;
mod events;
#[cfg(test)]
mod events_tests;
mod objects;
mod pods;
mod rng;
mod sample;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fixture_server::ApiFaults;
use catalog::Controller;
use cluster::{Cluster, PodKind, rfc3339};
use heapster::scenario::{ApiList, ScenarioWriter};

/// 2026-11-01T10:00:00Z.
pub const DEFAULT_START_MS: u64 = 1_793_527_200_000;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSpec {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub windows: usize,
    pub resolution_seconds: u64,
    /// End of the first window, ms since the epoch, aligned to the resolution.
    pub start_ms: u64,
    pub seed: u64,
    pub namespaces: usize,
    pub timeline: Vec<TimelineEvent>,
    /// Indented JSON, for scenarios people read and commit; compact otherwise.
    pub pretty: bool,
    /// Kubernetes events and watch faults; the default records none.
    pub events: EventsSpec,
}

/// The Kubernetes events recorded with the cluster, in `api/events.json` whenever the list
/// changes, and the apiserver faults that test a watch of them, in `api/faults.json`.
///
/// With `enabled`, the timeline's changes produce the events the kubelets and controllers
/// report (a restart: Pulled, Created, Started; a deletion: Killing; a NotReady node:
/// NodeNotReady for it and its pods; a new node: its registration and daemon pods' starts), and
/// `background` readiness-probe failures a window land on random pods. An occurrence of an
/// event still listed bumps its `count`; an event is gone `ttl_windows` after it last happened.
/// Hooks add more; fault hooks apply even with events off. The default records nothing, so a
/// scenario without events stays byte for byte what it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsSpec {
    pub enabled: bool,
    /// Windows an event stays listed after the window it last happened in; 0 means Kubernetes'
    /// own 1 h at the spec's resolution.
    pub ttl_windows: usize,
    /// One-off readiness-probe failures per window, on random pods with a serving container.
    pub background: usize,
    pub hooks: Vec<EventHook>,
}

impl EventsSpec {
    /// The TTL in windows of `resolution_seconds`, at least 1.
    pub fn ttl(&self, resolution_seconds: u64) -> usize {
        match self.ttl_windows {
            0 => (3_600 / resolution_seconds.max(1)).max(1) as usize,
            n => n,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Readiness,
    Liveness,
}

/// An event-producing happening, or an apiserver fault, on given windows. Event hooks record
/// events only: pair them with [`TimelineEvent`]s for the pod list and summaries to agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventHook {
    /// The container crash-loops in windows `from..=to`: a `BackOff` warning repeated a few
    /// times every window (one event, its count bumped), and now and then a restart's
    /// Pulled/Created/Started (their counts bumped too).
    CrashLoop { from: usize, to: usize, ns: String, pod: String, container: String },
    /// The probe fails a few times every window in `from..=to`: one `Unhealthy` warning whose
    /// count grows.
    ProbeFailing { from: usize, to: usize, ns: String, pod: String, container: String, probe: Probe },
    /// The node reboots: NodeNotReady from the node controller, then the kubelet's Rebooted,
    /// Starting and NodeReady.
    NodeRebooted { window: usize, node: String },
    /// A new replica set of the deployment scales up, giving exactly `events` events in the
    /// window: ScalingReplicaSet, then per new pod SuccessfulCreate, Scheduled, Pulling/Pulled,
    /// Created and Started. The new pods exist in events only.
    Rollout { window: usize, ns: String, deployment: String, events: usize },
    /// `{"watch_gone": true}`: entering the window, watches get 410 Gone and old versions expire.
    WatchGone { window: usize },
    /// `{"drop_watches": true}`: entering the window, watch connections are cut.
    DropWatches { window: usize },
    /// `{"list_error": code}`: lists fail with this status while the window is current.
    ListError { window: usize, code: u16 },
}

impl EventHook {
    /// The first and last window the hook acts on.
    pub fn windows(&self) -> (usize, usize) {
        match self {
            EventHook::CrashLoop { from, to, .. } | EventHook::ProbeFailing { from, to, .. } => (*from, *to),
            EventHook::NodeRebooted { window, .. }
            | EventHook::Rollout { window, .. }
            | EventHook::WatchGone { window }
            | EventHook::DropWatches { window }
            | EventHook::ListError { window, .. } => (*window, *window),
        }
    }

    fn describe(&self) -> String {
        match self {
            EventHook::CrashLoop { from, to, ns, pod, container } => {
                format!("windows {from}-{to}: container {ns}/{pod}/{container} crash-loops")
            }
            EventHook::ProbeFailing { from, to, ns, pod, container, probe } => {
                format!("windows {from}-{to}: {probe:?} probe of {ns}/{pod}/{container} fails")
            }
            EventHook::NodeRebooted { window, node } => format!("window {window}: node {node} reboots"),
            EventHook::Rollout { window, ns, deployment, events } => {
                format!("window {window}: deployment {ns}/{deployment} rolls out ({events} events)")
            }
            EventHook::WatchGone { window } => format!("window {window}: watches get 410 Gone"),
            EventHook::DropWatches { window } => format!("window {window}: watch connections drop"),
            EventHook::ListError { window, code } => format!("window {window}: lists answer {code}"),
        }
    }

    /// The apiserver fault this hook sets, merged into `faults`.
    fn fault(&self, faults: &mut ApiFaults) {
        match self {
            EventHook::WatchGone { .. } => faults.watch_gone = true,
            EventHook::DropWatches { .. } => faults.drop_watches = true,
            EventHook::ListError { code, .. } => faults.list_error = Some(*code),
            _ => {}
        }
    }
}

/// Something that happens to the cluster just before a window's scrapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineEvent {
    /// The container's process dies and the kubelet starts it again: new start time, counters
    /// from zero, `restartCount` + 1.
    RestartContainer { window: usize, ns: String, pod: String, container: String },
    /// The pod is gone from the API and from its kubelet's summaries from this window on.
    DeletePod { window: usize, ns: String, pod: String },
    /// The node's Ready condition turns False; its kubelet still answers scrapes.
    NodeNotReady { window: usize, node: String },
    /// `labels` are set on the pod (existing keys overwritten, others kept).
    PodRelabel { window: usize, ns: String, pod: String, labels: BTreeMap<String, String> },
    /// A new node joins, with the per-node daemon pods scheduled onto it.
    NodeAdded { window: usize, node: String },
}

impl TimelineEvent {
    pub fn window(&self) -> usize {
        match self {
            TimelineEvent::RestartContainer { window, .. }
            | TimelineEvent::DeletePod { window, .. }
            | TimelineEvent::NodeNotReady { window, .. }
            | TimelineEvent::PodRelabel { window, .. }
            | TimelineEvent::NodeAdded { window, .. } => *window,
        }
    }

    fn describe(&self) -> String {
        match self {
            TimelineEvent::RestartContainer { window, ns, pod, container } => {
                format!("window {window}: container {ns}/{pod}/{container} restarts")
            }
            TimelineEvent::DeletePod { window, ns, pod } => {
                format!("window {window}: pod {ns}/{pod} is deleted")
            }
            TimelineEvent::NodeNotReady { window, node } => {
                format!("window {window}: node {node} becomes NotReady")
            }
            TimelineEvent::PodRelabel { window, ns, pod, .. } => {
                format!("window {window}: pod {ns}/{pod} is relabeled")
            }
            TimelineEvent::NodeAdded { window, node } => format!("window {window}: node {node} joins"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthReport {
    pub windows: usize,
    /// Nodes at the end, including added ones.
    pub nodes: usize,
    /// Pods that ever existed, including deleted ones.
    pub pods: usize,
    /// Events listed in the last window.
    pub events: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("synth spec: {0}")]
    Spec(String),
    #[error("synth timeline, window {window}: {what}")]
    Timeline { window: usize, what: String },
    #[error("synth output {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("synth output {path}: has windows/ but no scenario.json; refusing to overwrite it")]
    NotAScenario { path: PathBuf },
    #[error("synth: encoding {what}: {source}")]
    Json { what: String, source: serde_json::Error },
}

impl SynthSpec {
    pub fn new(nodes: usize, pods_per_node: usize, windows: usize) -> Self {
        SynthSpec {
            nodes,
            pods_per_node,
            windows,
            resolution_seconds: 60,
            start_ms: DEFAULT_START_MS,
            seed: 1,
            namespaces: (nodes * pods_per_node / 10).clamp(3, 8),
            timeline: Vec::new(),
            pretty: false,
            events: EventsSpec::default(),
        }
    }

    /// The `fixtures/events` scenario: 3 nodes, 9 pods, 8 windows of events kept 2 windows,
    /// one background probe failure a window. Window 0: a readiness probe starts failing (until
    /// window 3); window 1: the second node reboots; windows 2-4: a container on it
    /// crash-loops (restarting in 2 and 4); window 3: a rollout bursts 200 events; window 4:
    /// watches get 410 Gone; window 5: watch connections drop, the burst expires and the third
    /// node turns NotReady; window 6: the probed pod is deleted.
    pub fn events_scenario() -> Self {
        let mut spec = SynthSpec { namespaces: 3, ..SynthSpec::new(3, 3, 8) };
        let cluster = Cluster::plan(&spec);
        let ns_of = |p: &cluster::Pod| cluster.namespaces[p.ns].name.clone();
        let app = |node: usize| {
            cluster.pods.iter().filter(move |p| {
                p.node == node && matches!(p.kind, PodKind::Deployment | PodKind::StatefulSet)
            })
        };
        let mut hooks = Vec::new();
        let probed = app(0).find(|p| p.containers.iter().any(|c| c.port.is_some())).or_else(|| app(0).next());
        if let Some(p) = probed {
            let c = p.containers.iter().find(|c| c.port.is_some()).unwrap_or(&p.containers[0]);
            hooks.push(EventHook::ProbeFailing {
                from: 0,
                to: 3,
                ns: ns_of(p),
                pod: p.name.clone(),
                container: c.name.to_string(),
                probe: Probe::Readiness,
            });
            spec.timeline.push(TimelineEvent::DeletePod { window: 6, ns: ns_of(p), pod: p.name.clone() });
        }
        if let Some(n) = cluster.nodes.get(1) {
            hooks.push(EventHook::NodeRebooted { window: 1, node: n.name.clone() });
        }
        if let Some(p) = app(1).next() {
            let container = p.containers[0].name.to_string();
            for window in [2, 4] {
                spec.timeline.push(TimelineEvent::RestartContainer {
                    window,
                    ns: ns_of(p),
                    pod: p.name.clone(),
                    container: container.clone(),
                });
            }
            hooks.push(EventHook::CrashLoop { from: 2, to: 4, ns: ns_of(p), pod: p.name.clone(), container });
        }
        if let Some((ns, deployment)) = first_deployment(&cluster) {
            hooks.push(EventHook::Rollout { window: 3, ns, deployment, events: 200 });
        }
        hooks.push(EventHook::WatchGone { window: 4 });
        if let Some(n) = cluster.nodes.get(2) {
            spec.timeline.push(TimelineEvent::NodeNotReady { window: 5, node: n.name.clone() });
        }
        hooks.push(EventHook::DropWatches { window: 5 });
        spec.timeline.sort_by_key(TimelineEvent::window);
        spec.events = EventsSpec { enabled: true, ttl_windows: 2, background: 1, hooks };
        spec
    }

    /// A small cluster whose second (and last) window adds exactly `events` events at once, a
    /// rollout: the size-parametrized burst for benchmarks of event watches.
    pub fn event_burst(events: usize) -> Self {
        let mut spec = SynthSpec::new(2, 4, 2);
        let cluster = Cluster::plan(&spec);
        let hooks = first_deployment(&cluster)
            .map(|(ns, deployment)| EventHook::Rollout { window: 1, ns, deployment, events })
            .into_iter()
            .collect();
        spec.events = EventsSpec { enabled: true, ttl_windows: 0, background: 0, hooks };
        spec
    }

    /// The `fixtures/small` scenario: 3 nodes, 24 pods in 4 namespaces, 5 windows; in window 2
    /// a sidecar restarts and a pod is deleted, in window 3 the third node turns NotReady.
    pub fn small() -> Self {
        let mut spec = SynthSpec { namespaces: 4, pretty: true, ..SynthSpec::new(3, 8, 5) };
        // The plan does not depend on the timeline, so it can pick the timeline's targets.
        let cluster = Cluster::plan(&spec);
        let ns_of = |p: &cluster::Pod| cluster.namespaces[p.ns].name.clone();
        // Application pods on the nodes that stay Ready, so collectors still see the aftermath.
        let app_pods =
            || cluster.pods.iter().filter(|p| p.node != 2 && p.ns != 0 && p.kind == PodKind::Deployment);
        let restarted = app_pods().find(|p| p.containers.len() > 1);
        if let Some((p, c)) = restarted.and_then(|p| Some((p, p.containers.last()?))) {
            spec.timeline.push(TimelineEvent::RestartContainer {
                window: 2,
                ns: ns_of(p),
                pod: p.name.clone(),
                container: c.name.to_string(),
            });
        }
        let restarted_node = restarted.map(|p| p.node);
        let deleted = app_pods()
            .find(|p| Some(p.node) != restarted_node && p.containers.len() == 1)
            .or_else(|| app_pods().find(|p| restarted.is_none_or(|r| r.uid != p.uid)));
        if let Some(p) = deleted {
            spec.timeline.push(TimelineEvent::DeletePod { window: 2, ns: ns_of(p), pod: p.name.clone() });
        }
        if let Some(n) = cluster.nodes.get(2) {
            spec.timeline.push(TimelineEvent::NodeNotReady { window: 3, node: n.name.clone() });
        }
        spec
    }

    pub fn description(&self) -> String {
        let mut text = format!(
            "synthetic cluster: {} nodes x {} pods in {} namespaces, {} windows of {} s, seed {}",
            self.nodes, self.pods_per_node, self.namespaces, self.windows, self.resolution_seconds, self.seed
        );
        for event in &self.timeline {
            text.push_str("; ");
            text.push_str(&event.describe());
        }
        if self.events.enabled {
            let ttl = self.events.ttl(self.resolution_seconds);
            text.push_str(&format!(
                "; events kept {ttl} windows, {} background a window",
                self.events.background
            ));
        }
        for hook in &self.events.hooks {
            text.push_str("; ");
            text.push_str(&hook.describe());
        }
        text
    }

    /// The apiserver faults of `window`, if any.
    fn faults(&self, window: usize) -> Option<ApiFaults> {
        let mut faults = ApiFaults::default();
        for hook in self.events.hooks.iter().filter(|h| h.windows().0 == window) {
            hook.fault(&mut faults);
        }
        (faults != ApiFaults::default()).then_some(faults)
    }

    fn validate(&self) -> Result<(), SynthError> {
        let bad = |what: String| Err(SynthError::Spec(what));
        if self.nodes == 0 || self.windows == 0 || self.namespaces == 0 {
            return bad(format!(
                "nodes ({}), windows ({}) and namespaces ({}) must all be at least 1",
                self.nodes, self.windows, self.namespaces
            ));
        }
        if self.resolution_seconds < 5 {
            return bad(format!("resolution_seconds {} is below the 5 s minimum", self.resolution_seconds));
        }
        let res_ms = self.resolution_seconds * 1000;
        if !self.start_ms.is_multiple_of(res_ms) {
            return bad(format!(
                "start_ms {} is not aligned to the {} s resolution",
                self.start_ms, self.resolution_seconds
            ));
        }
        let last = (self.windows as u64 - 1).checked_mul(res_ms).and_then(|d| d.checked_add(self.start_ms));
        if last.is_none_or(|ms| ms > jiff::Timestamp::MAX.as_millisecond() as u64) {
            return bad(format!(
                "{} windows from start_ms {} run past year 9999",
                self.windows, self.start_ms
            ));
        }
        if let Some(e) = self.timeline.iter().find(|e| e.window() >= self.windows) {
            return bad(format!("event past the last window {}: {}", self.windows - 1, e.describe()));
        }
        for hook in &self.events.hooks {
            let (from, to) = hook.windows();
            if from > to {
                return bad(format!("hook ends before it starts: {}", hook.describe()));
            }
            if to >= self.windows {
                return bad(format!("hook past the last window {}: {}", self.windows - 1, hook.describe()));
            }
            if let EventHook::ListError { code, .. } = hook
                && !(400..=599).contains(code)
            {
                return bad(format!("{}: expected an HTTP error status (400-599)", hook.describe()));
            }
        }
        Ok(())
    }
}

/// Writes the scenario `spec` describes into `out`. An existing scenario there is replaced
/// (its `expected/` kept); any other directory holding `windows/` is refused.
pub fn synth(spec: &SynthSpec, out: &Path) -> Result<SynthReport, SynthError> {
    spec.validate()?;
    rehearse(spec)?;
    let io_err = |source: io::Error| SynthError::Io { path: out.to_path_buf(), source };
    clear_previous(out).map_err(|e| match e {
        Clear::Io(source) => io_err(source),
        Clear::NotAScenario => SynthError::NotAScenario { path: out.to_path_buf() },
    })?;
    let mut cluster = Cluster::plan(spec);
    let res_ms = spec.resolution_seconds * 1000;
    cluster.settle((spec.start_ms / 1000) as i64);
    let mut writer =
        ScenarioWriter::create(out, &spec.description(), spec.resolution_seconds).map_err(io_err)?;
    let mut bytes = 0u64;
    let mut events = spec.events.enabled.then(|| events::EventLog::new(spec));
    let mut progress = heapster::progress::Progress::windows("synth", spec.windows as u64);
    for window in 0..spec.windows {
        let bytes_before = bytes;
        let end_ms = spec.start_ms + window as u64 * res_ms;
        let now = (end_ms / 1000) as i64;
        let changes = cluster.apply(window, now, &spec.timeline)?;
        let w = writer.window(end_ms).map_err(io_err)?;
        let mut api = |list: ApiList, body: Vec<u8>| {
            bytes += body.len() as u64;
            w.api(list, &body).map_err(io_err)
        };
        if window == 0 {
            api(ApiList::Namespaces, encode(&objects::namespaces(&cluster), spec.pretty, "namespaces")?)?;
        }
        if window == 0 || changes.nodes {
            api(ApiList::Nodes, encode(&objects::nodes(&cluster), spec.pretty, "nodes")?)?;
        }
        if window == 0 || changes.pods {
            api(ApiList::Pods, encode(&objects::pods(&cluster), spec.pretty, "pods")?)?;
        }
        if let Some(log) = events.as_mut() {
            let changed = log.window(&mut cluster, spec, window, now)?;
            if window == 0 || changed {
                api(ApiList::Events, encode(&log.list(&cluster), spec.pretty, "events")?)?;
            }
        }
        if let Some(faults) = spec.faults(window) {
            let body = encode(&faults, false, "faults")?;
            bytes += body.len() as u64;
            w.api_faults(&body).map_err(io_err)?;
        }
        let times: Vec<String> = (0..=cluster.max_off as i64).map(|k| rfc3339(now - k)).collect();
        for node in 0..cluster.nodes.len() {
            cluster.sample_node(node, window, now);
            let body =
                encode(&summary::build(&cluster, node, &times), spec.pretty, &cluster.nodes[node].name)?;
            bytes += body.len() as u64;
            w.summary(&cluster.nodes[node].name, &body).map_err(io_err)?;
        }
        progress.window(bytes - bytes_before);
    }
    progress.finish();
    let dir = writer.finish().map_err(io_err)?;
    bytes += fs::metadata(dir.join("scenario.json")).map_err(io_err)?.len();
    Ok(SynthReport {
        windows: spec.windows,
        nodes: cluster.nodes.len(),
        pods: cluster.pods.len(),
        events: events.as_ref().map_or(0, events::EventLog::len),
        bytes,
    })
}

/// Plays the timeline on a plan without writing anything, so a bad event or hook fails before
/// a previous scenario in `out` is touched.
fn rehearse(spec: &SynthSpec) -> Result<(), SynthError> {
    if spec.timeline.is_empty() && spec.events.hooks.is_empty() {
        return Ok(());
    }
    let mut cluster = Cluster::plan(spec);
    let last_event = spec.timeline.iter().map(TimelineEvent::window).max().unwrap_or(0);
    let last_hook = spec.events.hooks.iter().map(|h| h.windows().1).max().unwrap_or(0);
    for window in 0..=last_event.max(last_hook) {
        let now = ((spec.start_ms + window as u64 * spec.resolution_seconds * 1000) / 1000) as i64;
        cluster.apply(window, now, &spec.timeline)?;
        events::check_hooks(&cluster, spec, window)?;
    }
    Ok(())
}

/// A deployment to roll out: the first outside `kube-system`, else any.
fn first_deployment(cluster: &Cluster) -> Option<(String, String)> {
    let deployments = || cluster.workloads.iter().filter(|w| w.template.controller == Controller::Deployment);
    let w = deployments().find(|w| w.ns != 0).or_else(|| deployments().next())?;
    Some((cluster.namespaces[w.ns].name.clone(), w.template.name.to_string()))
}

fn encode(value: &impl Serialize, pretty: bool, what: &str) -> Result<Vec<u8>, SynthError> {
    let encoded = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    let mut body = encoded.map_err(|source| SynthError::Json { what: what.to_string(), source })?;
    body.push(b'\n');
    Ok(body)
}

enum Clear {
    Io(io::Error),
    NotAScenario,
}

/// Removes a previous scenario's windows and manifest, so no stale node or window survives.
fn clear_previous(out: &Path) -> Result<(), Clear> {
    let windows = out.join("windows");
    let manifest = out.join("scenario.json");
    if !windows.exists() {
        return Ok(());
    }
    if !manifest.is_file() {
        return Err(Clear::NotAScenario);
    }
    // Windows first: an interrupted clear leaves a manifest, so the next run still clears.
    fs::remove_dir_all(&windows).map_err(Clear::Io)?;
    fs::remove_file(&manifest).map_err(Clear::Io)
}
