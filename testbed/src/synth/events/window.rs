//! One window's recording: the occurrences the timeline's changes, the hooks and the background
//! noise cause, each aggregated into the [`EventLog`](super::EventLog).

use super::{EventLog, Involved, Occurrence, Source, container_index};
use crate::synth::catalog::Controller;
use crate::synth::cluster::{Cluster, PodKind};
use crate::synth::rng::{self, K8S_ALPHABET, Rng};
use crate::synth::{EventHook, Probe, SynthError, TimelineEvent};

/// One window's worth of recording.
pub(super) struct Window<'a> {
    pub(super) log: &'a mut EventLog,
    pub(super) cluster: &'a mut Cluster,
    pub(super) rng: &'a mut Rng,
    pub(super) window: usize,
    /// The previous window's end and this one's, seconds: occurrences fall strictly between.
    pub(super) start: i64,
    pub(super) now: i64,
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

    pub(super) fn timeline(&mut self, event: &TimelineEvent) -> Result<bool, SynthError> {
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

    pub(super) fn hook(&mut self, hook: &EventHook, seed: u64) -> Result<bool, SynthError> {
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
    pub(super) fn background(&mut self) -> bool {
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
