//! The fixture server over real HTTP(S) on loopback: lists, watches, paging, faults and kubelets
//! (over 600 lines: the tests share one running-server set-up and its client helpers).

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use heapster::scenario::{ScenarioWriter, WindowWriter};

pub(super) const TOKEN: &str = "s3cret-token";
/// Bounds every wait on the server, so that a bug fails a test instead of hanging it.
pub(super) const PATIENCE: Duration = Duration::from_secs(20);
/// The most a watch stream may stay open. The client's `PATIENCE` bounds a whole request,
/// body included, which would cut a long stream that is still flowing; a watch is instead
/// bounded per chunk by `PATIENCE` in [`WatchStream::read`].
const WATCH_LIFETIME: Duration = Duration::from_secs(600);

fn node(name: &str, ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "12345",
                     "labels": {"kubernetes.io/hostname": name}},
        "spec": {"providerID": format!("gce://project/zone/{name}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "capacity": {"cpu": "2", "memory": "4Gi"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    })
}

fn pod(ns: &str, name: &str, node: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "777",
                     "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"},
    })
}

fn list(kind: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "999"}, "items": items}),
    )
    .unwrap()
}

fn summary(node: &str, window: usize) -> Vec<u8> {
    format!("{{\"node\": {{\"nodeName\": \"{node}\"}}, \"pods\": [], \"window\": {window}}}\n").into_bytes()
}

/// Three windows: n1, n2 and pods p1, p2 (default) and p3 (kube-system); n3 joins in window 1;
/// in window 2, p1 is relabelled and p2 deleted. `extra` adds fault files per window.
pub(super) fn write_scenario(dir: &Path, extra: impl Fn(usize, &WindowWriter, &Path)) {
    let mut w = ScenarioWriter::create(dir, "fixture server test", 60).unwrap();
    let t0 = 1_700_000_040_000;
    let nodes0 = vec![node("n1", "10.0.0.1"), node("n2", "10.0.0.2")];
    let mut nodes1 = nodes0.clone();
    nodes1.push(node("n3", "10.0.0.3"));
    for window in 0..3 {
        let ww = w.window(t0 + window as u64 * 60_000).unwrap();
        let window_dir = dir.join("windows").join(format!("{window:04}"));
        match window {
            0 => {
                ww.api(ApiList::Nodes, &list("NodeList", nodes0.clone())).unwrap();
                let pods = vec![
                    pod("default", "p1", "n1", "a"),
                    pod("default", "p2", "n2", "a"),
                    pod("kube-system", "p3", "n1", "dns"),
                ];
                ww.api(ApiList::Pods, &list("PodList", pods)).unwrap();
                let ns = |name: &str| json!({"metadata": {"name": name, "uid": format!("uid-{name}")}});
                ww.api(ApiList::Namespaces, &list("NamespaceList", vec![ns("default"), ns("kube-system")]))
                    .unwrap();
            }
            1 => ww.api(ApiList::Nodes, &list("NodeList", nodes1.clone())).unwrap(),
            _ => {
                let pods = vec![pod("default", "p1", "n1", "b"), pod("kube-system", "p3", "n1", "dns")];
                ww.api(ApiList::Pods, &list("PodList", pods)).unwrap();
            }
        }
        let present: &[&str] = if window == 0 { &["n1", "n2"] } else { &["n1", "n2", "n3"] };
        for n in present {
            ww.summary(n, &summary(n, window)).unwrap();
        }
        extra(window, &ww, &window_dir);
    }
    w.finish().unwrap();
}

pub(super) fn api_fault(window_dir: &Path, body: &str) {
    std::fs::write(window_dir.join("api").join("faults.json"), body).unwrap();
}

pub(super) struct Fixture {
    pub(super) server: FixtureServer,
    pub(super) client: reqwest::Client,
    pub(super) _dir: tempfile::TempDir,
}

pub(super) async fn start_with(
    extra: impl Fn(usize, &WindowWriter, &Path),
    tweak: impl FnOnce(&mut FixtureConfig),
) -> Fixture {
    heapster::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario");
    write_scenario(&scenario, extra);
    let mut config = FixtureConfig::new(&scenario, dir.path().join("tls"));
    config.token = Some(TOKEN.into());
    config.bookmark_interval = Duration::from_secs(3600);
    tweak(&mut config);
    let server = FixtureServer::start(config).await.unwrap();
    let client = client_trusting(server.ca_cert());
    Fixture { server, client, _dir: dir }
}

pub(super) async fn start() -> Fixture {
    start_with(|_, _, _| {}, |_| {}).await
}

pub(super) fn client_trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

impl Fixture {
    pub(super) fn api(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.server.api_url())).bearer_auth(TOKEN)
    }

    pub(super) async fn get_json(&self, path: &str) -> Value {
        let response = self.api(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    pub(super) async fn list_rv(&self, path: &str) -> u64 {
        self.get_json(path).await["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    }

    pub(super) async fn watch(&self, path: &str) -> WatchStream {
        let response = self.api(path).timeout(WATCH_LIFETIME).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        WatchStream { response, buf: Vec::new() }
    }

    pub(super) fn kubelet_url(&self, node: &str, secure: bool) -> String {
        let addr = self.server.kubelet_addr(node).unwrap();
        match secure {
            true => format!("https://{addr}:{}/stats/summary", self.server.kubelet_https_port()),
            false => format!("http://{addr}:{}/stats/summary", self.server.kubelet_http_port()),
        }
    }

    /// Scrapes `node` over HTTPS; returns the `window` field of the body.
    pub(super) async fn scrape(&self, node: &str) -> u64 {
        let response = self.client.get(self.kubelet_url(node, true)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["node"]["nodeName"], node);
        body["window"].as_u64().unwrap()
    }
}

pub(super) struct WatchStream {
    response: reqwest::Response,
    buf: Vec<u8>,
}

/// How a watch stream went on.
#[derive(Debug)]
pub(super) enum Read {
    Line(Value),
    /// Ended with the final chunk.
    End,
    /// The connection broke.
    Broken,
}

impl WatchStream {
    pub(super) async fn read(&mut self) -> Read {
        loop {
            if let Some(newline) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=newline).collect();
                return Read::Line(serde_json::from_slice(&line).unwrap());
            }
            match tokio::time::timeout(PATIENCE, self.response.chunk()).await.expect("watch stream stalled") {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    assert!(self.buf.is_empty(), "partial line at the end");
                    return Read::End;
                }
                Err(_) => return Read::Broken,
            }
        }
    }

    pub(super) async fn line(&mut self) -> Value {
        match self.read().await {
            Read::Line(line) => line,
            other => panic!("expected a watch event, got {other:?}"),
        }
    }

    /// The next line that is not a bookmark, as (type, name, resourceVersion).
    pub(super) async fn event(&mut self) -> (String, String, u64) {
        loop {
            let line = self.line().await;
            if line["type"] != "BOOKMARK" {
                return summarize(&line);
            }
        }
    }
}

pub(super) fn summarize(line: &Value) -> (String, String, u64) {
    let meta = &line["object"]["metadata"];
    (
        line["type"].as_str().unwrap().to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
        meta["resourceVersion"].as_str().unwrap_or("0").parse().unwrap(),
    )
}

pub(super) fn ev(kind: &str, name: &str) -> (String, String) {
    (kind.to_string(), name.to_string())
}

pub(super) fn assert_expired(line: &Value) {
    assert_eq!(line["type"], "ERROR", "{line}");
    let status = &line["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(status["message"].as_str().unwrap().starts_with("too old resource version: "), "{status}");
}

#[tokio::test]
async fn lists_carry_server_resource_versions_and_loopback_kubelet_addresses() {
    let f = start().await;
    let nodes = f.get_json("/api/v1/nodes?limit=500").await;
    assert_eq!(nodes["kind"], "NodeList");
    assert!(nodes["metadata"].get("continue").is_none());
    // 2 nodes, 3 pods and 2 namespaces, stamped 1..=7.
    assert_eq!(nodes["metadata"]["resourceVersion"], "7");
    let items = nodes["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["n1", "n2"]);
    for item in items {
        let name = item["metadata"]["name"].as_str().unwrap();
        let rv: u64 = item["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!((1..=7).contains(&rv), "{rv}");
        assert_eq!(
            item["status"]["addresses"][0]["address"],
            f.server.kubelet_addr(name).unwrap().to_string()
        );
        assert_eq!(item["status"]["addresses"][1]["address"], name);
        assert_eq!(
            item["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            f.server.kubelet_https_port()
        );
    }
    // Kubelets sit on consecutive loopback addresses in name order, n3 included.
    assert_eq!(f.server.kubelet_addr("n1"), Some(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(f.server.kubelet_addr("n3"), Some(Ipv4Addr::new(127, 0, 0, 4)));

    let pods = f.get_json("/api/v1/pods?resourceVersion=0").await;
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"].as_array().unwrap().len(), 3);
    let system = f.get_json("/api/v1/namespaces/kube-system/pods?labelSelector=x%3Dy").await;
    assert_eq!(system["items"].as_array().unwrap().len(), 1);
    assert_eq!(system["items"][0]["metadata"]["name"], "p3");
    let namespaces = f.get_json("/api/v1/namespaces").await;
    assert_eq!(namespaces["items"].as_array().unwrap().len(), 2);

    let p1 = f.get_json("/api/v1/namespaces/default/pods/p1").await;
    assert_eq!(p1["kind"], "Pod");
    assert_ne!(p1["metadata"]["resourceVersion"], "777");
    let missing = f.api("/api/v1/namespaces/default/pods/nope").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["reason"], "NotFound");
    assert_eq!(f.get_json("/version").await["major"], "1");
    assert_eq!(f.get_json("/api").await["versions"][0], "v1");
    assert_eq!(f.api("/api/v1/services").send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let stats = f.server.stats();
    assert_eq!(stats.lists, 4);
    assert_eq!(stats.gets, 2);
}

#[tokio::test]
async fn watches_from_a_list_see_each_window_change_once() {
    let f = start().await;
    let rv = f.list_rv("/api/v1/pods").await;
    let mut pods = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}")).await;
    let mut nodes = f.watch(&format!("/api/v1/nodes?watch=true&resourceVersion={rv}")).await;
    let mut default = f.watch(&format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}")).await;

    f.server.advance();
    let (kind, name, n3_rv) = nodes.event().await;
    assert_eq!(ev(&kind, &name), ev("ADDED", "n3"));
    assert_eq!(n3_rv, rv + 1);
    let listed = f.get_json("/api/v1/nodes").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
    assert_eq!(listed["metadata"]["resourceVersion"], n3_rv.to_string());

    f.server.advance();
    let first = pods.event().await;
    let second = pods.event().await;
    assert_eq!(ev(&first.0, &first.1), ev("MODIFIED", "p1"));
    assert_eq!(ev(&second.0, &second.1), ev("DELETED", "p2"));
    assert_eq!((first.2, second.2), (rv + 2, rv + 3));
    assert_eq!(default.event().await.1, "p1");
    assert_eq!(default.event().await.1, "p2");

    // A watch from the first list replays the same events; one from now has none pending.
    let mut replay = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1")).await;
    assert_eq!(replay.event().await, first);
    let deleted = replay.line().await;
    assert_eq!(summarize(&deleted), second);
    assert_eq!(deleted["object"]["kind"], "Pod");
    assert_eq!(deleted["object"]["metadata"]["labels"]["app"], "a", "DELETED carries the last state");
    assert!(matches!(replay.read().await, Read::End), "timeoutSeconds ends the stream cleanly");

    // Without a resource version, the current objects come first as ADDED.
    let mut fresh = f.watch("/api/v1/namespaces?watch=1").await;
    let names = [fresh.event().await, fresh.event().await].map(|(kind, name, _)| ev(&kind, &name));
    assert_eq!(names, [ev("ADDED", "default"), ev("ADDED", "kube-system")]);
    assert_eq!(f.server.stats().watch_events, 1 + 2 + 2 + 2 + 2);
}

#[tokio::test]
async fn watches_from_compacted_versions_get_410() {
    let f = start_with(|_, _, _| {}, |c| c.event_log_capacity = 1).await;
    let rv = f.list_rv("/api/v1/pods").await;
    let mut before_start = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={}", rv - 1)).await;
    assert_expired(&before_start.line().await);
    assert!(matches!(before_start.read().await, Read::End));

    f.server.advance();
    f.server.advance();
    // Three events since the list; the log keeps one, but never less than the last window's two.
    let mut old = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}")).await;
    let line = old.line().await;
    assert_expired(&line);
    assert_eq!(line["object"]["message"], format!("too old resource version: {rv} ({})", rv + 1));
    let mut recent = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={}", rv + 1)).await;
    assert_eq!(recent.event().await.0, "MODIFIED");
    assert!(matches!(old.read().await, Read::End));
    assert_eq!(f.server.stats().watches_expired, 2);
}

#[tokio::test]
async fn watch_gone_fault_expires_open_watches_and_old_versions() {
    let f = start_with(
        |w, _, dir| {
            if w == 1 {
                api_fault(dir, r#"{"watch_gone": true}"#)
            }
        },
        |_| {},
    )
    .await;
    let rv = f.list_rv("/api/v1/nodes").await;
    let mut watch = f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}")).await;
    f.server.advance();
    assert_expired(&watch.line().await);
    assert!(matches!(watch.read().await, Read::End));
    let mut resumed = f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}")).await;
    assert_expired(&resumed.line().await);

    // Listing again gives a version to watch from, and n3 is in the list.
    let relisted = f.get_json("/api/v1/nodes").await;
    assert_eq!(relisted["items"].as_array().unwrap().len(), 3);
    let new_rv = relisted["metadata"]["resourceVersion"].as_str().unwrap();
    let mut pods = f.watch(&format!("/api/v1/pods?watch=1&resourceVersion={new_rv}")).await;
    f.server.advance();
    assert_eq!(pods.event().await.0, "MODIFIED");
}

#[tokio::test]
async fn drop_watches_fault_cuts_connections_and_resuming_catches_up() {
    let f = start_with(
        |w, _, dir| {
            if w == 1 {
                api_fault(dir, r#"{"drop_watches": true}"#)
            }
        },
        |_| {},
    )
    .await;
    let rv = f.list_rv("/api/v1/nodes").await;
    let mut watch = f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}")).await;
    f.server.advance();
    assert!(matches!(watch.read().await, Read::Broken), "cut without the final chunk, before the events");
    assert_eq!(f.server.stats().watches_dropped, 1);
    let mut resumed = f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}")).await;
    let (kind, name, _) = resumed.event().await;
    assert_eq!(ev(&kind, &name), ev("ADDED", "n3"));
}

#[tokio::test]
async fn list_error_fault_answers_a_status() {
    let f = start_with(
        |w, _, dir| {
            if w == 1 {
                api_fault(dir, r#"{"list_error": 500}"#)
            }
        },
        |_| {},
    )
    .await;
    assert_eq!(f.api("/api/v1/pods").send().await.unwrap().status(), StatusCode::OK);
    f.server.advance();
    let response = f.api("/api/v1/pods").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let status: Value = response.json().await.unwrap();
    assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(500)));
    assert_eq!(status["reason"], "InternalError");
    f.server.advance();
    assert_eq!(f.api("/api/v1/pods").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(f.server.stats().api_faults, 1);
}

#[tokio::test]
async fn bookmarks_come_periodically_and_after_window_changes_when_asked() {
    let f = start_with(|_, _, _| {}, |c| c.bookmark_interval = Duration::from_millis(50)).await;
    let rv = f.list_rv("/api/v1/nodes").await;
    let mut watch =
        f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")).await;
    let periodic = watch.line().await;
    assert_eq!(periodic["type"], "BOOKMARK");
    assert_eq!(periodic["object"]["kind"], "Node");
    assert_eq!(periodic["object"]["metadata"]["resourceVersion"], rv.to_string());

    f.server.advance();
    let added = loop {
        let line = watch.line().await;
        if line["type"] != "BOOKMARK" {
            break line;
        }
    };
    assert_eq!(summarize(&added).0, "ADDED");
    let after = watch.line().await;
    assert_eq!(after["type"], "BOOKMARK");
    assert_eq!(after["object"]["metadata"]["resourceVersion"], (rv + 1).to_string());

    // Not asked: none, even over several intervals, until the timeout ends the stream.
    let mut quiet =
        f.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={}&timeoutSeconds=1", rv + 1)).await;
    assert!(matches!(quiet.read().await, Read::End));

    // Streaming lists: the objects, then the bookmark that ends them.
    let mut streaming =
        f.watch("/api/v1/namespaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=true").await;
    assert_eq!(streaming.line().await["type"], "ADDED");
    assert_eq!(streaming.line().await["type"], "ADDED");
    let end = streaming.line().await;
    assert_eq!(end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
}

#[tokio::test]
async fn bearer_token_is_required_by_the_apiserver_and_kubelet_https() {
    let f = start().await;
    let url = format!("{}/api/v1/nodes", f.server.api_url());
    for request in [f.client.get(&url), f.client.get(&url).bearer_auth("wrong")] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let status: Value = response.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["code"], 401);
    }
    let kubelet = f.client.get(f.kubelet_url("n1", true)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(kubelet.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kubelet.text().await.unwrap(), "Unauthorized");
    // The read-only port asks for nothing.
    let plain = f.client.get(f.kubelet_url("n1", false)).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    let stats = f.server.stats();
    assert_eq!((stats.api_unauthorized, stats.kubelet_unauthorized), (2, 1));
    assert_eq!(stats.summaries["n1"], 2);
}

#[tokio::test]
async fn kubelets_serve_the_current_window_and_drive_the_clock() {
    let f = start().await;
    assert_eq!((f.server.window(), f.server.windows()), (0, 3));
    assert_eq!(f.scrape("n1").await, 0);
    assert_eq!(f.scrape("n1").await, 0);
    assert_eq!(f.server.window(), 0);
    assert!(f.client.get(f.kubelet_url("n3", false)).send().await.unwrap().status() == StatusCode::NOT_FOUND);
    assert_eq!(f.server.window(), 0, "a node that is not listed does not count");
    // The last Ready node's request gets its body of window 0 and moves the clock.
    assert_eq!(f.scrape("n2").await, 0);
    assert_eq!(f.server.window(), 1);
    assert_eq!(f.get_json("/api/v1/nodes").await["items"].as_array().unwrap().len(), 3);

    assert_eq!(f.scrape("n1").await, 1);
    assert_eq!(f.scrape("n2").await, 1);
    assert_eq!(f.server.window(), 1, "n3 is Ready in window 1");
    assert_eq!(f.scrape("n3").await, 1);
    assert_eq!(f.get_json("/fixture/state").await, json!({"window": 2, "windows": 3}));
    assert_eq!(
        f.get_json("/fixture/stats").await,
        json!({"summaries": 7, "nodes": 3}),
        "n3 asked once while unlisted"
    );

    for node in ["n1", "n2", "n3"] {
        assert_eq!(f.scrape(node).await, 2);
    }
    let advance = f.client.post(format!("{}/fixture/advance", f.server.api_url())).bearer_auth(TOKEN);
    let state: Value = advance.send().await.unwrap().json().await.unwrap();
    assert_eq!((state["window"].as_u64(), state["advanced"].as_bool()), (Some(2), Some(false)));
    assert_eq!(f.server.stats().advances, 2);
}

#[tokio::test]
async fn kubelet_faults_delay_fail_truncate_and_garble() {
    let f = start_with(
        |w, ww, _| match w {
            0 => {
                ww.fault("n1", br#"{"delay_ms": 300}"#).unwrap();
                ww.fault("n2", br#"{"status": 500, "body": "boom"}"#).unwrap();
            }
            1 => {
                ww.fault("n1", br#"{"status": 401}"#).unwrap();
                ww.fault("n2", br#"{"truncate": 10}"#).unwrap();
                ww.fault("n3", br#"{"garbage": true, "delay_ms": 1}"#).unwrap();
            }
            _ => {}
        },
        |_| {},
    )
    .await;
    let get = |node: &str| f.client.get(f.kubelet_url(node, true)).bearer_auth(TOKEN).send();

    let started = Instant::now();
    let slow = get("n1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status(), StatusCode::OK);
    let failing = get("n2").await.unwrap();
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failing.text().await.unwrap(), "boom");
    assert_eq!(f.server.window(), 1, "faulty nodes count as scraped");

    let denied = get("n1").await.unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(denied.text().await.unwrap(), "Unauthorized");
    let short = get("n2").await.unwrap();
    assert_eq!(short.status(), StatusCode::OK);
    let declared = short.content_length().unwrap();
    assert_eq!(declared, summary("n2", 1).len() as u64);
    match short.bytes().await {
        Ok(body) => assert!((body.len() as u64) < declared, "{} of {declared} bytes", body.len()),
        Err(e) => assert!(e.is_body() || e.is_decode(), "{e}"),
    }
    let garbage = get("n3").await.unwrap();
    assert_eq!(garbage.status(), StatusCode::OK);
    let body = garbage.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert_eq!(f.server.window(), 2);
    assert_eq!(f.server.stats().kubelet_faults, 5);
}

#[tokio::test]
async fn certificates_verify_for_loopback_and_fail_for_the_override() {
    let good = start().await;
    assert_eq!(good.get_json("/version").await["gitVersion"], "v1.33.0");
    let localhost = good.server.api_url().replace("127.0.0.1", "localhost");
    let response = good.client.get(format!("{localhost}/version")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let bad = start_with(|_, _, _| {}, |c| c.cert_name_override = Some("wrong.example".into())).await;
    let err = bad.api("/version").send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let kubelet = bad.client.get(bad.kubelet_url("n1", true)).bearer_auth(TOKEN).send().await;
    assert!(kubelet.is_err());
    // The certificate is otherwise sound: a client that knows the name accepts it.
    let port = bad.server.api_url().rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let pem = std::fs::read(bad.server.ca_cert()).unwrap();
    let named = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("wrong.example", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .no_proxy()
        .build()
        .unwrap();
    let response =
        named.get(format!("https://wrong.example:{port}/version")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn plain_http_listener_serves_the_same_api() {
    let f =
        start_with(|_, _, _| {}, |c| c.listen_http = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))).await;
    let url = format!("{}/api/v1/namespaces", f.server.api_http_url().unwrap());
    let response = f.client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["items"].as_array().unwrap().len(), 2);
}

mod with_kube {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams};
    use kube::runtime::watcher;

    use super::*;

    async fn kube_client(server: &FixtureServer) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn kube_lists_and_its_watcher_follows_windows_through_a_watch_gone() {
        let f = start_with(
            |w, _, dir| {
                if w == 2 {
                    api_fault(dir, r#"{"watch_gone": true}"#)
                }
            },
            |_| {},
        )
        .await;
        let client = kube_client(&f.server).await;
        let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.unwrap();
        assert_eq!(nodes.items.len(), 2);
        let n1 = nodes.items.iter().find(|n| n.metadata.name.as_deref() == Some("n1")).unwrap();
        let addresses = n1.status.as_ref().unwrap().addresses.as_ref().unwrap();
        assert_eq!(addresses[0].address, f.server.kubelet_addr("n1").unwrap().to_string());

        let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default()).boxed();
        let mut next =
            async || tokio::time::timeout(PATIENCE, events.try_next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(next().await, watcher::Event::Init));
        let mut initial = Vec::new();
        loop {
            match next().await {
                watcher::Event::InitApply(pod) => initial.push(pod.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(initial, ["p1", "p2", "p3"]);

        f.server.advance();
        f.server.advance();
        // Window 2's changes were compacted away with the open watch: the watcher reports the
        // 410 and lists again.
        let error = tokio::time::timeout(PATIENCE, events.try_next()).await.unwrap().unwrap_err();
        assert!(matches!(&error, watcher::Error::WatchError(status) if status.code == 410), "{error:?}");
        let mut next =
            async || tokio::time::timeout(PATIENCE, events.try_next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(next().await, watcher::Event::Init));
        let mut relisted = Vec::new();
        loop {
            match next().await {
                watcher::Event::InitApply(pod) => {
                    relisted.push((pod.metadata.name.unwrap(), pod.metadata.labels.unwrap()["app"].clone()))
                }
                watcher::Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(relisted, [("p1".to_string(), "b".to_string()), ("p3".to_string(), "dns".to_string())]);
        assert!(f.server.stats().watches_expired >= 1);
    }

    #[tokio::test]
    async fn kube_watcher_sees_applies_and_deletes() {
        let f = start().await;
        let client = kube_client(&f.server).await;
        let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default()).boxed();
        let mut next =
            async || tokio::time::timeout(PATIENCE, events.try_next()).await.unwrap().unwrap().unwrap();
        while !matches!(next().await, watcher::Event::InitDone) {}
        f.server.advance();
        f.server.advance();
        match next().await {
            watcher::Event::Apply(pod) => assert_eq!(pod.metadata.labels.unwrap()["app"], "b"),
            other => panic!("unexpected {other:?}"),
        }
        match next().await {
            watcher::Event::Delete(pod) => assert_eq!(pod.metadata.name.as_deref(), Some("p2")),
            other => panic!("unexpected {other:?}"),
        }
        // kube 5 lists and watches without asking for discovery documents.
        let stats = f.server.stats();
        assert_eq!(stats.discovery, 0);
        assert!(stats.lists >= 1 && stats.watches_opened >= 1, "{stats:?}");
    }
}

#[tokio::test]
async fn serves_the_shipped_small_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/small");
    if !dir.join("scenario.json").is_file() {
        println!("note: {} is not in this checkout; nothing to serve", dir.display());
        return;
    }
    heapster::tls::install_crypto_provider();
    let tls = tempfile::tempdir().unwrap();
    let mut config = FixtureConfig::new(&dir, tls.path());
    config.token = Some(TOKEN.into());
    let server = FixtureServer::start(config).await.unwrap();
    let client = client_trusting(server.ca_cert());
    let windows = server.windows();
    for window in 0..windows {
        assert_eq!(server.window(), window);
        let url = format!("{}/api/v1/nodes", server.api_url());
        let nodes: Value = client.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        let ready: Vec<String> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        if ready.is_empty() {
            server.advance();
            continue;
        }
        for node in &ready {
            let addr = server.kubelet_addr(node).unwrap();
            let url = format!("http://{addr}:{}/stats/summary", server.kubelet_http_port());
            let response = client.get(url).send().await.unwrap();
            let faulty = dir.join(format!("windows/{window:04}/kubelet/{node}.fault.json")).is_file();
            if response.status() == StatusCode::OK && !faulty {
                let recorded =
                    std::fs::read(dir.join(format!("windows/{window:04}/kubelet/{node}.json"))).ok();
                let body = response.bytes().await;
                if let (Some(recorded), Ok(body)) = (recorded, body) {
                    assert_eq!(body.as_ref(), recorded.as_slice(), "{node} window {window}");
                }
            }
        }
    }
    assert_eq!(server.window(), windows - 1);
}

/// Sends a raw HTTP/1.1 request and reads until the server closes: what exactly is on the wire.
async fn raw_exchange(addr: SocketAddr, request: String, then: impl AsyncFnOnce()) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    // Wait for the head before acting, so that the action happens mid-response.
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the head");
        received.extend_from_slice(&buf[..n]);
    }
    then().await;
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn on_the_wire_truncation_declares_the_full_length_and_cuts_watches_without_a_final_chunk() {
    let f = start_with(
        |w, ww, dir| {
            if w == 0 {
                ww.fault("n1", br#"{"truncate": 10}"#).unwrap();
            }
            if w == 1 {
                api_fault(dir, r#"{"drop_watches": true}"#);
            }
        },
        |c| c.listen_http = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    )
    .await;
    let kubelet = SocketAddr::from((f.server.kubelet_addr("n1").unwrap(), f.server.kubelet_http_port()));
    let wire =
        raw_exchange(kubelet, "GET /stats/summary HTTP/1.1\r\nHost: n1\r\n\r\n".into(), async || {}).await;
    let full = summary("n1", 0);
    let (head, body) = wire.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains(&format!("content-length: {}", full.len())), "{head}");
    assert_eq!(body.as_bytes(), &full[..10]);

    let api: SocketAddr = f.server.api_http_url().unwrap().trim_start_matches("http://").parse().unwrap();
    let request = format!(
        "GET /api/v1/nodes?watch=1&resourceVersion=7 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    let wire = raw_exchange(api, request, async || f.server.advance()).await;
    let (head, body) = wire.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    assert!(!body.contains("\"ADDED\""), "cut before the window's events: {body:?}");
    assert!(!body.ends_with("0\r\n\r\n"), "no final chunk: {body:?}");
}

#[tokio::test]
async fn shutdown_closes_every_listener() {
    let f = start().await;
    let api: SocketAddr = f.server.api_url().trim_start_matches("https://").parse().unwrap();
    let kubelet = SocketAddr::from((f.server.kubelet_addr("n2").unwrap(), f.server.kubelet_http_port()));
    assert!(tokio::net::TcpStream::connect(kubelet).await.is_ok());
    f.server.shutdown().await;
    for addr in [api, kubelet] {
        let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}");
    }
}

#[tokio::test]
async fn a_bad_fault_file_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario");
    write_scenario(&scenario, |w, ww, _| {
        if w == 1 {
            ww.fault("n2", br#"{"truncate": "lots"}"#).unwrap();
        }
    });
    let config = FixtureConfig::new(&scenario, dir.path().join("tls"));
    let err = FixtureServer::start(config).await.err().unwrap().to_string();
    assert!(err.contains("0001/kubelet/n2.fault.json"), "{err}");
    assert!(!dir.path().join("tls").join("kubeconfig").exists());
}
