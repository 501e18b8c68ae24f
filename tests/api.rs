//! The collector's HTTP API against real clients: Prometheus scraping `/metrics`, `kubectl top`
//! through the fixture server's aggregation layer, `/healthz` and `/readyz` across an API
//! server outage, TLS client certificates, and bad requests under load.
//!
//! Live runs use `--metric_resolution=5s` and the fixture server on loopback; each test takes
//! some tens of seconds and they run in parallel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use heapster_testbed::fixture_server::{ApiRequest, FixtureConfig, FixtureServer};
use heapster_testbed::testkit::prometheus::Prometheus;
use k8s_openapi::api::rbac::v1::ClusterRole;
use support::*;

const PATIENCE: Duration = Duration::from_secs(90);

/// Where the collector's API listens, once it says so.
async fn api_addr(collector: &mut Collector) -> SocketAddr {
    collector
        .wait_for_async("the API to say where it listens", PATIENCE, |c| {
            c.log().lines().find_map(|l| {
                let (_, rest) = l.split_once("metrics.k8s.io on ")?;
                let rest = rest.split_once("://")?.1;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .await
}

fn client() -> reqwest::Client {
    heapster::tls::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or fails with `what`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log sink's windows: `(header counts, node rows, pod rows)` per window, in order.
#[derive(Debug, Default, Clone)]
struct Printed {
    points: u64,
    nodes: BTreeMap<String, (String, String)>,
    pods: BTreeMap<(String, String), (String, String)>,
}

/// The number of a quantity such as `17m`, with `unit` its suffix.
fn quantity(value: &serde_json::Value, unit: &str) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("quantity {value}"));
    text.trim_end_matches(unit).parse().unwrap_or_else(|e| panic!("quantity {text}: {e}"))
}

/// Bytes of a memory quantity as the API writes it: `NKi` or plain bytes.
fn memory_bytes(value: &serde_json::Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("memory {value}"));
    match text.strip_suffix("Ki") {
        Some(kib) => kib.parse::<u64>().unwrap_or_else(|e| panic!("memory {text}: {e}")) * 1024,
        None => text.parse().unwrap_or_else(|e| panic!("memory {text}: {e}")),
    }
}

fn printed_windows(out: &str) -> Vec<Printed> {
    let mut windows: Vec<Printed> = Vec::new();
    let mut section = "";
    for line in out.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("window ") {
            let points = cells.iter().rev().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            windows.push(Printed { points, ..Printed::default() });
            section = "";
        } else if cells.first() == Some(&"NODE") {
            section = "nodes";
        } else if cells.first() == Some(&"NAMESPACE") {
            section = "pods";
        } else if line.starts_with("busiest pods") {
            section = "";
        } else if let Some(w) = windows.last_mut() {
            match (section, cells.as_slice()) {
                ("nodes", [node, cpu, _, mem, _]) => {
                    w.nodes.insert(node.to_string(), (cpu.to_string(), mem.to_string()));
                }
                ("pods", [ns, pod, cpu, mem]) => {
                    w.pods.insert((ns.to_string(), pod.to_string()), (cpu.to_string(), mem.to_string()));
                }
                _ => {}
            }
        }
    }
    windows
}

async fn prometheus_value(client: &reqwest::Client, prometheus: &Prometheus, query: &str) -> Option<f64> {
    let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let url = format!("{}/api/v1/query?query={encoded}", prometheus.url());
    let answer: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
    let value = answer["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()?;
    Some(value)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .expect("kubectl (run scripts/test-deps.sh)");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Rows of `kubectl top` output after the header, split on whitespace.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines().skip(1).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn manifest_cluster_role() -> ClusterRole {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/clusterrole.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/clusterrole.yaml");
    serde_yaml::from_str(&text).expect("a ClusterRole")
}

/// `(group, resource, verb)` the role grants.
fn granted(role: &ClusterRole) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_kubectl_read_what_the_run_printed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = serve(&small(), tmp.path(), |_| {}).await;
    let mut collector = Collector::start(
        tmp.path(),
        "live",
        &[kubernetes_source(&server, ""), "--metric_resolution=5s".into(), "--sink=log".into()],
    );
    let addr = api_addr(&mut collector).await;
    server.register_metrics_api(&format!("http://{addr}"));
    let prometheus = Prometheus::start(addr).expect("prometheus (run scripts/test-deps.sh)");
    let http = client();

    // Prometheus holds the counters the run printed: windows and points of the log sink's tables,
    // at a moment when both agree (a window may land between a scrape and the read).
    let (windows, points) = eventually("Prometheus to hold the printed counters", || {
        let (http, prometheus, collector) = (&http, &prometheus, &collector);
        async move {
            let printed = printed_windows(&collector.out());
            let windows = prometheus_value(http, prometheus, "heapster_windows_exported_total").await?;
            let points = prometheus_value(http, prometheus, "heapster_points_total").await?;
            let expected_points: u64 = printed.iter().map(|w| w.points).sum();
            (printed.len() >= 2 && windows as usize == printed.len() && points as u64 == expected_points)
                .then_some((windows, points))
        }
    })
    .await;
    assert!(windows >= 2.0 && points > 0.0);
    // Every node's kubelet was scraped, and each scrape counted as it happened.
    let seen = server.stats().summaries;
    for (node, requests) in &seen {
        let query = format!("heapster_node_scrapes_total{{node=\"{node}\",outcome=\"ok\"}}");
        let scraped = prometheus_value(&http, &prometheus, &query).await.unwrap_or(0.0);
        assert!(scraped >= 1.0 && scraped as u64 <= *requests, "{node}: {scraped} of {requests}");
    }
    let histogram = prometheus_value(&http, &prometheus, "heapster_node_scrape_duration_seconds_count").await;
    assert!(histogram.is_some_and(|n| n >= 3.0), "{histogram:?}");
    let requests_before_kubectl = server.requests();

    // kubectl top, through the aggregation layer, prints the log sink's numbers for the window
    // it read: retried when a window lands during the call.
    let kubeconfig = server.kubeconfig().to_path_buf();
    let (nodes, pods, window, pod_metrics) = eventually("kubectl top to read a stable window", || {
        let (collector, kubeconfig, http) = (&collector, kubeconfig.clone(), &http);
        async move {
            let before = printed_windows(&collector.out());
            let (nodes, pods) = tokio::task::spawn_blocking(move || {
                (kubectl(&kubeconfig, &["top", "nodes"]), kubectl(&kubeconfig, &["top", "pods", "-A"]))
            })
            .await
            .ok()?;
            let (_, metrics) = get(http, &format!("http://{addr}/apis/metrics.k8s.io/v1beta1/pods")).await;
            let after = printed_windows(&collector.out());
            (before.len() == after.len())
                .then(|| (nodes, pods, after.last().cloned().unwrap_or_default(), metrics))
        }
    })
    .await;
    let node_rows = rows(&nodes);
    assert_eq!(node_rows.len(), window.nodes.len(), "{nodes}\n{:?}", window.nodes);
    for row in &node_rows {
        let (cpu, mem) = window.nodes.get(&row[0]).unwrap_or_else(|| panic!("{} not printed", row[0]));
        assert_eq!((&row[1], &row[3]), (cpu, mem), "node {}:\n{nodes}", row[0]);
    }
    let pod_rows: BTreeMap<(String, String), (String, String)> = rows(&pods)
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), (r[2].clone(), r[3].clone())))
        .collect();
    // A pod's row is the sum of its containers, as metrics-server serves them and kubectl adds
    // them up; the log table prints the kubelet's pod-level numbers (the pod's whole cgroup), so
    // pods are checked against the API's containers.
    let pod_metrics: serde_json::Value = serde_json::from_str(&pod_metrics).expect("PodMetricsList");
    let mut compared = 0;
    for item in pod_metrics["items"].as_array().expect("items") {
        let key = (
            item["metadata"]["namespace"].as_str().expect("namespace").to_string(),
            item["metadata"]["name"].as_str().expect("name").to_string(),
        );
        let containers = item["containers"].as_array().expect("containers");
        let cpu: u64 = containers.iter().map(|c| quantity(&c["usage"]["cpu"], "m")).sum();
        let memory: u64 = containers.iter().map(|c| memory_bytes(&c["usage"]["memory"])).sum();
        let expected = (format!("{cpu}m"), format!("{}Mi", memory >> 20));
        assert_eq!(pod_rows.get(&key), Some(&expected), "pod {key:?}:\n{pods}\n{pod_metrics}");
        compared += 1;
    }
    assert!(compared > 0, "no pod with a CPU rate in the printed window: {window:?}");

    // The ClusterRole covers every request the collector made, and grants nothing it did not use.
    let used: BTreeSet<(String, String, String)> = requests_before_kubectl
        .iter()
        .filter_map(|r| match r {
            ApiRequest::Resource { group, resource, verb } => {
                Some((group.clone(), resource.clone(), verb.clone()))
            }
            ApiRequest::NonResource { .. } => None,
        })
        .collect();
    assert_eq!(granted(&manifest_cluster_role()), used, "deploy/clusterrole.yaml against what was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_api_server_and_readiness_the_first_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = |dir: &str| {
        let mut config = FixtureConfig::new(small(), tmp.path().join(dir));
        config.token = Some("fixture-token".into());
        config
    };
    // A first server only to fix the addresses and write the kubeconfig; then it goes away.
    let first = FixtureServer::start(config("tls0")).await.expect("fixture server");
    let api: SocketAddr = first.api_url().trim_start_matches("https://").parse().expect("address");
    let (http_port, https_port) = (first.kubelet_http_port(), first.kubelet_https_port());
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::copy(first.kubeconfig(), &kubeconfig).expect("kubeconfig");
    first.shutdown().await;
    let again = |dir: &'static str| {
        let mut c = config(dir);
        c.listen = api;
        c.kubelet_http_port = http_port;
        c.kubelet_https_port = https_port;
        FixtureServer::start(c)
    };

    // Each restart makes a new CA: the collector skips verification rather than pin the first.
    let source = format!(
        "--source=kubernetes:https://{api}?inClusterConfig=false&auth={}&kubeletPort={http_port}&insecure=true&events=false",
        kubeconfig.display()
    );
    let mut collector = Collector::start(tmp.path(), "health", &[source, "--metric_resolution=5s".into()]);
    let base = format!("http://{}", api_addr(&mut collector).await);
    let http = client();
    let healthz = format!("{base}/healthz");
    let readyz = format!("{base}/readyz");

    // No API server: not ready, and unhealthy once the node list has failed.
    let (code, body) = get(&http, &readyz).await;
    assert_eq!((code, body.trim()), (503, "not ready: no window exported yet"));
    let body = eventually("unhealthy without an API server", || async {
        let (code, body) = get(&http, &healthz).await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(body.contains("cannot list nodes"), "{body}");
    assert_eq!(get(&http, &readyz).await.0, 503);

    // The API server comes: windows flow, ready and healthy.
    let server = again("tls1").await.expect("fixture server");
    eventually("ready after the first window", || async {
        (get(&http, &readyz).await.0 == 200).then_some(())
    })
    .await;
    eventually("healthy with the API server", || async {
        (get(&http, &healthz).await.0 == 200).then_some(())
    })
    .await;

    // It stops answering: unhealthy, saying why; it returns: healthy again.
    server.shutdown().await;
    let body = eventually("unhealthy once the API server is gone", || async {
        let (code, body) = get(&http, &healthz).await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(body.contains("cannot list nodes"), "{body}");
    let _server = again("tls2").await.expect("fixture server");
    eventually("healthy again", || async { (get(&http, &healthz).await.0 == 200).then_some(()) }).await;
    let log = collector.log();
    // One line per change of the API server's state, naming it.
    let outages = log
        .lines()
        .filter(|l| l.contains(&format!("API server https://{api}")) && l.contains("unreachable"))
        .count();
    assert!((2..=6).contains(&outages), "{outages} outage lines:\n{log}");
}

/// A CA, and certificates it signs for the server and for clients by common name.
struct Pki {
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&key).expect("CA");
        Pki { ca, issuer: rcgen::Issuer::new(params, key) }
    }

    /// `(certificate PEM, key PEM)`.
    fn issue(&self, cn: &str, server: bool) -> (String, String) {
        let names = if server { vec!["127.0.0.1".to_string(), "localhost".to_string()] } else { Vec::new() };
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_clients_without_an_allowed_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca = write("ca.pem", &pki.ca.pem());
    let (cert, key) = pki.issue("heapster", true);
    let (cert, key) = (write("server.pem", &cert), write("server.key", &key));
    // No API server behind: the API serves without windows, which is all TLS needs.
    let kubeconfig = write(
        "kubeconfig",
        r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:1"}}],
            "users":[{"name":"u","user":{"token":"t"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
            "current-context":"x"}"#,
    );
    let mut collector = Collector::start(
        tmp.path(),
        "tls",
        &[
            format!(
                "--source=kubernetes:https://127.0.0.1:1?inClusterConfig=false&auth={}",
                kubeconfig.display()
            ),
            format!("--tls_cert={}", cert.display()),
            format!("--tls_key={}", key.display()),
            format!("--tls_client_ca={}", ca.display()),
            "--allowed_users=system:kube-aggregator,admin".into(),
        ],
    );
    let addr = api_addr(&mut collector).await;
    assert!(collector.log().contains(&format!("https://{addr}")), "{}", collector.log());
    let url = format!("https://localhost:{}/apis/metrics.k8s.io/v1beta1/nodes", addr.port());
    heapster::tls::install_crypto_provider();
    let ca_cert = reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).expect("CA");
    let with = |identity: Option<(String, String)>| {
        let mut builder =
            reqwest::Client::builder().add_root_certificate(ca_cert.clone()).timeout(Duration::from_secs(10));
        if let Some((cert, key)) = identity {
            builder = builder
                .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"));
        }
        builder.build().expect("client")
    };

    // No certificate: the handshake fails, nothing is answered.
    let refused = with(None).get(&url).send().await;
    assert!(refused.is_err(), "answered without a client certificate: {refused:?}");
    // A certificate from another CA: refused too.
    let stranger = Pki::new().issue("admin", false);
    assert!(with(Some(stranger)).get(&url).send().await.is_err(), "a foreign CA's certificate was accepted");
    // Signed by the CA, but a CN not in --allowed_users: 403 with a Status.
    let (code, body) = get(&with(Some(pki.issue("mallory", false))), &url).await;
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Forbidden")));
    // An allowed CN gets the metrics API.
    let (code, body) = get(&with(Some(pki.issue("system:kube-aggregator", false))), &url).await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["kind"], "NodeMetricsList");
}

/// Every line of the file sink's output, sorted.
fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> =
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_a_request_storm_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("cluster");
    let mut spec = heapster_testbed::synth::SynthSpec::new(100, 10, 4);
    // Short windows, so that the loaded run, replayed at the recorded pace, lasts a few seconds
    // whatever the machine's speed: the storm then always meets a running pipeline.
    spec.resolution_seconds = 5;
    heapster_testbed::synth::synth(&spec, &scenario).expect("synth");
    let replay = |name: &str, pace: &str| {
        let out = tmp.path().join(format!("{name}.lp"));
        let args = [
            format!("--source=replay:{}?pace={pace}", scenario.display()),
            format!("--sink=file:{}", out.display()),
        ];
        (Collector::start(tmp.path(), name, &args), out)
    };

    // Unloaded.
    let (mut quiet, quiet_out) = replay("quiet", "fast");
    let status = tokio::task::spawn_blocking(move || {
        let status = quiet.wait();
        (status, quiet.log())
    })
    .await
    .expect("run");
    assert!(status.0.success(), "{}", status.1);

    // Loaded: bad requests first, then up to 10,000 list requests while the replay runs.
    let (mut loaded, loaded_out) = replay("loaded", "real");
    let base = format!("http://{}", api_addr(&mut loaded).await);
    let http = client();
    let bad = [
        ("/nope", 404),
        ("/apis/metrics.k8s.io/v1beta1/nodes/no-such-node", 404),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/x/pods/y", 404),
        ("/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%20in%20web", 400),
        ("/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=%3D%3D%3D", 400),
        ("/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=spec.nodeName%3Dx", 400),
        ("/apis/metrics.k8s.io/v1beta1/nodes?watch=true", 405),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/%ff%fe/pods", 200),
        ("/metrics?%%%", 200),
    ];
    for (path, expected) in bad {
        let (code, body) = get(&http, &format!("{base}{path}")).await;
        assert_eq!(code, expected, "{path}: {body}");
        if expected >= 400 {
            let status: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
            assert_eq!(status["kind"], "Status", "{path}");
            assert_eq!(status["code"], expected, "{path}");
        }
    }
    let mut answered = 0u32;
    let mut lists = 0u32;
    let paths =
        ["/apis/metrics.k8s.io/v1beta1/nodes", "/apis/metrics.k8s.io/v1beta1/pods", "/metrics", "/healthz"];
    for i in 0..10_000 {
        match http.get(format!("{base}{}", paths[i % paths.len()])).send().await {
            Ok(response) => {
                assert!(response.status().is_success(), "{}", response.status());
                if i % paths.len() < 2 && response.text().await.is_ok_and(|b| b.contains("Metrics")) {
                    lists += 1;
                }
                answered += 1;
            }
            // The replay ended: the API goes down as the process exits.
            Err(e) => {
                let started = Instant::now();
                while loaded.try_wait().is_none() {
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "request {i} failed, and heapster runs on: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                break;
            }
        }
    }
    let log = tokio::task::spawn_blocking(move || {
        let status = loaded.wait();
        assert!(status.success(), "{}", loaded.log());
        loaded.log()
    })
    .await
    .expect("run");
    assert!(answered >= 100 && lists > 0, "only {answered} requests answered during the replay");
    assert!(!log.contains("panicked"), "{log}");
    let (quiet, loaded) = (sorted_lines(&quiet_out), sorted_lines(&loaded_out));
    assert!(!quiet.is_empty());
    assert!(
        quiet == loaded,
        "the replay's output changed under load ({} vs {} lines)",
        quiet.len(),
        loaded.len()
    );
}
