//! The generator's tests: bundled fixtures against a fresh run, determinism and the shape of
//! each body (over 600 lines: they share one set of scenario-reading helpers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use super::*;
use heapster::scenario::{ApiList, Scenario};

pub(super) fn generate(spec: &SynthSpec) -> (tempfile::TempDir, Scenario, SynthReport) {
    let dir = tempfile::tempdir().unwrap();
    let report = synth(spec, dir.path()).unwrap();
    let scenario = Scenario::open(dir.path()).unwrap();
    (dir, scenario, report)
}

/// Every file under `dir` except the golden outputs, by relative path.
pub(super) fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new("expected") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn api(s: &Scenario, window: usize, list: ApiList) -> Value {
    load(&s.api_file(window, list).unwrap())
}

fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().unwrap()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub(super) fn secs(v: &Value) -> i64 {
    str_of(v).parse::<jiff::Timestamp>().unwrap().as_second()
}

fn node_names(s: &Scenario, window: usize) -> Vec<String> {
    items(&api(s, window, ApiList::Nodes))
        .iter()
        .map(|n| str_of(&n["metadata"]["name"]).to_string())
        .collect()
}

fn ready_status(s: &Scenario, window: usize, node: &str) -> String {
    let nodes = api(s, window, ApiList::Nodes);
    let n = items(&nodes).iter().find(|n| n["metadata"]["name"] == node).unwrap();
    let ready = n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    str_of(&ready["status"]).to_string()
}

fn summary(s: &Scenario, window: usize, node: &str) -> Value {
    load(&s.summary_path(window, node))
}

fn pod_in_list<'a>(pods: &'a Value, ns: &str, name: &str) -> Option<&'a Value> {
    items(pods).iter().find(|p| p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name)
}

struct SmallEvents {
    restart: (String, String, String),
    deleted: (String, String),
    not_ready: String,
}

fn small_events() -> SmallEvents {
    let (mut restart, mut deleted, mut not_ready) = (None, None, None);
    for e in SynthSpec::small().timeline {
        match e {
            TimelineEvent::RestartContainer { window: 2, ns, pod, container } => {
                restart = Some((ns, pod, container))
            }
            TimelineEvent::DeletePod { window: 2, ns, pod } => deleted = Some((ns, pod)),
            TimelineEvent::NodeNotReady { window: 3, node } => not_ready = Some(node),
            other => panic!("unexpected event {other:?}"),
        }
    }
    SmallEvents { restart: restart.unwrap(), deleted: deleted.unwrap(), not_ready: not_ready.unwrap() }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/small")
}

#[test]
fn same_spec_same_bytes_other_seed_other_bytes() {
    let cluster = Cluster::plan(&SynthSpec::new(4, 6, 3));
    let p = cluster.pods.iter().find(|p| p.containers.len() > 1).unwrap();
    let spec = SynthSpec {
        timeline: vec![TimelineEvent::RestartContainer {
            window: 1,
            ns: cluster.namespaces[p.ns].name.clone(),
            pod: p.name.clone(),
            container: p.containers[0].name.to_string(),
        }],
        ..SynthSpec::new(4, 6, 3)
    };
    let (a, _, report_a) = generate(&spec);
    let (b, _, report_b) = generate(&spec);
    assert_eq!(report_a, report_b);
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert!(ta.len() > 10, "{} files", ta.len());
    assert!(ta == tb, "two runs of one spec differ");
    let (c, _, _) = generate(&SynthSpec { seed: 2, ..SynthSpec::new(4, 6, 3) });
    assert_ne!(
        tree(c.path()).get(Path::new("windows/0000/api/pods.json")),
        ta.get(Path::new("windows/0000/api/pods.json"))
    );
}

#[test]
fn fixture_small_matches_its_generator() {
    let (fresh, _, _) = generate(&SynthSpec::small());
    let (want, have) = (tree(fresh.path()), tree(&fixture_dir()));
    let stale = "fixtures/small is stale: regenerate it with \
                 `cargo test -p heapster-testbed --lib synth::tests::regenerate_small_fixture -- --ignored`";
    assert_eq!(want.keys().collect::<Vec<_>>(), have.keys().collect::<Vec<_>>(), "{stale}");
    for (path, bytes) in &want {
        assert!(have[path] == *bytes, "{}: {stale}", path.display());
    }
    let total: usize = have.values().map(Vec::len).sum();
    assert!(total < 2_000_000, "fixtures/small is {total} bytes");
}

/// Writes `fixtures/small` from `SynthSpec::small()`, keeping its `expected/`.
#[test]
#[ignore = "writes into the source tree; run by hand after changing the generator"]
fn regenerate_small_fixture() {
    let report = synth(&SynthSpec::small(), &fixture_dir()).unwrap();
    assert_eq!(report.windows, 5);
}

#[test]
fn small_scenario_has_the_promised_shape() {
    let (_dir, s, report) = generate(&SynthSpec::small());
    assert_eq!((report.windows, report.nodes, report.pods), (5, 3, 24));
    assert_eq!(s.windows.len(), 5);
    assert_eq!(s.resolution_ms, 60_000);
    for (i, w) in s.windows.iter().enumerate() {
        assert_eq!(w.time, DEFAULT_START_MS + i as u64 * 60_000);
    }
    let changed = |list| (0..5).filter(|&w| s.api_changed(w, list)).collect::<Vec<_>>();
    assert_eq!(changed(ApiList::Namespaces), [0]);
    assert_eq!(changed(ApiList::Nodes), [0, 3]);
    assert_eq!(changed(ApiList::Pods), [0, 2, 3]);
    for w in 0..5 {
        for node in node_names(&s, w) {
            assert!(s.summary_path(w, &node).is_file(), "window {w} has no summary for {node}");
        }
    }

    let pods = api(&s, 0, ApiList::Pods);
    assert!(items(&pods).len() >= 20);
    let namespaces: BTreeSet<&str> =
        items(&pods).iter().map(|p| str_of(&p["metadata"]["namespace"])).collect();
    assert!(namespaces.len() >= 3, "{namespaces:?}");
    let containers = |p: &Value| p["spec"]["containers"].as_array().unwrap().len();
    assert!(items(&pods).iter().filter(|p| containers(p) > 1).count() >= 5);
    assert!(items(&pods).iter().any(|p| containers(p) == 1));
    // Resource settings vary: none, cpu only, requests and limits.
    let all: Vec<&Value> =
        items(&pods).iter().flat_map(|p| p["spec"]["containers"].as_array().unwrap()).collect();
    assert!(all.iter().any(|c| c["resources"] == serde_json::json!({})));
    assert!(all.iter().any(|c| c["resources"]["requests"].as_object().is_some_and(|r| r.len() == 1)
        && c["resources"]["limits"].is_null()));
    assert!(all.iter().any(|c| c["resources"]["requests"]["memory"].is_string()
        && c["resources"]["limits"]["memory"].is_string()));
    let volumes: BTreeSet<&str> = items(&pods)
        .iter()
        .flat_map(|p| p["spec"]["volumes"].as_array().unwrap())
        .filter_map(|v| v.as_object().unwrap().keys().find(|k| *k != "name").map(String::as_str))
        .collect();
    assert_eq!(volumes, BTreeSet::from(["configMap", "emptyDir", "hostPath", "secret"]));
    assert_eq!(items(&api(&s, 0, ApiList::Namespaces)).len(), 4);
}

#[test]
fn summaries_parse_and_match_the_pod_list() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    for w in 0..5 {
        let pods = api(&s, w, ApiList::Pods);
        for node in node_names(&s, w) {
            let body = summary(&s, w, &node);
            assert_eq!(body["node"]["nodeName"], node.as_str());
            let names: Vec<&str> = body["node"]["systemContainers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| str_of(&c["name"]))
                .collect();
            assert_eq!(names, ["kubelet", "runtime", "pods"]);
            // The kubelet reports a static pod under its config hash, not its mirror's uid.
            let mut listed: Vec<(String, String, String)> = items(&pods)
                .iter()
                .filter(|p| p["spec"]["nodeName"] == node.as_str())
                .map(|p| {
                    let m = &p["metadata"];
                    let uid = m["annotations"]["kubernetes.io/config.hash"]
                        .as_str()
                        .unwrap_or_else(|| str_of(&m["uid"]));
                    (str_of(&m["namespace"]).into(), str_of(&m["name"]).into(), uid.into())
                })
                .collect();
            let mut scraped: Vec<(String, String, String)> = body["pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let r = &p["podRef"];
                    (str_of(&r["namespace"]).into(), str_of(&r["name"]).into(), str_of(&r["uid"]).into())
                })
                .collect();
            listed.sort();
            scraped.sort();
            assert!(listed.len() >= 7, "window {w} node {node}: {} pods", listed.len());
            assert_eq!(listed, scraped, "window {w} node {node}");
            let mirror =
                items(&pods).iter().find(|p| p["metadata"]["name"] == format!("kube-proxy-{node}")).unwrap();
            assert_ne!(
                mirror["metadata"]["uid"],
                mirror["metadata"]["annotations"]["kubernetes.io/config.hash"]
            );
            for p in body["pods"].as_array().unwrap() {
                let spec =
                    pod_in_list(&pods, str_of(&p["podRef"]["namespace"]), str_of(&p["podRef"]["name"]))
                        .unwrap();
                let want: Vec<&Value> =
                    spec["spec"]["containers"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
                let have: Vec<&Value> =
                    p["containers"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
                assert_eq!(want, have);
                for c in p["containers"].as_array().unwrap() {
                    assert!(c["userDefinedMetrics"].is_null() && c.get("userDefinedMetrics").is_some());
                    assert!(c["rootfs"]["usedBytes"].is_u64() && c["logs"]["usedBytes"].is_u64());
                }
                assert!(p["ephemeral-storage"]["usedBytes"].is_u64());
            }
        }
    }
}

/// (pod uid, container) -> (startTime, cpu time, cumulative cpu, nano cores, page faults, major).
type ContainerCounters = BTreeMap<(String, String), (i64, i64, u64, u64, u64, u64)>;

fn counters(body: &Value) -> (Vec<u64>, BTreeMap<String, Vec<u64>>, ContainerCounters) {
    let n = &body["node"];
    let mut node = vec![
        num(&n["cpu"]["usageCoreNanoSeconds"]),
        num(&n["memory"]["pageFaults"]),
        num(&n["memory"]["majorPageFaults"]),
        num(&n["network"]["rxBytes"]),
        num(&n["network"]["txBytes"]),
    ];
    for sys in n["systemContainers"].as_array().unwrap() {
        node.push(num(&sys["cpu"]["usageCoreNanoSeconds"]));
        node.push(num(&sys["memory"]["pageFaults"]));
    }
    for iface in n["network"]["interfaces"].as_array().unwrap() {
        node.push(num(&iface["rxBytes"]));
        node.push(num(&iface["txBytes"]));
    }
    let mut pods = BTreeMap::new();
    let mut containers = BTreeMap::new();
    for p in body["pods"].as_array().unwrap() {
        let uid = str_of(&p["podRef"]["uid"]).to_string();
        pods.insert(
            uid.clone(),
            vec![
                num(&p["cpu"]["usageCoreNanoSeconds"]),
                num(&p["memory"]["pageFaults"]),
                num(&p["network"]["rxBytes"]),
                num(&p["network"]["txBytes"]),
                num(&p["network"]["rxErrors"]),
            ],
        );
        for c in p["containers"].as_array().unwrap() {
            containers.insert(
                (uid.clone(), str_of(&c["name"]).to_string()),
                (
                    secs(&c["startTime"]),
                    secs(&c["cpu"]["time"]),
                    num(&c["cpu"]["usageCoreNanoSeconds"]),
                    num(&c["cpu"]["usageNanoCores"]),
                    num(&c["memory"]["pageFaults"]),
                    num(&c["memory"]["majorPageFaults"]),
                ),
            );
        }
    }
    (node, pods, containers)
}

#[test]
fn counters_only_grow_except_after_a_restart() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    let events = small_events();
    let (ref r_ns, ref r_pod, ref r_container) = events.restart;
    let r_uid =
        str_of(&pod_in_list(&api(&s, 0, ApiList::Pods), r_ns, r_pod).unwrap()["metadata"]["uid"]).to_string();
    let mut restarts_seen = 0;
    for w in 1..5 {
        for node in node_names(&s, w) {
            let (node_prev, pods_prev, containers_prev) = counters(&summary(&s, w - 1, &node));
            let (node_now, pods_now, containers_now) = counters(&summary(&s, w, &node));
            assert!(node_prev.iter().zip(&node_now).all(|(a, b)| a <= b), "window {w} node {node}");
            assert!(node_prev[0] < node_now[0], "node cpu must move");
            for (uid, now) in &pods_now {
                let prev = &pods_prev[uid];
                assert!(
                    prev.iter().zip(now).all(|(a, b)| a <= b),
                    "window {w} pod {uid}: {prev:?} -> {now:?}"
                );
            }
            for (key, now) in &containers_now {
                let prev = containers_prev[key];
                let restarted = w == 2 && key.0 == r_uid && key.1 == *r_container;
                if restarted {
                    restarts_seen += 1;
                    assert!(
                        now.2 < prev.2 && now.4 < prev.4,
                        "restart must reset counters: {prev:?} -> {now:?}"
                    );
                    assert!(
                        now.0 > prev.1 && now.0 < now.1,
                        "new start between the scrapes: {prev:?} -> {now:?}"
                    );
                    continue;
                }
                assert_eq!(now.0, prev.0, "{key:?} start time moved in window {w}");
                assert!(
                    now.2 >= prev.2 && now.4 >= prev.4 && now.5 >= prev.5,
                    "{key:?} window {w}: {prev:?} -> {now:?}"
                );
                // Cumulative usage advances by the reported rate over the time between scrapes.
                let elapsed = (now.1 - prev.1) as u64;
                assert!((45..=75).contains(&elapsed), "{elapsed}");
                assert_eq!(now.2 - prev.2, now.3 * elapsed, "{key:?} window {w}");
            }
        }
    }
    assert_eq!(restarts_seen, 1);
}

#[test]
fn the_restart_shows_in_the_pod_list() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    let (ns, pod, container) = small_events().restart;
    let status = |w: usize| {
        let pods = api(&s, w, ApiList::Pods);
        let p = pod_in_list(&pods, &ns, &pod).unwrap().clone();
        let st = p["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == container.as_str())
            .unwrap()
            .clone();
        (p, st)
    };
    let (p0, before) = status(0);
    let (p2, after) = status(2);
    assert_eq!(before["restartCount"], 0);
    assert_eq!(after["restartCount"], 1);
    assert_eq!(before["lastState"], serde_json::json!({}));
    assert_eq!(after["lastState"]["terminated"]["containerID"], before["containerID"]);
    assert_ne!(after["containerID"], before["containerID"]);
    let started = secs(&after["state"]["running"]["startedAt"]);
    assert!(started > (s.windows[1].time / 1000) as i64 && started < (s.windows[2].time / 1000) as i64);
    let node = str_of(&p2["spec"]["nodeName"]);
    let body = summary(&s, 2, node);
    let scraped =
        body["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == pod.as_str()).unwrap();
    let c =
        scraped["containers"].as_array().unwrap().iter().find(|c| c["name"] == container.as_str()).unwrap();
    assert_eq!(c["startTime"], after["state"]["running"]["startedAt"]);
    // The pod changed, so its resourceVersion did; an untouched pod keeps its own.
    let rv = |p: &Value| str_of(&p["metadata"]["resourceVersion"]).parse::<u64>().unwrap();
    assert!(rv(&p2) > rv(&p0));
    let other = |w| {
        let pods = api(&s, w, ApiList::Pods);
        items(&pods)
            .iter()
            .find(|p| p["metadata"]["name"] == "kube-proxy-".to_string() + node)
            .unwrap()
            .clone()
    };
    assert_eq!(other(0)["metadata"]["resourceVersion"], other(2)["metadata"]["resourceVersion"]);
}

#[test]
fn the_deleted_pod_is_gone_from_window_two_on() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    let (ns, pod) = small_events().deleted;
    let scraped = |w: usize| {
        node_names(&s, w).iter().any(|n| {
            summary(&s, w, n)["pods"].as_array().unwrap().iter().any(|p| p["podRef"]["name"] == pod.as_str())
        })
    };
    for w in 0..5 {
        let listed = pod_in_list(&api(&s, w, ApiList::Pods), &ns, &pod).is_some();
        assert_eq!(listed, w < 2, "window {w} pod list");
        assert_eq!(scraped(w), w < 2, "window {w} summaries");
    }
}

#[test]
fn the_not_ready_node_keeps_its_kubelet() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    let node = small_events().not_ready;
    for w in 0..5 {
        let status = ready_status(&s, w, &node);
        if w < 3 {
            assert_eq!(status, "True", "window {w}");
        } else {
            assert_ne!(status, "True", "window {w}");
        }
        assert!(s.summary_path(w, &node).is_file(), "window {w}: the kubelet still answers");
        for other in node_names(&s, w).iter().filter(|n| **n != node) {
            assert_eq!(ready_status(&s, w, other), "True");
        }
    }
    let pods = api(&s, 3, ApiList::Pods);
    for p in items(&pods).iter().filter(|p| p["spec"]["nodeName"] == node.as_str()) {
        let ready =
            p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "False");
    }
}

#[test]
fn node_totals_cover_their_pods() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    for w in 0..5 {
        for node in node_names(&s, w) {
            let body = summary(&s, w, &node);
            let pods = body["pods"].as_array().unwrap();
            let sum = |f: &dyn Fn(&Value) -> u64| pods.iter().map(f).sum::<u64>();
            let n = &body["node"];
            let pods_cg = &n["systemContainers"][2];
            for (field, unit) in
                [("usageNanoCores", "cpu"), ("usageCoreNanoSeconds", "cpu"), ("workingSetBytes", "memory")]
            {
                let total = sum(&|p| num(&p[unit][field]));
                assert!(num(&n[unit][field]) >= total, "window {w} node {node} {unit}.{field}");
                assert!(num(&pods_cg[unit][field]) >= total, "window {w} node {node} pods {unit}.{field}");
            }
            for p in pods {
                let containers = p["containers"].as_array().unwrap();
                for (field, unit) in [
                    ("usageNanoCores", "cpu"),
                    ("usageCoreNanoSeconds", "cpu"),
                    ("workingSetBytes", "memory"),
                ] {
                    let total: u64 = containers.iter().map(|c| num(&c[unit][field])).sum();
                    assert!(num(&p[unit][field]) >= total, "{} {unit}.{field}", p["podRef"]["name"]);
                }
            }
            let mem = &n["memory"];
            assert!(num(&mem["usageBytes"]) >= num(&mem["workingSetBytes"]));
            assert_eq!(num(&mem["availableBytes"]) + num(&mem["workingSetBytes"]), 32_880_648 * 1_024);
            let fs = &n["fs"];
            assert!(num(&fs["availableBytes"]) + num(&fs["usedBytes"]) <= num(&fs["capacityBytes"]));
            assert_eq!(num(&fs["inodesFree"]) + num(&fs["inodesUsed"]), num(&fs["inodes"]));
        }
    }
}

fn times_in(v: &Value, key: &str, out: &mut Vec<i64>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    out.push(secs(child));
                } else {
                    times_in(child, key, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| times_in(i, key, out)),
        _ => {}
    }
}

#[test]
fn scrape_times_sit_just_before_the_window_end() {
    let (_dir, s, _) = generate(&SynthSpec::small());
    for w in 0..5 {
        let end = (s.windows[w].time / 1000) as i64;
        let mut distinct = BTreeSet::new();
        for node in node_names(&s, w) {
            let body = summary(&s, w, &node);
            let mut times = Vec::new();
            times_in(&body, "time", &mut times);
            assert!(times.len() > 100);
            for t in times {
                assert!(t < end && t >= end - 15, "window {w} node {node}: {t} vs {end}");
                distinct.insert(t);
            }
            let mut starts = Vec::new();
            times_in(&body, "startTime", &mut starts);
            assert!(starts.iter().all(|&t| t < end - 1));
        }
        assert!(distinct.len() > 5, "scrape times should vary: {distinct:?}");
    }
}

#[test]
fn lists_parse_as_kubernetes_objects_and_versions_increase() {
    use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
    let (_dir, s, _) = generate(&SynthSpec::small());
    let mut last = BTreeMap::new();
    for w in 0..5 {
        for list in ApiList::WITH_EVENTS {
            if !s.api_changed(w, list) {
                continue;
            }
            let path = s.api_file(w, list).unwrap();
            let bytes = fs::read(&path).unwrap();
            let rvs: Vec<u64> = match list {
                ApiList::Nodes => {
                    let l: k8s_openapi::List<Node> = serde_json::from_slice(&bytes).unwrap();
                    for n in &l.items {
                        let status = n.status.as_ref().unwrap();
                        assert!(status.capacity.as_ref().unwrap()["memory"].0.ends_with("Ki"));
                        assert!(n.spec.as_ref().unwrap().provider_id.is_some());
                        let addrs = status.addresses.as_ref().unwrap();
                        assert!(
                            addrs.iter().any(|a| a.type_ == "InternalIP" && a.address.starts_with("10."))
                        );
                        assert!(n.metadata.labels.as_ref().unwrap().contains_key("kubernetes.io/hostname"));
                    }
                    rv_of(&l.metadata, l.items.iter().map(|n| &n.metadata))
                }
                ApiList::Pods => {
                    let l: k8s_openapi::List<Pod> = serde_json::from_slice(&bytes).unwrap();
                    for p in &l.items {
                        assert!(p.metadata.owner_references.as_ref().is_some_and(|o| o.len() == 1));
                        assert!(p.status.as_ref().unwrap().container_statuses.is_some());
                    }
                    rv_of(&l.metadata, l.items.iter().map(|p| &p.metadata))
                }
                ApiList::Namespaces => {
                    let l: k8s_openapi::List<Namespace> = serde_json::from_slice(&bytes).unwrap();
                    assert!(
                        l.items.iter().all(|n| n.status.as_ref().unwrap().phase.as_deref() == Some("Active"))
                    );
                    rv_of(&l.metadata, l.items.iter().map(|n| &n.metadata))
                }
                ApiList::Events => {
                    let l: k8s_openapi::List<Event> = serde_json::from_slice(&bytes).unwrap();
                    rv_of(&l.metadata, l.items.iter().map(|e| &e.metadata))
                }
            };
            let (list_rv, objects) = rvs.split_first().unwrap();
            assert!(objects.iter().all(|rv| rv <= list_rv), "{}", path.display());
            if let Some(prev) = last.insert(list.file_name(), *list_rv) {
                assert!(*list_rv > prev, "{}", path.display());
            }
        }
    }
}

fn rv_of<'a>(
    list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    objects: impl Iterator<Item = &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> Vec<u64> {
    let parse = |rv: Option<&String>| rv.unwrap().parse::<u64>().unwrap();
    std::iter::once(parse(list.resource_version.as_ref()))
        .chain(objects.map(|m| parse(m.resource_version.as_ref())))
        .collect()
}

#[test]
fn timeline_relabels_pods_and_adds_nodes() {
    let base = SynthSpec::new(2, 4, 4);
    let cluster = Cluster::plan(&base);
    let target = cluster.pods.iter().find(|p| p.kind == PodKind::Deployment).unwrap();
    let ns = cluster.namespaces[target.ns].name.clone();
    let spec = SynthSpec {
        timeline: vec![
            TimelineEvent::PodRelabel {
                window: 1,
                ns: ns.clone(),
                pod: target.name.clone(),
                labels: BTreeMap::from([("tier".to_string(), "gold".to_string())]),
            },
            TimelineEvent::NodeAdded { window: 2, node: "gke-prod-pool-2-0badcafe-new1".into() },
        ],
        ..base
    };
    let (_dir, s, report) = generate(&spec);
    assert_eq!(report.nodes, 3);
    assert_eq!(report.pods, 2 * 4 + 2);
    let labels =
        |w| pod_in_list(&api(&s, w, ApiList::Pods), &ns, &target.name).unwrap()["metadata"]["labels"].clone();
    assert!(labels(0)["tier"].is_null());
    assert_eq!(labels(1)["tier"], "gold");
    assert_eq!(labels(1)["app"], labels(0)["app"]);

    let added = "gke-prod-pool-2-0badcafe-new1";
    assert!(!node_names(&s, 1).contains(&added.to_string()));
    assert!(node_names(&s, 2).contains(&added.to_string()));
    assert_eq!(ready_status(&s, 2, added), "True");
    assert!(!s.summary_path(1, added).exists());
    let body = summary(&s, 2, added);
    let scraped = body["pods"].as_array().unwrap();
    assert_eq!(scraped.len(), 2);
    let listed = items(&api(&s, 2, ApiList::Pods)).iter().filter(|p| p["spec"]["nodeName"] == added).count();
    assert_eq!(listed, 2);
    let end = (s.windows[2].time / 1000) as i64;
    let prev_end = (s.windows[1].time / 1000) as i64;
    for p in scraped {
        for c in p["containers"].as_array().unwrap() {
            let (start, time) = (secs(&c["startTime"]), secs(&c["cpu"]["time"]));
            assert!(start > prev_end && start < time && time < end, "{start} {time} {end}");
        }
    }
    // Counters of the new node keep growing in the next window.
    let cpu = |w| num(&summary(&s, w, added)["node"]["cpu"]["usageCoreNanoSeconds"]);
    assert!(cpu(2) < cpu(3));
}

#[test]
fn bad_specs_and_timelines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refuse = |spec: SynthSpec| synth(&spec, dir.path()).unwrap_err().to_string();
    assert!(refuse(SynthSpec::new(0, 3, 2)).contains("nodes (0)"));
    assert!(
        refuse(SynthSpec { start_ms: DEFAULT_START_MS + 1_000, ..SynthSpec::new(1, 3, 2) })
            .contains("not aligned")
    );
    assert!(
        refuse(SynthSpec { resolution_seconds: 2, start_ms: 0, ..SynthSpec::new(1, 3, 2) })
            .contains("5 s minimum")
    );
    let late = TimelineEvent::NodeNotReady { window: 2, node: "x".into() };
    assert!(
        refuse(SynthSpec { timeline: vec![late], ..SynthSpec::new(1, 3, 2) })
            .contains("past the last window 1")
    );
    // A bad event fails before anything is written: the scenario already there survives.
    synth(&SynthSpec::new(1, 3, 2), dir.path()).unwrap();
    let before = tree(dir.path());
    let ghost = TimelineEvent::DeletePod { window: 1, ns: "web".into(), pod: "ghost-0".into() };
    let err = synth(&SynthSpec { timeline: vec![ghost], ..SynthSpec::new(1, 3, 2) }, dir.path()).unwrap_err();
    assert!(matches!(err, SynthError::Timeline { window: 1, .. }), "{err}");
    assert!(err.to_string().contains("web/ghost-0"), "{err}");
    assert!(tree(dir.path()) == before, "a refused spec must not touch the output");
    let cluster = Cluster::plan(&SynthSpec::new(1, 3, 2));
    let twice = TimelineEvent::NodeAdded { window: 1, node: cluster.nodes[0].name.clone() };
    let err = refuse(SynthSpec { timeline: vec![twice], ..SynthSpec::new(1, 3, 2) });
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn rewrites_a_previous_scenario_but_keeps_expected() {
    let dir = tempfile::tempdir().unwrap();
    synth(&SynthSpec::new(3, 2, 2), dir.path()).unwrap();
    fs::create_dir_all(dir.path().join("expected")).unwrap();
    fs::write(dir.path().join("expected/log.txt"), "golden").unwrap();
    synth(&SynthSpec::new(1, 2, 1), dir.path()).unwrap();
    let s = Scenario::open(dir.path()).unwrap();
    assert_eq!(s.windows.len(), 1);
    assert!(!dir.path().join("windows/0001").exists());
    assert_eq!(fs::read_dir(dir.path().join("windows/0000/kubelet")).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(dir.path().join("expected/log.txt")).unwrap(), "golden");

    let stranger = tempfile::tempdir().unwrap();
    fs::create_dir_all(stranger.path().join("windows/0000")).unwrap();
    let err = synth(&SynthSpec::new(1, 2, 1), stranger.path()).unwrap_err();
    assert!(matches!(err, SynthError::NotAScenario { .. }), "{err}");
    assert!(stranger.path().join("windows/0000").is_dir());
}

#[test]
fn big_cluster_bodies_are_compact_and_kubelet_sized() {
    let (_dir, s, report) = generate(&SynthSpec::new(2, 30, 2));
    assert_eq!(report.pods, 60);
    let mut total = 0;
    for node in node_names(&s, 1) {
        let bytes = fs::read(s.summary_path(1, &node)).unwrap();
        assert!((40_000..200_000).contains(&bytes.len()), "{node}: {} bytes", bytes.len());
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "compact bodies end in one newline");
        total += bytes.len() as u64;
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["pods"].as_array().unwrap().len(), 30);
    }
    assert!(report.bytes > 2 * total);
}
