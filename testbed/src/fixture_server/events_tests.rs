//! Events over real HTTP(S): lists, watches through faults, the timer clock and bursts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::tests::{
    Fixture, Read, TOKEN, WatchStream, assert_expired, client_trusting, ev, start_with, summarize,
};
use super::*;
use crate::synth::{SynthSpec, synth};

type Key = (String, String);

fn events_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events")
}

async fn serve(dir: &Path, tweak: impl FnOnce(&mut FixtureConfig)) -> Fixture {
    heapster::tls::install_crypto_provider();
    let tls = tempfile::tempdir().unwrap();
    let mut config = FixtureConfig::new(dir, tls.path());
    config.token = Some(TOKEN.into());
    config.bookmark_interval = Duration::from_secs(3600);
    tweak(&mut config);
    let server = FixtureServer::start(config).await.unwrap();
    let client = client_trusting(server.ca_cert());
    Fixture { server, client, _dir: tls }
}

/// The recorded event list in force in `window`, without resource versions (the server's own).
fn recorded(s: &Scenario, window: usize) -> BTreeMap<Key, Value> {
    let Some(path) = s.api_file(window, ApiList::Events) else { return BTreeMap::new() };
    let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            let meta = &e["metadata"];
            ((meta["namespace"].as_str().unwrap().into(), meta["name"].as_str().unwrap().into()), e)
        })
        .collect()
}

/// What a watch must say between two windows: (type, name, count), in key order.
fn diff(
    old: &BTreeMap<Key, Value>,
    new: &BTreeMap<Key, Value>,
    ns: Option<&str>,
) -> Vec<(String, String, u64)> {
    let keys: BTreeSet<&Key> = old.keys().chain(new.keys()).collect();
    let count = |e: &Value| e["count"].as_u64().unwrap();
    keys.into_iter()
        .filter(|(n, _)| ns.is_none_or(|want| n == want))
        .filter_map(|key| match (old.get(key), new.get(key)) {
            (None, Some(e)) => Some(("ADDED".to_string(), key.1.clone(), count(e))),
            (Some(a), Some(b)) if a != b => Some(("MODIFIED".to_string(), key.1.clone(), count(b))),
            (Some(a), None) => Some(("DELETED".to_string(), key.1.clone(), count(a))),
            _ => None,
        })
        .collect()
}

/// The next `n` non-bookmark lines as (type, name, count), checking versions rise.
async fn read_events(watch: &mut WatchStream, n: usize, after: &mut u64) -> Vec<(String, String, u64)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let line = watch.line().await;
        if line["type"] == "BOOKMARK" {
            continue;
        }
        let (kind, name, rv) = summarize(&line);
        assert!(rv > *after, "{kind} {name}: version {rv} after {after}");
        *after = rv;
        assert_eq!(line["object"]["kind"], "Event");
        out.push((kind, name, line["object"]["count"].as_u64().unwrap()));
    }
    out
}

fn names_counts(list: &Value) -> Vec<(String, u64)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["metadata"]["name"].as_str().unwrap().to_string(), e["count"].as_u64().unwrap()))
        .collect()
}

fn recorded_names_counts(events: &BTreeMap<Key, Value>, ns: Option<&str>) -> Vec<(String, u64)> {
    events
        .iter()
        .filter(|((n, _), _)| ns.is_none_or(|want| n == want))
        .map(|((_, name), e)| (name.clone(), e["count"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn event_lists_and_gets_answer_the_recorded_window_in_both_api_groups() {
    let dir = events_fixture();
    let s = Scenario::open(&dir).unwrap();
    let f = serve(&dir, |_| {}).await;
    let events = recorded(&s, 0);
    let list = f.get_json("/api/v1/events?limit=500").await;
    assert_eq!((list["kind"].as_str(), list["apiVersion"].as_str()), (Some("EventList"), Some("v1")));
    let parsed: k8s_openapi::List<k8s_openapi::api::core::v1::Event> =
        serde_json::from_value(list.clone()).unwrap();
    assert_eq!(parsed.items.len(), events.len());
    assert_eq!(names_counts(&list), recorded_names_counts(&events, None));
    // Window 0's objects are stamped 1..=n: nodes, pods, namespaces, then events.
    let objects: usize = [ApiList::Nodes, ApiList::Pods, ApiList::Namespaces]
        .into_iter()
        .map(|l| {
            let v: Value =
                serde_json::from_slice(&std::fs::read(s.api_file(0, l).unwrap()).unwrap()).unwrap();
            v["items"].as_array().unwrap().len()
        })
        .sum();
    let list_rv: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(list_rv, (objects + events.len()) as u64);
    for item in list["items"].as_array().unwrap() {
        let rv: u64 = item["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(rv > objects as u64 && rv <= list_rv, "{rv}");
    }

    // The burst window, through namespaced lists, gets and events.k8s.io.
    for _ in 0..3 {
        f.server.advance();
    }
    let events = recorded(&s, 3);
    let ns = events.keys().next().unwrap().0.clone();
    let namespaced = f.get_json(&format!("/api/v1/namespaces/{ns}/events")).await;
    assert_eq!(names_counts(&namespaced), recorded_names_counts(&events, Some(&ns)));
    let ((_, name), event) = events.iter().find(|((n, _), _)| *n == ns).unwrap();
    let got = f.get_json(&format!("/api/v1/namespaces/{ns}/events/{name}")).await;
    assert_eq!((got["kind"].as_str(), got["message"].as_str()), (Some("Event"), event["message"].as_str()));
    let missing = f.api(&format!("/api/v1/namespaces/{ns}/events/nope.1")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let v1 = f.get_json("/apis/events.k8s.io/v1/events").await;
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    let items = v1["items"].as_array().unwrap();
    assert_eq!(items.len(), events.len());
    for item in items {
        let key = (
            item["metadata"]["namespace"].as_str().unwrap().to_string(),
            item["metadata"]["name"].as_str().unwrap().to_string(),
        );
        let core = &events[&key];
        assert_eq!(item["note"], core["message"]);
        assert_eq!(item["deprecatedCount"], core["count"]);
        assert_eq!(item["regarding"], core["involvedObject"]);
        assert_eq!(item["deprecatedLastTimestamp"], core["lastTimestamp"]);
    }
    let groups = f.get_json("/apis").await;
    assert_eq!(groups["groups"][0]["name"], "events.k8s.io");
    let resources = f.get_json("/apis/events.k8s.io/v1").await;
    assert_eq!(resources["resources"][0]["name"], "events");
    let core_resources = f.get_json("/api/v1").await;
    assert!(core_resources["resources"].as_array().unwrap().iter().any(|r| r["name"] == "events"));
}

/// What a collector's events source does: list, watch from the list's version with bookmarks,
/// and on a 410 or a cut connection list again or resume. Each window's changes arrive exactly
/// once, as the recorded files differ.
#[tokio::test]
async fn event_watches_follow_the_recorded_diffs_through_a_410_and_a_dropped_connection() {
    let dir = events_fixture();
    let s = Scenario::open(&dir).unwrap();
    let windows: Vec<BTreeMap<Key, Value>> = (0..s.windows.len()).map(|w| recorded(&s, w)).collect();
    let faults = Faults::load(&s).unwrap();
    let gone = (0..windows.len()).find(|&w| faults.api(w).watch_gone).unwrap();
    let dropped = (0..windows.len()).find(|&w| faults.api(w).drop_watches).unwrap();
    assert!(0 < gone && gone < dropped, "the scenario promises a 410, then a cut connection");
    let f = serve(&dir, |_| {}).await;

    let list = f.get_json("/api/v1/events").await;
    assert_eq!(names_counts(&list), recorded_names_counts(&windows[0], None));
    let listed: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let mut watch =
        f.watch(&format!("/api/v1/events?watch=1&resourceVersion={listed}&allowWatchBookmarks=true")).await;
    let ns = "kube-system";
    let mut namespaced =
        f.watch(&format!("/api/v1/namespaces/{ns}/events?watch=1&resourceVersion={listed}")).await;
    let mut v1 = f.watch(&format!("/apis/events.k8s.io/v1/events?watch=1&resourceVersion={listed}")).await;
    let (mut at, mut at_ns) = (listed, listed);
    let mut seen = BTreeSet::new();
    for w in 1..gone {
        f.server.advance();
        let want = diff(&windows[w - 1], &windows[w], None);
        assert!(!want.is_empty(), "window {w} changes events");
        let got = read_events(&mut watch, want.len(), &mut at).await;
        assert_eq!(got, want, "window {w}");
        seen.extend(got.iter().map(|(k, _, _)| k.clone()));
        let bookmark = watch.line().await;
        assert_eq!(bookmark["type"], "BOOKMARK", "after window {w}'s changes");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], at.to_string());
        let want_ns = diff(&windows[w - 1], &windows[w], Some(ns));
        assert_eq!(read_events(&mut namespaced, want_ns.len(), &mut at_ns).await, want_ns);
        if w == 1 {
            let line = v1.line().await;
            assert_eq!(line["object"]["apiVersion"], "events.k8s.io/v1");
            assert_eq!(
                (line["type"].as_str(), line["object"]["deprecatedCount"].as_u64()),
                (Some(want[0].0.as_str()), Some(want[0].2))
            );
        }
    }
    assert_eq!(seen, BTreeSet::from(["ADDED".to_string(), "DELETED".to_string(), "MODIFIED".to_string()]));

    // 410: the open watch ends with it, resuming from before is refused, a new list catches up.
    f.server.advance();
    let mut line = watch.line().await;
    while line["type"] == "BOOKMARK" {
        line = watch.line().await;
    }
    assert_expired(&line);
    assert!(matches!(watch.read().await, Read::End));
    let mut stale = f.watch(&format!("/api/v1/events?watch=1&resourceVersion={at}")).await;
    assert_expired(&stale.line().await);
    let relisted = f.get_json("/api/v1/events").await;
    assert_eq!(names_counts(&relisted), recorded_names_counts(&windows[gone], None));
    let relisted_rv: u64 = relisted["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    for w in gone + 1..dropped {
        let mut watch = f.watch(&format!("/api/v1/events?watch=1&resourceVersion={relisted_rv}")).await;
        f.server.advance();
        let mut at = relisted_rv;
        assert_eq!(
            read_events(&mut watch, diff(&windows[w - 1], &windows[w], None).len(), &mut at).await,
            diff(&windows[w - 1], &windows[w], None)
        );
    }

    // A cut connection: nothing of the window arrives on it; resuming from the last version
    // seen gets all of it.
    let before = f.list_rv("/api/v1/events").await;
    let mut watch =
        f.watch(&format!("/api/v1/events?watch=1&resourceVersion={before}&allowWatchBookmarks=true")).await;
    f.server.advance();
    assert!(matches!(watch.read().await, Read::Broken));
    let mut resumed =
        f.watch(&format!("/api/v1/events?watch=1&resourceVersion={before}&allowWatchBookmarks=true")).await;
    let mut at = before;
    let want = diff(&windows[dropped - 1], &windows[dropped], None);
    assert!(want.iter().filter(|(k, _, _)| k == "DELETED").count() >= 200, "the burst expires here");
    assert_eq!(read_events(&mut resumed, want.len(), &mut at).await, want);
    for w in dropped + 1..windows.len() {
        f.server.advance();
        let want = diff(&windows[w - 1], &windows[w], None);
        assert_eq!(read_events(&mut resumed, want.len(), &mut at).await, want, "window {w}");
    }
    let last = f.get_json("/api/v1/events").await;
    assert_eq!(names_counts(&last), recorded_names_counts(&windows[windows.len() - 1], None));
    let stats = f.server.stats();
    // The 410 ended the three open watches, and refused the stale resume.
    assert_eq!((stats.watches_expired, stats.watches_dropped), (4, 1));
}

#[tokio::test]
async fn a_timer_drives_the_clock_when_asked_and_scrapes_no_longer_do() {
    let timed = start_with(|_, _, _| {}, |c| c.advance_every = Some(Duration::from_millis(20))).await;
    // Window 0 stamps 7 objects; from there the watch replays whatever the timer brought.
    let mut pods = timed.watch("/api/v1/pods?watch=1&resourceVersion=7").await;
    let changes = [pods.event().await, pods.event().await].map(|(kind, name, _)| ev(&kind, &name));
    assert_eq!(changes, [ev("MODIFIED", "p1"), ev("DELETED", "p2")]);
    assert_eq!(timed.server.window(), 2);
    let stats = timed.server.stats();
    assert_eq!(stats.advances, 2);
    assert!(stats.summaries.is_empty(), "{stats:?}");

    let slow = start_with(|_, _, _| {}, |c| c.advance_every = Some(Duration::from_secs(3600))).await;
    for node in ["n1", "n2"] {
        assert_eq!(slow.scrape(node).await, 0);
    }
    assert_eq!(slow.server.window(), 0, "scrapes do not move a timed clock");
    slow.server.advance();
    assert_eq!(slow.server.window(), 1, "a forced advance still does");
}

#[tokio::test]
async fn a_burst_of_ten_thousand_events_streams_to_every_watcher() {
    const BURST: usize = 10_000;
    let scenario = tempfile::tempdir().unwrap();
    synth(&SynthSpec::event_burst(BURST), scenario.path()).unwrap();
    let f = serve(scenario.path(), |_| {}).await;
    let listed = f.list_rv("/api/v1/events").await;
    let path = format!("/api/v1/events?watch=1&resourceVersion={listed}&allowWatchBookmarks=true");
    let (mut first, mut second) = (f.watch(&path).await, f.watch(&path).await);
    f.server.advance();
    // Both at once, as two clients would. The server drops no slow watcher: a stream nobody
    // reads waits on its bounded buffer (only a `drop_watches` fault cuts one).
    let whole_burst = async |watch: &mut WatchStream| {
        let mut at = listed;
        let got = read_events(watch, BURST, &mut at).await;
        assert!(got.iter().all(|(kind, _, count)| kind == "ADDED" && *count == 1));
        let names: BTreeSet<&String> = got.iter().map(|(_, name, _)| name).collect();
        assert_eq!(names.len(), BURST);
        let bookmark = watch.line().await;
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], at.to_string());
        got
    };
    let streams = tokio::join!(whole_burst(&mut first), whole_burst(&mut second));
    assert_eq!(streams.0, streams.1);
    let list = f.get_json("/api/v1/events").await;
    assert_eq!(list["items"].as_array().unwrap().len(), BURST);
    assert_eq!(f.server.stats().watch_events, 2 * BURST as u64);
}
