use crate::batch::MetricBatch;
use heapster_dataflows::model::{LabeledMetric, LabeledValue, Resource};
use heapster_dataflows::{EntityKey, LabelId, LabeledMetricId, MetricId, MetricSet, Value};
use std::io::{Read, Write};

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use super::client::{Endpoint, dropped_count};
use super::config::Retention;
use super::*;
use crate::sinks::queue::Encode;

const T: u64 = 1_700_000_000_000;

/// The sink's halves as the queue runs them, with the chunks of a window encoded.
fn halves_for(url: &str, options: &str) -> (InfluxEncode, InfluxDeliver) {
    let config = InfluxConfig::from_uri(&format!("influxdb:{url}?{options}")).unwrap();
    buffered(config).unwrap()
}

fn chunks_of(encode: &mut InfluxEncode, batch: &MetricBatch) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    encode.metrics(batch.into(), &mut |c| chunks.push(c));
    chunks
}

fn small_batch() -> MetricBatch {
    let mut node = MetricSet::new(EntityKey::Node { node: "node-1".into() });
    node.labels.set(LabelId::Nodename, "node-1".into());
    node.labels.set(LabelId::Hostname, "host-1".into());
    node.labels.set(LabelId::Schedulable, "true".into());
    node.values.set(MetricId::CpuUsageRate, Value::Int(250));
    node.values.set(MetricId::MemoryNodeUtilization, Value::Float(0.5));

    let mut pod = MetricSet::new(EntityKey::PodContainer {
        ns: "kube-system".into(),
        pod: "dns-1".into(),
        container: "dnsmasq".into(),
    });
    pod.labels.set(LabelId::NamespaceName, "kube-system".into());
    pod.labels.set(LabelId::PodName, "dns-1".into());
    pod.labels.set(LabelId::ContainerName, "dnsmasq".into());
    pod.labels.set(LabelId::Labels, "app:dns,tier:x y".into());
    pod.values.set(MetricId::MemoryUsage, Value::Int(1024));
    pod.labeled.push(LabeledValue {
        metric: LabeledMetric::Catalog(LabeledMetricId::FsUsage),
        resource: Resource::Id("Volume:my vol".into()),
        value: Value::Int(5),
    });
    MetricBatch { time: T, sets: vec![node, pod] }
}

#[test]
fn down_server_is_left_to_the_queue_to_retry() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (mut encode, mut deliver) = halves_for(&format!("http://127.0.0.1:{port}"), "");
    let chunks = chunks_of(&mut encode, &small_batch());
    assert_eq!(chunks.iter().map(|c| c.points).sum::<u64>(), 4);
    let started = Instant::now();
    let sent = deliver.send(&chunks);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(sent.len(), chunks.len());
    for outcome in sent {
        assert!(
            matches!(&outcome, Sent::Retry(m) if m.starts_with("InfluxDB did not answer CREATE DATABASE")),
            "one attempt, then back to the queue: {outcome:?}"
        );
    }
}

/// Answers requests in order with `script`'s (status, body), recording each request.
fn scripted_server(script: Vec<(u16, &'static str)>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, body) in script {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= length || n == 0 {
                        break;
                    }
                }
            }
            seen.push(String::from_utf8_lossy(&request).into_owned());
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).unwrap();
            socket.shutdown(std::net::Shutdown::Write).unwrap();
        }
        seen
    });
    (port, handle)
}

#[test]
fn server_errors_and_429_go_back_to_the_queue_then_succeed_with_credentials_only_in_the_header() {
    let ok_query = r#"{"results":[{"statement_id":0}]}"#;
    let (port, server) =
        scripted_server(vec![(200, ok_query), (503, r#"{"error":"busy"}"#), (429, ""), (204, "")]);
    let (mut encode, mut deliver) = halves_for(&format!("http://127.0.0.1:{port}"), "user=me&pw=s3cret");
    let chunks = chunks_of(&mut encode, &small_batch());
    assert_eq!(chunks.len(), 1);
    let first = deliver.send(&chunks);
    assert!(matches!(&first[..], [Sent::Retry(m)] if m.contains("503") && m.contains("busy")), "{first:?}");
    let second = deliver.send(&chunks);
    assert!(matches!(&second[..], [Sent::Retry(m)] if m.contains("429")), "{second:?}");
    assert_eq!(deliver.send(&chunks), [Sent::Written { refused: 0 }]);
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 4, "one CREATE DATABASE, three writes");
    assert!(seen[0].starts_with("POST /query HTTP/1.1"), "{}", seen[0]);
    assert!(seen[0].ends_with("q=CREATE+DATABASE+%22k8s%22"), "{}", seen[0]);
    for request in &seen[1..] {
        assert!(request.starts_with("POST /write?db=k8s&precision=ns HTTP/1.1"), "{request}");
        assert!(request.contains("cpu/usage_rate,cluster_name=default,"), "{request}");
    }
    // base64("me:s3cret")
    assert!(seen.iter().all(|r| r.to_ascii_lowercase().contains("authorization: basic bwu6cznjcmv0")));
    assert!(seen.iter().all(|r| !r.lines().next().unwrap().contains("s3cret")));
}

#[test]
fn client_errors_are_refused_for_good_with_the_servers_message() {
    let (port, server) = scripted_server(vec![
        (200, r#"{"results":[{"statement_id":0}]}"#),
        (400, r#"{"error":"unable to parse 'x': bad timestamp"}"#),
    ]);
    let (mut encode, mut deliver) = halves_for(&format!("http://127.0.0.1:{port}"), "");
    let chunks = chunks_of(&mut encode, &small_batch());
    assert_eq!(
        deliver.send(&chunks),
        [Sent::Refused("InfluxDB answered 400: unable to parse 'x': bad timestamp".into())]
    );
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn config_defaults_are_heapsters() {
    let c = InfluxConfig::from_uri("influxdb:").unwrap();
    assert_eq!(c.url.as_str(), "http://localhost:8086/");
    assert_eq!((c.user.as_str(), c.password.expose_secret(), c.db.as_str()), ("root", "root", "k8s"));
    assert_eq!(c.retention, Retention::Keep);
    assert_eq!(c.retention_policy, "default");
    assert!(!c.with_fields && !c.insecure_ssl && !c.disable_counter_metrics);
    assert_eq!(c.cluster_name, "default");
    assert_eq!(c.concurrency, 1);

    let bare = InfluxConfig::from_uri("influxdb:monitoring-influxdb:8086").unwrap();
    assert_eq!(bare.url.as_str(), "http://monitoring-influxdb:8086/");
    let https = InfluxConfig::from_uri("influxdb:https://h:8443").unwrap();
    assert_eq!(https.url.as_str(), "https://h:8443/");
}

#[test]
fn config_takes_every_option() {
    let c = InfluxConfig::from_uri(
        "influxdb:http://influx.example:9999/prefix?db=metrics&user=heap&pw=pass&retention=7d&rpname=keep\
         &withfields=true&cluster_name=prod&secure=true&insecuressl=1&disable_counter_metrics=TRUE&concurrency=4",
    )
    .unwrap();
    assert_eq!(c.url.as_str(), "https://influx.example:9999/prefix/");
    assert_eq!((c.user.as_str(), c.password.expose_secret(), c.db.as_str()), ("heap", "pass", "metrics"));
    assert_eq!(c.retention, Retention::Duration("7d".into()));
    assert_eq!(c.retention_policy, "keep");
    assert!(c.with_fields && c.insecure_ssl && c.disable_counter_metrics);
    assert_eq!(c.cluster_name, "prod");
    assert_eq!(c.concurrency, 4);
    let endpoint = Endpoint::new(&c).unwrap();
    assert_eq!(
        endpoint.write_url.as_str(),
        "https://influx.example:9999/prefix/write?db=metrics&precision=ns"
    );
    assert_eq!(endpoint.query_url.as_str(), "https://influx.example:9999/prefix/query");
}

#[test]
fn config_rejects_bad_values_naming_them() {
    let reason = |uri: &str| InfluxConfig::from_uri(uri).unwrap_err().reason;
    assert!(reason("influxdb:h:1?withfields=maybe").contains("withfields=\"maybe\""));
    assert!(reason("influxdb:h:1?secure=yes").contains("secure"));
    assert!(reason("influxdb:h:1?concurrency=0").contains("concurrency"));
    assert!(reason("influxdb:h:1?concurrency=-2").contains("concurrency"));
    assert!(reason("influxdb:h:1?db=").contains("db"));
    assert!(reason("influxdb:ftp://h:1").contains("scheme"));
    let unknown = reason("influxdb:h:1?bogus=1");
    assert!(
        unknown.contains("\"bogus\"") && unknown.contains("cluster_name") && unknown.contains("concurrency")
    );
    for bad in ["48", "1x", "30m", "-1h", "h", "1.5h", "99999999999w"] {
        let r = reason(&format!("influxdb:h:1?retention={bad}"));
        assert!(r.contains("retention") && r.contains("48h"), "{bad}: {r}");
    }
    for good in ["1h", "48h", "7d", "2w", "3600s", "INF", "inf", "0"] {
        assert!(Retention::parse(good).is_ok(), "{good}");
    }
}

#[test]
fn password_never_shows() {
    let c = InfluxConfig::from_uri("influxdb:http://h:8086?pw=hunter2&user=u").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!c.to_string().contains("hunter2"));
    for uri in [
        "influxdb:http://h:8086?pw=hunter2&bogus=1",
        "influxdb:http://h:8086?pw=hunter2&withfields=x",
        "influxdb:http://u:hunter2@h:8086",
        "influxdb:http://u:hunter2@h h:8086",
    ] {
        let err = InfluxConfig::from_uri(uri).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

#[test]
fn reads_partial_write_counts() {
    assert_eq!(dropped_count("partial write: field type conflict: ... dropped=12"), Some(12));
    assert_eq!(dropped_count("partial write: points beyond retention policy dropped=3"), Some(3));
    assert_eq!(dropped_count("partial write"), None);
}
