//! Recorded events: the `fixtures/events` scenario, aggregation, expiry and the burst generator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use super::tests::{generate, secs, tree};
use super::*;
use heapster::scenario::{ApiList, Scenario};

fn events_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events")
}

/// The event list in force in each window, by (namespace, name).
fn event_lists(s: &Scenario) -> Vec<BTreeMap<(String, String), Value>> {
    (0..s.windows.len())
        .map(|w| {
            let path = s.api_file(w, ApiList::Events).unwrap();
            let list: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let meta = &e["metadata"];
                    let key =
                        (meta["namespace"].as_str().unwrap().into(), meta["name"].as_str().unwrap().into());
                    (key, e.clone())
                })
                .collect()
        })
        .collect()
}

/// The window whose span `(end - resolution, end]` holds `t` (seconds).
fn window_of(s: &Scenario, t: i64) -> usize {
    s.windows.iter().position(|w| t * 1000 <= w.time as i64).unwrap()
}

fn faults(s: &Scenario, window: usize) -> Option<Value> {
    fs::read(s.api_faults_path(window)).ok().map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn fixture_events_matches_its_generator() {
    let (fresh, _, _) = generate(&SynthSpec::events_scenario());
    let (want, have) = (tree(fresh.path()), tree(&events_fixture_dir()));
    let stale = "fixtures/events is stale: regenerate it with \
                 `cargo test -p heapster-testbed --lib synth::events_tests::regenerate_events_fixture -- --ignored`";
    assert_eq!(want.keys().collect::<Vec<_>>(), have.keys().collect::<Vec<_>>(), "{stale}");
    for (path, bytes) in &want {
        assert!(have[path] == *bytes, "{}: {stale}", path.display());
    }
    let total: usize = have.values().map(Vec::len).sum();
    assert!(total < 1_000_000, "fixtures/events is {total} bytes");
}

/// Writes `fixtures/events` from `SynthSpec::events_scenario()`, keeping its `expected/`.
#[test]
#[ignore = "writes into the source tree; run by hand after changing the generator"]
fn regenerate_events_fixture() {
    let report = synth(&SynthSpec::events_scenario(), &events_fixture_dir()).unwrap();
    assert_eq!(report.windows, 8);
}

#[test]
fn same_events_spec_same_bytes_other_seed_other_events() {
    let spec = SynthSpec::events_scenario();
    let (a, _, report_a) = generate(&spec);
    let (b, _, report_b) = generate(&spec);
    assert_eq!(report_a, report_b);
    assert!(tree(a.path()) == tree(b.path()), "two runs of one spec differ");
    let other = SynthSpec { seed: 9, ..SynthSpec::new(3, 3, 3) };
    let events = EventsSpec { enabled: true, background: 2, ..EventsSpec::default() };
    let (c, _, _) = generate(&SynthSpec { events: events.clone(), ..other.clone() });
    let (d, _, _) = generate(&SynthSpec { events, seed: 10, ..other });
    let file = Path::new("windows/0001/api/events.json");
    assert_ne!(tree(c.path()).get(file), tree(d.path()).get(file));
}

#[test]
fn events_scenario_has_the_promised_shape() {
    let spec = SynthSpec::events_scenario();
    let (_dir, s, report) = generate(&spec);
    assert_eq!((report.windows, report.nodes, report.pods), (8, 3, 9));
    let lists = event_lists(&s);
    assert_eq!(report.events, lists[7].len());
    // Each window's list changes, so each window has its own file.
    assert!((0..8).all(|w| s.api_changed(w, ApiList::Events)));

    let added = |w: usize| -> Vec<&Value> {
        lists[w].iter().filter(|(k, _)| w == 0 || !lists[w - 1].contains_key(*k)).map(|(_, e)| e).collect()
    };
    let gone = |w: usize| lists[w - 1].keys().filter(|k| !lists[w].contains_key(*k)).count();
    // The burst: 200 new events at once in window 3, all gone two windows later.
    let burst = added(3);
    assert!(burst.len() >= 200, "{}", burst.len());
    assert!(gone(5) >= 200, "{}", gone(5));
    let kinds: BTreeSet<&str> = lists
        .iter()
        .flat_map(|l| l.values())
        .map(|e| e["involvedObject"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["Deployment", "Node", "Pod", "ReplicaSet"]));
    let reasons: BTreeSet<&str> =
        lists.iter().flat_map(|l| l.values()).map(|e| e["reason"].as_str().unwrap()).collect();
    for reason in [
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
        "Killing",
        "BackOff",
        "Unhealthy",
        "NodeNotReady",
        "NodeReady",
        "Rebooted",
        "ScalingReplicaSet",
        "SuccessfulCreate",
    ] {
        assert!(reasons.contains(reason), "no {reason} event: {reasons:?}");
    }
    // Faults: a 410 in window 4, dropped connections in window 5, nothing else.
    for w in 0..8 {
        let want = match w {
            4 => Some(serde_json::json!({"watch_gone": true})),
            5 => Some(serde_json::json!({"drop_watches": true})),
            _ => None,
        };
        assert_eq!(faults(&s, w), want, "window {w}");
    }
    // The timeline shows: the deleted pod's containers are stopped, the NotReady node is reported.
    let deleted = spec
        .timeline
        .iter()
        .find_map(|e| match e {
            TimelineEvent::DeletePod { window: 6, pod, .. } => Some(pod.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        added(6).iter().any(|e| e["reason"] == "Killing" && e["involvedObject"]["name"] == *deleted.as_str())
    );
    let not_ready = spec
        .timeline
        .iter()
        .find_map(|e| match e {
            TimelineEvent::NodeNotReady { window: 5, node } => Some(node.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        added(5)
            .iter()
            .any(|e| e["reason"] == "NodeNotReady" && e["involvedObject"]["name"] == *not_ready.as_str())
    );
    // Count bumps span windows: some event is modified in at least three windows.
    let mut bumped: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for w in 1..8 {
        for (k, e) in &lists[w] {
            if lists[w - 1].get(k).is_some_and(|old| old["count"] != e["count"]) {
                *bumped.entry(k).or_default() += 1;
            }
        }
    }
    assert!(bumped.values().any(|&n| n >= 3), "{bumped:?}");
}

#[test]
fn counts_only_grow_and_events_expire_after_their_ttl() {
    let spec = SynthSpec::events_scenario();
    let ttl = spec.events.ttl(spec.resolution_seconds);
    let (_dir, s, _) = generate(&spec);
    let lists = event_lists(&s);
    let mut ever_gone = BTreeSet::new();
    for w in 0..lists.len() {
        for (key, e) in &lists[w] {
            assert!(!ever_gone.contains(key), "{key:?} came back in window {w}");
            let (first, last) = (secs(&e["firstTimestamp"]), secs(&e["lastTimestamp"]));
            assert!(first <= last, "{key:?}");
            assert_eq!(e["metadata"]["creationTimestamp"], e["firstTimestamp"]);
            assert_eq!(window_of(&s, last).max(w), w, "{key:?} happens after window {w}'s end");
            assert!(w - window_of(&s, last) < ttl, "{key:?} outlived its TTL in window {w}");
            if w == 0 {
                continue;
            }
            let Some(old) = lists[w - 1].get(key) else { continue };
            assert_eq!(old["metadata"]["uid"], e["metadata"]["uid"]);
            assert_eq!(old["firstTimestamp"], e["firstTimestamp"]);
            assert_eq!(old["involvedObject"], e["involvedObject"]);
            let (c0, c1) = (old["count"].as_u64().unwrap(), e["count"].as_u64().unwrap());
            assert!(c0 <= c1, "{key:?}: count {c0} -> {c1}");
            if c0 < c1 {
                assert!(secs(&old["lastTimestamp"]) <= last, "{key:?}");
                assert_ne!(old["metadata"]["resourceVersion"], e["metadata"]["resourceVersion"]);
            } else {
                assert_eq!(old, e, "{key:?} changed without a bump");
            }
        }
        if w > 0 {
            for (key, old) in &lists[w - 1] {
                if !lists[w].contains_key(key) {
                    // Gone exactly when the TTL ran out.
                    assert_eq!(w - window_of(&s, secs(&old["lastTimestamp"])), ttl, "{key:?}");
                    ever_gone.insert(key.clone());
                }
            }
        }
    }
    assert!(ever_gone.len() > 200);
}

#[test]
fn events_lists_parse_as_kubernetes_events_with_rising_versions() {
    use k8s_openapi::api::core::v1::Event;
    let (_dir, s, _) = generate(&SynthSpec::events_scenario());
    let mut last_list = 0;
    for w in 0..s.windows.len() {
        let bytes = fs::read(s.api_file(w, ApiList::Events).unwrap()).unwrap();
        let list: k8s_openapi::List<Event> = serde_json::from_slice(&bytes).unwrap();
        let list_rv: u64 = list.metadata.resource_version.as_deref().unwrap().parse().unwrap();
        assert!(list_rv > last_list, "window {w}");
        last_list = list_rv;
        let pods: Value =
            serde_json::from_slice(&fs::read(s.api_file(w, ApiList::Pods).unwrap()).unwrap()).unwrap();
        let pods_rv: u64 = pods["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(pods_rv <= list_rv, "one counter for every object");
        let mut keys = Vec::new();
        for e in &list.items {
            let rv: u64 = e.metadata.resource_version.as_deref().unwrap().parse().unwrap();
            assert!(rv <= list_rv);
            assert!(e.count.is_some_and(|c| c >= 1));
            assert!(e.first_timestamp.is_some() && e.last_timestamp.is_some());
            assert!(matches!(e.type_.as_deref(), Some("Normal" | "Warning")));
            assert!(e.source.as_ref().and_then(|s| s.component.as_deref()).is_some());
            let name = e.metadata.name.as_deref().unwrap();
            let object = e.involved_object.name.as_deref().unwrap();
            assert!(name.starts_with(&format!("{object}.")), "{name}");
            keys.push((e.metadata.namespace.clone().unwrap(), name.to_string()));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "window {w}: the apiserver's order");
    }
}

#[test]
fn the_burst_generator_gives_exactly_the_asked_events() {
    let (_dir, s, report) = generate(&SynthSpec::event_burst(1_000));
    assert_eq!(report.windows, 2);
    let lists = event_lists(&s);
    assert!(lists[0].is_empty());
    assert_eq!(lists[1].len(), 1_000);
    assert_eq!(report.events, 1_000);
    assert!(lists[1].values().all(|e| e["count"] == 1));
    let scaled = lists[1].values().filter(|e| e["reason"] == "ScalingReplicaSet").count();
    assert_eq!(scaled, 1);
}

#[test]
fn without_events_nothing_of_them_is_written_but_faults_still_are() {
    let (_dir, s, _) = generate(&SynthSpec::new(1, 3, 2));
    assert!((0..2).all(|w| s.api_file(w, ApiList::Events).is_none() && faults(&s, w).is_none()));
    let hooks = vec![EventHook::ListError { window: 1, code: 503 }, EventHook::DropWatches { window: 1 }];
    let spec = SynthSpec { events: EventsSpec { hooks, ..EventsSpec::default() }, ..SynthSpec::new(1, 3, 2) };
    let (_dir, s, _) = generate(&spec);
    assert!(s.api_file(1, ApiList::Events).is_none());
    assert_eq!(faults(&s, 1), Some(serde_json::json!({"drop_watches": true, "list_error": 503})));
}

#[test]
fn bad_hooks_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = SynthSpec::new(2, 3, 3);
    let refuse = |hooks: Vec<EventHook>| {
        let spec = SynthSpec {
            events: EventsSpec { enabled: true, hooks, ..EventsSpec::default() },
            ..base.clone()
        };
        synth(&spec, dir.path()).unwrap_err().to_string()
    };
    let cluster = Cluster::plan(&base);
    let pod = &cluster.pods[0];
    let (ns, name) = (cluster.namespaces[pod.ns].name.clone(), pod.name.clone());
    let crash = |from, to, container: &str| EventHook::CrashLoop {
        from,
        to,
        ns: ns.clone(),
        pod: name.clone(),
        container: container.into(),
    };
    assert!(refuse(vec![EventHook::WatchGone { window: 3 }]).contains("past the last window 2"));
    assert!(refuse(vec![crash(2, 1, pod.containers[0].name)]).contains("ends before it starts"));
    assert!(refuse(vec![crash(0, 1, "nope")]).contains("no live container"));
    assert!(refuse(vec![EventHook::ListError { window: 1, code: 200 }]).contains("400-599"));
    let rollout =
        EventHook::Rollout { window: 1, ns: "default".into(), deployment: "nope".into(), events: 5 };
    assert!(refuse(vec![rollout]).contains("no such deployment"));
    let reboot = EventHook::NodeRebooted { window: 1, node: "ghost".into() };
    assert!(refuse(vec![reboot]).contains("no such node"));
    assert!(!dir.path().join("scenario.json").exists());
    // A crash loop past the pod's deletion is refused too.
    let deleted = TimelineEvent::DeletePod { window: 1, ns: ns.clone(), pod: name.clone() };
    let spec = SynthSpec {
        timeline: vec![deleted],
        events: EventsSpec {
            enabled: true,
            hooks: vec![crash(0, 2, pod.containers[0].name)],
            ..EventsSpec::default()
        },
        ..base.clone()
    };
    let err = synth(&spec, dir.path()).unwrap_err();
    assert!(matches!(err, SynthError::Timeline { window: 1, .. }), "{err}");
}

#[test]
fn the_default_ttl_is_an_hour_of_windows() {
    let events = EventsSpec::default();
    assert_eq!(events.ttl(60), 60);
    assert_eq!(events.ttl(7_200), 1);
    assert_eq!(EventsSpec { ttl_windows: 4, ..events }.ttl(60), 4);
}

#[test]
fn timeline_changes_show_as_the_events_kubernetes_reports() {
    let base = SynthSpec::new(2, 3, 3);
    let cluster = Cluster::plan(&base);
    let p = cluster.pods.iter().find(|p| p.kind == PodKind::Deployment).unwrap();
    let (ns, pod, container) = (cluster.namespaces[p.ns].name.clone(), p.name.clone(), p.containers[0].name);
    let timeline = vec![
        TimelineEvent::NodeAdded { window: 1, node: "gke-prod-pool-1-new".into() },
        TimelineEvent::RestartContainer { window: 2, ns, pod: pod.clone(), container: container.into() },
    ];
    let events = EventsSpec { enabled: true, ttl_windows: 5, ..EventsSpec::default() };
    let (_dir, s, _) = generate(&SynthSpec { timeline, events, ..base });
    let lists = event_lists(&s);
    assert!(lists[0].is_empty());
    let about = |w: usize, name: &str| -> BTreeSet<String> {
        lists[w]
            .values()
            .filter(|e| e["involvedObject"]["name"].as_str().unwrap().starts_with(name))
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .collect()
    };
    let node = about(1, "gke-prod-pool-1-new");
    for reason in ["Starting", "NodeHasSufficientMemory", "NodeReady", "RegisteredNode"] {
        assert!(node.contains(reason), "{reason}: {node:?}");
    }
    let daemons = about(1, "fluentd");
    for reason in ["SuccessfulCreate", "Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(daemons.contains(reason), "{reason}: {daemons:?}");
    }
    assert_eq!(about(1, "kube-proxy"), BTreeSet::from(["Created", "Pulled", "Started"].map(String::from)));
    assert_eq!(about(2, &pod), BTreeSet::from(["Created", "Pulled", "Started"].map(String::from)));
    let pulled = lists[2].values().find(|e| e["involvedObject"]["name"] == *pod.as_str()).unwrap();
    assert_eq!(pulled["involvedObject"]["fieldPath"], format!("spec.containers{{{container}}}"));
    assert_eq!(pulled["source"]["component"], "kubelet");
    assert_eq!(pulled["source"]["host"], cluster.nodes[p.node].name);
}
