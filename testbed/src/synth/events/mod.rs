//! Kubernetes events of a synthetic cluster, window by window: what the kubelets and controllers
//! report about the timeline's changes and the [`EventHook`]s, aggregated and expired as the
//! apiserver does, and listed as `GET /api/v1/events` answers.
//!
//! An occurrence whose event (same object, reason, message and source) is still listed bumps
//! that event's `count` and `lastTimestamp` and gives it a new resource version, as the kubelet's
//! event correlator does; otherwise it creates an event named `<object>.<hex nanos>`. An event
//! disappears `ttl` windows after the window it last happened in, as its etcd lease runs out.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::catalog::Controller;
use super::cluster::{Cluster, Pod, PodKind, rfc3339};
use super::objects::{List, list};
use super::rng::{self, K8S_ALPHABET, Rng};
use super::{EventHook, Probe, SynthError, SynthSpec, TimelineEvent};

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
struct Involved {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    name: String,
    uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_path: Option<String>,
}

/// Who reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Kubelet,
    Scheduler,
    NodeController,
    Deployments,
    ReplicaSets,
    DaemonSets,
}

impl Source {
    fn component(self) -> &'static str {
        match self {
            Source::Kubelet => "kubelet",
            Source::Scheduler => "default-scheduler",
            Source::NodeController => "node-controller",
            Source::Deployments => "deployment-controller",
            Source::ReplicaSets => "replicaset-controller",
            Source::DaemonSets => "daemonset-controller",
        }
    }
}

/// One thing that happened, before aggregation.
struct Occurrence {
    involved: Involved,
    reason: &'static str,
    message: String,
    warning: bool,
    source: Source,
    /// The kubelet's node; controllers report no host.
    host: Option<String>,
}

/// What makes two occurrences the same event, as client-go's event correlator sees it: all but
/// the times and the object's resource version.
type AggKey = (String, Involved, &'static str, String, bool, &'static str, Option<String>);

struct Event {
    namespace: String,
    name: String,
    uid: String,
    rv: u64,
    occurrence: Occurrence,
    first: i64,
    last: i64,
    count: u64,
    last_window: usize,
}

/// The events listed at the end of the current window, and what is needed to move them on.
pub struct EventLog {
    ttl: usize,
    /// By (namespace, name): the list's order.
    events: BTreeMap<(String, String), Event>,
    listed: HashMap<AggKey, (String, String)>,
    /// Every event name ever used, by namespace: a name is never reused, even after expiry.
    names: HashSet<(String, String)>,
    /// Nodes that pulled each image, for "Pulling" versus "already present".
    pulled: HashSet<(String, &'static str)>,
    /// Pod names the rollouts gave, beyond the cluster's.
    rollout_pods: HashSet<(usize, String)>,
}

impl EventLog {
    pub fn new(spec: &SynthSpec) -> EventLog {
        EventLog {
            ttl: spec.events.ttl(spec.resolution_seconds),
            events: BTreeMap::new(),
            listed: HashMap::new(),
            names: HashSet::new(),
            pulled: HashSet::new(),
            rollout_pods: HashSet::new(),
        }
    }

    /// Moves the events on to `window` (ending at `now`), after the cluster applied that
    /// window's timeline; returns whether the list changed.
    pub fn window(
        &mut self,
        cluster: &mut Cluster,
        spec: &SynthSpec,
        window: usize,
        now: i64,
    ) -> Result<bool, SynthError> {
        let mut rng = Rng::derive(spec.seed, &[rng::EVENTS, window as u64]);
        let mut changed = self.expire(cluster, window);
        let mut w = Window {
            log: self,
            cluster,
            rng: &mut rng,
            window,
            start: now - spec.resolution_seconds as i64,
            now,
        };
        for event in spec.timeline.iter().filter(|e| e.window() == window) {
            changed |= w.timeline(event)?;
        }
        for hook in &spec.events.hooks {
            changed |= w.hook(hook, spec.seed)?;
        }
        for _ in 0..spec.events.background {
            changed |= w.background();
        }
        Ok(changed)
    }

    /// Drops the events whose TTL ran out by `window`; each deletion moves the counter on.
    fn expire(&mut self, cluster: &mut Cluster, window: usize) -> bool {
        let ttl = self.ttl;
        let gone: Vec<(String, String)> = self
            .events
            .iter()
            .filter(|(_, e)| window >= e.last_window + ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            if let Some(event) = self.events.remove(key) {
                self.listed.remove(&agg_key(&event.namespace, &event.occurrence));
                cluster.next_rv();
            }
        }
        !gone.is_empty()
    }

    /// Records `times` occurrences between `first` and `last` (seconds).
    fn record(
        &mut self,
        cluster: &mut Cluster,
        rng: &mut Rng,
        window: usize,
        occurrence: Occurrence,
        (first, last): (i64, i64),
        times: u64,
    ) {
        let namespace = occurrence.involved.namespace.clone().unwrap_or_else(|| "default".to_string());
        let key = agg_key(&namespace, &occurrence);
        let rv = cluster.next_rv();
        if let Some(listed) = self.listed.get(&key)
            && let Some(event) = self.events.get_mut(listed)
        {
            event.count += times;
            event.last = event.last.max(last);
            event.rv = rv;
            event.last_window = window;
            return;
        }
        let name = loop {
            let nanos = first as u128 * 1_000_000_000 + u128::from(rng.below(1_000_000_000));
            let name = format!("{}.{nanos:x}", occurrence.involved.name);
            if self.names.insert((namespace.clone(), name.clone())) {
                break name;
            }
        };
        let id = (namespace.clone(), name.clone());
        self.listed.insert(key, id.clone());
        let event = Event {
            namespace,
            name,
            uid: rng.uuid(),
            rv,
            occurrence,
            first,
            last,
            count: times,
            last_window: window,
        };
        self.events.insert(id, event);
    }

    /// The `EventList` body, items in the apiserver's order (namespace, then name).
    pub fn list<'a>(&'a self, cluster: &Cluster) -> List<impl Serialize + 'a> {
        list("EventList", cluster.rv, Items(&self.events))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }
}

fn agg_key(namespace: &str, o: &Occurrence) -> AggKey {
    let involved = Involved { resource_version: None, ..o.involved.clone() };
    (
        namespace.to_string(),
        involved,
        o.reason,
        o.message.clone(),
        o.warning,
        o.source.component(),
        o.host.clone(),
    )
}

/// One window's worth of recording.
struct Window<'a> {
    log: &'a mut EventLog,
    cluster: &'a mut Cluster,
    rng: &'a mut Rng,
    window: usize,
    /// The previous window's end and this one's, seconds: occurrences fall strictly between.
    start: i64,
    now: i64,
}

impl Window<'_> {
    /// A time in the window, at least `from`.
    fn time(&mut self, from: i64) -> i64 {
        let lo = from.max(self.start + 1).min(self.now - 1);
        lo + self.rng.below((self.now - lo).max(1) as u64) as i64
    }

    /// A start for a sequence of `steps` seconds, in the first part of the window.
    fn sequence_start(&mut self, steps: i64) -> i64 {
        let room = (self.now - self.start - 2 - steps).max(1);
        self.start + 1 + self.rng.below(room as u64) as i64
    }

    fn once(&mut self, occurrence: Occurrence, at: i64) -> bool {
        let at = at.clamp(self.start + 1, self.now - 1);
        self.log.record(self.cluster, self.rng, self.window, occurrence, (at, at), 1);
        true
    }

    /// `times` occurrences spread over the window.
    fn repeated(&mut self, occurrence: Occurrence, times: u64) -> bool {
        let first = self.time(self.start + 1);
        let last = if times > 1 { self.time(first) } else { first };
        self.log.record(self.cluster, self.rng, self.window, occurrence, (first, last), times);
        true
    }

    fn timeline(&mut self, event: &TimelineEvent) -> Result<bool, SynthError> {
        let window = self.window;
        let fail = |what: String| SynthError::Timeline { window, what };
        match event {
            TimelineEvent::RestartContainer { ns, pod, container, .. } => {
                let p = self.cluster.live_pod(ns, pod).ok_or_else(|| fail(format!("no pod {ns}/{pod}")))?;
                let c = container_index(&self.cluster.pods[p], container)
                    .ok_or_else(|| fail(format!("pod {ns}/{pod} has no container {container:?}")))?;
                let at = self.sequence_start(3);
                self.container_start(p, c, at, true);
                Ok(true)
            }
            TimelineEvent::DeletePod { ns, pod, .. } => {
                let Some(p) = self.deleted_pod(ns, pod) else {
                    return Err(fail(format!("no deleted pod {ns}/{pod}")));
                };
                let at = self.sequence_start(1);
                for c in 0..self.cluster.pods[p].containers.len() {
                    let name = self.cluster.pods[p].containers[c].name;
                    let o =
                        self.container_event(p, c, "Killing", format!("Stopping container {name}"), false);
                    self.once(o, at);
                }
                Ok(true)
            }
            TimelineEvent::NodeNotReady { node, .. } => {
                let n = self.cluster.node_index(node).ok_or_else(|| fail(format!("no node {node:?}")))?;
                let at = self.sequence_start(2);
                self.node_not_ready(n, at, true);
                Ok(true)
            }
            TimelineEvent::NodeAdded { node, .. } => {
                let n = self.cluster.node_index(node).ok_or_else(|| fail(format!("no node {node:?}")))?;
                self.node_joined(n);
                Ok(true)
            }
            TimelineEvent::PodRelabel { .. } => Ok(false),
        }
    }

    fn hook(&mut self, hook: &EventHook, seed: u64) -> Result<bool, SynthError> {
        let window = self.window;
        let fail = |what: String| SynthError::Timeline { window, what };
        match hook {
            EventHook::CrashLoop { from, to, ns, pod, container } if (*from..=*to).contains(&window) => {
                let (p, c) = self.target(ns, pod, container).map_err(fail)?;
                // The back-off reaches its 5-minute cap: a restart every few windows, and
                // "Back-off restarting" at every pod sync in between.
                if window == *from || self.rng.chance(40) {
                    let at = self.sequence_start(3);
                    self.container_start(p, c, at, true);
                }
                let (name, pod_name, uid) = {
                    let pod = &self.cluster.pods[p];
                    (pod.containers[c].name, pod.name.clone(), pod.uid.clone())
                };
                let message =
                    format!("Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})");
                let o = self.container_event(p, c, "BackOff", message, true);
                let times = self.rng.range(3, 6);
                Ok(self.repeated(o, times))
            }
            EventHook::ProbeFailing { from, to, ns, pod, container, probe }
                if (*from..=*to).contains(&window) =>
            {
                let (p, c) = self.target(ns, pod, container).map_err(fail)?;
                let o = self.probe_failure(p, c, *probe);
                let times = self.rng.range(2, 6);
                Ok(self.repeated(o, times))
            }
            EventHook::NodeRebooted { window: w, node } if *w == window => {
                let n = self.cluster.node_index(node).ok_or_else(|| fail(format!("no node {node:?}")))?;
                let at = self.sequence_start(4);
                self.node_not_ready(n, at, false);
                let node = self.cluster.nodes[n].name.clone();
                let boot_id = self.rng.uuid();
                let message = format!("Node {node} has been rebooted, boot id: {boot_id}");
                self.once(kubelet_node_event(&node, "Rebooted", message, true), at + 2);
                self.once(kubelet_node_event(&node, "Starting", "Starting kubelet.".into(), false), at + 2);
                let message = format!("Node {node} status is now: NodeReady");
                self.once(kubelet_node_event(&node, "NodeReady", message, false), at + 4);
                Ok(true)
            }
            EventHook::Rollout { window: w, ns, deployment, events } if *w == window => {
                self.rollout(ns, deployment, *events, seed).map_err(fail)?;
                Ok(*events > 0)
            }
            _ => Ok(false),
        }
    }

    /// A readiness probe fails once on a random pod with a serving container.
    fn background(&mut self) -> bool {
        let candidates: Vec<(usize, usize)> = self
            .cluster
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.deleted && p.kind != PodKind::Mirror)
            .flat_map(|(i, p)| {
                p.containers.iter().enumerate().filter(|(_, c)| c.port.is_some()).map(move |(c, _)| (i, c))
            })
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let (p, c) = candidates[self.rng.index(candidates.len())];
        let o = self.probe_failure(p, c, Probe::Readiness);
        let at = self.time(self.start + 1);
        self.once(o, at)
    }

    fn target(&self, ns: &str, pod: &str, container: &str) -> Result<(usize, usize), String> {
        let p = self.cluster.live_pod(ns, pod).ok_or_else(|| format!("no pod {ns}/{pod}"))?;
        let c = container_index(&self.cluster.pods[p], container)
            .ok_or_else(|| format!("pod {ns}/{pod} has no container {container:?}"))?;
        Ok((p, c))
    }

    fn deleted_pod(&self, ns: &str, pod: &str) -> Option<usize> {
        let ns = self.cluster.namespaces.iter().position(|n| n.name == ns)?;
        self.cluster.pods.iter().position(|p| p.deleted && p.ns == ns && p.name == pod)
    }

    fn pod_ref(&self, p: usize, field_path: Option<String>) -> Involved {
        let pod = &self.cluster.pods[p];
        Involved {
            kind: "Pod",
            namespace: Some(self.cluster.namespaces[pod.ns].name.clone()),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            api_version: Some("v1"),
            resource_version: Some(pod.rv.to_string()),
            field_path,
        }
    }

    fn container_event(
        &self,
        p: usize,
        c: usize,
        reason: &'static str,
        message: String,
        warning: bool,
    ) -> Occurrence {
        let pod = &self.cluster.pods[p];
        let field_path = format!("spec.containers{{{}}}", pod.containers[c].name);
        Occurrence {
            involved: self.pod_ref(p, Some(field_path)),
            reason,
            message,
            warning,
            source: Source::Kubelet,
            host: Some(self.cluster.nodes[pod.node].name.clone()),
        }
    }

    fn probe_failure(&self, p: usize, c: usize, probe: Probe) -> Occurrence {
        let pod = &self.cluster.pods[p];
        let port = pod.containers[c].port.unwrap_or(8080);
        let message = match probe {
            Probe::Readiness => format!(
                "Readiness probe failed: Get \"http://{}:{port}/healthz\": context deadline exceeded \
                 (Client.Timeout exceeded while awaiting headers)",
                pod.ip
            ),
            Probe::Liveness => "Liveness probe failed: HTTP probe failed with statuscode: 500".to_string(),
        };
        self.container_event(p, c, "Unhealthy", message, true)
    }

    /// The kubelet (re)starts a container at `at`: pull (or find the image), create, start.
    fn container_start(&mut self, p: usize, c: usize, at: i64, present: bool) {
        let (image, name, node) = {
            let pod = &self.cluster.pods[p];
            (pod.containers[c].image, pod.containers[c].name, self.cluster.nodes[pod.node].name.clone())
        };
        let mut at = at;
        if present || !self.log.pulled.insert((node, image)) {
            let o = self.container_event(
                p,
                c,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
                false,
            );
            self.once(o, at);
        } else {
            let o = self.container_event(p, c, "Pulling", format!("Pulling image \"{image}\""), false);
            self.once(o, at);
            let millis = self.rng.range(800, 9_000);
            let size = self.rng.range(20_000_000, 400_000_000);
            let took = format!("{}.{:03}s", millis / 1000, millis % 1000);
            at += (millis / 1000) as i64 + 1;
            let message = format!(
                "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
            );
            let o = self.container_event(p, c, "Pulled", message, false);
            self.once(o, at);
        }
        let o = self.container_event(p, c, "Created", format!("Created container: {name}"), false);
        self.once(o, at);
        let o = self.container_event(p, c, "Started", format!("Started container {name}"), false);
        self.once(o, at + 1);
    }

    /// The node controller notices a node stopped reporting; with `pods`, it also marks its
    /// pods not ready.
    fn node_not_ready(&mut self, n: usize, at: i64, pods: bool) {
        let node = &self.cluster.nodes[n];
        let o = Occurrence {
            involved: Involved {
                kind: "Node",
                namespace: None,
                name: node.name.clone(),
                uid: node.uid.clone(),
                api_version: Some("v1"),
                resource_version: None,
                field_path: None,
            },
            reason: "NodeNotReady",
            message: format!("Node {} status is now: NodeNotReady", node.name),
            warning: false,
            source: Source::NodeController,
            host: None,
        };
        self.once(o, at);
        if pods {
            let on_node: Vec<usize> = self.cluster.nodes[n]
                .pods
                .iter()
                .copied()
                .filter(|&p| !self.cluster.pods[p].deleted)
                .collect();
            for p in on_node {
                let o = Occurrence {
                    involved: self.pod_ref(p, None),
                    reason: "NodeNotReady",
                    message: "Node is not ready".into(),
                    warning: true,
                    source: Source::NodeController,
                    host: None,
                };
                self.once(o, at + 1);
            }
        }
    }

    /// A new node registers and starts its daemon pods.
    fn node_joined(&mut self, n: usize) {
        let node = self.cluster.nodes[n].name.clone();
        let at = self.sequence_start(12);
        self.once(kubelet_node_event(&node, "Starting", "Starting kubelet.".into(), false), at);
        for condition in ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID"] {
            let message = format!("Node {node} status is now: {condition}");
            self.once(kubelet_node_event(&node, condition, message, false), at);
        }
        let message = "Updated Node Allocatable limit across pods".to_string();
        self.once(kubelet_node_event(&node, "NodeAllocatableEnforced", message, false), at);
        let message = format!("Node {node} status is now: NodeReady");
        self.once(kubelet_node_event(&node, "NodeReady", message, false), at + 1);
        let registered = Occurrence {
            involved: Involved {
                kind: "Node",
                namespace: None,
                name: node.clone(),
                uid: self.cluster.nodes[n].uid.clone(),
                api_version: Some("v1"),
                resource_version: None,
                field_path: None,
            },
            reason: "RegisteredNode",
            message: format!("Node {node} event: Registered Node {node} in Controller"),
            warning: false,
            source: Source::NodeController,
            host: None,
        };
        self.once(registered, at + 1);
        let pods = self.cluster.nodes[n].pods.clone();
        for p in pods {
            let (kind, name, owner_uid) = {
                let pod = &self.cluster.pods[p];
                (pod.kind, pod.name.clone(), pod.owner.uid.clone())
            };
            if kind != PodKind::Mirror {
                let o = Occurrence {
                    involved: Involved {
                        kind: "DaemonSet",
                        namespace: Some(self.cluster.namespaces[self.cluster.pods[p].ns].name.clone()),
                        name: self.cluster.pods[p].owner.name.clone(),
                        uid: owner_uid,
                        api_version: Some("apps/v1"),
                        resource_version: Some(self.cluster.rv.to_string()),
                        field_path: None,
                    },
                    reason: "SuccessfulCreate",
                    message: format!("Created pod: {name}"),
                    warning: false,
                    source: Source::DaemonSets,
                    host: None,
                };
                self.once(o, at + 2);
                let ns = self.cluster.namespaces[self.cluster.pods[p].ns].name.clone();
                let o = Occurrence {
                    involved: self.pod_ref(p, None),
                    reason: "Scheduled",
                    message: format!("Successfully assigned {ns}/{name} to {node}"),
                    warning: false,
                    source: Source::Scheduler,
                    host: None,
                };
                self.once(o, at + 2);
            }
            for c in 0..self.cluster.pods[p].containers.len() {
                let present = kind == PodKind::Mirror;
                self.container_start(p, c, at + 3, present);
            }
        }
    }

    /// A new replica set of `deployment` scales up: exactly `events` events (or none), the
    /// deployment's scaling first, then each new pod's creation, scheduling, pulls and starts.
    /// The new pods appear in events only, never in the pod list or the summaries.
    fn rollout(&mut self, ns: &str, deployment: &str, events: usize, seed: u64) -> Result<(), String> {
        let ns_index = self
            .cluster
            .namespaces
            .iter()
            .position(|n| n.name == ns)
            .ok_or_else(|| format!("no namespace {ns:?}"))?;
        let w = self
            .cluster
            .workloads
            .iter()
            .position(|w| {
                w.ns == ns_index
                    && w.template.name == deployment
                    && w.template.controller == Controller::Deployment
            })
            .ok_or_else(|| format!("no deployment {ns}/{deployment}"))?;
        if events == 0 {
            return Ok(());
        }
        let template = self.cluster.workloads[w].template;
        let nodes: Vec<usize> =
            (0..self.cluster.nodes.len()).filter(|&n| self.cluster.nodes[n].ready).collect();
        if nodes.is_empty() {
            return Err("no Ready node to run a rollout on".into());
        }
        let per_pod = 2 + 3 * template.containers.len();
        let pods = (events - 1).div_ceil(per_pod).max(1);
        let hash = self.rng.chars(K8S_ALPHABET, 10);
        let rs = format!("{deployment}-{hash}");
        let rs_uid = self.rng.uuid();
        let deployment_uid = Rng::keyed(seed, rng::EVENTS, &format!("deployment/{ns}/{deployment}")).uuid();
        let at = self.sequence_start(10);
        let room = (self.now - 1 - at - 8).max(1);
        let rv = Some(self.cluster.rv.to_string());
        let mut left = events;
        let scaled = Occurrence {
            involved: Involved {
                kind: "Deployment",
                namespace: Some(ns.to_string()),
                name: deployment.to_string(),
                uid: deployment_uid,
                api_version: Some("apps/v1"),
                resource_version: rv.clone(),
                field_path: None,
            },
            reason: "ScalingReplicaSet",
            message: format!("Scaled up replica set {rs} from 0 to {pods}"),
            warning: false,
            source: Source::Deployments,
            host: None,
        };
        self.once(scaled, at);
        left -= 1;
        let rs_ref = Involved {
            kind: "ReplicaSet",
            namespace: Some(ns.to_string()),
            name: rs.clone(),
            uid: rs_uid,
            api_version: Some("apps/v1"),
            resource_version: rv,
            field_path: None,
        };
        for i in 0..pods {
            if left == 0 {
                break;
            }
            let t = at + 1 + (i as i64 * room) / pods as i64;
            let name = loop {
                let name = format!("{rs}-{}", self.rng.chars(K8S_ALPHABET, 5));
                if self.log.rollout_pods.insert((ns_index, name.clone())) {
                    break name;
                }
            };
            let node = self.cluster.nodes[nodes[i % nodes.len()]].name.clone();
            let uid = self.rng.uuid();
            let pod_ref = |field_path: Option<String>| Involved {
                kind: "Pod",
                namespace: Some(ns.to_string()),
                name: name.clone(),
                uid: uid.clone(),
                api_version: Some("v1"),
                resource_version: None,
                field_path,
            };
            let mut sequence = vec![
                Occurrence {
                    involved: rs_ref.clone(),
                    reason: "SuccessfulCreate",
                    message: format!("Created pod: {name}"),
                    warning: false,
                    source: Source::ReplicaSets,
                    host: None,
                },
                Occurrence {
                    involved: pod_ref(None),
                    reason: "Scheduled",
                    message: format!("Successfully assigned {ns}/{name} to {node}"),
                    warning: false,
                    source: Source::Scheduler,
                    host: None,
                },
            ];
            for &(container, image) in template.containers {
                let kubelet = |reason, message| Occurrence {
                    involved: pod_ref(Some(format!("spec.containers{{{container}}}"))),
                    reason,
                    message,
                    warning: false,
                    source: Source::Kubelet,
                    host: Some(node.clone()),
                };
                if self.log.pulled.insert((node.clone(), image)) {
                    sequence.push(kubelet("Pulling", format!("Pulling image \"{image}\"")));
                    let millis = self.rng.range(800, 9_000);
                    let took = format!("{}.{:03}s", millis / 1000, millis % 1000);
                    let size = self.rng.range(20_000_000, 400_000_000);
                    sequence.push(kubelet(
                        "Pulled",
                        format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."),
                    ));
                } else {
                    sequence.push(kubelet(
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    ));
                }
                sequence.push(kubelet("Created", format!("Created container: {container}")));
                sequence.push(kubelet("Started", format!("Started container {container}")));
            }
            // Every pod has at least `per_pod` events, so the budget runs out by the last one.
            for (step, occurrence) in sequence.into_iter().enumerate() {
                if left == 0 {
                    break;
                }
                self.once(occurrence, t + (step as i64).min(6));
                left -= 1;
            }
        }
        Ok(())
    }
}

fn container_index(pod: &Pod, container: &str) -> Option<usize> {
    pod.containers.iter().position(|c| c.name == container)
}

/// An event the kubelet reports about its own node: the node's name stands in for its uid.
fn kubelet_node_event(node: &str, reason: &'static str, message: String, warning: bool) -> Occurrence {
    Occurrence {
        involved: Involved {
            kind: "Node",
            namespace: None,
            name: node.to_string(),
            uid: node.to_string(),
            api_version: None,
            resource_version: None,
            field_path: None,
        },
        reason,
        message,
        warning,
        source: Source::Kubelet,
        host: Some(node.to_string()),
    }
}

// ---- encoding ----

struct Items<'a>(&'a BTreeMap<(String, String), Event>);

impl Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values().map(EventObj::from))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventObj<'a> {
    metadata: EventMeta<'a>,
    involved_object: &'a Involved,
    reason: &'a str,
    message: &'a str,
    source: SourceObj<'a>,
    first_timestamp: String,
    last_timestamp: String,
    count: u64,
    #[serde(rename = "type")]
    type_: &'static str,
    /// Always null: these are events of the core API, as kubelets and controllers record them.
    event_time: Option<&'a str>,
    reporting_component: &'a str,
    reporting_instance: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventMeta<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    resource_version: String,
    creation_timestamp: String,
}

#[derive(Serialize)]
struct SourceObj<'a> {
    component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl<'a> From<&'a Event> for EventObj<'a> {
    fn from(e: &'a Event) -> EventObj<'a> {
        let o = &e.occurrence;
        let first = rfc3339(e.first);
        EventObj {
            metadata: EventMeta {
                name: &e.name,
                namespace: &e.namespace,
                uid: &e.uid,
                resource_version: e.rv.to_string(),
                creation_timestamp: first.clone(),
            },
            involved_object: &o.involved,
            reason: o.reason,
            message: &o.message,
            source: SourceObj { component: o.source.component(), host: o.host.as_deref() },
            first_timestamp: first,
            last_timestamp: rfc3339(e.last),
            count: e.count,
            type_: if o.warning { "Warning" } else { "Normal" },
            event_time: None,
            reporting_component: o.source.component(),
            reporting_instance: o.host.as_deref().unwrap_or(""),
        }
    }
}

/// Checks that the hooks of `window` name things that exist then, before anything is written.
pub fn check_hooks(cluster: &Cluster, spec: &SynthSpec, window: usize) -> Result<(), SynthError> {
    let fail = |what: String| Err(SynthError::Timeline { window, what });
    let live_container = |ns: &str, pod: &str, container: &str| {
        cluster.live_pod(ns, pod).is_some_and(|p| container_index(&cluster.pods[p], container).is_some())
    };
    for hook in &spec.events.hooks {
        match hook {
            EventHook::CrashLoop { from, to, ns, pod, container }
            | EventHook::ProbeFailing { from, to, ns, pod, container, .. }
                if (*from..=*to).contains(&window) && !live_container(ns, pod, container) =>
            {
                return fail(format!("{}: no live container {ns}/{pod}/{container}", hook.describe()));
            }
            EventHook::NodeRebooted { window: w, node }
                if *w == window && cluster.node_index(node).is_none() =>
            {
                return fail(format!("{}: no such node", hook.describe()));
            }
            EventHook::Rollout { window: w, ns, deployment, .. } if *w == window => {
                let found = cluster.workloads.iter().any(|wl| {
                    cluster.namespaces[wl.ns].name == *ns
                        && wl.template.name == deployment
                        && wl.template.controller == Controller::Deployment
                });
                if !found {
                    return fail(format!("{}: no such deployment", hook.describe()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
