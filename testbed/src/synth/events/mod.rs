//! Kubernetes events of a synthetic cluster, window by window: what the kubelets and controllers
//! report about the timeline's changes and the [`EventHook`]s, aggregated and expired as the
//! apiserver does, and listed as `GET /api/v1/events` answers.
//!
//! An occurrence whose event (same object, reason, message and source) is still listed bumps
//! that event's `count` and `lastTimestamp` and gives it a new resource version, as the kubelet's
//! event correlator does; otherwise it creates an event named `<object>.<hex nanos>`. An event
//! disappears `ttl` windows after the window it last happened in, as its etcd lease runs out.

mod encode;
mod window;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::catalog::Controller;
use super::cluster::{Cluster, Pod};
use super::objects::{List, list};
use super::rng::{self, Rng};
use super::{EventHook, SynthError, SynthSpec};
use encode::Items;
use window::Window;

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

fn container_index(pod: &Pod, container: &str) -> Option<usize> {
    pod.containers.iter().position(|c| c.name == container)
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
